"""The engine never stops silently: its loops survive stalls, Redis timeouts, poison
entries and crashes, and /healthz says so when something is wrong.

Every fault here is real: the event loop is really blocked, Redis is really
paused or killed (a private redis-server), the broker is really killed.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from alertd.redis_client import connect
from tests.conftest import REDIS_URL, RunningEngine, Sink, make_settings, start_engine, stop_engine
from tests.servers import MosquittoServer, RedisServer
from tests.support import until

LEVEL5 = {
    "municipality": "08211", "level": 5, "action": "issue", "districts": ["all"], "reason": "洪水",
    "status": "Exercise",
}  # fmt: skip


async def metric(running: RunningEngine, name: str, **labels: str) -> float:
    """One sample from /metrics, as Prometheus would scrape it."""
    status, text = await running.get("/metrics")
    assert status == 200
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name and ",".join(sorted((m.group(2) or "").split(","))) == want:
            return float(m.group(3))
    return 0.0


async def flash_reaches(running: RunningEngine, sink: Sink, token: str, identifier: str) -> float:
    """Send a level 5 order; return seconds until the radio gateway had it (deadline 1 s)."""
    before = len(sink.at("/radio"))
    t0 = time.monotonic()
    status, answer = await running.post("/api/v1/evacuation-orders", token, {**LEVEL5, "identifier": identifier})
    assert status == 202, answer
    assert answer["priority"] == "flash"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while len(sink.at("/radio")) == before:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError("the level 5 order did not reach the radio gateway within 1 s")
        sink.event.clear()
        try:
            await asyncio.wait_for(sink.event.wait(), remaining)
        except TimeoutError:
            pass
    return time.monotonic() - t0


async def radio_desk(running: RunningEngine, sink: Sink) -> str:
    token = await running.add_issuer("joso", ["08211"])
    await running.add_subscriber(id="radio", adapter="radio", endpoint=f"{sink.url}/radio", districts=["08211"])
    return token


async def test_flash_alert_is_delivered_after_the_event_loop_stalls_past_the_redis_timeout(sink: Sink) -> None:
    # The Redis timeout is short here so a 3.5 s stall exceeds it; in production it is 10 s.
    running = await start_engine(make_settings(redis_socket_timeout_s=2.5))
    try:
        token = await radio_desk(running, sink)
        await flash_reaches(running, sink, token, "before")
        failures = await metric(running, "alertd_task_step_failures_total", task="read:flash")
        time.sleep(3.5)  # noqa: ASYNC251 — the point: block the whole event loop, as a hostile request did
        await until(
            lambda: metric_above(running, "alertd_task_step_failures_total", failures, task="read:flash"),
            timeout=5, what="the flash reader noticing its Redis read timed out",
        )  # fmt: skip
        await flash_reaches(running, sink, token, "after")
        status, health = await running.get("/healthz")
        assert status == 200, health
    finally:
        await stop_engine(running)


async def metric_above(running: RunningEngine, name: str, floor: float, **labels: str) -> bool:
    return await metric(running, name, **labels) > floor


@pytest_asyncio.fixture
async def private_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


async def test_flash_alert_is_delivered_after_redis_stops_answering_for_a_while(
    sink: Sink, private_redis: RedisServer
) -> None:
    running = await start_engine(make_settings(redis_url=private_redis.url, redis_socket_timeout_s=2.5))
    control = aioredis.Redis.from_url(private_redis.url)
    try:
        token = await radio_desk(running, sink)
        await flash_reaches(running, sink, token, "before")
        failures = await metric(running, "alertd_task_step_failures_total", task="read:flash")
        await control.execute_command("CLIENT", "PAUSE", "4000", "ALL")  # Redis answers nobody for 4 s
        await until(
            lambda: metric_above(running, "alertd_task_step_failures_total", failures, task="read:flash"),
            timeout=10, what="the flash reader's read timing out",
        )  # fmt: skip
        await until(lambda: healthy(running), timeout=15, what="/healthz returning to 200 after the pause")
        await flash_reaches(running, sink, token, "after")
    finally:
        await control.aclose()
        await stop_engine(running, wipe_keys=False)


async def healthy(running: RunningEngine) -> bool:
    status, _ = await running.get("/healthz")
    return status == 200


async def test_a_poison_entry_in_the_flash_lane_is_dropped_and_the_lane_keeps_delivering(sink: Sink) -> None:
    running = await start_engine()
    r = connect(REDIS_URL, key_prefix=running.engine.settings.key_prefix)
    try:
        token = await radio_desk(running, sink)
        stream = running.engine.keys.lane("flash")
        dropped = await metric(running, "alertd_poison_jobs_total", lane="flash")
        # Something that is not a delivery job: another program, a hand-typed XADD.
        await r.xadd(stream, {"hello": "world"})
        await flash_reaches(running, sink, token, "after-poison")
        assert await metric(running, "alertd_poison_jobs_total", lane="flash") == dropped + 1
        remaining = [fields for _, fields in await r.xrange(stream)]
        assert {b"hello": b"world"} not in remaining
    finally:
        await r.aclose()
        await stop_engine(running)


async def test_a_reader_that_keeps_failing_makes_healthz_503_and_recovers(sink: Sink) -> None:
    running = await start_engine(make_settings(redis_socket_timeout_s=2.5))
    r = connect(REDIS_URL, key_prefix=running.engine.settings.key_prefix)
    try:
        token = await radio_desk(running, sink)
        stream = running.engine.keys.lane("flash")
        # The lane's key is clobbered (a FLUSH by hand, a key clash): every read fails.
        await r.delete(stream)
        await r.set(stream, "not a stream")

        async def unhealthy_naming_the_reader() -> bool:
            status, body = await running.get("/healthz")
            return status == 503 and any("read:flash" in c for c in body["causes"])

        await until(unhealthy_naming_the_reader, timeout=15, what="/healthz naming the failing flash reader")
        _, body = await running.get("/healthz")
        assert body["status"] == "unhealthy"
        assert any("WRONGTYPE" in c for c in body["causes"]), body["causes"]
        await r.delete(stream)  # repaired: the reader makes its group again
        await until(lambda: healthy(running), timeout=15, what="/healthz returning to 200")
        await flash_reaches(running, sink, token, "after-repair")
    finally:
        await r.aclose()
        await stop_engine(running)


async def test_the_supervisor_restarts_a_task_that_dies_and_counts_it(engine: RunningEngine) -> None:
    runs = 0
    alive = asyncio.Event()

    async def fragile() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError(f"crash {runs}")
        alive.set()
        await asyncio.Event().wait()

    engine.engine.supervisor.spawn("test-fragile", fragile)
    await asyncio.wait_for(alive.wait(), 5)
    assert await metric(engine, "alertd_task_restarts_total", task="test-fragile") == 2
    status, body = await engine.get("/healthz")
    assert status == 200, body
    assert body["tasks"]["test-fragile"]["restarts"] == 2


async def test_healthz_is_503_when_no_worker_takes_flash_work(sink: Sink) -> None:
    # An API-only process, and nobody else reading the lanes: the order is
    # accepted, but nothing would ever deliver it. /healthz must say so.
    running = await start_engine(make_settings(health_flash_age_s=1.0), workers=False)
    try:
        token = await radio_desk(running, sink)
        status, _ = await running.post("/api/v1/evacuation-orders", token, {**LEVEL5, "identifier": "stuck"})
        assert status == 202

        async def says_flash_lane_stuck() -> bool:
            status, body = await running.get("/healthz")
            return status == 503 and any("flash lane" in c for c in body["causes"])

        await until(says_flash_lane_stuck, timeout=10, what="/healthz reporting the stuck flash lane")
    finally:
        await stop_engine(running)


async def test_redis_down_gives_503_health_and_a_503_problem_with_retry_after(
    sink: Sink, private_redis: RedisServer
) -> None:
    running = await start_engine(make_settings(redis_url=private_redis.url, redis_socket_timeout_s=2.5))
    try:
        token = await radio_desk(running, sink)
        refused = {"listener": "desk", "route": "/api/v1/evacuation-orders", "code": "503"}
        refused_before = await metric(running, "alertd_http_requests_total", **refused)
        private_redis.kill()
        status, body = await running.get("/healthz")
        assert status == 503
        assert any("Redis is unreachable" in c for c in body["causes"]), body
        async with running.http.post(
            f"{running.url}/api/v1/evacuation-orders", json={**LEVEL5, "identifier": "no-db"},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:  # fmt: skip
            assert resp.status == 503
            assert resp.content_type == "application/problem+json"
            assert int(resp.headers["Retry-After"]) > 0
            problem = await resp.json()
            assert "nothing was sent" in problem["detail"]
        # Prometheus sees it too: Redis down, and the refused order counted as a 503 of its route.
        assert await metric(running, "alertd_dependency_up", dependency="redis") == 0.0
        assert await metric(running, "alertd_http_requests_total", **refused) == refused_before + 1
    finally:
        await stop_engine(running, wipe_keys=False)


async def test_broker_down_gives_503_health() -> None:
    broker = MosquittoServer().start()
    running = await start_engine(make_settings(mqtt_url=broker.url))
    try:
        status, _ = await running.get("/healthz")
        assert status == 200
        broker.kill()

        async def says_broker_down() -> bool:
            status, body = await running.get("/healthz")
            return status == 503 and any("MQTT broker" in c for c in body["causes"])

        await until(says_broker_down, timeout=10, what="/healthz reporting the broker down")
        assert await metric(running, "alertd_dependency_up", dependency="mqtt") == 0.0
    finally:
        await stop_engine(running)
        broker.stop()


@pytest.mark.parametrize("depth", [1_000, 400_000])
async def test_deeply_nested_json_is_a_clean_400(engine: RunningEngine, depth: int) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    body = "[" * depth + "]" * depth
    status, problem = await engine.post(
        "/api/v1/evacuation-orders", token, body, headers={"Content-Type": "application/json"}
    )
    assert status == 400, problem
    assert "nested" in problem["detail"]


async def test_redis_and_broker_passwords_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    caplog.set_level(logging.DEBUG)
    server = RedisServer(password="RedisPW-s3cr3t").start()
    try:
        running = await start_engine(make_settings(redis_url=server.url))
        try:
            status, health = await running.get("/healthz")
            assert status == 200, health
        finally:
            await stop_engine(running, wipe_keys=False)
    finally:
        server.stop()
    logged = json.dumps([[r.getMessage(), getattr(r, "fields", None)] for r in caplog.records], default=str)
    assert "engine.started" in logged
    assert "RedisPW-s3cr3t" not in logged


async def test_redis_losing_its_data_is_seeded_again_from_the_configuration(
    sink: Sink, private_redis: RedisServer, tmp_path: object
) -> None:
    from pathlib import Path

    import yaml

    seed = Path(str(tmp_path)) / "seed.yaml"
    token = "joso-desk-token-0123456789"
    seed.write_text(yaml.safe_dump({
        "issuers": [{"id": "joso", "name": "常総市", "token": token, "jurisdiction": ["08211"]}],
        "subscribers": [{"id": "radio", "adapter": "radio", "endpoint": f"{sink.url}/radio", "districts": ["08211"],
                         "drills": True}],
    }, allow_unicode=True))  # fmt: skip
    running = await start_engine(make_settings(redis_url=private_redis.url, seed_file=str(seed)))
    control = aioredis.Redis.from_url(private_redis.url)
    try:
        await flash_reaches(running, sink, token, "before")
        await control.flushall()  # Redis restarted without persistence: everything is gone
        await until(
            lambda: control.exists(running.engine.keys.deployment), timeout=15, what="the data being seeded again"
        )
        await until(lambda: healthy(running), timeout=15, what="/healthz 200 again")
        await flash_reaches(running, sink, token, "after")  # the desk's token works again
        # It delivers, but nobody may think the orders in force before the loss are still known.
        status, body = await running.get("/healthz")
        assert status == 200 and any("no longer known" in w for w in body.get("warnings", [])), body
    finally:
        await control.aclose()
        await stop_engine(running, wipe_keys=False)


async def test_redis_losing_its_data_without_a_configuration_makes_healthz_503(
    private_redis: RedisServer,
) -> None:
    running = await start_engine(make_settings(redis_url=private_redis.url))
    control = aioredis.Redis.from_url(private_redis.url)
    try:
        await control.flushall()

        async def says_data_lost() -> bool:
            status, body = await running.get("/healthz")
            return status == 503 and any("lost alertd's data" in c for c in body["causes"])

        await until(says_data_lost, timeout=15, what="/healthz reporting the lost data")
    finally:
        await control.aclose()
        await stop_engine(running, wipe_keys=False)


async def test_a_flash_delivery_that_keeps_failing_makes_healthz_503(sink: Sink) -> None:
    running = await start_engine(make_settings(health_flash_age_s=1.0))
    try:
        token = await running.add_issuer("joso", ["08211"])
        await running.add_subscriber(id="dead-gateway", adapter="radio", endpoint=f"{sink.url}/dead",
                                     districts=["08211"])  # fmt: skip
        sink.status["/dead"] = 503
        status, _ = await running.post("/api/v1/evacuation-orders", token, {**LEVEL5, "identifier": "stuck"})
        assert status == 202

        async def names_the_gateway() -> bool:
            status, body = await running.get("/healthz")
            return status == 503 and any("dead-gateway" in c and "503" in c for c in body["causes"])

        await until(names_the_gateway, timeout=15, what="/healthz naming the gateway the level 5 order cannot reach")
    finally:
        await stop_engine(running)


async def test_a_removed_subscriber_leaves_no_open_circuit_behind(sink: Sink) -> None:
    running = await start_engine(make_settings(breaker_threshold=1, breaker_cooldown_s=30))
    try:
        token = await running.add_issuer("joso", ["08211"])
        await running.add_subscriber(id="flaky", adapter="isp", endpoint=f"{sink.url}/flaky", districts=["08211"])
        sink.status["/flaky"] = 503
        for n in range(2):
            status, answer = await running.post(
                "/api/v1/evacuation-orders", token, {**LEVEL5, "level": 3, "identifier": f"o{n}"}
            )
            assert status == 202

        async def circuit_open() -> bool:
            return await metric(running, "alertd_circuit_open", subscriber="flaky", adapter="isp") == 1.0

        await until(circuit_open, timeout=10, what="the circuit opening")

        async def parked_says_why() -> bool:
            rows = await running.deliveries(answer["id"])
            row = next(r for r in rows if r["subscriber"] == "flaky")
            return bool(row["last_error"])

        await until(parked_says_why, timeout=10, what="the parked delivery saying why it waits")
        async with running.http.delete(f"{running.url}/api/v1/subscribers/flaky", headers=running.admin) as resp:
            assert resp.status == 204
        # The next batch the worker reads refreshes its subscribers.
        await running.add_subscriber(id="other", adapter="isp", endpoint=f"{sink.url}/other", districts=["08211"])
        status, _ = await running.post("/api/v1/evacuation-orders", token, {**LEVEL5, "level": 3, "identifier": "o9"})

        async def gauge_gone() -> bool:
            _, text = await running.get("/metrics")
            return 'alertd_circuit_open{subscriber="flaky"' not in text

        await until(gauge_gone, timeout=10, what="the gauge of the removed subscriber going away")
    finally:
        await stop_engine(running)


async def test_healthz_stays_503_naming_the_gateway_while_a_level_5_cannot_reach_it(sink: Sink) -> None:
    """The trial saw /healthz flap 200/503 as the failing job re-entered its lane (age was
    measured from the re-queue) and blame "no worker taking flash work" while workers idled."""
    running = await start_engine(make_settings(health_flash_age_s=1.0, breaker_threshold=1000, retry_max_s=0.3))
    try:
        token = await running.add_issuer("joso", ["08211"])
        await running.add_subscriber(id="dead-gateway", adapter="radio", endpoint=f"{sink.url}/dead",
                                     districts=["08211"])  # fmt: skip
        sink.status["/dead"] = 503
        status, answer = await running.post("/api/v1/evacuation-orders", token, {**LEVEL5, "identifier": "stuck"})
        assert status == 202

        async def first_503() -> bool:
            status, _ = await running.get("/healthz")
            return status == 503

        await until(first_503, timeout=15, what="/healthz to turn 503 for the late level 5")
        async def tries() -> int:
            rows = await running.deliveries(answer["id"])
            return int(next(r for r in rows if r["subscriber"] == "dead-gateway")["attempts"])

        first_tries = await tries()
        samples: list[tuple[int, list[str]]] = []

        async def sampled_through_retries() -> bool:
            status, body = await running.get("/healthz")
            samples.append((status, body["causes"]))
            # Every answer, while the job cycles between the retry set and the lane: 503, naming it.
            assert status == 503, samples[-3:]
            assert any("dead-gateway" in c for c in body["causes"]), body["causes"]
            assert not any("no delivery worker" in c for c in body["causes"]), body["causes"]
            return await tries() >= first_tries + 4

        await until(sampled_through_retries, timeout=15, what="four more tries at the dead gateway")
        late = await metric(running, "alertd_oldest_unfinished_delivery_age_seconds", lane="flash")
        assert late > 1.0
        sink.status["/dead"] = 200  # the gateway is back: the delivery goes out and health recovers

        async def recovered() -> bool:
            status, _ = await running.get("/healthz")
            return status == 200

        await until(recovered, timeout=15, what="/healthz back to 200 once the level 5 went out")
        assert await metric(running, "alertd_oldest_unfinished_delivery_age_seconds", lane="flash") == 0.0
    finally:
        await stop_engine(running)


async def test_parked_jobs_let_back_into_the_lane_are_counted_parked_not_new(sink: Sink) -> None:
    """A parked job moved back at a circuit's half-open probe is re-parked untried: neither the
    lane's depth nor its age may count it (the README says parked jobs are not in the lane)."""
    from alertd.ledger import MOVE_DUE_SCRIPT

    running = await start_engine(make_settings(), workers=False)  # nobody reads: the entry stays put
    try:
        engine = running.engine
        assert engine.redis is not None
        ledger = engine.store.ledger
        accepted = int(time.time() * 1000) - 40_000
        await engine.redis.zadd(ledger.retry_key, {ledger.retry_member("flash", "a1", "gw", accepted, parked=True): 0})
        await engine.redis.eval(MOVE_DUE_SCRIPT, 1, ledger.retry_key, int(time.time() * 1000), ledger.lane_prefix)
        assert await metric(running, "alertd_deliveries_pending", lane="flash", state="parked") == 1
        assert await metric(running, "alertd_deliveries_pending", lane="flash", state="new") == 0
        assert await metric(running, "alertd_queue_oldest_age_seconds", lane="flash") == 0
        assert await metric(running, "alertd_oldest_unfinished_delivery_age_seconds", lane="flash") >= 40
        status, body = await running.get("/healthz")
        assert status == 503 and body["queue_depth"]["flash"] == 0 and body["pending"]["flash"]["parked"] == 1
        # 40 s old when parked; a loaded machine may take a second or two to get here.
        assert any("alert a1 to gw" in c and re.search(r"\b4\d s\b", c) for c in body["causes"]), body["causes"]
    finally:
        await stop_engine(running)


async def test_a_task_that_will_not_stop_is_named_and_does_not_hang_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CI run once hung 300 s in an engine's stop: cancelled tasks were awaited without end.
    A task that swallows its cancellation is now named in the log, and stop() goes on."""
    import logging

    from alertd import supervise
    from alertd.logs import JsonFormatter

    monkeypatch.setattr(supervise, "STOP_TIMEOUT_S", 0.3)
    release = asyncio.Event()
    said: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(JsonFormatter().format(record))

    handler = Lines()
    logging.getLogger("alertd.supervise").addHandler(handler)

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue  # what a library awaiting inside suppress(CancelledError) amounts to

    supervisor = supervise.Supervisor("test")
    supervisor.spawn("stubborn", stubborn)
    await asyncio.sleep(0)  # let it start
    try:
        began = time.monotonic()
        await asyncio.wait_for(supervisor.stop(), timeout=5)
        assert time.monotonic() - began < 2
        assert any("task.would_not_stop" in line and "stubborn" in line for line in said), said
    finally:
        release.set()
        logging.getLogger("alertd.supervise").removeHandler(handler)
