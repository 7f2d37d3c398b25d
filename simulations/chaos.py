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
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from alertd.report import percentile, table
from alertd.shards import shard_roots
from simulations.chaos_harness import (
    PREFECTURES,
    Alertd,
    Receiver,
    Shared,
    count_arrivals,
    metric_lines,
    ms,
    recorded_delivered,
    retained_states,
    towns,
    until,
    webhooks,
)
from simulations.chaos_sink import Sink
from simulations.faults import (
    ClusterGroup,
    ClusterNode,
    MosquittoServer,
    RedisServer,
    SentinelGroup,
    SmallDisk,
)

OUT = Path(__file__).resolve().parent.parent / "bench" / "chaos.json"


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


async def all_present(alertd: Alertd, alert_ids: list[str], row: Row, timeout: float = 15) -> bool:
    """Whether alertd still has every alert it answered 202 for. A 404 is a lost alert; a
    503 (a pooled connection to the old master failing once after a failover) is asked
    again, and counted in the notes."""
    transient = 0
    for alert_id in alert_ids:
        deadline = time.monotonic() + timeout
        while True:
            status, _ = await alertd.get(f"/api/v1/alerts/{alert_id}")
            if status in (200, 404) or time.monotonic() > deadline:
                break
            transient += 1
            await asyncio.sleep(0.1)
        if status != 200:
            row.notes["missing_alert"] = {"id": alert_id, "status": status}
            return False
    if transient:
        row.notes["reads_refused_then_answered"] = transient
    return True


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


async def redis_kill(shared: Shared, p: RedisKill, workdir: Path) -> Row:
    """Redis is killed with kill -9 in the middle of a fan-out and started again from its AOF."""
    t_start = time.monotonic()
    redis = RedisServer().start()
    sink = await Sink(delay=p.delay).start()
    alertd = Alertd(redis.url, shared.mqtt_url, workdir, ALERTD_ROUTINE_CONCURRENCY=str(p.concurrency))
    row = Row("redis-kill", f"redis kill -9 mid fan-out, down {p.outage_s:g} s, restarted from AOF (everysec)")
    try:
        alertd.seed(webhooks(sink, p.subscribers))
        await alertd.serve()
        accepted: list[str] = []
        for i in range(p.orders_before):
            status, answer, _ = await alertd.order(towns()[i], f"before-{i}")
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
        status, problem, headers = await alertd.order(towns()[-1], "during-outage")
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
            status, answer, _ = await alertd.order(towns()[p.orders_before + i], f"after-{i}")
            row.checks["orders after the restart: 202"] = row.checks.get("orders after the restart: 202", True) \
                and status == 202  # fmt: skip
            if status == 202:
                accepted.append(answer["id"])
            else:  # what the desk was told instead, for the report
                row.notes.setdefault("orders_after_restart_refused", []).append(
                    {"status": status, "detail": answer.get("detail") if isinstance(answer, dict) else str(answer)[:200]}
                )
        # Every 202'd alert is still there, and every one of its deliveries arrives.
        row.checks["every 202'd alert still there"] = await all_present(alertd, accepted, row)
        expected = {(a, f"/ok/{i}") for a in accepted for i in range(p.subscribers)}
        missing = await count_arrivals(sink, expected, p.deadline_s)
        row.offered, row.lost = len(expected), len(missing)
        row.delivered = len(expected) - len(missing)
        row.duplicated, row.repeats = sink.duplicated_beyond_key(), sink.repeats()
        row.notes["delivered_before_kill"] = at_kill
        last = sink.last_arrival()
        row.latency["kill_to_last_delivery_ms"] = ms(last - (time.time() - (time.monotonic() - t_kill))) \
            if last else None  # fmt: skip
        row.checks["every delivery recorded delivered"] = await recorded_delivered(alertd, accepted, len(expected))
    finally:
        await alertd.stop()
        await sink.stop()
        redis.stop()
    row.seconds = round(time.monotonic() - t_start, 1)
    return row


# --- 1b. Redis's disk full mid fan-out, then freed -------------------------------------------
@dataclass
class RedisFull:
    subscribers: int = 1000
    orders_before: int = 1
    orders_after: int = 1
    delay: float = 0.05
    concurrency: int = 50
    workers: int = 2  # delivery processes beside serve's own, which split the lanes while Redis cannot write
    disk_kb: int = 65536  # the tmpfs Redis keeps its AOF on
    full_s: float = 5.0  # how long the disk stays full at least
    deadline_s: float = 120.0


async def _redis_writes(url: str) -> bool:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.set("chaos-write-probe", "x" * 256)
        return True
    except Exception:
        return False
    finally:
        await client.aclose()


