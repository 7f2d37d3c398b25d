"""The live delivery board: an alert's deliveries as Server-Sent Events, until every one has ended.

The console's board must move as receivers answer, without a reload and without each open
console asking alertd over and over. One stream per open board: alertd reads the alert's
delivery rows (one Redis hash) twice a second and sends them only when they changed — an
``event: deliveries`` with the same JSON as ``GET /api/v1/alerts/{id}/deliveries`` — then
``event: end`` once every delivery is final (confirmed, failed, expired or superseded; a
``delivered`` one may still be confirmed, so it is not). A stream lasts at most
``MAX_STREAM_S`` (the browser's EventSource reconnects by itself), and every stream ends at
once when alertd shuts down, so a console left open never holds up a restart.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from alertd.models import Alert
from alertd.offload import run_report

FINAL = frozenset({"confirmed", "failed", "expired", "superseded"})
INTERVAL_S = 0.5
MAX_STREAM_S = 120.0
# Set when the app shuts down: every open stream ends.
CLOSING: web.AppKey[asyncio.Event] = web.AppKey("board_streams_closing", asyncio.Event)


def _ended(rows: list[dict[str, Any]]) -> bool:
    """Nothing more will change: every receiver's delivery is final, and the MQTT feed's own
    publish (which is never confirmed) has gone out or failed."""
    receivers = [r for r in rows if r.get("adapter") != "feed"]
    feed_done = all(r["state"] not in ("queued", "sent") for r in rows if r.get("adapter") == "feed")
    return feed_done and all(r["state"] in FINAL for r in receivers)


def _encode(alert_id: str, rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({"alert_id": alert_id, "deliveries": rows}, ensure_ascii=False).encode()


def install(app: web.Application) -> None:
    app[CLOSING] = asyncio.Event()

    async def close_streams(app: web.Application) -> None:
        app[CLOSING].set()

    app.on_shutdown.append(close_streams)


def handler(
    alert_of: Callable[[web.Request], Awaitable[Alert]],
    may_read: Callable[[web.Request, Alert], Awaitable[None]],
    rows_of: Callable[[web.Request, Alert], Awaitable[list[dict[str, Any]]]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The route's handler, given how the API finds an alert, checks the reader (the same rule as
    the deliveries route) and shapes the rows."""

    async def stream(request: web.Request) -> web.StreamResponse:
        alert = await alert_of(request)
        await may_read(request, alert)  # refusals leave as problem+json, before the stream starts
        closing = request.app[CLOSING]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})  # fmt: skip
        await response.prepare(request)
        # A reconnect after a break waits a second, not the EventSource default of three.
        await response.write(b"retry: 1000\n\n")
        last = b""
        last_rows: list[dict[str, Any]] | None = None
        deadline = time.monotonic() + MAX_STREAM_S
        while not closing.is_set() and time.monotonic() < deadline:
            rows = await rows_of(request, alert)
            if rows is not last_rows:  # the same list again: nothing changed, nothing to send
                # Encoded off the loop: a national fan-out's rows are ~7 ms of JSON, twice a
                # second for every open board, beside the deliveries they show.
                body = await run_report(_encode, alert.id, rows)
                if body != last:
                    await response.write(b"event: deliveries\ndata: " + body + b"\n\n")
                    last = body
                last_rows = rows
            if _ended(rows):
                await response.write(b"event: end\ndata: {}\n\n")
                break
            try:
                await asyncio.wait_for(closing.wait(), INTERVAL_S)
            except TimeoutError:
                pass
        return response

    return stream
