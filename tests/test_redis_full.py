"""Redis that answers but cannot write: its disk full for real, or its memory limit reached.

The disk case runs a redis-server with ``appendonly yes`` whose ``--dir`` is a 4 MB tmpfs
of its own (simulations/faults.py ``SmallDisk``), fills that tmpfs to the last byte and
frees it again: Redis meets ENOSPC on its AOF exactly as on a full production disk, and
answers writes with ``MISCONF Errors writing to the AOF file: No space left on device``.
The memory case lowers ``maxmemory`` (``noeviction``) on a private Redis until it answers
``OOM command not allowed``.

Either way: a new order gets 503 + Retry-After + problem JSON that says it was NOT accepted
and why; /healthz says Redis cannot write; the deliveries of an order accepted before go
out while Redis cannot write, each exactly once; and their records are written once Redis
can write again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from simulations.faults import RedisServer, SmallDisk
from tests.conftest import RunningEngine, Sink, make_settings, start_engine, stop_engine
from tests.support import until

# More than the flash lane's read of 64: the rest are read while the disk is full (with XRANGE).
SUBSCRIBERS = 80
CLAIM_IDLE_S = 1.0
# Level 5 (緊急安全確保) travels in the flash lane.
ORDER = {"municipality": "08211", "level": 5, "action": "issue", "districts": ["all"], "reason": "洪水",
         "status": "Exercise"}  # fmt: skip


@pytest.fixture
def small_disk() -> Iterator[SmallDisk]:
    try:
        disk = SmallDisk(4096).mount()
    except OSError as exc:
        pytest.skip(f"a full disk cannot be made here: {exc}")
    try:
        yield disk
    finally:
        disk.close()


@pytest.fixture
def redis_on_small_disk(small_disk: SmallDisk) -> Iterator[RedisServer]:
    # --dir given last wins: the AOF goes on the small disk, the server's log does not.
    server = RedisServer(extra=["--dir", small_disk.path]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer(extra=["--maxmemory-policy", "noeviction"]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture
async def client(request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    server: RedisServer = request.getfixturevalue(request.param)
    c = aioredis.Redis.from_url(server.url)
    try:
        yield c
    finally:
        await c.aclose()


async def _desk(running: RunningEngine, sink: Sink) -> str:
    token = await running.add_issuer("joso", ["08211"])
    for i in range(SUBSCRIBERS):
        # Slow receivers, few at a time: the fan-out is still under way when Redis stops writing.
        sink.delay[f"/s/{i}"] = 0.05
        await running.add_subscriber(
            id=f"s{i}", adapter="isp", endpoint=f"{sink.url}/s/{i}", districts=["08211"]
        )
    return token


async def _refuses_writes(c: aioredis.Redis, mark: str) -> bool:
    try:
        await c.set("alertd-test-probe", "x" * 100)
    except RedisError as exc:
        return mark in str(exc)
    return False


async def _the_refusal(
    running: RunningEngine, token: str, identifier: str
) -> tuple[int, dict[str, str], Any]:
    async with running.http.post(
        f"{running.url}/api/v1/evacuation-orders", json={**ORDER, "identifier": identifier},
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:  # fmt: skip
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


async def _while_redis_cannot_write(
    running: RunningEngine, sink: Sink, token: str, alert_id: str, words: str
) -> dict[str, Any]:
    """What must hold while Redis refuses writes; returns the refusal for the test to read."""
    status, headers, problem = await _the_refusal(running, token, "while-full")
    assert status == 503, problem
    assert headers["Content-Type"].startswith("application/problem+json")
    assert int(headers["Retry-After"]) >= 30
    assert "NOT accepted" in problem["detail"] and "system administrator" in problem["detail"], problem
    assert problem["type"].endswith("/database-full") and words in problem["database"], problem
    hstatus, health = await running.get("/healthz")
    assert hstatus == 503 and health["redis"] == "cannot-write", health
    assert any("Redis cannot write" in c and words in c for c in health["causes"]), health["causes"]
    # The order accepted before goes on being delivered: every receiver gets it, once.
    await until(lambda: len({r["path"] for r in sink.received}) == SUBSCRIBERS, timeout=20,
                what=lambda: f"all {SUBSCRIBERS} receivers while Redis cannot write (got {len(sink.received)})")  # fmt: skip
    recorder = running.engine.worker.recorder  # type: ignore[union-attr]
    assert recorder.owed > 0, "nothing waited to be written: Redis could write after all"
    _, health = await running.get("/healthz")
    assert any("wait to be written" in c for c in health["causes"]), health["causes"]
    return problem


async def _after_redis_writes_again(running: RunningEngine, sink: Sink, token: str, alert_id: str) -> None:
    # The outcomes kept in memory are written: every delivery reads "delivered", and the
    # wait for it is longer than the claim time, so a reclaim that re-sent would show.
    rows = await running.wait_deliveries(alert_id, {"delivered"}, count=SUBSCRIBERS, timeout=20)
    assert len(rows) == SUBSCRIBERS
    await until(lambda: running.engine.worker.recorder.owed == 0, timeout=10, what="nothing left to write")  # type: ignore[union-attr]
    await until(_healthy(running), timeout=15, what="/healthz 200 again without a restart")
    assert len(sink.received) == SUBSCRIBERS, "a delivery was sent twice"
    status, answer = await running.post("/api/v1/evacuation-orders", token, {**ORDER, "identifier": "after"})
    assert status == 202, answer


def _healthy(running: RunningEngine) -> Any:
    async def check() -> bool:
        status, _ = await running.get("/healthz")
        return status == 200

    return check


@pytest.mark.parametrize("client", ["redis_on_small_disk"], indirect=True)
async def test_a_full_disk_refuses_new_alerts_with_a_clear_503_and_keeps_delivering(
    sink: Sink, small_disk: SmallDisk, redis_on_small_disk: RedisServer, client: aioredis.Redis
) -> None:
    running = await start_engine(
        make_settings(redis_url=redis_on_small_disk.url, flash_concurrency=4, claim_idle_s=CLAIM_IDLE_S)
    )
    try:
        token = await _desk(running, sink)
        status, answer = await running.post(
            "/api/v1/evacuation-orders", token, {**ORDER, "identifier": "before"}
        )
        assert status == 202, answer
        await sink.wait_for(1)
        small_disk.fill()
        await until(
            lambda: _refuses_writes(client, "MISCONF"), timeout=10, what="Redis refusing writes (MISCONF)"
        )
        assert len(sink.received) < SUBSCRIBERS, "the fan-out ended before the disk was full"
        problem = await _while_redis_cannot_write(
            running, sink, token, answer["id"], "No space left on device"
        )
        assert "disk" in problem["detail"]
        assert running.engine.worker.readonly._since is not None, "no job was read while the disk was full"  # type: ignore[union-attr]
        small_disk.free()  # Redis writes again by itself within a second
        await _after_redis_writes_again(running, sink, token, answer["id"])
    finally:
        small_disk.free()
        await stop_engine(running, wipe_keys=False)


@pytest.mark.parametrize("client", ["private_redis"], indirect=True)
async def test_redis_at_its_memory_limit_refuses_new_alerts_and_keeps_delivering(
    sink: Sink, private_redis: RedisServer, client: aioredis.Redis
) -> None:
    running = await start_engine(
        make_settings(redis_url=private_redis.url, flash_concurrency=4, claim_idle_s=CLAIM_IDLE_S)
    )
    try:
        token = await _desk(running, sink)
        status, answer = await running.post(
            "/api/v1/evacuation-orders", token, {**ORDER, "identifier": "before"}
        )
        assert status == 202, answer
        await sink.wait_for(1)
        used = int((await client.info("memory"))["used_memory"])
        # Well under what it holds: acknowledgements (allowed at the limit) free a little, not that much.
        await client.config_set("maxmemory", str(used // 2))
        await until(
            lambda: _refuses_writes(client, "used memory"), timeout=10, what="Redis refusing writes (OOM)"
        )
        assert len(sink.received) < SUBSCRIBERS, "the fan-out ended before the memory limit"
        problem = await _while_redis_cannot_write(
            running, sink, token, answer["id"], "OOM command not allowed"
        )
        assert "memory limit" in problem["detail"]
        # The reclaimer runs on (XAUTOCLAIM works under OOM) well past the claim time: the
        # deliveries whose records wait are still held, not taken and sent again.
        reclaimer = running.engine.supervisor.tasks["reclaim:flash"]
        past = time.monotonic() + 3 * CLAIM_IDLE_S
        await until(
            lambda: reclaimer.last_beat > past, timeout=10, what="the reclaimer running past the claim time"
        )
        assert len(sink.received) == SUBSCRIBERS, "a delivery whose record waited was sent again"
        await client.config_set("maxmemory", "0")
        await _after_redis_writes_again(running, sink, token, answer["id"])
    finally:
        await stop_engine(running, wipe_keys=False)
