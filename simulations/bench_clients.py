"""The ceilings and the Python peer, each run in a process of its own like alertd is.

``python -m simulations.bench_clients`` reads one JSON job on stdin and
prints one JSON result on stdout. Jobs:

  raw_http    the same bytes alertd sent, POSTed to the same sink at the
              same concurrency (alertd's flash lane budget and connector
              limit): the most a Python asyncio sender can do here. Its
              ``client`` field picks the HTTP client (``aiohttp``, the
              default, or one of ``simulations.http_senders.SENDERS``);
              every run reports the process's CPU seconds (all threads) and
              the event loop thread's alone (what competes with alertd's own
              Python work; a Rust client's I/O runs on threads of its own).
  raw_storm   the same, sustained for a number of seconds at the routine
              lane's concurrency: the routine deliveries/s ceiling (``client``
              as for raw_http).
  raw_mqtt    the same MQTT publishes the feed makes, made as the feed makes
              them: QoS 1 with the same MQTT 5 properties, every alert message
              in flight at once (each PUBACK awaited), then every retained
              state, also all in flight. (Until issue 12 it published CAP then
              state per town, one at a time, waiting for each PUBACK: alertd's
              feed never did that; it kept them all in flight, so that ceiling
              was a floor.)
  raw_flash   raw_http and raw_mqtt's alert messages at once, in one process, as
              alertd does a flash alert: the POSTs start, then every feed message
              is published while they go on, then the retained states once the
              POSTs are done. The like-for-like ceiling of the flash run, where
              the feed shares the machine with 2,000 webhooks (raw_mqtt alone has
              the broker and the subscriber to itself).
  apprise     the same fan-out done with Apprise's json:// notifier.

Every job starts with one unmeasured warm-up round, because alertd's
connection pool is warm when it is measured too. Each round records its
start time (``time.time()``); the sink stamps the receipts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import aiomqtt


async def _post_all(
    session: aiohttp.ClientSession, urls: list[str], body: bytes, headers: dict[str, str], concurrency: int,
    deadline: float,
) -> int:  # fmt: skip
    """POST to every url with at most ``concurrency`` in flight; returns the failures."""
    slots = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(url: str) -> None:
        nonlocal failures
        async with slots:
            try:
                timeout = aiohttp.ClientTimeout(total=max(0.1, deadline - time.monotonic()))
                async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                    await resp.read()
                    if resp.status >= 300:
                        failures += 1
            except (aiohttp.ClientError, TimeoutError, OSError):
                failures += 1

    await asyncio.gather(*(one(u) for u in urls))
    return failures


def cpu_seconds() -> float:
    """User + system CPU of this whole process, every thread included (a Rust client's runtime too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _send_all(send: Callable[[str], Awaitable[int]], urls: list[str], concurrency: int) -> int:
    """The same bounded fan-out through any sender; returns the failures."""
    slots = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(url: str) -> None:
        nonlocal failures
        async with slots:
            try:
                if await send(url) >= 300:
                    failures += 1
            except Exception:  # every client has its own errors; each one is a failed delivery
                failures += 1

    await asyncio.gather(*(one(u) for u in urls))
    return failures


async def raw_http(job: dict[str, Any]) -> dict[str, Any]:
    body = base64.b64decode(job["body"])
    headers = dict(job["headers"])
    n, runs, base = int(job["n"]), int(job["runs"]), job["base"]
    client = job.get("client", "aiohttp")
    prefix = job.get("prefix", "raw")
    concurrency, timeout_s = int(job["concurrency"]), float(job["timeout_s"])
    out = []
    sender = None
    session = None
    if client == "aiohttp":
        connector = aiohttp.TCPConnector(limit=int(job["connections"]), limit_per_host=0)
        session = aiohttp.ClientSession(connector=connector)
    else:
        from simulations.http_senders import SENDERS

        sender = SENDERS[client](body, headers, int(job["connections"]), timeout_s)
        await sender.start()
    try:
        for run in range(-1, runs):  # -1: warm-up, not reported
            urls = [f"{base}/{prefix}/{run}/{i}" for i in range(n)]
            cpu0, loop0, t0 = cpu_seconds(), time.thread_time(), time.time()
            if session is not None:
                failures = await _post_all(
                    session, urls, body, headers, concurrency, time.monotonic() + timeout_s
                )
            else:
                assert sender is not None
                failures = await _send_all(sender.post, urls, concurrency)
            t1, cpu1, loop1 = time.time(), cpu_seconds(), time.thread_time()
            if run >= 0:
                out.append({"key": f"{prefix}/{run}", "t0": t0, "t_done": t1, "failures": failures,
                            "cpu_s": cpu1 - cpu0, "loop_cpu_s": loop1 - loop0})  # fmt: skip
            await asyncio.sleep(float(job.get("pause_s", 0.5)))
    finally:
        if session is not None:
            await session.close()
        if sender is not None:
            await sender.close()
    return {"runs": out, "client": client}


async def raw_storm(job: dict[str, Any]) -> dict[str, Any]:
    """Deliveries/s at the routine concurrency, for ``seconds``, to many distinct paths."""
    body = base64.b64decode(job["body"])
    headers = dict(job["headers"])
    seconds, concurrency, base = float(job["seconds"]), int(job["concurrency"]), job["base"]
    client = job.get("client", "aiohttp")
    sent = failures = 0
    session: aiohttp.ClientSession | None = None
    if client == "aiohttp":
        connector = aiohttp.TCPConnector(limit=int(job["connections"]), limit_per_host=0)
        session = aiohttp.ClientSession(connector=connector)
        timeout = aiohttp.ClientTimeout(total=5)

        async def send(url: str) -> int:
            assert session is not None
            async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                await resp.read()
                return resp.status
    else:
        from simulations.http_senders import SENDERS

        sender = SENDERS[client](body, headers, int(job["connections"]), 5.0)
        await sender.start()
        send = sender.post
    try:
        # Warm the pool first, like the engine's is after the flash runs.
        await _send_all(send, [f"{base}/warm/{i}" for i in range(concurrency)], concurrency)
        t0 = time.time()
        stop_at = time.monotonic() + seconds

        async def lane(k: int) -> None:
            nonlocal sent, failures
            i = 0
            while time.monotonic() < stop_at:
                try:
                    await send(f"{base}/rawstorm/{k}/{i}")
                    sent += 1
                except Exception:  # every client has its own errors; each one is a failed delivery
                    failures += 1
                i += 1

        await asyncio.gather(*(lane(k) for k in range(concurrency)))
        t1 = time.time()
    finally:
        if session is not None:
            await session.close()
        else:
            await sender.close()
    return {"t0": t0, "t1": t1, "sent": sent, "failures": failures, "per_s": sent / max(1e-9, t1 - t0),
            "client": client}  # fmt: skip


async def raw_mqtt(job: dict[str, Any]) -> dict[str, Any]:
    """The feed's publishes: every CAP body in flight at once, then every state, all QoS 1."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    body = base64.b64decode(job["body"])
    state = base64.b64decode(job["state"])
    topics: list[str] = job["topics"]
    runs = int(job["runs"])
    # What alertd's feed sets on each alert message: its expiry and content type.
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 600
    props.ContentType = "application/cap+xml"
    out = []
    async with aiomqtt.Client(job["host"], int(job["port"]), identifier=f"bench-raw-{time.time_ns()}",
                              protocol=aiomqtt.ProtocolVersion.V5, max_inflight_messages=1000) as client:  # fmt: skip
        client.pending_calls_threshold = 100_000  # as alertd's: no warning per publish past 10 in flight
        for run in range(-1, runs):
            prefix = f"{job['prefix']}/raw{run}"
            t0 = time.time()
            await asyncio.gather(
                *(client.publish(f"{prefix}/{t}", body, qos=1, properties=props) for t in topics)
            )
            t1 = time.time()
            await asyncio.gather(
                *(client.publish(f"{prefix}/{t}/state", state, qos=1, retain=True) for t in topics)
            )
            if run >= 0:
                out.append({"key": prefix, "t0": t0, "t_done": t1, "t_states": time.time()})
            await asyncio.sleep(0.3)
        for run in range(-1, runs):  # the retained states go again
            await asyncio.gather(
                *(
                    client.publish(f"{job['prefix']}/raw{run}/{t}/state", b"", qos=1, retain=True)
                    for t in topics
                )
            )
    return {"runs": out}


async def raw_flash(job: dict[str, Any]) -> dict[str, Any]:
    """2,000 POSTs and the feed's messages together (see the module doc)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from simulations.http_senders import SENDERS

    body, cap = base64.b64decode(job["body"]), base64.b64decode(job["cap"])
    state = base64.b64decode(job["state"])
    headers, topics = dict(job["headers"]), list(job["topics"])
    n, runs, base = int(job["n"]), int(job["runs"]), job["base"]
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 600
    props.ContentType = "application/cap+xml"
    sender = SENDERS[job["client"]](body, headers, int(job["connections"]), float(job["timeout_s"]))
    await sender.start()
    out = []
    try:
        async with aiomqtt.Client(job["host"], int(job["port"]), identifier=f"bench-rawflash-{time.time_ns()}",
                                  protocol=aiomqtt.ProtocolVersion.V5, max_inflight_messages=1000) as client:  # fmt: skip
            client.pending_calls_threshold = 100_000
            done = -1
            try:
                for run in range(-1, runs):  # -1: warm-up, not reported
                    urls = [f"{base}/rawflash/{run}/{i}" for i in range(n)]
                    feed = f"{job['prefix']}/rawflash{run}"
                    t0 = time.time()
                    posts = asyncio.create_task(_send_all(sender.post, urls, int(job["concurrency"])))
                    try:
                        await asyncio.sleep(0)  # the first POSTs are written, as alertd's first receiver goes first
                        await asyncio.gather(
                            *(client.publish(f"{feed}/{t}", cap, qos=1, properties=props) for t in topics)
                        )
                    finally:
                        failures = await posts
                    done = run
                    await asyncio.gather(
                        *(client.publish(f"{feed}/{t}/state", state, qos=1, retain=True) for t in topics)
                    )
                    if run >= 0:
                        out.append({"key": f"rawflash/{run}", "feed_key": feed, "t0": t0, "failures": failures})
                    await asyncio.sleep(float(job.get("pause_s", 0.5)))
            finally:
                for run in range(-1, done + 1):  # the retained states go again
                    feed = f"{job['prefix']}/rawflash{run}"
                    await asyncio.gather(
                        *(client.publish(f"{feed}/{t}/state", b"", qos=1, retain=True) for t in topics)
                    )
    finally:
        await sender.close()
    return {"runs": out, "client": job["client"]}


async def apprise_fanout(job: dict[str, Any]) -> dict[str, Any]:
    """What a Python user would write: one Apprise object holding every endpoint, async_notify."""
    import apprise

    n, runs, base = int(job["n"]), int(job["runs"]), job["base"]
    host = base.split("://", 1)[1]
    out = []
    for run in range(-1, runs):
        ap = apprise.Apprise()
        ap.add([f"json://{host}/ap/{run}/{i}" for i in range(n)])
        t0 = time.time()
        try:
            ok = await asyncio.wait_for(
                ap.async_notify(body=job["message"], title=job["title"]), float(job["timeout_s"])
            )
        except TimeoutError:
            ok = False
        t1 = time.time()
        if run >= 0:
            out.append({"key": f"ap/{run}", "t0": t0, "t_done": t1, "ok": bool(ok)})
        await asyncio.sleep(0.5)
    return {"runs": out, "version": apprise.__version__}


JOBS = {
    "raw_http": raw_http, "raw_storm": raw_storm, "raw_mqtt": raw_mqtt, "raw_flash": raw_flash,
    "apprise": apprise_fanout,
}


def main() -> int:
    job = json.loads(sys.stdin.read())
    # The same event loop alertd runs on, so the ratio measures alertd, not the loop.
    from alertd import loop

    result = loop.run(JOBS[job["job"]](job))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
