"""Replay a drill scenario against an engine: every message forced to Exercise (訓練),
every delivery counted, every view checked after every step."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from alertd import report
from alertd.drills.receivers import Fleet
from alertd.drills.scenario import Scenario, ScenarioError, Step, resolve_file
from alertd.drills.views import Views
from alertd.models import JST
from alertd.report import Progress, bar


def drill_layer(layer: str) -> str:
    """The name a drill loads a layer under: never a town's real one."""
    return layer if layer.startswith("drill-") else f"drill-{layer}"


# The national issuer every drill registers besides the scenario's (its JMA and CAP steps send as it).
NATIONAL = "drill-national"
ID_MAX = 64  # schemas.ID_RE


def engine_ids(names: list[str], tag: str) -> dict[str, str]:
    """The ids a drill registers its issuers and receivers under: ``drill-<tag>-<name>``, one set
    per run, so a drill never shares an id with a live desk or receiver (the shipped scenarios
    say joso-desk and nhk-mito, as the example configuration does) nor with another run.
    A scenario's own "drill-" is not doubled; an id too long for the engine is shortened with a
    hash of the whole name, so two names never meet in one id."""
    prefix = f"drill-{tag}-"
    out: dict[str, str] = {}
    for name in names:
        base = name.removeprefix("drill-") or name
        ident = prefix + base
        if len(ident) > ID_MAX or ident in out.values():
            digest = hashlib.sha256(name.encode()).hexdigest()[:8]
            ident = f"{prefix}{base[: ID_MAX - len(prefix) - 9]}-{digest}"
        out[name] = ident
    return out


@dataclass
class StepResult:
    step: Step
    alert_ids: list[str] = field(default_factory=list)
    error: str | None = None
    planned: int = 0
    lanes: set[str] = field(default_factory=set)
    # None: nothing expected; []: every view agreed with the expectation; else what differed.
    views: list[str] | None = None
    test_broadcast: dict[str, Any] | None = None  # a transmission test step's final result


