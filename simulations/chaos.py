"""Fault injection: ``make chaos`` (``python -m simulations.chaos``).

Each scenario starts real servers on free loopback ports (its own Redis, its own
Mosquitto where it breaks one), runs alertd as real processes (``python -m alertd
serve`` / ``worker``), injects one fault in the middle of a fan-out, and counts what the
receivers got:

  offered      deliveries of alerts that were answered 202 (what alertd promised)
  delivered    of those, how many reached the receiver at least once
  lost         offered − delivered, after the scenario's deadline
  duplicated   deliveries that reached a receiver under two different idempotency
               keys (repeats with the same key are the at-least-once promise, counted
               apart as "repeats")

Every scenario stops by itself within its bound. ``--short`` runs the sizes the test
suite uses (``tests/test_chaos.py`` calls the same functions); the default sizes are
the ones the README quotes. Results go to ``bench/chaos.json`` and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from alertd.report import table
from alertd.store import remove_prefix
from simulations.chaos_sink import Sink
from simulations.faults import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "chaos.json"
ADMIN_TOKEN = "chaos-admin-token-0123456789abcdef"
# Towns of 茨城県: one order each, so no order supersedes another's deliveries.
TOWNS = ["08201", "08202", "08203", "08204", "08205", "08207", "08208", "08210", "08211", "08212", "08214",
         "08215", "08216", "08217", "08219", "08220", "08221", "08222", "08223", "08224"]  # fmt: skip


@dataclass
class Row:
    """One scenario's result: what the table shows and chaos.json keeps."""

    scenario: str
    injected: str
    offered: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    repeats: int = 0
    latency: dict[str, float | None] = field(default_factory=dict)
    seconds: float = 0.0
    checks: dict[str, bool] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and all(self.checks.values())

    def failed_checks(self) -> list[str]:
        return [name for name, good in self.checks.items() if not good]


