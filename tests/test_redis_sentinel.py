"""alertd's Sentinel client (alertd/redis_client.py) against a real master, replica and three
sentinels: a sentinel that does not answer holds nobody up, before or after a failover.

The chaos suite (tests/test_chaos.py, sentinel-failover) shows the whole engine through a
failover; this file holds what the cluster's client showed could hide in the Sentinel one
(a dead node retried with backoff while every connection of the pool waited)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest

from alertd.redis_client import connect
from simulations.faults import SentinelGroup, wait_for
from tests.servers import Hangup, written_after_failover
from tests.support import until


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelGroup]:
    group = SentinelGroup().start()
    try:
        group.wait_ready()
        yield group
    finally:
        group.stop()


async def test_a_sentinel_that_does_not_answer_is_asked_once_not_retried_and_alertd_still_follows_a_failover(
    sentinels: SentinelGroup, hangup: Hangup
) -> None:
    key = f"sentinel-test-{secrets.token_hex(4)}:k"
    # A sentinel that is down named first, as an operator's URL may well have one.
    live = ",".join(f"127.0.0.1:{s.port}" for s in sentinels.sentinels)
    url = f"redis+sentinel://127.0.0.1:{hangup.port},{live}/{sentinels.service}/0"
    client = connect(url, socket_timeout=2.5, socket_connect_timeout=5)
    try:
        await client.set(key, "before")
        assert hangup.connections == 1, "the dead sentinel was retried before the live ones were asked"

        old = sentinels.master_port()
        await asyncio.to_thread(sentinels.master.kill)
        await asyncio.to_thread(wait_for, lambda: sentinels.master_port() not in (None, old), 30,
                                "the sentinels did not promote the replica")  # fmt: skip

        await until(lambda: written_after_failover(client, key, "after"), what="a write to the promoted replica",
                    timeout=30)  # fmt: skip
        assert await client.get(key) == b"after"
        # (During the failover, while the live sentinels still name the dead master as down,
        # each new connection asks every sentinel once, the dead one included: that is one
        # connect per question, not eleven, and it is not counted here.)
    finally:
        await client.delete(key)
        await client.aclose()
