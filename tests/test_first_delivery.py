"""The first delivery of a flash fan-out (issue 12): the alert's transaction holds only its
first lane entries and a marker of the rest, which are queued right after it — by the
committing process, or, when that process died, by any worker that finds the marker idle.
Whichever way, every receiver gets the alert once. And the first receiver of a batch is
served before the MQTT feed job that precedes it in the lane."""

from __future__ import annotations

import asyncio
import copy
import secrets
from collections import Counter
from typing import Any

import aiomqtt
from aiohttp import web

from alertd.redis_client import connect
from alertd.store import FIRST_ENTRIES, PART_ENTRIES
from tests.conftest import REDIS_URL, RunningEngine, Sink, make_settings, start_engine, stop_engine, wipe
from tests.fanouts import MISSILE, add_receivers, assert_once_each, fanout_settings
from tests.support import free_port, until

# The feed's entry, FIRST_ENTRIES - 1 receivers with the alert, then two whole parts and a short one.
N = FIRST_ENTRIES - 1 + 2 * PART_ENTRIES + 37


def _queueing(running: RunningEngine) -> str:
    return running.engine.keys.fanouts_queueing


async def test_a_fan_out_larger_than_the_first_entries_arrives_whole_and_once(sink: Sink) -> None:
    running = await start_engine(fanout_settings())
    r = connect(REDIS_URL, key_prefix=running.engine.settings.key_prefix)
    try:
        cabinet = await running.add_issuer("cabinet", [], national=True)
        await add_receivers(running, sink.url, N)
        status, answer = await running.post("/api/v1/alerts", cabinet, {**MISSILE, "identifier": "big-1"})
        assert status == 202, answer
        assert answer["deliveries"] == N
        await sink.wait_for(N, timeout=60)
        await running.wait_settled(answer["id"], timeout=60)
        assert_once_each(sink, N)
        assert not await r.hexists(_queueing(running), answer["id"]), "the fan-out still reads as being queued"
    finally:
        await r.aclose()
        await stop_engine(running)


async def test_a_worker_takes_over_the_rest_when_the_committing_process_died(sink: Sink) -> None:
    # The committing process: API only, and it queues nothing after its transaction, as if
    # it had been killed the moment the alert was committed. One lane shard: its first
    # entries are in the alert's transaction (with several, tests/test_lane_shards.py).
    settings = fanout_settings(lane_shards=1)
    api = await start_engine(settings, workers=False)
    api.engine.store.queue_rest = False
    r = connect(REDIS_URL, key_prefix=settings.key_prefix)
    workers: list[RunningEngine] = []
    try:
        cabinet = await api.add_issuer("cabinet", [], national=True)
        await add_receivers(api, sink.url, N)
        status, answer = await api.post("/api/v1/alerts", cabinet, {**MISSILE, "identifier": "big-2"})
        assert status == 202, answer
        lane = api.engine.keys.lane("flash")
        assert await r.xlen(lane) == FIRST_ENTRIES, "the alert's transaction held more than its first entries"
        marker = await r.hget(_queueing(api), answer["id"])
        assert marker is not None and marker.split()[:2] == [str(FIRST_ENTRIES).encode(), str(N + 1).encode()]
        await stop_engine(api, wipe_keys=False)
        # Two delivery processes find it: both may try to take it over, one queues each part.
        for name in ("w1", "w2"):
            s = copy.copy(settings)
            s.consumer_name = name
            workers.append(await start_engine(s))
        await sink.wait_for(N, timeout=60)
        await workers[0].wait_settled(answer["id"], timeout=60)
        assert_once_each(sink, N)
        assert not await r.hexists(_queueing(api), answer["id"])
        rows = await workers[0].deliveries(answer["id"])
        assert Counter(row["state"] for row in rows if row["adapter"] != "feed") == {"delivered": N}
    finally:
        await r.aclose()
        for w in workers:
            await stop_engine(w, wipe_keys=False)
        await wipe(settings.key_prefix)


async def test_the_first_receiver_is_served_before_the_feed(mqtt: aiomqtt.Client) -> None:
    # One delivery at a time, so the lane's order is the order things go out: the feed's
    # entry is the first of the fan-out, the receivers follow.
    running = await start_engine(make_settings(flash_concurrency=1))
    feed_seen: list[str] = []
    requests: list[tuple[str, int]] = []  # (path, feed messages received by then)

    async def receiver(request: web.Request) -> web.Response:
        await request.read()
        requests.append((request.path, len(feed_seen)))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver)
    server = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await server.setup()
    port = free_port()
    await web.TCPSite(server, "127.0.0.1", port).start()

    async def listen() -> None:
        async for message in mqtt.messages:
            feed_seen.append(str(message.topic))

    listener: asyncio.Task[Any] | None = None
    try:
        await mqtt.subscribe(f"{running.topics.prefix}/13/+", qos=1)
        listener = asyncio.create_task(listen())
        cabinet = await running.add_issuer("cabinet", [], national=True)
        for i in range(3):
            await running.add_subscriber(id=f"r{i}", adapter="isp", endpoint=f"http://127.0.0.1:{port}/r/{i}",
                                         districts=["13"])  # fmt: skip
        status, answer = await running.post(
            "/api/v1/alerts", cabinet, {**MISSILE, "identifier": f"first-{secrets.token_hex(3)}"}
        )
        assert status == 202, answer
        await until(lambda: len(requests) == 3 and feed_seen, what="the three receivers and the feed", timeout=20)
        assert requests[0][1] == 0, f"the feed went out before the first receiver: {requests}"
    finally:
        if listener is not None:
            listener.cancel()
        await server.cleanup()
        await stop_engine(running)


async def test_a_batch_waiting_for_free_slots_is_not_taken_over_by_another_worker(sink: Sink) -> None:
    # Process A has two delivery slots and receivers that take 0.4 s each: the batch it read
    # waits ~6 s for free slots, twice the suite's claim idle time (3 s). Those entries are
    # A's, merely waiting their turn, not a dead consumer's: process B, idle beside it, must
    # not take them over and deliver them a second time.
    settings = make_settings(flash_concurrency=2)
    a = await start_engine(settings)
    b: RunningEngine | None = None
    n = 30
    try:
        cabinet = await a.add_issuer("cabinet", [], national=True)
        await add_receivers(a, sink.url, n)
        for i in range(n):
            sink.delay[f"/r/{i}"] = 0.4
        status, answer = await a.post("/api/v1/alerts", cabinet, {**MISSILE, "identifier": "slow-slots"})
        assert status == 202, answer
        await sink.wait_for(1, timeout=10)  # A has read the batch: its first receiver is being served
        s = copy.copy(settings)
        s.consumer_name = "b"
        b = await start_engine(s)
        await sink.wait_for(n, timeout=60)
        rows = await a.wait_settled(answer["id"], timeout=60)
        assert_once_each(sink, n)
        assert {r["attempts"] for r in rows if r["adapter"] != "feed"} == {1}
    finally:
        if b is not None:
            await stop_engine(b, wipe_keys=False)
        await stop_engine(a)
