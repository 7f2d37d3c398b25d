"""alertd's Redis Cluster client (alertd/redis_client.py) against a real 3 + 3 cluster:
it finds the master of alertd's slot from whichever named node answers, and a node that
does not answer holds nobody up.

The chaos suite (tests/test_chaos.py, cluster-failover) shows the whole engine through a
failover; this file holds what that found in the client itself."""

from __future__ import annotations

import asyncio
import secrets

from alertd.redis_client import connect
from simulations.faults import ClusterGroup
from tests.servers import Hangup, written_after_failover
from tests.support import until


async def test_a_node_that_does_not_answer_is_asked_once_and_then_last_while_alertd_follows_a_failover(
    cluster: ClusterGroup, hangup: Hangup
) -> None:
    prefix = f"cluster-test-{secrets.token_hex(4)}"
    key = "{" + prefix + "}:k"
    slot = cluster.slot_of(prefix)
    served = cluster.serving(slot)
    assert served is not None
    # A node that is down named first, as an operator's URL may well have one; then the
    # master of alertd's slot, which is killed below.
    url = f"redis+cluster://127.0.0.1:{hangup.port},127.0.0.1:{served[0]}"
    client = connect(url, key_prefix=prefix, socket_timeout=2.5, socket_connect_timeout=5)
    try:
        await client.set(key, "before")
        # Asked once, not retried ten times with backoff while every command waited for it
        # (a failover stalled alertd for seconds that way, the whole pool behind one question).
        assert hangup.connections == 1

        _, replica = await asyncio.to_thread(cluster.kill_master_of, slot)
        await asyncio.to_thread(cluster.wait_promoted, slot, replica)

        await until(lambda: written_after_failover(client, key, "after"), what="a write to the promoted replica",
                    timeout=30)  # fmt: skip
        assert await client.get(key) == b"after"
        # The cluster was asked again during the failover, first of all the killed master,
        # which had answered before; then the nodes it had named, before the silent one,
        # which was not asked again.
        assert hangup.connections == 1
    finally:
        await client.aclose()
