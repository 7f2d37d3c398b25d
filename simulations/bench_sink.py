"""The benchmark's receiving end: one aiohttp sink for every webhook, one MQTT subscriber.

Runs in its own process (``python -m simulations.bench_sink``) so that the
receivers never share an event loop with alertd or with the client that is
being measured. Every receipt is stamped with ``time.time()`` the moment the
request handler runs (headers in), which is the same wall clock the driver
used when it sent the POST that created the alert — same host, so the
difference is a real end-to-end latency.

Receipts are grouped by a key so the driver can tell runs and systems apart:
  - an alertd delivery (paths ``/f/``, ``/s/``, ``/n/``, ``/x/``, see ``ALERTD_PATHS``):
    its ``X-Alertd-Alert-Id`` header;
  - anything else: the first two path segments (``/raw/3/17`` -> ``raw/3``,
    ``/am/17`` -> ``am``);
  - MQTT: ``feed`` for alertd's topics (``<prefix>/alerts/v1/...``), the first three
    levels otherwise (``bench/<id>/raw3/...`` -> ``bench/<id>/raw3``; the national
    phase's engine publishes under ``bench/<id>/national/...``).

Any number of endpoints: a path is an endpoint (3,141 for the national phase,
10,000 for the scale-out), limited only by the listen backlog (4,096) and the
process's open files (every engine process keeps up to 512 connections).

Control (GET, under ``/_``): ``/_count?key=``, ``/_take?key=`` (returns and
forgets), ``/_sample?key=`` (one body and its headers, for the raw ceiling
to replay byte for byte), ``/_dump?prefix=`` (every key's times).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import signal
import sys
import time
from collections import defaultdict

import aiomqtt
from aiohttp import web

# Headers worth replaying: the raw ceiling sends exactly what alertd sent.
_REPLAY = ("Content-Type", "Idempotency-Key", "X-Alertd-Alert-Id", "X-Alertd-Subscriber-Id",
           "X-Alertd-Timestamp", "X-Alertd-Signature", "User-Agent")  # fmt: skip
# First path segments of alertd's own subscribers: flash (f), storm (s), national (n), scale-out (x).
ALERTD_PATHS = ("f", "s", "n", "x")


class Sink:
    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self.samples: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.errors = 0

    def record(self, key: str, at: float) -> None:
        self.times[key].append(at)

    async def on_post(self, request: web.Request) -> web.Response:
        at = time.time()
        parts = request.path.strip("/").split("/")
        # alertd's own endpoints (/f/..., /s/..., ALERTD_PATHS) are keyed by alert; the ceilings
        # replay alertd's headers byte for byte, so they are keyed by their path instead.
        key = request.headers.get("X-Alertd-Alert-Id", "") if parts[0] in ALERTD_PATHS else ""
        if not key:
            key = "/".join(parts[:2]) if len(parts) > 2 else parts[0]
        body = await request.read()
        self.record(key, at)
        if key not in self.samples:
            self.samples[key] = (body, {h: request.headers[h] for h in _REPLAY if h in request.headers})
        return web.Response(status=200)

    async def count(self, request: web.Request) -> web.Response:
        times = self.times.get(request.query["key"], [])
        return web.json_response({"n": len(times)})

    async def take(self, request: web.Request) -> web.Response:
        times = self.times.pop(request.query["key"], [])
        self.samples.pop(request.query["key"], None)
        return web.json_response({"times": times})

    async def sample(self, request: web.Request) -> web.Response:
        found = self.samples.get(request.query["key"])
        if found is None:
            return web.json_response({"error": "no sample"}, status=404)
        body, headers = found
        return web.json_response({"body": base64.b64encode(body).decode(), "headers": headers})

    async def dump(self, request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        exclude = tuple(x for x in request.query.get("exclude", "").split(",") if x)
        out = {
            k: v
            for k, v in self.times.items()
            if k.startswith(prefix) and not (exclude and k.startswith(exclude))
        }
        if request.query.get("forget"):
            for k in out:
                self.times.pop(k, None)
                self.samples.pop(k, None)
        return web.json_response(out)

    async def mqtt_loop(self, host: str, port: int, topics: list[str], ready: asyncio.Event) -> None:
        while True:
            try:
                async with aiomqtt.Client(host, port, identifier=f"bench-sink-{time.time_ns()}") as client:
                    for topic in topics:
                        await client.subscribe(topic, qos=1)
                    ready.set()
                    async for message in client.messages:
                        at = time.time()
                        topic = str(message.topic)
                        # The raw ceiling's bench/<run>/raw<n>/...; anything else is alertd's feed.
                        key = "/".join(topic.split("/")[:3]) if topic.startswith("bench/") else "feed"
                        self.record(key, at)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mqtt-host", default="127.0.0.1")
    ap.add_argument("--mqtt-port", type=int, default=1883)
    ap.add_argument("--topic", action="append", default=[], help="MQTT topic filter to record (repeatable)")
    ap.add_argument("--max-seconds", type=float, default=3600, help="stop by itself after this long")
    args = ap.parse_args(argv)

    sink = Sink()
    # A big backlog: 2,000 connections arrive at once at the start of a fan-out.
    app = web.Application()
    app.router.add_get("/_count", sink.count)
    app.router.add_get("/_take", sink.take)
    app.router.add_get("/_sample", sink.sample)
    app.router.add_get("/_dump", sink.dump)
    app.router.add_post("/{tail:.*}", sink.on_post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096).start()
    ready = asyncio.Event()
    mqtt_task = None
    if args.topic:
        mqtt_task = asyncio.create_task(sink.mqtt_loop(args.mqtt_host, args.mqtt_port, args.topic, ready))
        await asyncio.wait_for(ready.wait(), 15)
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    if mqtt_task is not None:
        mqtt_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await mqtt_task
    await runner.cleanup()
    return 0


def _run(argv: list[str] | None = None) -> int:
    from alertd import loop

    return loop.run(main(argv))


if __name__ == "__main__":
    sys.exit(_run())