async def redis_full(shared: Shared, p: RedisFull, workdir: Path) -> Row:
    """The disk under Redis's AOF fills up for real (a tmpfs of its own, filled to the last byte)
    in the middle of a fan-out, stays full a while, and is freed."""
    t_start = time.monotonic()
    disk = SmallDisk(p.disk_kb).mount()
    redis = RedisServer(extra=["--dir", disk.path]).start()
    sink = await Sink(delay=p.delay).start()
    alertd = Alertd(redis.url, shared.mqtt_url, workdir, ALERTD_ROUTINE_CONCURRENCY=str(p.concurrency))
    row = Row("redis-full", f"the disk under Redis's AOF full mid fan-out (ENOSPC), for {p.full_s:g} s, then freed")
    try:
        alertd.seed(webhooks(sink, p.subscribers))
        await alertd.serve()
        for i in range(p.workers):
            alertd.worker(f"w{i}")
        accepted: list[str] = []
        for i in range(p.orders_before):
            status, answer, _ = await alertd.order(towns()[i], f"before-{i}")
            assert status == 202, (status, answer)
            accepted.append(answer["id"])
        await until(lambda: len(sink.arrivals) >= p.subscribers // 10, 60, "a tenth of the fan-out")
        disk.fill()
        t_full = time.monotonic()
        await until(lambda: _refused(redis.url), 15, "Redis refusing writes")
        row.latency["fill_to_refusal_ms"] = ms(time.monotonic() - t_full)
        at_full = len(sink.delivered())
        t0 = time.monotonic()
        status, problem, headers = await alertd.order(towns()[-1], "while-full")
        row.latency["refusal_answer_ms"] = ms(time.monotonic() - t0)
        detail = (problem or {}).get("detail", "") if isinstance(problem, dict) else str(problem)
        row.checks["order while full: 503"] = status == 503
        row.checks["order while full: Retry-After"] = int(headers.get("Retry-After", "0") or 0) > 0
        row.checks["order while full: problem+json saying NOT accepted"] = "NOT accepted" in detail
        hstatus, health = await alertd.get("/healthz")
        causes = (health or {}).get("causes", []) if isinstance(health, dict) else []
        row.checks["/healthz 503: Redis cannot write"] = hstatus == 503 and any("cannot write" in c for c in causes)
        row.notes["order_while_full"] = {"status": status, "detail": detail}
        row.notes["healthz_while_full"] = causes
        # The alerts accepted before go on being delivered while the disk is full, all of them.
        before = {(a, f"/ok/{i}") for a in accepted for i in range(p.subscribers)}
        with contextlib.suppress(TimeoutError, AssertionError):
            await until(lambda: before <= sink.delivered(), p.deadline_s, "every delivery while the disk is full")
        row.checks["every accepted delivery went out while the disk was full"] = before <= sink.delivered()
        row.latency["full_to_all_delivered_ms"] = ms(time.monotonic() - t_full)
        row.notes["delivered_at_full"] = at_full
        row.notes["delivered_while_full"] = len(sink.delivered()) - at_full
        row.notes["repeats_while_full"] = sink.repeats()
        await asyncio.sleep(max(0.0, p.full_s - (time.monotonic() - t_full)))  # the full disk itself
        disk.free()
        row.latency["healthy_after_free_ms"] = ms(await alertd.wait_healthy(timeout=60))
        for i in range(p.orders_after):
            status, answer, _ = await alertd.order(towns()[p.orders_before + i], f"after-{i}")
            row.checks["orders after freeing: 202"] = row.checks.get("orders after freeing: 202", True) \
                and status == 202  # fmt: skip
            if status == 202:
                accepted.append(answer["id"])
        row.checks["every 202'd alert still there"] = await all_present(alertd, accepted, row)
        expected = {(a, f"/ok/{i}") for a in accepted for i in range(p.subscribers)}
        missing = await count_arrivals(sink, expected, p.deadline_s)
        row.offered, row.lost = len(expected), len(missing)
        row.delivered = row.offered - row.lost
        row.duplicated, row.repeats = sink.duplicated_beyond_key(), sink.repeats()
        row.checks["every delivery recorded delivered"] = await recorded_delivered(alertd, accepted, len(expected))
    finally:
        await alertd.stop()
        await sink.stop()
        redis.stop()
        disk.close()
    row.seconds = round(time.monotonic() - t_start, 1)
    return row


async def _refused(url: str) -> bool:
    return not await _redis_writes(url)


# --- 2. the MQTT broker killed and restarted during a feed burst ---------------------------
@dataclass
class BrokerKill:
    orders: int = 100  # one per town, so each town's retained state can be checked
    rate: float = 20.0  # orders a second in the burst
    webhooks: int = 20  # HTTP receivers, which must keep getting alerts while the broker is away
    outage_s: float = 3.0
    deadline_s: float = 60.0


async def broker_kill(shared: Shared, p: BrokerKill, workdir: Path) -> Row:
    """The broker is killed with kill -9 in the middle of a burst of orders, then started again
    from its own persistence; then replaced by an empty one, which alertd must fill again."""
    t_start = time.monotonic()
    broker = MosquittoServer().start()
    sink = await Sink().start()
    alertd = Alertd(shared.redis_url, broker.url, workdir)
    row = Row("broker-kill", f"mosquitto kill -9 mid burst ({p.orders} orders at {p.rate:g}/s), down "
                             f"{p.outage_s:g} s; then replaced by an empty broker")  # fmt: skip
    receiver: Receiver | None = None
    try:
        alertd.seed(webhooks(sink, p.webhooks))
        subscribed_at = time.time()
        receiver = await Receiver("127.0.0.1", broker.port, f"{alertd.topics}/+/+").start()
        await alertd.serve()
        # Mosquitto writes its sessions to disk every second: a kill -9 before that would
        # lose the receiver's subscription itself, which is the broker's promise, not alertd's.
        await until(lambda: broker.saved_since(subscribed_at + 0.01), 10, "the broker saving the receiver's session")
        places = towns()[: p.orders]
        accepted: dict[str, str] = {}  # alert id -> town
        during: list[str] = []  # accepted while the broker was away
        down = asyncio.Event()

        async def burst() -> None:
            for i, town in enumerate(places):
                status, answer, _ = await alertd.order(town, f"burst-{i}")
                if status == 202:
                    accepted[answer["id"]] = town
                    if down.is_set():
                        during.append(answer["id"])
                await asyncio.sleep(1 / p.rate)

        sending = asyncio.create_task(burst())
        await until(lambda: len(accepted) >= len(places) // 3 or sending.done(), 60, "a third of the burst")
        broker.kill()
        t_kill = time.monotonic()
        down.set()
        # HTTP keeps going without the broker: the orders accepted meanwhile reach the webhooks.
        # The outage lasts outage_s, and longer on a slow machine until some order accepted
        # in it has reached a webhook (or 15 s more): an outage with no order proves nothing.
        await asyncio.sleep(p.outage_s)

        def during_http() -> set[tuple[str, str]]:
            return {(a, f"/ok/{i}") for a in during for i in range(p.webhooks)}

        with contextlib.suppress(TimeoutError):
            await until(lambda: during_http() & sink.delivered(), 15, "a webhook delivery while the broker is down")
        row.checks["webhooks delivered while the broker was down"] = bool(during_http() & sink.delivered())
        row.notes["http_delivered_during_outage"] = f"{len(during_http() & sink.delivered())} of {len(during_http())}"
        broker.start()
        down.clear()
        t_back = time.monotonic()
        row.latency["broker_outage_ms"] = ms(t_back - t_kill)
        await sending
        feed_topics = {f"{alertd.topics}/{town[:2]}/{town}" for town in accepted.values()}
        backlog = {f"{alertd.topics}/{accepted[a][:2]}/{accepted[a]}" for a in during}

        def feed_missing() -> set[str]:
            return feed_topics - set(receiver.got) if receiver else feed_topics

        with contextlib.suppress(TimeoutError):
            await until(lambda: not feed_missing(), p.deadline_s, "every alert on the receiver's topics")
        # The alerts accepted while the broker was away: how soon after it came back they were out.
        row.latency["restart_to_outage_backlog_out_ms"] = ms(
            max((receiver.first[t] for t in backlog if t in receiver.first), default=t_back) - t_back)  # fmt: skip
        row.notes["mqtt_accepted_during_outage"] = len(backlog)
        expected_http = {(a, f"/ok/{i}") for a in accepted for i in range(p.webhooks)}
        http_missing = await count_arrivals(sink, expected_http, p.deadline_s)
        # Every MQTT delivery ends confirmed, delivered or failed with a reason: none silently lost.
        feed_rows: list[dict[str, Any]] = []

        async def feed_final() -> bool:
            nonlocal feed_rows
            feed_rows = [r for a in accepted for r in await alertd.deliveries(a) if r["adapter"] == "feed"]
            return len(feed_rows) == len(accepted) and all(
                r["state"] in ("delivered", "confirmed") or (r["state"] == "failed" and r.get("last_error"))
                for r in feed_rows)  # fmt: skip

        with contextlib.suppress(TimeoutError):
            await until(feed_final, p.deadline_s, "every feed delivery recorded", interval=0.3)
        row.checks["every MQTT delivery ended delivered or failed with a reason"] = await feed_final()
        row.notes["feed_states"] = {s: sum(r["state"] == s for r in feed_rows) for s in {r["state"] for r in feed_rows}}
        row.offered = len(feed_topics) + len(expected_http)
        row.lost = len(feed_missing()) + len(http_missing)
        row.delivered = row.offered - row.lost
        row.notes["mqtt"] = {"offered": len(feed_topics), "received": len(feed_topics) - len(feed_missing())}
        row.duplicated, row.repeats = sink.duplicated_beyond_key(), sink.repeats() + sum(
            n - 1 for n in receiver.got.values())  # fmt: skip
        # A replaced broker (empty disk): alertd publishes every town's retained state again.
        broker.kill()
        broker.forget()
        broker.start()
        t_new = time.monotonic()
        states = await retained_states(broker.port, f"{alertd.topics}/+/+/state/exercise", len(places), p.deadline_s)
        want = {f"{alertd.topics}/{t[:2]}/{t}/state/exercise" for t in accepted.values()}
        row.checks["retained state of every town back on a new broker"] = want <= set(states) and all(
            states[t]["in_force"] and states[t]["level"] == 4 for t in want)  # fmt: skip
        row.notes["retained_states_back"] = f"{len(want & set(states))} of {len(want)}"
        row.latency["new_broker_to_all_states_ms"] = ms(time.monotonic() - t_new)
    finally:
        if receiver is not None:
            await receiver.stop()
        await alertd.stop()
        await sink.stop()
        broker.stop()
    row.seconds = round(time.monotonic() - t_start, 1)
    return row


# --- 3. bad endpoints at scale --------------------------------------------------------------
BAD_KINDS = ("refused", "hang", "late", "flip", "cut")


@dataclass
class BadEndpoints:
    endpoints: int = 2000
    bad_share: float = 0.2  # split evenly over BAD_KINDS
    expires_s: float = 40.0  # the faulty order's expiry: retries of the hopeless ones end there
    timeout_s: float = 5.0  # alertd's per-endpoint timeout (ALERTD_TIMEOUT_S; 5 s is the default)
    late_s: float = 10.0  # how late the late ones answer
    breaker_cooldown_s: float = 10.0  # ALERTD_BREAKER_COOLDOWN_S: parked work waits this long
    # Added to 1.5x the baseline: a 60 ms short run on a shared 2-core machine is mostly
    # scheduling noise; the full run (2,000 endpoints) is held to 1.5x with no slack.
    slack_s: float = 0.0
    deadline_s: float = 90.0


async def bad_endpoints(shared: Shared, p: BadEndpoints, workdir: Path) -> Row:
    """One order to many webhooks, a fifth of them refusing, hanging, late, flapping or
    cutting the answer short; against the same fan-out with every endpoint healthy."""
    t_start = time.monotonic()
    sink = await Sink(late_s=p.late_s).start()
    n_bad = int(p.endpoints * p.bad_share) // len(BAD_KINDS)
    n_good = p.endpoints - n_bad * len(BAD_KINDS)
    # The refusing ones: a port that listens for the baseline and is closed for the faulty run.
    refusing = await Sink().start()
    subs = webhooks(sink, n_good)
    for kind in BAD_KINDS:
        target = refusing if kind == "refused" else sink
        subs += webhooks(target, n_bad, kind)
    alertd = Alertd(shared.redis_url, shared.mqtt_url, workdir, ALERTD_TIMEOUT_S=str(p.timeout_s),
                    ALERTD_BREAKER_COOLDOWN_S=str(p.breaker_cooldown_s))
    row = Row("bad-endpoints", f"{n_bad * len(BAD_KINDS)} of {p.endpoints} webhooks bad: "
                               f"{', '.join(f'{n_bad} {k}' for k in BAD_KINDS)}")  # fmt: skip
    try:
        alertd.seed(subs)
        await alertd.serve()
        # Baseline: the same endpoints, all healthy (after a first fan-out that opens the
        # connections and warms the caches, which the faulty run then finds warm too).
        sink.all_good = refusing.all_good = True
        for n, label in enumerate(("warm-up", "baseline")):
            t0 = time.time()
            status, answer, _ = await alertd.order(towns()[n], label)
            assert status == 202, answer
            base_id = answer["id"]
            await until(lambda b=base_id: sum(a.alert == b for a in sink.arrivals + refusing.arrivals) >= p.endpoints,
                        p.deadline_s, "the all-healthy fan-out")  # fmt: skip
            baseline = max(a.at for a in sink.arrivals if a.alert == base_id) - t0
        row.latency["all_healthy_last_ms"] = ms(baseline)
        # The faulty run.
        sink.all_good = False
        await refusing.stop()
        t0 = time.time()
        status, answer, _ = await alertd.order(towns()[2], "faulty", expires_in_s=p.expires_s)
        assert status == 202, answer
        alert_id = answer["id"]
        healthy = {(alert_id, f"/ok/{i}") for i in range(n_good)}
        flapping = {(alert_id, f"/flip/{i}") for i in range(n_bad)}
        missing = await count_arrivals(sink, healthy, p.deadline_s)
        last_healthy = max((a.at for a in sink.arrivals if a.alert == alert_id and a.path.startswith("/ok/")),
                           default=t0)  # fmt: skip
        row.latency["healthy_last_ms"] = ms(last_healthy - t0)
        row.notes["healthy_last_vs_all_healthy"] = round((last_healthy - t0) / baseline, 2)
        row.checks["healthy 80% within 1.5x the all-healthy run"] = (last_healthy - t0) <= 1.5 * baseline + p.slack_s

        async def open_circuits() -> int:
            return sum(not ln.endswith(" 0.0") for ln in await metric_lines(alertd, "alertd_circuit_open"))

        with contextlib.suppress(TimeoutError):
            await until(open_circuits, p.expires_s, "a breaker open in /metrics", interval=0.2)
        row.notes["circuits_open_in_metrics"] = await open_circuits()
        row.checks["breaker state in /metrics"] = row.notes["circuits_open_in_metrics"] > 0
        flip_missing = await count_arrivals(sink, flapping, p.deadline_s)
        row.offered = len(healthy) + len(flapping)
        row.lost = len(missing) + len(flip_missing)
        row.delivered = row.offered - row.lost
        row.duplicated, row.repeats = sink.duplicated_beyond_key(), sink.repeats()

        # Every bad one ends as its behaviour allows: delivered (flapping), else failed or
        # expired with the reason recorded; none left hanging once the order expired.
        ends: dict[str, dict[str, int]] = {}

        async def all_ended() -> bool:
            rows = [r for r in await alertd.deliveries(alert_id) if r["adapter"] != "feed"]
            ends.clear()
            for r in rows:
                kind = r["subscriber"].rstrip("0123456789")
                ends.setdefault(kind, {}).setdefault(r["state"], 0)
                ends[kind][r["state"]] += 1
            final = {"delivered", "confirmed", "failed", "expired"}
            return len(rows) == p.endpoints and all(r["state"] in final for r in rows) and all(
                r.get("last_error") for r in rows if r["state"] in ("failed", "expired"))  # fmt: skip

        with contextlib.suppress(TimeoutError):
            await until(all_ended, p.expires_s + p.deadline_s, "every bad endpoint's delivery to end", interval=0.5)
        row.checks["every delivery ended (delivered, or failed/expired with a reason)"] = await all_ended()
        row.notes["end_states"] = ends
        row.latency["all_ended_ms"] = ms(time.time() - t0)
    finally:
        await alertd.stop()
        await sink.stop()
        await refusing.stop()
    row.seconds = round(time.monotonic() - t_start, 1)
    return row


# --- 4. engines killed again and again --------------------------------------------------------
@dataclass
class EngineKills:
    subscribers: int = 2000
    orders: int = 5  # subscribers x orders deliveries
    workers: int = 3
    every_s: float = 2.0  # a random worker is killed -9 this often, and started again
    delay: float = 0.02
    concurrency: int = 256  # per worker (ALERTD_ROUTINE_CONCURRENCY)
    max_kills: int = 1000  # the short version stops killing after a few
    claim_idle_s: float = 2.0  # ALERTD_CLAIM_IDLE_S: when a killed worker's jobs move
    deadline_s: float = 180.0


async def engine_kills(shared: Shared, p: EngineKills, workdir: Path) -> Row:
    """Worker processes share a fan-out; every ``every_s`` one of them, at random, is killed
    with kill -9 and started again, until every delivery has arrived."""
    t_start = time.monotonic()
    sink = await Sink(delay=p.delay).start()
    alertd = Alertd(shared.redis_url, shared.mqtt_url, workdir, ALERTD_ROUTINE_CONCURRENCY=str(p.concurrency),
                    ALERTD_CLAIM_IDLE_S=str(p.claim_idle_s))
    total = p.subscribers * p.orders
    row = Row("engine-kills", f"{p.workers} workers, a random one kill -9'd every {p.every_s:g} s and restarted")
    rng = random.Random(11)
    try:
        alertd.seed(webhooks(sink, p.subscribers))
        names = [f"worker{i}" for i in range(p.workers)]
        for name in names:  # started beside the API, not after it: start-up is most of a short run
            alertd.worker(name)
        await alertd.serve("--no-workers")  # the API alone; the workers deliver everything
        t0 = time.time()
        accepted = []
        for i in range(p.orders):
            status, answer, _ = await alertd.order(towns()[i], f"kills-{i}")
            assert status == 202, answer
            accepted.append(answer["id"])
        expected = {(a, f"/ok/{i}") for a in accepted for i in range(p.subscribers)}
        # The clock of kills starts once the workers deliver: killing processes still
        # importing Python would only test the start-up.
        await until(lambda: len(sink.arrivals) > 0, 60, "the workers' first delivery")
        kills: list[float] = []
        at_kill: list[int] = []
        deadline = time.monotonic() + p.deadline_s
        while not expected <= sink.delivered() and time.monotonic() < deadline and len(kills) < p.max_kills:
            with contextlib.suppress(TimeoutError):
                await until(lambda: expected <= sink.delivered(), p.every_s, "the fan-out", interval=0.05)
                break
            victim = rng.choice(names)
            at_kill.append(len(sink.delivered()))
            alertd.kill(victim)
            kills.append(round(time.time() - t0, 2))
            alertd.worker(victim)
        await count_arrivals(sink, expected, max(1.0, deadline - time.monotonic()))
        done = sink.last_arrival()
        row.latency["total_ms"] = ms(done - t0 if done else None)
        row.notes["kills_at_s"] = kills
        missing = expected - sink.delivered()
        row.offered, row.lost = len(expected), len(missing)
        row.delivered = row.offered - row.lost
        row.duplicated, row.repeats = sink.duplicated_beyond_key(), sink.repeats()
        row.notes["delivered_at_each_kill"] = at_kill
        mid = sum(n < total for n in at_kill)
        row.checks[f"at least {max(1, total // 5000)} kill mid fan-out"] = mid >= max(1, total // 5000)
        row.checks["every delivery recorded delivered"] = await recorded_delivered(alertd, accepted, len(expected),
                                                                                  timeout=60)  # fmt: skip
    finally:
        await alertd.stop()
        await sink.stop()
    row.seconds = round(time.monotonic() - t_start, 1)
    return row


# --- 5. failover: the master killed, its replica promoted (Sentinel, Redis Cluster) -------------
@dataclass
class Failover:
    subscribers: int = 1000
    orders_before: int = 10  # half through a process that WAITs for the replica, half through one that does not
    orders_during: int = 2  # sent while the master is dead, retried (same identifier) until accepted
    delay: float = 0.05
    concurrency: int = 50
    measure_wait: bool = True
    workers: int = 0  # delivery processes beside serve's own: each must follow the new master too
    deadline_s: float = 120.0


@dataclass
class ClusterFailover(Failover):
    node_timeout_ms: int = 1000  # cluster-node-timeout: how long a silent master has before its replica takes over
    lane_shards: int = 1  # ALERTD_LANE_SHARDS (alertd/shards.py)
    kill_shard: int = 0  # whose slot's master is killed: 0 is alertd's own (alerts, log, first shard)


class Replicated(Protocol):
    """A Redis with a replica that takes over when its master dies, as a failover scenario uses it."""

    promotion: str  # the check's name: who promoted whom

    @property
    def url(self) -> str: ...  # ALERTD_REDIS_URL, once started

    def start(self) -> object: ...
    def wait_ready(self) -> None: ...
    def kill_master(self, prefix: str) -> dict[str, Any]: ...  # kill -9 the master of alertd's keys; notes
    def promoted(self) -> bool: ...  # the replica serves alertd's keys now, as every client will be told
    def stop(self) -> None: ...


class SentinelTarget:
    """A master, a replica and three sentinels (faults.SentinelGroup)."""

    promotion = "the sentinels promoted the replica"

    def __init__(self) -> None:
        self.group = SentinelGroup()
        self.old_master = self.group.master.port

    @property
    def url(self) -> str:
        return self.group.url

    def start(self) -> object:
        return self.group.start()

    def wait_ready(self) -> None:
        self.group.wait_ready()

    def kill_master(self, prefix: str) -> dict[str, Any]:
        self.group.master.kill()
        return {"killed_master_port": self.old_master}

    def promoted(self) -> bool:
        return self.group.master_port() not in (None, self.old_master)

    def stop(self) -> None:
        self.group.stop()


class ClusterTarget:
    """A Redis Cluster of 3 masters and 3 replicas (faults.ClusterGroup); the master killed is
    the one serving the slot of alertd's hash tag, where all of alertd's keys live, or with
    lane shards the slot of shard ``kill_shard`` (alertd/shards.py)."""

    promotion = "the cluster promoted the slot's replica"

    def __init__(self, node_timeout_ms: int, lane_shards: int = 1, kill_shard: int = 0) -> None:
        self.group = ClusterGroup(node_timeout_ms=node_timeout_ms)
        self.slot = -1
        self.replica: ClusterNode | None = None
        self.lane_shards, self.kill_shard = lane_shards, kill_shard

    @property
    def url(self) -> str:
        return self.group.url  # its nodes' ports are settled when it has started

    def start(self) -> object:
        return self.group.start()

    def wait_ready(self) -> None:
        """Formed already by start(): every node ok, every replica linked."""

    def kill_master(self, prefix: str) -> dict[str, Any]:
        root = shard_roots(prefix, self.url, self.lane_shards)[self.kill_shard]
        self.slot = self.group.slot_of(root)
        master, self.replica = self.group.kill_master_of(self.slot)
        return {"slot": self.slot, "keys": f"{root}:…", "killed_master_port": master.port,
                "replica_port": self.replica.port}  # fmt: skip

    def promoted(self) -> bool:
        assert self.replica is not None
        return self.group.promoted(self.slot, self.replica)

    def stop(self) -> None:
        self.group.stop()


async def _orders_before_kill(alertd: Alertd, p: Failover, row: Row) -> list[str]:
    """The orders whose fan-out is in progress at the kill. What WAIT costs: two API-only
    processes of the same deployment, one waiting for the replica before 202 and one not,
    take turns (the workers run in the first process); the short version leaves the
    comparison out and sends everything through the first."""
    apis = {"wait": alertd.twin("1"), "nowait": alertd.twin("0")} if p.measure_wait else \
        {"wait": alertd, "nowait": alertd}  # fmt: skip
    if p.measure_wait:
        await asyncio.gather(*(api.serve("--no-workers") for api in apis.values()))
    accepted: list[str] = []
    took: dict[str, list[float]] = {"wait": [], "nowait": []}
    for i in range(p.orders_before):
        label = "wait" if i % 2 == 0 else "nowait"
        t0 = time.monotonic()
        status, answer, _ = await apis[label].order(towns()[i], f"before-{i}")
        if i >= 2:  # each process's first order warms it up: not counted
            took[label].append(time.monotonic() - t0)
        assert status == 202, answer
        accepted.append(answer["id"])
    if p.measure_wait:
        row.latency["order_202_p50_wait_ms"] = ms(percentile(took["wait"], 50))
        row.latency["order_202_p50_nowait_ms"] = ms(percentile(took["nowait"], 50))
        await asyncio.gather(*(api.stop_processes() for api in apis.values()))
    return accepted


async def _orders_through_failover(alertd: Alertd, p: Failover, row: Row, t_kill: float) -> list[str]:
    """Orders sent while the master is dead: a desk retries with the same identifier until
    it is accepted. Every refusal must be a 503 with Retry-After: never a 500, never no answer."""
    accepted: list[str] = []
    refusals: dict[str, int] = {}
    without_retry_after = 0
    first_202: float | None = None
    attempts: list[dict[str, Any]] = []
    for i in range(p.orders_during):
        while time.monotonic() - t_kill < p.deadline_s:
            t0 = time.monotonic()
            status, answer, headers = await alertd.order(towns()[p.orders_before + i], f"during-{i}")
            attempts.append({"at_ms": ms(t0 - t_kill), "status": status, "answered_in_ms": ms(time.monotonic() - t0),
                             "detail": answer.get("detail") if isinstance(answer, dict) and status != 202 else None})
            if status == 202:
                accepted.append(answer["id"])
                first_202 = first_202 or time.monotonic() - t_kill
                break
            refusals[str(status)] = refusals.get(str(status), 0) + 1
            if status == 503 and not int(headers.get("Retry-After", "0") or 0) > 0:
                without_retry_after += 1
            await asyncio.sleep(0.2)
    row.latency["kill_to_first_202_ms"] = ms(first_202)
    row.notes["refusals_during_failover"] = refusals
    row.notes["orders_during_failover"] = attempts
    row.checks["orders during the failover accepted in the end"] = len(accepted) == p.orders_during
    row.checks["refusals during the failover are 503"] = set(refusals) <= {"503"}
    row.checks["every 503 had Retry-After"] = without_retry_after == 0
    return accepted


async def _healthz_back(alertd: Alertd, t_kill: float, promoted: asyncio.Event, row: Row, timeout: float) -> None:
    """From the kill: when /healthz answers 200 again, once it has said 503 (or the replica has
    been promoted, should it never have noticed), and what it said meanwhile."""
    causes: list[str] = []
    while time.monotonic() - t_kill < timeout:
        status, body = await alertd.get("/healthz")
        if status == 200 and (causes or promoted.is_set()):
            row.latency["healthy_after_failover_ms"] = ms(time.monotonic() - t_kill)
            break
        if status != 200 and not causes:
            causes = list((body or {}).get("causes", [])) if isinstance(body, dict) else [f"HTTP {status}"]
        await asyncio.sleep(0.05)
    row.notes["healthz_during_failover"] = causes


async def _http_500s(alertd: Alertd) -> int:
    """How many requests this serve answered 500 (alertd_http_requests_total, every route)."""
    return sum(int(float(ln.rsplit(" ", 1)[1])) for ln in await metric_lines(alertd, "alertd_http_requests_total")
               if 'code="500"' in ln)  # fmt: skip


async def failover(shared: Shared, p: Failover, workdir: Path, target: Replicated, row: Row) -> Row:
    """The master holding alertd's keys is killed -9 in the middle of a fan-out and its replica
    is promoted: alertd must follow without a restart, refuse meanwhile with 503 and
    Retry-After (never a 500), and lose neither an accepted alert nor a delivery."""
    t_start = time.monotonic()
    await asyncio.to_thread(target.start)
    sink = await Sink(delay=p.delay).start()
    alertd = Alertd(target.url, shared.mqtt_url, workdir, ALERTD_ROUTINE_CONCURRENCY=str(p.concurrency),
                    ALERTD_LANE_SHARDS=str(getattr(p, "lane_shards", 1)))  # fmt: skip
    try:
        alertd.seed(webhooks(sink, p.subscribers))
        for i in range(p.workers):
            alertd.worker(f"worker{i}")
        await alertd.serve()
        accepted = await _orders_before_kill(alertd, p, row)
        total = p.subscribers * (p.orders_before + p.orders_during)
        await asyncio.to_thread(target.wait_ready)
        await until(lambda: len(sink.arrivals) >= total // 10, 60, "a tenth of the fan-out")
        at_kill = len(sink.delivered())
        t_kill = time.monotonic()
        row.notes.update(await asyncio.to_thread(target.kill_master, alertd.prefix))
        promoted = asyncio.Event()
        # In the table's order; a time never reached stays None.
        row.latency.update(kill_to_promoted_ms=None, kill_to_first_202_ms=None, healthy_after_failover_ms=None)

        async def watch_promotion() -> None:
            with contextlib.suppress(TimeoutError):
                await until(lambda: asyncio.to_thread(target.promoted), p.deadline_s, target.promotion)
                row.latency["kill_to_promoted_ms"] = ms(time.monotonic() - t_kill)
                promoted.set()

        watchers = [asyncio.create_task(watch_promotion()),
                    asyncio.create_task(_healthz_back(alertd, t_kill, promoted, row, p.deadline_s))]  # fmt: skip
        try:
            accepted += await _orders_through_failover(alertd, p, row, t_kill)
            await asyncio.gather(*watchers)
        finally:
            for watcher in watchers:
                watcher.cancel()
        row.checks[target.promotion] = promoted.is_set()
        row.checks["/healthz 200 again without a restart"] = row.latency["healthy_after_failover_ms"] is not None
        row.checks["every 202'd alert still there"] = await all_present(alertd, accepted, row)
        expected = {(a, f"/ok/{i}") for a in accepted for i in range(p.subscribers)}
        missing = await count_arrivals(sink, expected, p.deadline_s)
        row.offered, row.lost = len(expected), len(missing)
        row.delivered = row.offered - row.lost
        row.duplicated, row.repeats = sink.duplicated_beyond_key(), sink.repeats()
        row.notes["delivered_before_kill"] = at_kill
        last = sink.last_arrival()
        row.latency["kill_to_last_delivery_ms"] = ms(last - (time.time() - (time.monotonic() - t_kill))) \
            if last else None  # fmt: skip
        row.checks["every delivery recorded delivered"] = await recorded_delivered(alertd, accepted, len(expected))
        row.notes["http_500s"] = await _http_500s(alertd)
        row.checks["no request answered 500"] = row.notes["http_500s"] == 0
        row.checks["no alertd process exited or was restarted"] = all(
            proc.poll() is None for proc in alertd.procs.values())
    finally:
        await alertd.stop()
        await sink.stop()
        await asyncio.to_thread(target.stop)
    row.seconds = round(time.monotonic() - t_start, 1)
    return row


async def sentinel_failover(shared: Shared, p: Failover, workdir: Path) -> Row:
    """A master, a replica and three sentinels; the master is killed -9 in the middle of a
    fan-out and the sentinels promote the replica: alertd must follow and lose nothing."""
    row = Row("sentinel-failover", "redis master kill -9 mid fan-out; 3 sentinels promote the replica")
    return await failover(shared, p, workdir, SentinelTarget(), row)


async def cluster_failover(shared: Shared, p: ClusterFailover, workdir: Path) -> Row:
    """A Redis Cluster of 3 masters and 3 replicas; the master of the slot holding every alertd
    key is killed -9 in the middle of a fan-out and the cluster promotes its replica: alertd
    must find the new master of that slot by itself and lose nothing."""
    row = Row("cluster-failover", f"redis cluster (3 masters + 3 replicas, node timeout {p.node_timeout_ms} ms): "
                                  "the master of alertd's slot kill -9 mid fan-out; its replica promoted")  # fmt: skip
    return await failover(shared, p, workdir, ClusterTarget(p.node_timeout_ms), row)


async def cluster_shard_failover(shared: Shared, p: ClusterFailover, workdir: Path) -> Row:
    """The same cluster with the delivery work in three lane shards, one per master
    (ALERTD_LANE_SHARDS=3); the master killed holds a shard's lanes, retries and delivery
    records, not the alerts: alertd goes on accepting, and that shard's deliveries resume
    on the promoted replica with none lost."""
    row = Row("cluster-shard-failover", f"redis cluster, ALERTD_LANE_SHARDS={p.lane_shards} (one per master): "
                                        f"the master of lane shard {p.kill_shard}'s slot kill -9 mid fan-out")  # fmt: skip
    target = ClusterTarget(p.node_timeout_ms, p.lane_shards, p.kill_shard)
    return await failover(shared, p, workdir, target, row)


# --- 6. degraded operation: one way out gone, the others keep going -----------------------------
@dataclass
class Degraded:
    webhooks: int = 200  # all refusing: every HTTP receiver is down
    gateways: int = 20  # radio gateways on the broker, which must keep getting alerts
    orders: int = 3
    deadline_s: float = 30.0


async def degraded(shared: Shared, p: Degraded, workdir: Path) -> Row:
    """Every webhook receiver down and no boundary data (geo cache missing): MQTT deliveries
    continue; codes and district names still place alerts; a polygon gets a clear 422."""
    t_start = time.monotonic()
    gone = await Sink().start()
    await gone.stop()  # its port now refuses every connection
    empty_geo = workdir / f"geo-{secrets.token_hex(3)}"
    empty_geo.mkdir()
    alertd = Alertd(shared.redis_url, shared.mqtt_url, workdir, ALERTD_GEO_CACHE=str(empty_geo))
    gateways = f"{alertd.prefix}/gw"
    row = Row("degraded", f"all {p.webhooks} webhooks refusing + geo cache missing; {p.gateways} MQTT gateways")
    host, port = shared.mqtt_url.split("://", 1)[1].split(":")
    receiver = Receiver(host, int(port), f"{gateways}/+")
    try:
        subs = webhooks(gone, p.webhooks) + [
            {"id": f"gw{i}", "adapter": "radio", "endpoint": f"{shared.mqtt_url}/{gateways}/{i}",
             "districts": PREFECTURES, "drills": True} for i in range(p.gateways)]  # fmt: skip
        alertd.seed(subs)
        await alertd.serve()
        await receiver.start()
        t0 = time.monotonic()
        accepted = []
        # District names and codes need no boundaries.
        by_name = {"municipality": "08211", "level": 4, "action": "issue", "districts": ["若宮戸", "三坂町"],
                   "reason": "洪水", "status": "Exercise", "identifier": "by-name"}  # fmt: skip
        status, answer = await alertd.post("/api/v1/evacuation-orders", by_name)
        row.checks["a desk order by district names: 202"] = status == 202
        accepted += [answer["id"]] if status == 202 else []
        for i in range(1, p.orders):
            status, answer = await alertd.post("/api/v1/alerts", {
                "status": "Exercise", "event": "大雨警報", "districts": [towns()[i]], "identifier": f"by-code-{i}"})
            row.checks["a JSON alert by codes: 202"] = status == 202
            accepted += [answer["id"]] if status == 202 else []
        # A polygon cannot be placed without boundaries: a 422 that says so, never a 500.
        status, problem = await alertd.post("/api/v1/alerts", {
            "status": "Exercise", "event": "大雨警報", "identifier": "by-polygon",
            "areas": [{"desc": "浸水想定区域", "polygon": "36.0,139.9 36.1,139.9 36.1,140.0 36.0,139.9"}]})
        detail = problem.get("detail", "") if isinstance(problem, dict) else str(problem)
        row.checks["a polygon without boundary data: 422 naming the cause"] = status == 422 and "boundar" in detail
        row.notes["polygon_refusal"] = {"status": status, "detail": detail}
        want = len(accepted) * p.gateways
        with contextlib.suppress(TimeoutError):
            await until(lambda: sum(receiver.got.values()) >= want, p.deadline_s, "every gateway message")
        row.latency["mqtt_all_ms"] = ms(time.monotonic() - t0)
        got = sum(receiver.got.values())
        row.offered, row.delivered, row.lost = want, min(got, want), max(0, want - got)
        refused_rows = [r for a in accepted for r in await alertd.deliveries(a) if r["adapter"] == "isp"]
        row.notes["webhook_states"] = {s: sum(r["state"] == s for r in refused_rows)
                                       for s in {r["state"] for r in refused_rows}}  # fmt: skip
        row.checks["webhooks down do not hold up the gateways"] = row.lost == 0
    finally:
        await receiver.stop()
        await alertd.stop()
    row.seconds = round(time.monotonic() - t_start, 1)
    return row


# --- the run -------------------------------------------------------------------------
SCENARIOS: dict[str, Callable[..., Awaitable[Row]]] = {
    "redis-kill": redis_kill, "redis-full": redis_full, "broker-kill": broker_kill, "bad-endpoints": bad_endpoints,
    "engine-kills": engine_kills, "sentinel-failover": sentinel_failover, "cluster-failover": cluster_failover,
    "cluster-shard-failover": cluster_shard_failover, "degraded": degraded,
}
SHORT: dict[str, Any] = {
    "redis-kill": RedisKill(subscribers=200, orders_before=2, orders_after=1, delay=0.05, concurrency=20,
                            outage_s=1.0, deadline_s=30),
    "redis-full": RedisFull(subscribers=200, delay=0.05, concurrency=10, workers=1, disk_kb=8192, full_s=1.0,
                            deadline_s=30),
    "broker-kill": BrokerKill(orders=15, rate=10, webhooks=5, outage_s=1.5, deadline_s=30),
    "bad-endpoints": BadEndpoints(endpoints=250, expires_s=3, timeout_s=1.5, late_s=3, breaker_cooldown_s=1.5,
                                  slack_s=0.5, deadline_s=30),
    "engine-kills": EngineKills(subscribers=100, orders=4, every_s=1.0, delay=0.1, concurrency=5, max_kills=2,
                                claim_idle_s=1.0,
                                deadline_s=40),
    "sentinel-failover": Failover(subscribers=100, orders_before=3, orders_during=1, delay=0.05, concurrency=10,
                                  measure_wait=False, deadline_s=40),
    "cluster-failover": ClusterFailover(subscribers=100, orders_before=3, orders_during=1, delay=0.05,
                                        concurrency=10, measure_wait=False, deadline_s=40),
    "cluster-shard-failover": ClusterFailover(subscribers=150, orders_before=3, orders_during=1, delay=0.05,
                                              concurrency=10, measure_wait=False, deadline_s=40, lane_shards=3,
                                              kill_shard=1),
    "degraded": Degraded(webhooks=100, gateways=10),
}  # fmt: skip
FULL: dict[str, Any] = {"redis-kill": RedisKill(), "redis-full": RedisFull(), "broker-kill": BrokerKill(), "bad-endpoints": BadEndpoints(),
                        "engine-kills": EngineKills(),
                        "sentinel-failover": Failover(), "cluster-failover": ClusterFailover(workers=1),
                        "cluster-shard-failover": ClusterFailover(workers=1, lane_shards=3, kill_shard=1),
                        "degraded": Degraded()}


def render(rows: list[Row]) -> str:
    def lat(r: Row) -> str:
        return ", ".join(f"{k.removesuffix('_ms')} {v:.0f} ms" for k, v in r.latency.items() if v is not None)

    def refused(r: Row) -> str:
        """What the desk was answered while the fault lasted (the failover rows count it)."""
        counts = r.notes.get("refusals_during_failover")
        if counts is None:
            return ""
        said = ", ".join(f"{n}x {status}" for status, n in sorted(counts.items())) or "none"
        retry_after = "yes" if r.checks.get("every 503 had Retry-After") else "NO"
        return f"{said}; every 503 with Retry-After: {retry_after}; 500s: {r.notes.get('http_500s', '?')}"

    # The counts in a table a terminal can hold; what was injected, the timings and the
    # refusals, which run long, under it, one scenario at a time.
    body = [[r.scenario, r.offered, r.delivered, r.lost, r.duplicated, r.repeats, r.seconds,
             "yes" if r.ok else "NO"] for r in rows]  # fmt: skip
    out = [table(["scenario", "offered", "delivered", "lost", "dup", "repeats", "s", "ok"], body, left={7})]
    for r in rows:
        out.append(f"\n{r.scenario}: {r.injected}")
        for label, text in (("latency", lat(r)), ("refused", refused(r)),
                            ("failed checks", "; ".join(r.failed_checks()))):  # fmt: skip
            if text:
                out.append(f"  {label}: {text}")
    return "\n".join(out)


async def amain(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations.chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the sizes the test suite runs (about a minute)")
    ap.add_argument("--only", action="append", choices=list(SCENARIOS), help="run only this scenario (repeatable)")
    ap.add_argument("--redis-url", default=os.environ.get("ALERTD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
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
                row = await SCENARIOS[name](Shared(a.redis_url, a.mqtt_url), sizes[name], Path(tmp))
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
