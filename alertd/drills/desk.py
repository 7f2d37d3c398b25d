"""Drills started from the desk console: a shipped scenario run by the engine itself.

``alertd drill run NAME --url …`` runs a scenario against a running engine from outside; the
console asks the engine to do the same for it. The run is the same ``DrillRunner`` — its own
simulated receivers, its own issuers, every message Exercise (訓練), everything it registered
removed at the end — talking HTTP to a private listener of this engine on 127.0.0.1 with the
deployment's admin token (the drill registers its issuers and receivers as that token may;
the person who started it never holds it).

Who may start what (the route checks it, this module says what a scenario covers):

- the admin token: any shipped scenario;
- a person with the ``operator`` role (or the issuer's token): a scenario whose issuers'
  jurisdictions all lie inside the caller's issuer's jurisdiction, and that sends nothing
  national (JMA telegrams, CAP files). 常総市's desk may run ``joso-flood-day``; ``ibaraki-44``
  (the whole prefecture) needs the prefecture's desk; ``missile-alert`` needs a national issuer
  or the admin token.

No second person: a drill is Exercise, never an order anyone acts on, and reaches only receivers
that take drills (``alertd.routing``) — the two-person rule holds Actual orders, as issuers set it.

The drill registers its issuers and receivers under ids of its own run (``drill-<run>-nhk-mito``,
``alertd.drills.runner.engine_ids``), so a town configured from the example configuration — whose
live ids are the shipped scenarios' joso-desk, nhk-mito, radio-joso — runs its drills as shipped.

The start answers once the drill has really started (its issuers and receivers registered), so
the console never says 訓練を開始しました for a drill that could not start: that is a 409 problem
saying why, Japanese first.

One drill at a time per deployment (two at once would read each other's orders as in force in
their checks): a Redis lock says which, on every alertd process. The run's progress is kept in
Redis too, so any process answers for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alertd import logs
from alertd.drills.scenario import SCENARIOS, Scenario, ScenarioError, load_scenario
from alertd.errors import Conflict, NotFound
from alertd.intake import NATIONAL_KINDS
from alertd.models import JST

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp import web

    from alertd.drills.runner import DrillRunner
    from alertd.engine import Engine

log = logs.get("alertd.drills.desk")

# Steps that send as the drill's national issuer or from files: never a town desk's to start.
NATIONAL_STEPS = frozenset({"jma", "spool", "cap"})
# A run's record is kept this long after it ends (the desk reads its result; then it goes).
KEEP_S = 7 * 24 * 3600
# The lock outlives a crashed process by at most this long (the longest shipped drill is ~2 min
# at speed 1; a lock is released as soon as its drill ends).
LOCK_S = 1800
# How often a running drill's progress is written for other processes and the console.
SAVE_EVERY_S = 0.5
# How long the start waits for the drill to have started before answering "starting" (then the
# console follows GET /api/v1/drills/{id}): registering takes well under a second, a broker that
# is slow to answer the fleet's connection longer.
START_WAIT_S = 20.0


@dataclass(frozen=True)
class ShippedScenario:
    id: str  # the file's stem: what `alertd drill run` takes
    scenario: Scenario
    national: bool  # sends national warnings or files: admin token or a national issuer only
    scope: tuple[str, ...]  # every code its issuers speak for, and its test's districts

    @property
    def duration_s(self) -> float:
        return max((s.at for s in self.scenario.steps), default=0.0)


@functools.cache
def shipped(directory: Path = SCENARIOS) -> tuple[ShippedScenario, ...]:
    """The scenarios alertd ships, with what each covers: read once (about 0.1 s for all of
    them), as they are part of the installed package. A run reads its scenario afresh."""
    out = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            log.warning("drill.scenario_unreadable", path=str(path), error=str(exc))
            continue
        national = any(i.get("national") for i in scenario.issuers) or any(
            s.kind in NATIONAL_STEPS
            or (
                s.kind == "alert"
                and isinstance(s.spec, dict)
                and str(s.spec.get("kind", "")).lower() in NATIONAL_KINDS
            )
            for s in scenario.steps
        )
        scope = [str(c) for i in scenario.issuers for c in i.get("jurisdiction") or []]
        for step in scenario.steps:
            if step.kind == "test_broadcast" and isinstance(step.spec, dict):
                scope += [str(d) for d in step.spec.get("districts") or []]
        out.append(ShippedScenario(path.stem, scenario, national, tuple(dict.fromkeys(scope))))
    return tuple(out)


async def scenarios() -> tuple[ShippedScenario, ...]:
    """``shipped()`` off the event loop (the first call reads every file)."""
    return await asyncio.to_thread(shipped)


async def find(name: str) -> ShippedScenario:
    for found in await scenarios():
        if found.id == name:
            return found
    names = ", ".join(s.id for s in await scenarios())
    raise NotFound(f"There is no shipped drill scenario {name!r}. The shipped ones are: {names}.")


class DeskDrills:
    """Start a shipped scenario on this engine, and answer for its progress from Redis."""

    def __init__(self, engine: Engine, make_app: Callable[[Engine], web.Application]) -> None:
        self.engine = engine
        # The API's app factory, handed in by the API (which imports this module): the drill
        # talks to a private listener of this engine, as a drill run from the CLI talks to one.
        self._make_app = make_app
        prefix = engine.settings.key_prefix
        self._lock_key = f"{prefix}:desk-drill:running"
        self._run_key = f"{prefix}:desk-drill:run:"
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def _redis(self) -> Any:
        assert self.engine.redis is not None, "the engine is started before it serves"
        return self.engine.redis

    async def running(self) -> dict[str, Any] | None:
        run_id = await self._redis.get(self._lock_key)
        return await self.get(run_id.decode()) if run_id else None

    async def get(self, run_id: str) -> dict[str, Any]:
        raw = await self._redis.get(self._run_key + run_id)
        if raw is None:
            raise NotFound(f"There is no drill {run_id!r} (a finished drill is kept for 7 days).")
        return dict(json.loads(raw))

    async def _save(self, record: dict[str, Any]) -> None:
        await self._redis.set(self._run_key + record["id"], json.dumps(record, ensure_ascii=False), ex=KEEP_S)

    async def start(self, found: ShippedScenario, speed: float, started_by: str) -> dict[str, Any]:
        settings = self.engine.settings
        if not settings.admin_token:
            raise Conflict("Drills started from the console need the deployment's admin token (ALERTD_ADMIN_TOKEN): "
                           "the drill registers its own issuers and receivers with it. Ask the system "
                           "administrator to set it, or run 'alertd drill run'.")  # fmt: skip
        run_id = datetime.now(JST).strftime("%Y%m%dT%H%M%S") + f"-{secrets.token_hex(3)}"
        if not await self._redis.set(self._lock_key, run_id, nx=True, ex=LOCK_S):
            # Which scenario, not who: the drill may be another town's.
            other = await self.running()
            what = other["scenario"] if other else "another drill"
            raise Conflict(
                f"A drill is already running on this alertd ({what}); one runs at a time. "
                "Start this one when it has ended."
            )
        record: dict[str, Any] = {
            "id": run_id, "scenario": found.id, "title": found.scenario.name,
            "description": found.scenario.descriptions.get("ja") or found.scenario.description,
            "descriptions": {"ja": found.scenario.descriptions.get("ja") or found.scenario.description,
                             "en": found.scenario.descriptions.get("en") or found.scenario.description},
            "speed": speed, "started_by": started_by,
            "started": datetime.now(JST).isoformat(timespec="seconds"), "state": "starting",
            "status": "Exercise", "steps": [], "verdict": None, "error": None,
        }  # fmt: skip
        await self._save(record)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._run(found, speed, record, ready))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ready), START_WAIT_S)
        if record["state"] in ("error", "failed"):
            # It never started (its lock is released, what it registered removed): a problem, not a 202.
            raise Conflict(f"訓練 {found.id} を開始できませんでした（何も送信していません）。"
                           f"The drill {found.id} could not start; nothing was sent. {record['error'] or ''}".rstrip())  # fmt: skip
        log.info("drill.started", drill_id=run_id, scenario=found.id, started_by=started_by)
        return record

    async def _run(
        self, found: ShippedScenario, speed: float, record: dict[str, Any], ready: asyncio.Future[None]
    ) -> None:
        """The drill against a private listener of this engine, its progress saved as it goes."""
        from aiohttp import web

        from alertd.drills.render import verdict
        from alertd.drills.runner import DrillRunner

        settings = self.engine.settings
        runner = web.AppRunner(self._make_app(self.engine), access_log=None)
        drill: DrillRunner | None = None
        saver: asyncio.Task[None] | None = None
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            spool = os.environ.get("ALERTD_JMA_SPOOL")
            assert settings.admin_token and settings.mqtt_url, "checked before the drill started"
            path = found.scenario.path
            scenario = found.scenario if path is None else await asyncio.to_thread(load_scenario, path)
            drill = DrillRunner(
                scenario, f"http://127.0.0.1:{port}", settings.admin_token, settings.mqtt_url, speed,
                topic_prefix=settings.topic_prefix, spool=Path(spool) if spool else None,
                id_tag=record["id"].rsplit("-", 1)[1],  # its receivers on the board: drill-<this>-nhk-mito
            )  # fmt: skip
            drill.progress = _Quiet()  # a server has no terminal line to update
            # Its boards name its receivers so: the console may show the scenario's names beside them.
            record["engine_ids"] = {"issuers": drill.issuer_ids, "receivers": drill.receiver_ids}

            async def started() -> None:
                record["state"] = "running"
                await self._save(record)
                if not ready.done():
                    ready.set_result(None)

            drill.on_setup = started
            saver = asyncio.create_task(self._keep_saving(drill, record))
            report = await drill.run()
            record["verdict"] = verdict(report)
            record["state"] = "passed" if record["verdict"]["passed"] else "failed"
            record["cleanup"] = {k: len(v) for k, v in report.get("cleanup", {}).items()}
        except (ScenarioError, OSError) as exc:
            record["state"], record["error"] = "error", str(exc)
        except Exception as exc:  # a drill's failure is reported, never a dead task
            log.exception("drill.crashed", drill_id=record["id"])
            record["state"], record["error"] = "error", f"{type(exc).__name__}: {exc}"
        finally:
            if saver is not None:
                saver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await saver
            if drill is not None:
                record["steps"] = _steps(drill)
            record["ended"] = datetime.now(JST).isoformat(timespec="seconds")
            with contextlib.suppress(Exception):
                await self._save(record)
                if (await self._redis.get(self._lock_key) or b"").decode() == record["id"]:
                    await self._redis.delete(self._lock_key)
            await runner.cleanup()
            log.info("drill.ended", drill_id=record["id"], state=record["state"])
            if not ready.done():  # it ended before it started: the start answers with why
                ready.set_result(None)

    async def _keep_saving(self, drill: DrillRunner, record: dict[str, Any]) -> None:
        while True:
            record["steps"] = _steps(drill)
            record["total_steps"] = len(drill.scenario.steps)
            await self._save(record)
            await asyncio.sleep(SAVE_EVERY_S)

    async def stop(self) -> None:
        """On shutdown: each drill cleans up after itself (its runner does, when cancelled)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=15)


def _steps(drill: DrillRunner) -> list[dict[str, Any]]:
    return [{"name": r.step.name, "at": r.step.at, "kind": r.step.kind, "alert_ids": list(r.alert_ids),
             "error": r.error} for r in drill.results]  # fmt: skip


class _Quiet:
    def show(self, text: str) -> None:
        pass

    def done(self) -> None:
        pass
