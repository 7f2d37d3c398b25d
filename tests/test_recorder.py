"""The recorder: delivery outcomes written in as few Redis transactions as the load allows,
and every caller released once its own outcome is written."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from alertd.constants import Keys
from alertd.models import Priority
from alertd.recorder import Outcome, Recorder
from tests.servers import RedisServer
from tests.support import free_port, until


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own: it pauses writes and counts transactions, which on the
    shared one would reach the tests running beside it."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


async def _calls(admin: aioredis.Redis, command: str) -> int:
    stats = await admin.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def _held_jobs(redis: aioredis.Redis, keys: Keys, stream: str, n: int) -> list[bytes]:
    """``n`` lane entries read by a worker and not yet acknowledged, as a worker holds them."""
    await redis.xgroup_create(stream, keys.group, id="0", mkstream=True)
    ids = [await redis.xadd(stream, {"job": str(i)}) for i in range(n)]
    await redis.xreadgroup(keys.group, "worker-1", {stream: ">"}, count=n)
    return ids


async def test_outcomes_arriving_while_a_write_is_under_way_go_together_in_the_next_one(
    own_redis: RedisServer,
) -> None:
    redis = aioredis.from_url(own_redis.url)
    admin = aioredis.from_url(own_redis.url)
    keys = Keys("recorder-test")
    stream = keys.lane(Priority.FLASH)
    try:
        ids = await _held_jobs(redis, keys, stream, 31)
        recorder = Recorder(redis, keys)

        def delivered(i: int) -> Outcome:
            return Outcome(stream, ids[i], "alert-1", f"sub-{i}", {"state": "delivered", "attempts": 1})

        # Redis holds every write for a while: the first outcome's transaction is under way
        # (its MULTI taken, its EXEC held) when the others come in.
        await admin.execute_command("CLIENT", "PAUSE", "600", "WRITE")
        first = asyncio.create_task(recorder.record(delivered(0)))
        await until(lambda: _calls(admin, "multi"), what="the first outcome's transaction to start")
        rest: list[asyncio.Task[None]] = []
        for group in range(3):  # three groups, each later than the recorder's 2 ms batching delay
            rest += [asyncio.create_task(recorder.record(delivered(i))) for i in range(1 + 10 * group, 11 + 10 * group)]
            await asyncio.sleep(0.01)
        assert not first.done() and not any(t.done() for t in rest), "an outcome was released before it was written"

        await asyncio.wait_for(asyncio.gather(first, *rest), 10)
        states = await redis.hgetall(keys.deliveries("alert-1"))
        assert sorted(k.decode() for k, v in states.items() if k.endswith(b"|state") and v == b"delivered") == sorted(
            f"sub-{i}|state" for i in range(31)
        )
        assert (await redis.xpending(stream, keys.group))["pending"] == 0, "every lane entry acknowledged"
        assert await redis.xlen(stream) == 0, "and deleted"
        # One transaction for the first outcome, one for all that came while it was written
        # (a transaction every 2 ms whatever was in flight made four).
        assert await _calls(admin, "exec") == 2
        await recorder.close()
    finally:
        await redis.aclose()
        await admin.aclose()


async def test_close_writes_what_came_in_while_the_last_write_was_under_way(own_redis: RedisServer) -> None:
    redis = aioredis.from_url(own_redis.url)
    admin = aioredis.from_url(own_redis.url)
    keys = Keys("recorder-test")
    stream = keys.lane(Priority.ROUTINE)
    try:
        ids = await _held_jobs(redis, keys, stream, 2)
        recorder = Recorder(redis, keys)
        await admin.execute_command("CLIENT", "PAUSE", "300", "WRITE")
        outcomes = [Outcome(stream, ids[i], "alert-2", f"sub-{i}", {"state": "failed", "error": "HTTP 410"}) for i in range(2)]
        first = asyncio.create_task(recorder.record(outcomes[0]))
        await until(lambda: _calls(admin, "multi"), what="the first outcome's transaction to start")
        second = asyncio.create_task(recorder.record(outcomes[1]))
        await asyncio.sleep(0)  # the second outcome is handed over, its write not started
        await asyncio.wait_for(recorder.close(), 10)
        assert first.done() and second.done()
        states = await redis.hgetall(keys.deliveries("alert-2"))
        assert states[b"sub-0|state"] == b"failed" and states[b"sub-1|state"] == b"failed"
    finally:
        await redis.aclose()
        await admin.aclose()


class FreezingProxy:
    """A TCP forwarder in front of Redis that can stop passing Redis's answers on the
    connections open at that moment, as a half-open link does; new connections work."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.gates: list[asyncio.Event] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> FreezingProxy:
        self.server = await asyncio.start_server(self._take, "127.0.0.1", self.port)
        return self

    async def _take(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        gate = asyncio.Event()
        gate.set()
        self.gates.append(gate)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: asyncio.Event | None) -> None:
            try:
                while data := await src.read(65536):
                    if gate is not None:
                        await gate.wait()
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, None), pipe(up_reader, writer, gate))

    def freeze_open_connections(self) -> None:
        for gate in self.gates:
            gate.clear()

    def thaw(self) -> None:
        for gate in self.gates:
            gate.set()

    async def stop(self) -> None:
        self.thaw()
        if self.server is not None:
            self.server.close()


async def test_a_transaction_whose_connection_hangs_does_not_hold_back_the_others(own_redis: RedisServer) -> None:
    proxy = await FreezingProxy(own_redis.port).start()
    redis = aioredis.from_url(f"redis://127.0.0.1:{proxy.port}/0")
    admin = aioredis.from_url(own_redis.url)  # straight to Redis, not through the proxy
    keys = Keys("recorder-test")
    stream = keys.lane(Priority.FLASH)
    try:
        ids = await _held_jobs(redis, keys, stream, 11)
        recorder = Recorder(redis, keys)
        # The recorder's next transaction goes on the one pooled connection, which now hangs:
        # Redis writes it, but its answer never comes back.
        proxy.freeze_open_connections()
        stuck = asyncio.create_task(
            recorder.record(Outcome(stream, ids[0], "alert-3", "sub-0", {"state": "delivered", "attempts": 1}))
        )
        await until(lambda: _calls(admin, "exec"), what="the first outcome's transaction to reach Redis")
        others = [
            asyncio.create_task(
                recorder.record(Outcome(stream, ids[i], "alert-3", f"sub-{i}", {"state": "delivered", "attempts": 1}))
            )
            for i in range(1, 11)
        ]
        await until(lambda: all(t.done() for t in others),
                    what="the outcomes after the hung transaction to be written on another connection")  # fmt: skip
        assert not stuck.done(), "the hung transaction's own caller waits for its answer"
        proxy.thaw()
        await asyncio.wait_for(stuck, 10)
        states = await admin.hgetall(keys.deliveries("alert-3"))
        assert sum(1 for k, v in states.items() if k.endswith(b"|state") and v == b"delivered") == 11
        await recorder.close()
    finally:
        await redis.aclose()
        await admin.aclose()
        await proxy.stop()
