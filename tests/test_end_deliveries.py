"""Ending an alert's deliveries (POST /api/v1/alerts/{id}/deliveries/end, a drill's cleanup)
while an attempt is in flight: the attempt's failure, recorded after the end, must not
bring the delivery back to life. It did: the retry's "queued" overwrote "superseded", and
the receiver was tried again every few seconds for ever (found by tests/test_lane_shards.py)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from tests.conftest import ADMIN_TOKEN, make_settings, start_engine, stop_engine
from tests.support import free_port

ORDER = {
    "status": "Exercise", "msg_type": "Alert", "event": "大雨警報", "districts": ["08211"],
    "headline": {"ja": "大雨警報（訓練）", "en": "Heavy rain warning (exercise)"},
}  # fmt: skip


@pytest.mark.parametrize("shards", [1, 3])
async def test_an_attempt_in_flight_when_the_desk_ends_the_deliveries_is_not_tried_again(shards: int) -> None:
    arrived = asyncio.Event()
    release = asyncio.Event()
    attempts = 0

    async def gateway(request: web.Request) -> web.Response:
        nonlocal attempts
        attempts += 1
        arrived.set()
        await release.wait()  # in flight until the desk has ended the delivery
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/gw", gateway)
    server = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await server.setup()
    port = free_port()
    await web.TCPSite(server, "127.0.0.1", port).start()
    running = await start_engine(make_settings(lane_shards=shards))
    try:
        token = await running.add_issuer("joso", ["08211"])
        await running.add_subscriber(id="gw", adapter="radio", endpoint=f"http://127.0.0.1:{port}/gw",
                                     districts=["08211"])  # fmt: skip
        status, answer = await running.post("/api/v1/alerts", token, {**ORDER, "identifier": f"end-{shards}"})
        assert status == 202, answer
        await asyncio.wait_for(arrived.wait(), 20)
        status, ended = await running.post(f"/api/v1/alerts/{answer['id']}/deliveries/end", ADMIN_TOKEN,
                                           {"reason": "drill over"})  # fmt: skip
        assert status == 200, ended
        assert ended["ended"] == ["gw"]
        release.set()  # the attempt fails now, after the end
        # Settled: final, and no job left in a lane or waiting for a retry. With the bug the
        # delivery was "queued" again and its retries never stopped.
        rows = await running.wait_settled(answer["id"], timeout=30)
        assert [(r["subscriber"], r["state"]) for r in rows] == [("gw", "superseded")]
        assert rows[0]["last_error"].startswith("drill over")
        assert attempts == 1
    finally:
        release.set()
        await stop_engine(running)
        await server.cleanup()
