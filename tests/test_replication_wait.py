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