# --- running alertd ---------------------------------------------------------------
class Alertd:
    """alertd processes of one deployment (one key prefix), started and killed like in production."""

    def __init__(self, redis_url: str, mqtt_url: str, workdir: Path, **env: str) -> None:
        self.redis_url = redis_url
        self.mqtt_url = mqtt_url
        self.workdir = workdir
        self.prefix = f"alertd-chaos-{secrets.token_hex(4)}"
        self.topics = f"{self.prefix}/alerts/v1"
        self.env = {
            **os.environ,
            "ALERTD_REDIS_URL": redis_url,
            "ALERTD_MQTT_URL": mqtt_url,
            "ALERTD_ADMIN_TOKEN": ADMIN_TOKEN,
            "ALERTD_KEY_PREFIX": self.prefix,
            "ALERTD_TOPIC_PREFIX": self.topics,
            # A dead process's jobs move after 2 s, not 30: the scenarios kill processes.
            "ALERTD_CLAIM_IDLE_S": "2",
            "ALERTD_FEED_LEASE_TTL_S": "2",
            "ALERTD_REDIS_TIMEOUT_S": "2.5",
            "ALERTD_RETRY_BASE_S": "0.2",
            "ALERTD_RETRY_MAX_S": "2",
            "ALERTD_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.token = secrets.token_hex(16)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def seed(self, subscribers: list[dict[str, Any]]) -> None:
        path = self.workdir / f"{self.prefix}.yaml"
        issuers = [{"id": "ibaraki", "name": "茨城県", "token": self.token, "jurisdiction": ["08"]}]
        path.write_text(yaml.safe_dump({"issuers": issuers, "subscribers": subscribers}, allow_unicode=True))
        self.env["ALERTD_CONFIG"] = str(path)

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{self.prefix}-{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "alertd", *args], cwd=ROOT, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        log.close()
        self.procs[name] = proc
        return proc

    async def serve(self, *extra: str) -> None:
        proc = self.spawn("serve", ["serve", "--port", str(self.port), *extra])
        await self.wait_healthy(proc)

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, ["worker"])

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)

    async def wait_healthy(self, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> float:
        t0 = time.monotonic()

        async def check() -> bool:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"alertd exited early (status {proc.returncode}); see {self.workdir}")
            status, _ = await self.get("/healthz")
            return status == 200

        await until(check, timeout, "alertd /healthz 200")
        return time.monotonic() - t0

    async def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http, \
                    http.get(self.url + path, headers=headers) as resp:  # fmt: skip
                text = await resp.text()
                return resp.status, (json.loads(text) if "json" in resp.content_type else text)
        except (aiohttp.ClientError, TimeoutError):
            return 0, None

    async def order(self, town: str, identifier: str, level: int = 4) -> tuple[int, Any, dict[str, str]]:
        """A desk order for one town; (status, answer, headers). Status 0: no answer at all."""
        body = {"municipality": town, "level": level, "action": "issue", "districts": ["all"], "reason": "洪水",
                "status": "Exercise", "identifier": identifier}  # fmt: skip
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http, http.post(
                f"{self.url}/api/v1/evacuation-orders", json=body, headers={"Authorization": f"Bearer {self.token}"}
            ) as resp:
                text = await resp.text()
                return resp.status, (json.loads(text) if "json" in resp.content_type else text), dict(resp.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 0, repr(exc), {}

    async def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        status, data = await self.get(f"/api/v1/alerts/{alert_id}/deliveries", ADMIN_TOKEN)
        return list(data["deliveries"]) if status == 200 else []

    async def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(Exception):
            await remove_prefix(self.redis_url, self.prefix)


async def until(check: Callable[[], Awaitable[Any] | Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll until ``check`` is truthy; at the deadline raise naming what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        await asyncio.sleep(interval)


def webhooks(sink: Sink, n: int, kind: str = "ok", start: int = 0) -> list[dict[str, Any]]:
    return [{"id": f"{kind}{i}", "adapter": "isp", "endpoint": f"{sink.url}/{kind}/{i}", "districts": ["08"]}
            for i in range(start, start + n)]  # fmt: skip


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def count_arrivals(sink: Sink, expected: set[tuple[str, str]], timeout: float) -> set[tuple[str, str]]:
    """Wait (up to ``timeout``) until every expected delivery arrived; return what is missing."""
    with contextlib.suppress(TimeoutError):
        await until(lambda: expected <= sink.delivered(), timeout, "every delivery", interval=0.1)
    return expected - sink.delivered()


# --- 1. Redis kill -9 mid fan-out, restarted from its AOF ------------------------------
@dataclass
class RedisKill:
    subscribers: int = 1000
    orders_before: int = 3
    orders_after: int = 2
    delay: float = 0.05  # each receiver takes this long: the fan-out lasts long enough to be hit
    concurrency: int = 50
    outage_s: float = 3.0
    deadline_s: float = 120.0


async def redis_kill(mqtt_url: str, p: RedisKill, workdir: Path) -> Row:
    """Redis is killed with kill -9 in the middle of a fan-out and started again from its AOF."""
    t_start = time.monotonic()
    redis = RedisServer().start()
    sink = await Sink(delay=p.delay).start()
    alertd = Alertd(redis.url, mqtt_url, workdir, ALERTD_ROUTINE_CONCURRENCY=str(p.concurrency))
    row = Row("redis-kill", f"redis kill -9 mid fan-out, down {p.outage_s:g} s, restarted from AOF (everysec)")
    try:
        alertd.seed(webhooks(sink, p.subscribers))
        await alertd.serve()
        accepted: list[str] = []
        for i in range(p.orders_before):
            status, answer, _ = await alertd.order(TOWNS[i], f"before-{i}")
            assert status == 202, (status, answer)
            accepted.append(answer["id"])
        total = p.subscribers * (p.orders_before + p.orders_after)
        await until(lambda: len(sink.arrivals) >= total // 10, 60, "a tenth of the fan-out")
        at_kill = len(sink.delivered())
        t_kill = time.monotonic()
        redis.kill()
        # While Redis is away: a desk order gets 503 + Retry-After (never 500, never a hang)
        # and /healthz says why.
        t0 = time.monotonic()
        status, problem, headers = await alertd.order(TOWNS[-1], "during-outage")
        row.latency["outage_answer_ms"] = ms(time.monotonic() - t0)
        row.checks["order during outage: 503"] = status == 503
        row.checks["order during outage: Retry-After"] = int(headers.get("Retry-After", "0") or 0) > 0
        row.checks["order during outage: problem+json"] = "problem+json" in headers.get("Content-Type", "")
        hstatus, health = await alertd.get("/healthz")
        causes = (health or {}).get("causes", []) if isinstance(health, dict) else []
        row.checks["/healthz 503 naming Redis"] = hstatus == 503 and any("Redis" in c for c in causes)
        row.notes["order_during_outage"] = {"status": status, "detail": (problem or {}).get("detail")
                                            if isinstance(problem, dict) else problem}  # fmt: skip
        row.notes["healthz_during_outage"] = causes
        await asyncio.sleep(max(0.0, p.outage_s - (time.monotonic() - t_kill)))  # the outage itself
        redis.start()
        row.latency["healthy_after_restart_ms"] = ms(await alertd.wait_healthy(timeout=60))
        row.latency["outage_ms"] = ms(time.monotonic() - t_kill)
        for i in range(p.orders_after):
            status, answer, _ = await alertd.order(TOWNS[p.orders_before + i], f"after-{i}")
            row.checks["orders after the restart: 202"] = row.checks.get("orders after the restart: 202", True) \
                and status == 202  # fmt: skip
            if status == 202:
                accepted.append(answer["id"])
        # Every 202'd alert is still there, and every one of its deliveries arrives.
        present = [await alertd.get(f"/api/v1/alerts/{a}") for a in accepted]
        row.checks["every 202'd alert still there"] = all(s == 200 for s, _ in present)
        expected = {(a, f"/ok/{i}") for a in accepted for i in range(p.subscribers)}
        missing = await count_arrivals(sink, expected, p.deadline_s)
        row.offered, row.lost = len(expected), len(missing)
        row.delivered = len(expected) - len(missing)
        row.duplicated, row.repeats = sink.duplicated_beyond_key(), sink.repeats()
        row.notes["delivered_before_kill"] = at_kill
        last = sink.last_arrival()
        row.latency["kill_to_last_delivery_ms"] = ms(last - (time.time() - (time.monotonic() - t_kill))) \
            if last else None  # fmt: skip
        recorded = [r for a in accepted for r in await alertd.deliveries(a) if r["adapter"] != "feed"]
        row.checks["every delivery recorded delivered"] = len(recorded) == len(expected) and all(
            r["state"] == "delivered" for r in recorded)  # fmt: skip
    finally:
        await alertd.stop()
        await sink.stop()
        redis.stop()
    row.seconds = round(time.monotonic() - t_start, 1)
    return row


# --- the run -------------------------------------------------------------------------
SCENARIOS: dict[str, Callable[..., Awaitable[Row]]] = {"redis-kill": redis_kill}
SHORT: dict[str, Any] = {
    "redis-kill": RedisKill(subscribers=200, orders_before=2, orders_after=1, delay=0.05, concurrency=20,
                            outage_s=1.0, deadline_s=30),
}  # fmt: skip
FULL: dict[str, Any] = {"redis-kill": RedisKill()}


def render(rows: list[Row]) -> str:
    def lat(r: Row) -> str:
        return ", ".join(f"{k.removesuffix('_ms')} {v:.0f} ms" for k, v in r.latency.items() if v is not None)

    body = [[r.scenario, r.injected, r.offered, r.delivered, r.lost, r.duplicated, r.repeats, lat(r),
             r.seconds, "yes" if r.ok else "NO: " + "; ".join(r.failed_checks())] for r in rows]  # fmt: skip
    return table(["scenario", "injected", "offered", "delivered", "lost", "dup", "repeats", "latency", "s", "ok"],
                 body, left={1, 7, 9})  # fmt: skip


async def amain(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations.chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the sizes the test suite runs (about a minute)")
    ap.add_argument("--only", action="append", choices=list(SCENARIOS), help="run only this scenario (repeatable)")
    ap.add_argument("--mqtt-url", default=os.environ.get("ALERTD_BENCH_MQTT_URL", "mqtt://127.0.0.1:1883"))
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    sizes = SHORT if a.short else FULL
    names = a.only or list(SCENARIOS)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="alertd-chaos-") as tmp:
        for n, name in enumerate(names, 1):
            print(f"[{n}/{len(names)}] {name} …", flush=True)
            try:
                row = await SCENARIOS[name](a.mqtt_url, sizes[name], Path(tmp))
            except Exception as exc:  # a scenario that breaks is a result too, never a silent skip
                row = Row(name, "(the scenario itself failed)", checks={f"ran: {exc!r}"[:200]: False})
            rows.append(row)
            print(f"[{n}/{len(names)}] {name}: offered {row.offered}, delivered {row.delivered}, lost {row.lost}, "
                  f"duplicated {row.duplicated}, {row.seconds:g} s — {'ok' if row.ok else 'FAILED'}", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"short": a.short, "rows": [{**asdict(r), "ok": r.ok} for r in rows]},
                                indent=2, ensure_ascii=False) + "\n")  # fmt: skip
    print(render(rows))
    print(f"written: {a.out}")
    return 0 if all(r.ok for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
