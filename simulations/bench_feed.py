"""The MQTT feed alone: one flash alert's feed, against raw aiomqtt on the same topics.

``python -m simulations.bench_feed [--alerts 8] [--webhooks 0] [--profile out.prof]``

Runs an engine in this process (real Redis, real Mosquitto on 127.0.0.1), posts
``--alerts`` prefecture-wide flash alerts (Exercise, 東京都: 62 towns) one after
another, and for each records, at a subscriber of its own:

  - POST → first and last alert message (``<prefix>/13/+``), as the bench measures;
  - first → last alert message: the publish window itself;
  - POST → last retained state (``<prefix>/13/+/state/exercise``), and whether any
    state arrived before the last alert message (a state in the alert's way).

Each alert stays in force, so every state is larger than the one before (the
bench's flash alerts pile up the same way: ~22 KB per town after a few runs).

Then the raw ceilings on the same topic shapes, from a client in this process:
``sequential`` (CAP then state per town, each PUBACK awaited before the next
publish: the bench's raw_mqtt before issue 12) and ``pipelined`` (every CAP
publish in flight at once, then the states: what alertd's feed does).
``--webhooks N`` adds N webhook subscribers on a local sink, so the feed shares
the loop with a fan-out as in the full bench. Figures on a shared machine are
noisy: compare medians of several alerts, not single runs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import aiomqtt
from aiohttp import web

PREF = "13"
ADMIN = "bench-feed-admin-0123456789"
SINK_PORT = 18971


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:7.1f}"


class Receiver:
    """Receipt times per topic, stamped by a subscriber in a process of its own (as the
    bench's sink is): stamped on the engine's busy loop they would measure the loop."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, filters: list[str]) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulations.bench_feed", "--receive", *filters, stdout=asyncio.subprocess.PIPE
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert b"READY" in line, line
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            at, topic = line.decode().split(" ", 1)
            self.times.setdefault(topic.strip(), []).append(float(at))

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 10)
        self._task.cancel()

    def since(self, t0: float, pred: Any) -> list[float]:
        return sorted(t for topic, ts in self.times.items() if pred(topic) for t in ts if t >= t0)

    async def wait(self, t0: float, pred: Any, n: int, timeout: float = 10.0) -> list[float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.since(t0, pred)
            if len(got) >= n:
                return got
            await asyncio.sleep(0.01)
        return self.since(t0, pred)


async def receive(filters: list[str]) -> int:
    """The subscriber process: one line per message, its receipt time and topic."""
    async with aiomqtt.Client(
        "127.0.0.1", 1883, identifier=f"bench-feed-rx-{secrets.token_hex(3)}"
    ) as client:
        for f in filters:
            await client.subscribe(f, qos=1)
        print("READY", flush=True)
        async for message in client.messages:
            at = time.time()
            if not message.retain:  # an old retained state handed over at subscribe
                sys.stdout.write(f"{at:.6f} {message.topic}\n")
                sys.stdout.flush()
    return 0


async def wait_sink(http: aiohttp.ClientSession, alert_id: str, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with http.get(f"http://127.0.0.1:{SINK_PORT}/_count", params={"key": alert_id}) as resp:
            if (await resp.json())["n"] >= n:
                break
        await asyncio.sleep(0.05)
    async with http.get(f"http://127.0.0.1:{SINK_PORT}/_take", params={"key": alert_id}) as resp:
        await resp.read()


async def run_engine(args: argparse.Namespace) -> list[dict[str, Any]]:
    from alertd.api import make_app
    from alertd.config import Settings
    from alertd.engine import Engine
    from alertd.store import remove_prefix
    from geo.registry import Registry

    reg = Registry.default()
    towns = [c.code for c in reg.children(PREF) if c.level in ("municipality", "ward")]
    root = f"bench-feed-{secrets.token_hex(3)}"
    settings = Settings(
        redis_url="redis://127.0.0.1:6379/0", mqtt_url="mqtt://127.0.0.1:1883", admin_token=ADMIN,
        key_prefix=root, topic_prefix=f"{root}/alerts/v1",
    )  # fmt: skip
    prefix = settings.topic_prefix
    rx = Receiver()
    await rx.start([f"{prefix}/{PREF}/+", f"{prefix}/{PREF}/+/state/exercise"])

    sink = None
    if args.webhooks:
        # The webhooks' receiving end in a process of its own, as in the full bench.
        sink = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulations.bench_sink", "--port", str(SINK_PORT), "--max-seconds", "600",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert sink.stdout is not None
        line = await asyncio.wait_for(sink.stdout.readline(), 30)
        assert b"READY" in line, line

    engine = Engine(settings, workers=True)
    await engine.start()
    runner = web.AppRunner(make_app(engine), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 18970).start()
    url = "http://127.0.0.1:18970"
    admin = {"Authorization": f"Bearer {ADMIN}"}
    token = secrets.token_hex(16)
    out: list[dict[str, Any]] = []
    profiler = cProfile.Profile() if args.profile else None
    try:
        async with aiohttp.ClientSession() as http:
            issuer = {"id": "bench-national", "name": "national (bench)", "token": token, "national": True}
            async with http.post(f"{url}/api/v1/issuers", json=issuer, headers=admin) as resp:
                assert resp.status == 201, await resp.text()
            for i in range(args.webhooks):
                sub = {"id": f"w{i}", "adapter": "isp", "endpoint": f"http://127.0.0.1:{SINK_PORT}/f/{i}",
                       "districts": [PREF], "drills": True, "secret": f"bench-feed-secret-{i:06d}"}  # fmt: skip
                async with http.post(f"{url}/api/v1/subscribers", json=sub, headers=admin) as resp:
                    assert resp.status == 201, await resp.text()
            for n in range(args.alerts + 1):  # the first warms the connections up, unreported
                body = {
                    "identifier": f"{root}-{n}", "status": "Exercise", "msg_type": "Alert", "kind": "missile",
                    "event": "弾道ミサイル情報", "districts": [PREF],
                    "expires": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
                    "headline": {"ja": "ミサイル発射。建物の中、又は地下に避難して下さい。(訓練)",
                                 "en": "Missile launch. Take shelter inside a building or underground. (exercise)"},
                }  # fmt: skip
                if profiler is not None and n > 0:
                    profiler.enable()
                t0 = time.time()
                async with http.post(f"{url}/api/v1/alerts", json=body,
                                     headers={"Authorization": f"Bearer {token}"}) as resp:  # fmt: skip
                    answer = await resp.json()
                    assert resp.status == 202, answer
                accepted = time.time()
                alerts = await rx.wait(t0, lambda t: t.count("/") == prefix.count("/") + 2, len(towns))
                states = await rx.wait(t0, lambda t: t.endswith("/state/exercise"), len(towns))
                if profiler is not None:
                    profiler.disable()
                if args.webhooks:  # the whole fan-out done before the next alert, as the bench does
                    await wait_sink(http, answer["id"], args.webhooks)
                if n == 0:
                    await asyncio.sleep(0.3)
                    continue
                last_alert = alerts[-1] if len(alerts) >= len(towns) else None
                out.append({
                    "post_ms": (accepted - t0) * 1000,
                    "first_ms": (alerts[0] - t0) * 1000 if alerts else None,
                    "last_ms": (last_alert - t0) * 1000 if last_alert else None,
                    "window_ms": (last_alert - alerts[0]) * 1000 if last_alert else None,
                    "states_last_ms": (states[-1] - t0) * 1000 if len(states) >= len(towns) else None,
                    "states_before_last_alert": sum(1 for s in states if last_alert and s < last_alert),
                })  # fmt: skip
                await asyncio.sleep(0.3)
    finally:
        await runner.cleanup()
        await engine.stop()
        if sink is not None:
            sink.terminate()
            await asyncio.wait_for(sink.wait(), 10)
        await rx.stop()
        await remove_prefix(settings.redis_url, settings.key_prefix)
        from alertd.broker import Broker
        from alertd.feed import clear_retained

        await clear_retained(Broker.parse(settings.mqtt_url), {root})
    if profiler is not None:
        profiler.dump_stats(args.profile)
    return out


async def run_raw(mode: str, runs: int, body: bytes, state: bytes, n_towns: int) -> tuple[list[float], list[float]]:
    """Per run (ms): the last CAP receipt after the first publish, and the receipts' window
    (first to last, as alertd's ``window`` column)."""
    from geo.registry import Registry

    towns = [c.code for c in Registry.default().children(PREF) if c.level in ("municipality", "ward")][
        :n_towns
    ]
    root = f"bench-feed-raw-{secrets.token_hex(3)}"
    rx = Receiver()
    await rx.start([f"{root}/+/{PREF}/+"])
    lasts, windows = [], []
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"{root}-tx", protocol=aiomqtt.ProtocolVersion.V5,
                              max_inflight_messages=1000) as client:  # fmt: skip
        client.pending_calls_threshold = 100_000
        for run in range(-1, runs):
            p = f"{root}/r{run}/{PREF}"
            t0 = time.time()
            if mode == "sequential":
                for t in towns:
                    await client.publish(f"{p}/{t}", body, qos=1)
                    await client.publish(f"{p}/{t}/state", state, qos=1, retain=True)
            else:
                await asyncio.gather(*(client.publish(f"{p}/{t}", body, qos=1) for t in towns))
                await asyncio.gather(
                    *(client.publish(f"{p}/{t}/state", state, qos=1, retain=True) for t in towns)
                )
            got = await rx.wait(t0, lambda topic, p=p: topic.startswith(p + "/"), len(towns))
            if run >= 0 and len(got) >= len(towns):
                lasts.append((got[-1] - t0) * 1000)
                windows.append((got[-1] - got[0]) * 1000)
            await asyncio.sleep(0.2)
        for run in range(-1, runs):  # the retained states go again
            for t in towns:
                await client.publish(f"{root}/r{run}/{PREF}/{t}/state", b"", qos=0, retain=True)
    await rx.stop()
    return lasts, windows


def summary(rows: list[dict[str, Any]], key: str) -> float | None:
    xs = [r[key] for r in rows if r[key] is not None]
    return statistics.median(xs) if xs else None


async def amain(args: argparse.Namespace) -> int:
    from alertd.cap import to_cap  # noqa: F401  (warm import outside the measurement)

    rows = await run_engine(args)
    print(f"alertd feed, {args.alerts} alerts × 62 towns, {args.webhooks} webhooks (ms after POST):")
    print("  post→202  first  last  window(first→last)  states-last  states-before-last-alert")
    for r in rows:
        print(f"  {_ms(r['post_ms'])} {_ms(r['first_ms'])} {_ms(r['last_ms'])} {_ms(r['window_ms'])}"
              f"          {_ms(r['states_last_ms'])}   {r['states_before_last_alert']}")  # fmt: skip
    last, window = summary(rows, "last_ms"), summary(rows, "window_ms")
    print(f"  median: last {_ms(last)} ms → {62 / (last / 1000):.0f}/s; window {_ms(window)} ms; "
          f"states last {_ms(summary(rows, 'states_last_ms'))} ms")  # fmt: skip
    body = ("<alert>" + "x" * 2400 + "</alert>").encode()
    state = json.dumps({"municipality": "13101", "alerts": ["x" * 200] * 20}).encode()
    for mode in ("sequential", "pipelined"):
        lasts, windows = await run_raw(mode, args.alerts, body, state, 62)
        med = statistics.median(lasts) if lasts else None
        rate = f"{62 / (med / 1000):.0f}/s" if med else "-"
        window = statistics.median(windows) if windows else None
        print(f"raw aiomqtt {mode:10}: last of 62 p50 {_ms(med)} ms ({rate}); window p50 {_ms(window)} ms; "
              f"runs {[round(x, 1) for x in lasts]}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m simulations.bench_feed", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--alerts", type=int, default=8, help="flash alerts measured (default 8)")
    ap.add_argument(
        "--webhooks", type=int, default=0, help="webhook subscribers sharing the loop (default 0)"
    )
    ap.add_argument("--profile", default=None, help="write a cProfile of the measured alerts to this file")
    ap.add_argument("--receive", nargs="+", help=argparse.SUPPRESS)  # the subscriber process
    args = ap.parse_args(argv)
    if args.receive:
        return asyncio.run(receive(args.receive))
    args.alerts = max(1, min(args.alerts, 50))
    args.webhooks = max(0, min(args.webhooks, 5000))
    from alertd import loop

    return loop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