def _jst(when: Any) -> str | None:
    """A delivery's time (the API's RFC 3339) in Japan time, as the rest of the report is dated."""
    if not when:
        return None
    try:
        moment = datetime.fromisoformat(str(when).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(JST).isoformat(timespec="seconds")


def _missed(row: dict[str, Any]) -> bool:
    """The receiver never heard it: failed, expired, still queued, or superseded before delivery."""
    if row["state"] == "superseded":
        return not row.get("delivered_at")
    return row["state"] not in ("delivered", "confirmed")


# The last error of every delivery the drill ended at its end (POST …/deliveries/end): it was
# never delivered, and never will be — the drill is over.
DRILL_ENDED = "ended by the drill (訓練終了): never delivered"


def _state_of(row: dict[str, Any]) -> str:
    """A delivery's state as the report names it: one the drill ended says so, not 'superseded'."""
    if row["state"] == "superseded" and str(row.get("last_error") or "").startswith(DRILL_ENDED):
        return "ended by the drill"
    if row["state"] == "superseded" and _missed(row):
        return "superseded before delivery"
    return str(row["state"])


# Delivery states that never change again (delivered may still become confirmed).
_ENDED = frozenset({"confirmed", "failed", "expired", "superseded"})


class DrillRunner:
    def __init__(
        self, scenario: Scenario, url: str, admin_token: str, mqtt_url: str, speed: float = 1.0,
        *, topic_prefix: str = "alerts/v1", spool: Path | None = None, public_url: str | None = None,
        lenient: bool = False, id_tag: str | None = None,
    ) -> None:
        self.scenario = scenario
        # The standalone test's rule: a receiver that got the test but did not confirm fails it,
        # unless lenient.
        self.lenient = lenient
        self.url = url.rstrip("/")
        self.admin_token = admin_token
        self.mqtt_url = mqtt_url
        self.speed = max(speed, 0.001)
        self.run_id = datetime.now(JST).strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(2)  # as the report's date
        # The scenario's names (what its steps and faults say) -> the ids registered on the engine.
        tag = id_tag or self.run_id.rsplit("-", 1)[1]
        self.receiver_ids = engine_ids([r.id for r in scenario.receivers], tag)
        self.issuer_ids = engine_ids([*(str(i["id"]) for i in scenario.issuers), NATIONAL], tag)
        self._own = {self.receiver_ids[r.id]: r for r in scenario.receivers}  # engine id -> its spec
        self._name_of = {ident: name for name, ident in self.receiver_ids.items()}
        self.fleet = Fleet([replace(r, id=self.receiver_ids[r.id]) for r in scenario.receivers], url, mqtt_url)
        self.tokens: dict[str, str] = {}
        self.results: list[StepResult] = []
        self.by_name: dict[str, StepResult] = {}
        self.progress = Progress()
        self.views = Views(self.url, public_url or self.url, mqtt_url, topic_prefix)
        self.spool = spool
        # Per JMA event (EventID): how far its telegrams are moved, fixed at its first one.
        self._jma_delta: dict[str, timedelta] = {}
        self.views_timeout = 10.0  # how long the views may take to agree after a step
        # What this drill made on the engine, so it can take it all away again at the end:
        # a drill never leaves an issuer, a receiver or a standing order behind.
        self.created_issuers: list[str] = []
        self.created_subscribers: list[str] = []
        self.created_layers: list[str] = []  # API paths of the layers it loaded
        self.sent_by: dict[str, str] = {}  # alert id -> the token that sent it (to cancel it)
        self._settled_rows: dict[str, list[dict[str, Any]]] = {}  # alerts whose deliveries all ended
        self._towns: dict[str, str] | None = None  # receiver id -> the town it stands for, by name
        self._districts: dict[str, list[str]] = {}  # districts of receivers not the scenario's own
        self.started: datetime | None = None
        # Called once the drill's issuers and receivers are registered and its first step is due:
        # the drill has started (the console says 訓練を開始しました only then).
        self.on_setup: Callable[[], Awaitable[None]] | None = None

    async def _api(
        self, http: aiohttp.ClientSession, method: str, path: str, token: str, **kw: Any
    ) -> tuple[int, Any]:
        async with http.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {token}", **kw.pop("headers", {})},
            **kw,
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, {"detail": text}

    async def setup(self, http: aiohttp.ClientSession) -> None:
        issuers = [
            *self.scenario.issuers,
            {"id": NATIONAL, "name": "全国瞬時警報システム(訓練)", "national": True},
        ]
        await self._refuse_live_ids(list(self.issuer_ids.values()), list(self.receiver_ids.values()))
        await self.fleet.start()
        if any(step.expect for step in self.scenario.steps):
            await self.views.start()
        for body in self.fleet.subscriber_bodies():  # endpoints exist once the fleet listens
            status, data = await self._api(http, "POST", "/api/v1/subscribers", self.admin_token, json=body)
            if status != 201:
                raise ScenarioError(f"could not register receiver {body['id']}: {data.get('detail')}")
            self.created_subscribers.append(body["id"])
        for issuer in issuers:
            token = secrets.token_hex(16)
            ident = self.issuer_ids[str(issuer["id"])]
            body = {**issuer, "id": ident, "token": token, "jurisdiction": issuer.get("jurisdiction", [])}
            status, data = await self._api(http, "POST", "/api/v1/issuers", self.admin_token, json=body)
            if status != 201:
                raise ScenarioError(f"could not register issuer {ident}: {data.get('detail')}")
            self.created_issuers.append(ident)
            self.tokens[str(issuer["id"])] = token  # by the scenario's name, as its steps say it
        await self._load_layers(http)

    async def _load_layers(self, http: aiohttp.ClientSession) -> None:
        """The scenario's own districts (a made-up 自治区 layer), as the town's desk loads them."""
        from alertd.layer_cli import read_layer

        for spec in self.scenario.layers:
            path = f"/api/v1/layers/{spec['municipality']}/{drill_layer(spec['layer'])}"
            body = {"districts": read_layer(self._resolve_file(spec["file"]))}
            status, data = await self._api(http, "PUT", path, self._issuer_token_of(None), json=body)
            if status != 200:
                raise ScenarioError(f"could not load layer {spec['layer']} from {spec['file']}: {data.get('detail')}")
            self.created_layers.append(path)

    def _issuer_token_of(self, issuer: str | None) -> str:
        return self.tokens[issuer or self.scenario.issuers[0]["id"]]

    async def _refuse_live_ids(self, issuers: list[str], subscribers: list[str]) -> None:
        """A drill never replaces what the engine already has: registering an id that exists
        would re-point a live receiver at the drill, or give a live desk a new token."""
        taken: list[str] = []
        ids: list[str] = []
        async with aiohttp.ClientSession() as http:
            for kind, wanted in (("issuer", issuers), ("subscriber", subscribers)):
                status, existing = await self._api(http, "GET", f"/api/v1/{kind}s", self.admin_token)
                if status != 200:
                    raise ScenarioError(f"could not list the engine's {kind}s: {existing.get('detail')}")
                have = {e["id"] for e in existing}
                taken += [f"{kind} {ident!r}" for ident in wanted if ident in have]
                ids += [ident for ident in wanted if ident in have]
        if taken:
            # Shown to desk staff in the console: Japanese first, then the English.
            raise ScenarioError(
                f"この訓練が登録する発信者・受信者のID（{'、'.join(ids)}）が、すでに本番の設定にあります。"
                "訓練は本番の設定を置き換えないため、開始しませんでした（何も送信していません）。"
                "もう一度開始してください（IDは訓練ごとに変わります）。"
                f" The engine at {self.url} already has {', '.join(taken)}; a drill never replaces live "
                "settings, so nothing was started or sent. Start it again: a drill's ids change with every run."
            )

    async def cleanup(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """The whole end of a drill, as a SIGTERM'd one does it too: what stands is lifted or
        cancelled, every delivery still unfinished is ended, then what it registered is removed."""
        done = await self.end_alerts(http)
        await self.remove_registered(http, done)
        return done

    async def end_alerts(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """Lift or cancel what the drill issued that still stands; give those messages a moment
        to reach receivers that are up; then end every delivery of the drill's alerts not yet
        final (superseded, 'ended by the drill'): a gateway that was down must not hear the
        drill's 解除 when its port opens, hours later, for an order it never heard."""
        done: dict[str, Any] = {"cancelled": [], "removed_issuers": [], "removed_receivers": [], "errors": [],
                                "cleanup_alerts": [], "ended": []}  # fmt: skip
        # The steps' alerts first: what a receiver missed is then "ended by the drill", not
        # "superseded" by the cleanup's own lift a moment later.
        await self._end_deliveries(http, [a for r in self.results for a in r.alert_ids], done)
        for alert_id, token in list(self.sent_by.items()):
            status, alert = await self._api(http, "GET", f"/api/v1/alerts/{alert_id}", self.admin_token)
            if status != 200 or alert.get("state") != "active":
                continue
            ident = f"drill-{self.run_id}-end-{alert_id}"
            if alert.get("kind") == "evacuation" and alert.get("action") == "issue" and alert.get("level"):
                # An order the drill left standing is lifted (解除), never withdrawn as "sent in
                # error": a 取消 would tell whoever heard it that it was a mistake.
                lift = {"municipality": alert.get("municipality"), "level": alert["level"], "action": "lift",
                        "districts": ["all"], "reason": alert.get("reason") or "訓練", "status": "Exercise",
                        "identifier": ident}  # fmt: skip
                status, data = await self._api(http, "POST", "/api/v1/evacuation-orders", token, json=lift)
                if status == 202 or status == 409:  # 409: a lift of a higher level already ended it
                    done["cancelled"].append(alert_id)
                    if status == 202:
                        done["cleanup_alerts"].append(data["id"])
                    continue
            # drill_end: the text says the drill is over (訓練終了), never "sent in error".
            cancel = {"status": alert.get("status") or "Exercise", "msg_type": "Cancel", "references": [alert_id],
                      "identifier": ident, "drill_end": (alert.get("status") or "Exercise") == "Exercise"}  # fmt: skip
            status, data = await self._api(http, "POST", "/api/v1/alerts", token, json=cancel)
            (done["cancelled"] if status == 202 else done["errors"]).append(
                alert_id if status == 202 else f"cancel {alert_id}: {status} {data.get('detail')}"
            )
            if status == 202:
                done["cleanup_alerts"].append(data["id"])
        await self._let_cleanup_arrive(http, done["cleanup_alerts"])
        await self._end_deliveries(http, done["cleanup_alerts"], done)
        return done

    async def _end_deliveries(self, http: aiohttp.ClientSession, alert_ids: list[str], done: dict[str, Any]) -> None:
        for alert_id in alert_ids:
            status, data = await self._api(http, "POST", f"/api/v1/alerts/{alert_id}/deliveries/end", self.admin_token,
                                           json={"reason": DRILL_ENDED})  # fmt: skip
            if status == 200:
                done["ended"] += [{"alert_id": alert_id, "subscriber": sub} for sub in data["ended"]]
                self._settled_rows.pop(alert_id, None)  # read again: the report shows the states after this
            elif status != 404:
                done["errors"].append(f"end deliveries of {alert_id}: {status} {data.get('detail')}")

    async def _let_cleanup_arrive(self, http: aiohttp.ClientSession, alert_ids: list[str], timeout: float = 2.0) -> None:
        """The lifts and cancels reach the receivers that are up (a few hundred ms) before what
        is left is ended; a receiver the drill took down, or one already failing (a live gateway
        whose port is closed), is not waited for."""
        down = self.fleet.faults.down
        deadline = time.monotonic() + timeout
        while alert_ids and time.monotonic() < deadline:
            rows = [row for a in alert_ids for row in await self.deliveries(http, a)]
            if all(r["state"] not in ("queued", "sent") or r["subscriber"] in down or r.get("last_error")
                   for r in rows):  # fmt: skip
                return
            await asyncio.sleep(0.1)

    async def remove_registered(self, http: aiohttp.ClientSession, done: dict[str, Any]) -> None:
        """Remove the layers, receivers and issuers the drill registered."""
        # Its layers go once its orders are lifted, while its issuer can still remove them.
        for path in self.created_layers:
            status, data = await self._api(http, "DELETE", path, self._issuer_token_of(None))
            if status not in (204, 404):
                done["errors"].append(f"remove layer {path}: {status} {data.get('detail')}")
        for kind, ids, key in (("subscribers", self.created_subscribers, "removed_receivers"),
                               ("issuers", self.created_issuers, "removed_issuers")):  # fmt: skip
            for ident in ids:
                status, data = await self._api(http, "DELETE", f"/api/v1/{kind}/{ident}", self.admin_token)
                if status in (200, 204, 404):
                    done[key].append(ident)
                else:
                    done["errors"].append(f"remove {ident}: {status} {data.get('detail')}")

    def _issuer_token(self, step: Step) -> str:
        issuer = step.issuer or self.scenario.issuers[0]["id"]
        if issuer not in self.tokens:
            raise ScenarioError(
                f"step {step.name!r} names issuer {issuer!r}, which the scenario does not define"
            )
        return self.tokens[issuer]

    def _resolve_file(self, name: str) -> Path:
        found = resolve_file(name, self.scenario.path)
        if found is None:
            base = self.scenario.path.parent if self.scenario.path else Path.cwd()
            hint = " — the JMA samples come from the shared data set (../shared beside the project)" \
                if "shared/data" in name else ""
            raise ScenarioError(f"file {name!r} not found (relative to {base} or {Path.cwd()}){hint}")
        return found

    async def run_step(self, http: aiohttp.ClientSession, step: Step) -> StepResult:
        result = StepResult(step)
        ident = f"drill-{self.run_id}-{len(self.results) + 1}"
        try:
            if step.kind == "fault":
                # The scenario names its receiver; the fleet knows it by its id on the engine.
                name = str(step.spec["receiver"])
                self.fleet.apply_fault(
                    self.receiver_ids.get(name, name), step.spec["kind"], float(step.spec.get("seconds", 2))
                )
            elif step.kind == "wait":
                pass
            elif step.kind == "test_broadcast":
                await self._transmission_test(http, result, step.spec if isinstance(step.spec, dict) else {})
            elif step.kind in ("order", "shelter"):
                path = "/api/v1/evacuation-orders" if step.kind == "order" else "/api/v1/shelters"
                body = {**step.spec, "status": "Exercise", "identifier": ident}
                if "corrects" in body:
                    body["corrects"] = self.by_name[body["corrects"]].alert_ids[0]
                await self._submit(http, result, path, self._issuer_token(step), json=body)
            elif step.kind == "alert":
                body = {**step.spec, "status": "Exercise", "identifier": ident}
                await self._submit(http, result, "/api/v1/alerts", self._issuer_token(step), json=body)
            elif step.kind == "cancel":
                target = self.by_name[str(step.spec)]
                if not target.alert_ids:
                    result.error = f"nothing to cancel: step {target.step.name!r} sent no alert ({target.error or 'no error'})"
                for alert_id in target.alert_ids:
                    body = {"status": "Exercise", "msg_type": "Cancel", "event": "取消", "references": [alert_id],
                            "identifier": f"{ident}-{alert_id}"}  # fmt: skip
                    await self._submit(http, result, "/api/v1/alerts", self._issuer_token(step), json=body)
            elif step.kind == "cap":
                await self._submit_cap(
                    http, result, self._resolve_file(str(step.spec)).read_bytes(), ident, step
                )
            elif step.kind == "jma":
                await self._submit_jma(http, result, self._resolve_file(str(step.spec)), ident)
            elif step.kind == "spool":
                await self._spooled(http, result, self._drop_telegram(step, ident))
        except (ScenarioError, KeyError, ValueError) as exc:
            result.error = str(exc)
        return result

    async def _transmission_test(self, http: aiohttp.ClientSession, result: StepResult, spec: dict[str, Any]) -> None:
        """The 情報伝達試験 as a step: start it, wait until its result is final, keep it."""
        # drills: the test is part of the drill, so it reaches the drill's receivers and no live one.
        body = {"districts": [str(d) for d in spec.get("districts") or []] or None,
                "wait_s": float(spec.get("wait_s", 10)), "drills": True}  # fmt: skip
        status, started = await self._api(http, "POST", "/api/v1/test-broadcasts", self.admin_token,
                                          json={k: v for k, v in body.items() if v is not None})  # fmt: skip
        if status != 202:
            result.error = f"{status}: {started.get('detail')}"
            return
        result.alert_ids.append(started["alert_id"])
        result.planned += int(started.get("deliveries", 0))
        deadline = time.monotonic() + float(body["wait_s"]) + 30
        while time.monotonic() < deadline:
            status, found = await self._api(http, "GET", f"/api/v1/test-broadcasts/{started['id']}", self.admin_token)
            if status == 200 and found.get("final"):
                result.test_broadcast = found
                return
            await asyncio.sleep(0.5)
        result.error = "the transmission test gave no final result"

    async def _submit(
        self, http: aiohttp.ClientSession, result: StepResult, path: str, token: str, **kw: Any
    ) -> None:
        status, data = await self._api(http, "POST", path, token, **kw)
        if status != 202:
            result.error = f"{status}: {data.get('detail')}"
            return
        result.alert_ids.append(data["id"])
        self.sent_by[data["id"]] = token
        result.planned += int(data.get("deliveries", 0))
        result.lanes.add(str(data.get("priority", "routine")))

    async def _submit_cap(
        self, http: aiohttp.ClientSession, result: StepResult, raw: bytes, ident: str, step: Step
    ) -> None:
        from alertd.cap import parse_cap, to_cap
        from alertd.models import Status

        alert = parse_cap(raw)
        alert.status = Status.EXERCISE
        alert.identifier = ident
        alert.sender = "drill@alertd"
        await self._submit(
            http, result, "/api/v1/alerts", self.tokens[NATIONAL], data=to_cap(alert),
            headers={"Content-Type": "application/cap+xml"},
        )  # fmt: skip

    async def _submit_jma(
        self, http: aiohttp.ClientSession, result: StepResult, path: Path, ident: str
    ) -> None:
        """Parse a JMA file as the poller would, apply the JMA policy, and send what it broadcasts.

        It travels as the project's JSON alert so the policy's districts and
        adapter choice arrive exactly; sample files are years old, so the
        expiry is reset to an hour from now.
        """
        from datetime import timedelta

        from alertd.jma.parse import parse_message
        from alertd.jma.policy import Policy
        from alertd.models import format_cap_time, utcnow
        from geo.registry import Registry

        registry = Registry.default()
        raw = await asyncio.to_thread(path.read_bytes)
        parsed = parse_message(raw, registry, name=path.name)
        if not parsed.alerts:
            result.error = f"{path.name}: {parsed.type_code} yields no alerts alertd broadcasts"
            return
        policy = Policy.default()
        for i, alert in enumerate(parsed.alerts):
            decision = policy.apply(alert, registry.prefecture_of)
            if not decision.broadcast or not alert.districts:
                continue
            ja = alert.info_for("ja")
            body = {
                "identifier": f"{ident}-{i}", "status": "Exercise", "msg_type": "Alert", "kind": alert.kind,
                "event": alert.event, "level": alert.level, "districts": alert.districts,
                "adapters": alert.adapters, "headline": {"ja": ja.headline if ja and ja.headline else alert.event},
                "description": {"ja": ja.description} if ja and ja.description else None,
                "expires": format_cap_time(utcnow() + timedelta(hours=1)),
            }  # fmt: skip
            body = {k: v for k, v in body.items() if v is not None}
            await self._submit(http, result, "/api/v1/alerts", self.tokens[NATIONAL], json=body)

    def _drop_telegram(self, step: Step, ident: str) -> Path:
        """A JMA telegram through the engine's drop folder: the real path (sequencing, policy).

        The telegrams of one event (EventID) are moved in time by the same amount,
        fixed at its first one (which becomes "now"), so their order and spacing stay
        as JMA wrote them; each goes in as 訓練, with the Serial or EventID the step gives.
        """
        from alertd.drills.jma_replay import drop, report_time, shift, with_head

        if self.spool is None:
            raise ScenarioError("a 'spool' step needs the engine's drop folder (run embedded, or give --spool)")
        spec = step.spec if isinstance(step.spec, dict) else {"file": step.spec}
        text = self._resolve_file(str(spec["file"])).read_text(encoding="utf-8")
        # An edited copy (a downgrade JMA's samples lack): plain text replacements, then a
        # report time later than the original's, so it is a new telegram, not a repeat.
        for old, new in spec.get("replace") or []:
            if old not in text:
                raise ScenarioError(f"step {step.name!r}: {old!r} is not in {spec['file']}")
            text = text.replace(old, new)
        event = re.search(r"<EventID>([^<]*)</EventID>", text)
        key = str(spec.get("event_id") or (event[1] if event else spec["file"]))
        delta = self._jma_delta.setdefault(key, datetime.now(UTC) - report_time(text))
        data = shift(text, delta, status="訓練")
        later = float(spec.get("later_s", 0))
        data = with_head(data, serial=spec.get("serial"), event_id=spec.get("event_id"),
                         report_time=report_time(text) + delta + timedelta(seconds=later) if later else None)  # fmt: skip
        return drop(self.spool, f"{ident}.xml", data)

    async def _spooled(self, http: aiohttp.ClientSession, result: StepResult, path: Path) -> None:
        """Wait until the drop folder has taken the telegram, then note the alerts it made."""
        done, rejected = path.parent / "done" / path.name, path.parent / "rejected" / path.name
        deadline = time.monotonic() + 15
        while not (done.exists() or rejected.exists()):
            if time.monotonic() > deadline:
                result.error = f"the drop folder did not take {path.name} within 15 s"
                return
            await asyncio.sleep(0.1)
        if rejected.exists():
            reason = rejected.with_name(rejected.name + ".reason.txt")
            result.error = "rejected: " + (reason.read_text(encoding="utf-8").strip() if reason.exists() else "?")
            return
        status, rows = await self._api(http, "GET", "/api/v1/alerts?status=Exercise&limit=100", self.admin_token)
        seen = {a for r in self.results for a in r.alert_ids}
        for row in reversed(rows if status == 200 else []):
            if row.get("origin") == "jma" and row["id"] not in seen:
                result.alert_ids.append(row["id"])
                result.planned += int(row.get("planned_deliveries", 0))
                result.lanes.add(str(row.get("priority", "routine")))

    async def deliveries(self, http: aiohttp.ClientSession, alert_id: str) -> list[dict[str, Any]]:
        async with http.get(
            f"{self.url}/api/v1/alerts/{alert_id}/deliveries",
            headers={"Authorization": f"Bearer {self.admin_token}"},
        ) as resp:
            data = await resp.json()
        return [r for r in data.get("deliveries", []) if r["adapter"] != "feed"]

    async def snapshot(self, http: aiohttp.ClientSession) -> dict[str, list[dict[str, Any]]]:
        """Every alert's deliveries, reading again only those that can still change: an alert
        whose deliveries have all ended is kept, so a step costs the same whether it is the
        2nd or the 200th (re-reading everything made drills grow with the square of their steps)."""
        out = {}
        for r in self.results:
            for alert_id in r.alert_ids:
                rows = self._settled_rows.get(alert_id)
                if rows is None:
                    rows = await self.deliveries(http, alert_id)
                    if rows and all(row["state"] in _ENDED for row in rows):
                        self._settled_rows[alert_id] = rows
                out[alert_id] = rows
        return out

    def _line(self, i: int, snap: dict[str, list[dict[str, Any]]]) -> str:
        rows = [row for rows in snap.values() for row in rows]
        delivered = sum(r["state"] in ("delivered", "confirmed") for r in rows)
        confirmed = sum(r["state"] == "confirmed" for r in rows)
        failed = sum(r["state"] in ("failed", "expired") for r in rows)
        return (
            f"{bar(i, len(self.scenario.steps))} step {i}/{len(self.scenario.steps)}  "
            f"deliveries {len(rows)}  delivered {delivered}  confirmed {confirmed}  failed {failed}"
        )

    async def run(self) -> dict[str, Any]:
        self.started = datetime.now(JST)  # the report's date: when the drill began, not when it ended
        async with aiohttp.ClientSession() as http:
            try:
                await self.setup(http)
                if self.on_setup is not None:
                    await self.on_setup()
                start = time.monotonic()
                for i, step in enumerate(self.scenario.steps, 1):
                    delay = start + step.at / self.speed - time.monotonic()
                    while delay > 0:
                        self.progress.show(
                            self._line(i - 1, await self.snapshot(http)) + f"  next: {step.name}"
                        )
                        await asyncio.sleep(min(delay, 0.25))
                        delay = start + step.at / self.speed - time.monotonic()
                    result = await self.run_step(http, step)
                    self.results.append(result)
                    self.by_name[step.name] = result
                    if step.expect:
                        result.views = await self.views.check(http, step.expect, self.admin_token,
                                                              self.views_timeout)  # fmt: skip
                    self.progress.show(self._line(i, await self.snapshot(http)) + f"  sent: {step.name}")
                deadline = time.monotonic() + self.scenario.settle_s
                while time.monotonic() < deadline:
                    snap = await self.snapshot(http)
                    self.progress.show(self._line(len(self.scenario.steps), snap) + "  settling")
                    if self._settled(snap):
                        break
                    await asyncio.sleep(0.2)
                self.progress.done()
                # The report reads the states after the drill ended what was unfinished: what it
                # files is final, and a delivery it ended says so instead of "queued".
                done = await self.end_alerts(http)
                final = await self.snapshot(http)
                await self._learn_districts(http, final)
                report = self.build_report(final)
                await self.remove_registered(http, done)
                report["cleanup"] = done
                report["final"] = True
                return report
            except BaseException:
                await self.cleanup(http)  # a drill that fails still leaves nothing behind
                raise
            finally:
                await self.views.stop()
                await self.fleet.stop()

    def _settled(self, snap: dict[str, list[dict[str, Any]]]) -> bool:
        """Nothing more can change that the drill waits for. A receiver the drill itself took down
        will not take what it is being retried (it is reported as not delivered): waiting for it
        made every drill with a broken gateway sit out the whole settle_s."""
        down = self.fleet.faults.down
        no_confirm = self.fleet.faults.no_confirm | down
        for rows in snap.values():
            for r in rows:
                if r["state"] in ("queued", "sent") and r["subscriber"] not in down:
                    return False
                if r["state"] == "delivered" and r["subscriber"] not in no_confirm:
                    return False
        return True

    async def _learn_districts(self, http: aiohttp.ClientSession, snap: dict[str, list[dict[str, Any]]]) -> None:
        """The districts of every receiver that took part and is not the scenario's own (a live
        gateway that opted into drills): the engine knows them, whoever registered it."""
        known = set(self._own) | set(self._districts)
        for sub in sorted({r["subscriber"] for rows in snap.values() for r in rows} - known):
            status, data = await self._api(http, "GET", f"/api/v1/subscribers/{sub}", self.admin_token)
            if status == 200 and isinstance(data.get("districts"), list):
                self._districts[sub] = [str(d) for d in data["districts"]]
        self._towns = None

    def _districts_of(self, subscriber: str) -> list[str]:
        own = self._own.get(subscriber)
        return own.districts if own is not None else self._districts.get(subscriber, [])

    def shown(self, subscriber: str) -> str:
        """A receiver as the report names it: the drill's own by the scenario's name (what its faults
        say, and the same from run to run, so --compare matches), a live one by its id."""
        return self._name_of.get(subscriber, subscriber)

    def _shown_in(self, data: Any) -> Any:
        """``data`` with every "subscriber" of the drill's own receivers named as the scenario names it."""
        if isinstance(data, list):
            return [self._shown_in(x) for x in data]
        if isinstance(data, dict):
            return {k: self.shown(v) if k == "subscriber" and isinstance(v, str) else self._shown_in(v)
                    for k, v in data.items()}  # fmt: skip
        return data

    def _unreached(self, snap: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Towns an order named that no receiver of it covers: planned 0 there is not "nothing went
        wrong" but "nobody heard it", and a drill that passed over it hid a silent town."""
        from geo.registry import Registry

        registry = Registry.default()
        out = []
        for r in self.results:
            spec = r.step.spec
            if r.step.kind != "order" or not r.alert_ids or not isinstance(spec, dict):
                continue
            muni = str(spec.get("municipality") or "")
            if registry.find(muni) is None:
                continue
            subscribers = {row["subscriber"] for a in r.alert_ids for row in snap.get(a, [])}
            if any(registry.covers(self._districts_of(sub), muni) for sub in subscribers):
                continue
            out.append({"step": r.step.name, "code": muni, "municipality": registry.get(muni).full_name,
                        "expected": muni in self.scenario.no_receiver_expected})  # fmt: skip
        return out

    def _town_codes(self, subscriber: str) -> list[str]:
        """The municipalities (or prefectures) a receiver stands for, by code, from its districts
        (the registry knows each district's municipality)."""
        from geo.registry import Registry

        registry = Registry.default()
        districts = self._districts_of(subscriber)
        return sorted({registry.municipality_of(d) or d for d in districts if registry.find(d) is not None})

    def _town_of(self, subscriber: str) -> str:
        """The municipality (or prefecture) a receiver stands for, by name; one for a whole
        prefecture is '茨城県 (全域)', as the transmission test's table lists it."""
        if self._towns is None:
            self._towns = {}
        found = self._towns.get(subscriber)
        if found is None:
            from geo.registry import Registry

            registry = Registry.default()
            names = [registry.get(c).full_name + ("" if registry.municipality_of(c) else " (全域)")
                     for c in self._town_codes(subscriber)]  # fmt: skip
            found = self._towns[subscriber] = "、".join(names) or "-"
        return found

    def _by_municipality(
        self, rows: list[dict[str, Any]], unreached: list[dict[str, Any]] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Per town by name, in the order of the towns' codes (as the prefecture's lists run); a town
        an order named that no receiver covers is listed too, marked no_receiver."""
        by: dict[str, list[dict[str, Any]]] = {}
        code_of: dict[str, str] = {}
        for town in unreached or []:
            by.setdefault(town["municipality"], [])
            code_of.setdefault(town["municipality"], town["code"])
        for row in rows:
            if row["adapter"] != "feed":
                town = self._town_of(row["subscriber"])
                by.setdefault(town, []).append(row)
                code_of.setdefault(town, ",".join(self._town_codes(row["subscriber"])) or "~")
        out = {}
        for town, town_rows in sorted(by.items(), key=lambda kv: (code_of[kv[0]], kv[0])):
            totals = report.summarize([{**r, "adapter": "all"} for r in town_rows]).get("all", {})
            out[town] = {k: totals.get(k, 0) for k in ("planned", "delivered", "confirmed", "failed", "expired",
                                                       "superseded", "pending")}  # fmt: skip
            # What the town never heard: failed, still pending, or superseded before it was delivered
            # (a lift that replaced an order the gateway never got does not make the order heard).
            out[town]["missed"] = sum(1 for r in town_rows if _missed(r))
            if not town_rows:
                out[town]["no_receiver"] = True
        return out

    def _as_the_test_classed(self, snap: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        """A transmission test's deliveries as its frozen final result classed them: its step row
        and its towns then say what its table says (failed 2), not the live states that went on
        after the test ended (pending 2, or ended by the drill)."""
        out = dict(snap)
        state_of = {"confirmed": "confirmed", "unconfirmed": "delivered", "failed": "failed", "pending": "failed"}
        for r in self.results:
            frozen = {s["subscriber"]: s for s in (r.test_broadcast or {}).get("subscribers") or []}
            if not frozen:
                continue
            for alert_id in r.alert_ids:
                out[alert_id] = [
                    {**row, "state": state_of[frozen[row["subscriber"]]["result"]],
                     "attempts": frozen[row["subscriber"]].get("attempts", row["attempts"]),
                     "last_error": frozen[row["subscriber"]].get("last_error")}
                    if row["subscriber"] in frozen else row
                    for row in snap.get(alert_id, [])
                ]  # fmt: skip
        return out

    def build_report(self, snap: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        snap = self._as_the_test_classed(snap)
        # A live receiver that opted into drills keeps its id in the report; should it be one of the
        # scenario's names (a live nhk-mito), the drill's own nhk-mito keeps its run's id instead.
        live = {row["subscriber"] for rows in snap.values() for row in rows} - set(self._own)
        self._name_of = {ident: name for name, ident in self.receiver_ids.items() if name not in live}
        steps = []
        for r in self.results:
            rows = [row for a in r.alert_ids for row in snap.get(a, [])]
            steps.append(
                {
                    "at": r.step.at, "name": r.step.name, "kind": r.step.kind, "alert_ids": r.alert_ids,
                    "error": r.error, "planned": len(rows), "by_adapter": report.summarize(rows),
                    "lane": "/".join(sorted(r.lanes)) or None,
                    "expect": r.step.expect, "views": r.views, "test_broadcast": r.test_broadcast,
                    "fault": r.step.spec if r.step.kind == "fault" else None,
                    # Every receiver that did not confirm, with why: what a drill office follows up.
                    "unconfirmed": [{"alert_id": a, "subscriber": row["subscriber"],
                                     "state": _state_of(row),
                                     "attempts": row["attempts"], "last_error": row["last_error"]}
                                    for a in r.alert_ids for row in snap.get(a, []) if row["state"] != "confirmed"],
                }
            )  # fmt: skip
        all_rows = [row for rows in snap.values() for row in rows]
        step_of = {a: r.step.name for r in self.results for a in r.alert_ids}
        unreached = self._unreached(snap)
        own = set(self._own)
        out: dict[str, Any] = {
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            # In Japan time, as the transmission test's published table is dated.
            "date": (self.started or datetime.now(JST)).isoformat(timespec="seconds"),
            "speed": self.speed,
            "run_id": self.run_id,
            "status": "Exercise",
            # Per municipality, by name: what a prefecture's drill office reports town by town.
            "by_municipality": self._by_municipality(all_rows, unreached),
            # Towns an order named that no receiver covered: they heard nothing. Those the scenario
            # lists under no_receiver_expected are shown but do not fail the drill.
            "no_receiver": [u for u in unreached if not u["expected"]],
            "no_receiver_expected": [u for u in unreached if u["expected"]],
            # Every delivery, for the CSV a drill office files: step, town, receiver, outcome.
            "deliveries": [{"step": step_of.get(a, ""), "municipality": self._town_of(row["subscriber"]),
                            "subscriber": row["subscriber"], "adapter": row["adapter"], "state": _state_of(row),
                            "attempts": row["attempts"], "last_error": row["last_error"],
                            # Filed with the town's code, the alert and when it arrived (Japan time).
                            "code": ",".join(self._town_codes(row["subscriber"])), "alert_id": a,
                            "delivered_at": _jst(row.get("delivered_at")),
                            # The drill's own simulated receiver, or a live one that opted into drills.
                            "simulated": row["subscriber"] in own}
                           for a, rows in snap.items() for row in rows if row["adapter"] != "feed"],
            "steps": steps,
            "total": report.summarize(all_rows),
            "duplicates_dropped_by_receivers": sum(1 for x in self.fleet.receipts if x.duplicate),
            "signature_failures": self.fleet.signature_failures,
            "step_errors": [s["name"] for s in steps if s["error"]],
            "view_mismatches": [s["name"] for s in steps if s["views"]],
            # Everything planned that never reached its receiver (failed, expired, still pending,
            # superseded before it was delivered: the town never heard that order), by step: a
            # drill with any of it did not pass, whatever else it shows.
            "undelivered": [{"step": s["name"], **u} for s in steps for u in s["unconfirmed"]
                            if u["state"] not in ("delivered", "superseded")],
            "test_failures": [f for s in steps for f in self._test_failures(s)],
            "hint": self._topic_hint(steps),
            "lenient": self.lenient,
            # The ids the drill's issuers and receivers had on the engine (its delivery boards and
            # logs name them so), by the scenario's names, which the report uses.
            "engine_ids": {"issuers": dict(self.issuer_ids), "receivers": dict(self.receiver_ids)},
        }
        for key in ("steps", "deliveries", "undelivered", "test_failures"):
            out[key] = self._shown_in(out[key])
        return out

    def _topic_hint(self, steps: list[dict[str, Any]]) -> str | None:
        """When the MQTT state alone says nothing, step after step, the drill most likely reads
        other topics than the engine writes (--url with the engine's ALERTD_TOPIC_PREFIX unset)."""
        differences = [p for s in steps for p in s["views"] or []]
        if not differences or not all("the MQTT state says nothing" in p for p in differences):
            return None
        return (f"only the MQTT state said nothing, at every step: the drill read topics under "
                f"'{self.views.topic_prefix}/…'; if the engine's ALERTD_TOPIC_PREFIX differs, give it with "
                "--topic-prefix (or set ALERTD_TOPIC_PREFIX)")  # fmt: skip

    def _test_failures(self, step: dict[str, Any]) -> list[dict[str, Any]]:
        """What fails a drill's transmission test, by the standalone test's rule: a receiver that
        failed, or did not confirm (unless lenient), and a town with no receiver — each named."""
        result = step.get("test_broadcast")
        if not result:
            return []
        bad = {"failed", "pending"} | (set() if self.lenient else {"unconfirmed"})
        why = {"unconfirmed": "delivered, but no confirmation", "pending": "still pending when the test ended"}
        out = []
        groups = [*(result.get("municipalities") or []), *(result.get("wide_receivers") or [])]
        for town in groups:
            if town["result"] == "no receiver":
                out.append({"step": step["name"], "municipality": town["name"], "subscriber": "-",
                            "result": "no receiver", "cause": "no receiver covers this town"})  # fmt: skip
            for r in town["receivers"]:
                if r["result"] in bad:
                    out.append({"step": step["name"], "municipality": town["name"], "subscriber": r["subscriber"],
                                "result": r["result"], "cause": r.get("cause") or why.get(r["result"], "")})  # fmt: skip
        return out
