"""With replicas, an alert answered 202 is already on a replica (Redis WAIT), and a replica
that stops answering delays the desk by at most the wait, never refuses the alert.

WAIT waits for the last write of the connection it is sent on; the commit's connection
has gone back to the pool when WAIT is sent, so alertd writes a fence on WAIT's own
connection first (alertd/redis_client.py wait_for_copies). These tests read the replica
directly, as a failover would find it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
import redis

from alertd.metrics import REPLICATION_SHORT
from simulations.faults import RedisServer, wait_for
from tests.conftest import MQTT_URL, RunningEngine, Sink, make_settings, start_engine, stop_engine
from tests.support import until

ORDER = {"municipality": "08211", "level": 4, "action": "issue", "districts": ["三坂町"], "reason": "洪水",
         "status": "Exercise"}  # fmt: skip


@pytest.fixture
def master_and_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    # No 5 s pause before the first full sync (a default meant for many replicas at once).
    master = RedisServer(extra=["--repl-diskless-sync-delay", "0"]).start()
    replica = RedisServer(extra=["--replicaof", "127.0.0.1", str(master.port)]).start()
    try:
        probe = redis.Redis(port=replica.port)
        wait_for(
            lambda: probe.info("replication")["master_link_status"] == "up", 15, "the replica did not sync"
        )
        probe.close()
        yield master, replica
    finally:
        replica.stop()
        master.stop()


async def test_an_accepted_alert_is_on_the_replica_when_the_desk_gets_202_and_a_dead_replica_only_delays_it(
    master_and_replica: tuple[RedisServer, RedisServer], sink: Sink
) -> None:
    master, replica = master_and_replica
    running: RunningEngine = await start_engine(
        make_settings(redis_url=master.url, mqtt_url=MQTT_URL, redis_wait_replicas=1, redis_wait_ms=1500)
    )
    on_replica = redis.Redis(port=replica.port)
    try:
        token = await running.add_issuer("joso", ["08211"])
        await running.add_subscriber(id="s0", adapter="isp", endpoint=f"{sink.url}/s/0", districts=["08211"])
        short_before = REPLICATION_SHORT._value.get()
        for i in range(5):
            status, answer = await running.post(
                "/api/v1/evacuation-orders", token, {**ORDER, "identifier": f"o{i}"}
            )
            assert status == 202, answer
            # Read at once, before any other write: the replica already holds it.
            assert on_replica.hget(running.engine.keys.alert(answer["id"]), "doc"), (
                f"order {i} not on the replica"
            )
        assert REPLICATION_SHORT._value.get() == short_before

        # The replica stops answering (a frozen machine): the desk still gets its 202,
        # after the 1.5 s wait, and the short copy is counted for operations to see.
        # (1.5 s, not less: on a loaded 2-core machine a healthy WAIT once took over 300 ms.)
        os.kill(replica.proc.pid, signal.SIGSTOP)
        try:
            status, answer = await running.post(
                "/api/v1/evacuation-orders", token, {**ORDER, "identifier": "late"}
            )
            assert status == 202, answer
            assert REPLICATION_SHORT._value.get() == short_before + 1
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
        await sink.wait_for(6)
    finally:
        on_replica.close()
        await stop_engine(running, wipe_keys=False)


def waits_sent(master: RedisServer) -> int:
    """How many WAITs the master has been sent (its command statistics)."""
    probe = redis.Redis(port=master.port)
    try:
        return int(probe.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))
    finally:
        probe.close()


async def test_with_its_replica_gone_orders_do_not_wait_for_it_and_healthz_warns_until_it_rejoins(
    master_and_replica: tuple[RedisServer, RedisServer], sink: Sink
) -> None:
    """After a failover the promoted master has no replica until the failed one rejoins; a
    README-only trial found every order then held the whole wait (500 ms) while /healthz said
    ok. Now no WAIT is sent for a replica that is not there, and /healthz says so."""
    master, replica = master_and_replica
    # One lane shard: one WAIT per order is counted below (with several, each shard's start
    # is waited for too).
    settings = make_settings(redis_url=master.url, mqtt_url=MQTT_URL, redis_wait_replicas=1, redis_wait_ms=1500,
                             lane_shards=1)  # fmt: skip
    running: RunningEngine = await start_engine(settings)
    try:
        token = await running.add_issuer("joso", ["08211"])
        await running.add_subscriber(id="s0", adapter="isp", endpoint=f"{sink.url}/s/0", districts=["08211"])
        status, body = await running.get("/healthz")
        assert status == 200 and body["redis_replicas"] == {"connected": 1, "wanted": 1} and "warnings" not in body

        replica.kill()

        async def warned() -> bool:
            status, body = await running.get("/healthz")
            return (status == 200 and body.get("redis_replicas") == {"connected": 0, "wanted": 1}
                    and any("0 replica(s) connected, 1 wanted" in w for w in body.get("warnings", [])))  # fmt: skip

        await until(warned, what="/healthz warning of the missing replica", timeout=10)
        waits, short = waits_sent(master), REPLICATION_SHORT._value.get()
        status, answer = await running.post("/api/v1/evacuation-orders", token, {**ORDER, "identifier": "alone"})
        assert status == 202, answer
        assert waits_sent(master) == waits, "a WAIT was sent for a replica that is not there"
        assert REPLICATION_SHORT._value.get() == short + 1  # still counted: it is on one server only

        replica.start()  # the failed server back, as a replica again

        async def rejoined() -> bool:
            status, body = await running.get("/healthz")
            return status == 200 and body.get("redis_replicas") == {"connected": 1, "wanted": 1} and "warnings" not in body

        await until(rejoined, what="/healthz without the warning once the replica is back", timeout=20)
        status, answer = await running.post("/api/v1/evacuation-orders", token, {**ORDER, "identifier": "again"})
        assert status == 202, answer
        assert waits_sent(master) == waits + 1
        on_replica = redis.Redis(port=replica.port)
        try:
            assert on_replica.hget(running.engine.keys.alert(answer["id"]), "doc"), "the order is not on the replica"
        finally:
            on_replica.close()
        await sink.wait_for(2)
    finally:
        await stop_engine(running, wipe_keys=False)


async def test_with_lane_shards_a_fan_out_stays_marked_until_a_replica_holds_every_shards_start(
    master_and_replica: tuple[RedisServer, RedisServer], sink: Sink
) -> None:
    """A shard's start (its first entries and the marker of its rest) is written after the
    alert's commit, in the shard's own slot. Until a replica holds it, a failover there could
    lose it with nothing left to start it again: so the alert's marker stays, and a worker
    waits again, until the replica confirms (a review found it dropped on a short WAIT)."""
    master, replica = master_and_replica
    settings = make_settings(redis_url=master.url, mqtt_url=MQTT_URL, redis_wait_replicas=1, redis_wait_ms=300,
                             lane_shards=3)  # fmt: skip
    running: RunningEngine = await start_engine(settings)
    marker = running.engine.keys.fanouts_sharding
    probe = redis.Redis(port=master.port)
    try:
        token = await running.add_issuer("joso", ["08211"])
        for i in range(6):  # receivers in more than one shard
            await running.add_subscriber(id=f"s{i}", adapter="isp", endpoint=f"{sink.url}/s/{i}", districts=["08211"])
        os.kill(replica.proc.pid, signal.SIGSTOP)  # the replica stops confirming
        try:
            status, answer = await running.post("/api/v1/evacuation-orders", token, {**ORDER, "identifier": "sh"})
            assert status == 202, answer
            await sink.wait_for(6)  # the deliveries go out all the same
            # Past a worker's take-over (1 s) and its own wait: still marked.
            await until(lambda: len(running.engine.store._queueing) == 0, what="the committer's start", timeout=10)
            assert probe.hexists(marker, answer["id"]), "the marker went with no replica holding the shards' starts"
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
        await until(lambda: not probe.hexists(marker, answer["id"]), what="the marker gone once the replica confirms",
                    timeout=20)  # fmt: skip
        assert len(sink.received) == 6, "a shard started twice"
    finally:
        probe.close()
        await stop_engine(running, wipe_keys=False)
