"""The soak: ``make soak`` (``python -m simulations.soak``), 30 minutes by default.

A routine storm of evacuation orders (``--rate`` a second, towns in turn) to webhooks of
which a fifth are bad (refusing, hanging, late, flapping, cutting answers short), with
faults on a schedule: Redis killed -9 and restarted from its AOF every ``--redis-every``
seconds, a random ``alertd worker`` killed -9 and restarted every ``--worker-every``.
Every ``--sample-every`` seconds it samples the engine's memory (RSS of ``alertd serve``,
which is never killed) and Redis's (``used_memory``). At the end it waits for the healthy
receivers' deliveries of every accepted order to end and counts any that did not.

It reports: orders accepted and refused (503s while Redis was away are expected), healthy
deliveries lost, the RSS growth from minute 5 to the end, and Redis memory per minute.
Not part of the tests: it takes half an hour of a shared machine. Results go to
``bench/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from alertd.report import table
from simulations.chaos_harness import ROOT, Alertd, towns, until, webhooks
from simulations.chaos_sink import Sink
from simulations.faults import RedisServer

OUT = ROOT / "bench" / "soak.json"
BAD = ("hang", "late", "flip", "cut", "refused")


@dataclass
class Options:
    minutes: float
    rate: float
    subscribers: int
    workers: int
    redis_every: float
    worker_every: float
    sample_every: float
    mqtt_url: str
    out: Path
    # Seconds an ended alert is kept (ALERTD_RETENTION_DAYS scaled down), so a short soak shows
    # Redis levelling off; None: alertd's default (30 days, nothing deleted within a soak).
    retention_s: float | None = None
    expires_s: float = 600.0  # each order's expiry: how long it stands unless the next ends it


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


async def soak(o: Options, workdir: Path) -> dict[str, Any]:
    redis = RedisServer().start()
    sink = await Sink().start()
    refusing = await Sink().start()
    await refusing.stop()  # its port refuses every connection
    n_bad = o.subscribers // 5 // len(BAD)
    n_good = o.subscribers - n_bad * len(BAD)
    subs = webhooks(sink, n_good) + [s for kind in BAD for s in webhooks(refusing if kind == "refused" else sink,
                                                                       n_bad, kind)]  # fmt: skip
    retention = {} if o.retention_s is None else {
        "ALERTD_RETENTION_DAYS": repr(o.retention_s / 86_400),
        "ALERTD_RETENTION_SWEEP_S": repr(max(1.0, min(30.0, o.retention_s / 4))),
    }  # fmt: skip
    alertd = Alertd(redis.url, o.mqtt_url, workdir, ALERTD_RETRY_MAX_S="10", **retention)
    control = aioredis.Redis.from_url(redis.url)
    rng = random.Random(7)
    accepted: dict[str, float] = {}
    refused: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    faults: list[dict[str, Any]] = []
    stop = asyncio.Event()
    try:
        alertd.seed(subs)
        names = [f"worker{i}" for i in range(o.workers)]
        for name in names:
            alertd.worker(name)
        await alertd.serve()
        serve_pid = alertd.procs["serve"].pid
        t0 = time.monotonic()
        end = t0 + o.minutes * 60

        async def storm() -> None:
            i = 0
            while not stop.is_set():
                due = t0 + i / o.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                town = towns()[i % len(towns())]
                status, answer, _ = await alertd.order(town, f"soak-{i}", level=3 + i % 2, expires_in_s=o.expires_s)
                if status == 202:
                    accepted[answer["id"]] = time.monotonic() - t0
                else:
                    refused[str(status)] = refused.get(str(status), 0) + 1
                i += 1

        async def redis_faults() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), o.redis_every)
                    return
                at = time.monotonic() - t0
                await asyncio.to_thread(redis.kill)
                await asyncio.sleep(3)
                await asyncio.to_thread(redis.start)
                faults.append({"at_s": round(at), "fault": "redis kill -9, 3 s"})

        async def worker_faults() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), o.worker_every)
                    return
                victim = rng.choice(names)
                alertd.kill(victim)
                alertd.worker(victim)
                faults.append({"at_s": round(time.monotonic() - t0), "fault": f"{victim} kill -9"})

        async def sampler() -> None:
            while not stop.is_set():
                used = None
                with contextlib.suppress(Exception):
                    used = int((await control.info("memory"))["used_memory"])
                row = {"minute": round((time.monotonic() - t0) / 60, 2), "serve_rss_kib": rss_kib(serve_pid),
                       "redis_used_bytes": used, "accepted": len(accepted), "arrivals": len(sink.arrivals)}  # fmt: skip
                samples.append(row)
                print(f"soak {row['minute']:5.1f}/{o.minutes:g} min: {row['accepted']} orders accepted, "
                      f"{row['arrivals']} arrivals, serve RSS {row['serve_rss_kib']} KiB, "
                      f"redis {used} B, refused {refused}", flush=True)  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), o.sample_every)

        tasks = [asyncio.create_task(f()) for f in (storm, redis_faults, worker_faults, sampler)]
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await alertd.wait_healthy(timeout=60)

        # Every healthy receiver's delivery of every accepted order ends (delivered, or
        # superseded by the town's next order); anything else is lost. An alert the retention
        # policy deleted had every delivery final (it deletes no other), and reads as none here.
        healthy_states: dict[str, int] = {}
        stuck: list[tuple[str, str, str]] = []

        async def settled() -> bool:
            healthy_states.clear()
            stuck.clear()
            for alert_id in accepted:
                for r in await alertd.deliveries(alert_id):
                    if not r["subscriber"].startswith("ok"):
                        continue
                    healthy_states[r["state"]] = healthy_states.get(r["state"], 0) + 1
                    if r["state"] not in ("delivered", "confirmed", "superseded"):
                        stuck.append((alert_id, r["subscriber"], r["state"]))
            return not stuck

        with contextlib.suppress(TimeoutError):
            await until(settled, 300, "every healthy delivery to end", interval=5)
        await settled()
        rss = [(s["minute"], s["serve_rss_kib"]) for s in samples if s["serve_rss_kib"]]
        at5 = next((v for m, v in rss if m >= 5), rss[0][1] if rss else None)
        last = rss[-1][1] if rss else None
        mem = [(s["minute"], s["redis_used_bytes"]) for s in samples if s["redis_used_bytes"]]
        return {
            "minutes": o.minutes, "rate_per_s": o.rate, "subscribers": o.subscribers, "bad": n_bad * len(BAD),
            "workers": o.workers, "retention_s": o.retention_s, "faults": faults, "accepted": len(accepted), "refused": refused,
            "healthy_states": healthy_states, "healthy_lost": len(stuck), "stuck_examples": stuck[:10],
            "serve_rss_kib_minute5": at5, "serve_rss_kib_end": last,
            "rss_growth_5_to_end": round(last / at5 - 1, 3) if at5 and last else None,
            "redis_used_bytes_start": mem[0][1] if mem else None, "redis_used_bytes_end": mem[-1][1] if mem else None,
            "redis_bytes_per_minute": round((mem[-1][1] - mem[0][1]) / max(0.01, mem[-1][0] - mem[0][0]))
            if len(mem) > 1 else None,
            "duplicated_beyond_key": sink.duplicated_beyond_key(), "repeats": sink.repeats(),
            "samples": samples,
        }  # fmt: skip
    finally:
        await control.aclose()
        await alertd.stop()
        await sink.stop()
        redis.stop()


async def amain(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=2.0, help="orders a second (default 2)")
    ap.add_argument("--subscribers", type=int, default=100, help="webhooks; a fifth of them bad")
    ap.add_argument("--workers", type=int, default=2, help="alertd worker processes beside serve")
    ap.add_argument("--redis-every", type=float, default=300.0, help="seconds between Redis kills")
    ap.add_argument("--worker-every", type=float, default=60.0, help="seconds between worker kills")
    ap.add_argument("--sample-every", type=float, default=30.0)
    ap.add_argument("--mqtt-url", default=os.environ.get("ALERTD_BENCH_MQTT_URL", "mqtt://127.0.0.1:1883"))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--retention-s", type=float, default=None,
                    help="keep ended alerts this many seconds (default: alertd's 30 days)")  # fmt: skip
    ap.add_argument("--expires-s", type=float, default=600.0, help="each order's expiry (default 600 s)")
    a = ap.parse_args(argv)
    o = Options(
        minutes=max(0.2, min(a.minutes, 240.0)), rate=max(0.1, min(a.rate, 100.0)), subscribers=max(10, a.subscribers),
        workers=max(1, a.workers), redis_every=a.redis_every, worker_every=a.worker_every,
        sample_every=a.sample_every, mqtt_url=a.mqtt_url, out=a.out, retention_s=a.retention_s,
        expires_s=max(60.0, a.expires_s),
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="alertd-soak-") as tmp:
        res = await soak(o, Path(tmp))
    o.out.parent.mkdir(parents=True, exist_ok=True)
    o.out.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    rows = [[k, res[k]] for k in ("minutes", "accepted", "refused", "healthy_lost", "healthy_states",
                                  "duplicated_beyond_key", "repeats", "serve_rss_kib_minute5", "serve_rss_kib_end",
                                  "rss_growth_5_to_end", "redis_used_bytes_start", "redis_used_bytes_end",
                                  "redis_bytes_per_minute")]  # fmt: skip
    rows.append(["faults", len(res["faults"])])
    print(table(["measure", "value"], rows))
    print(f"written: {o.out}")
    growth = res["rss_growth_5_to_end"]
    return 0 if res["healthy_lost"] == 0 and res["duplicated_beyond_key"] == 0 and (growth or 0) < 0.10 else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
