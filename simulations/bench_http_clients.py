"""Which HTTP client should carry alertd's deliveries: ``python -m simulations.bench_http_clients``.

The same 2,000-webhook fan-out (``bench_clients``' ``raw_http`` job) through
each candidate client, each in a process of its own, one after the other,
against one bench sink (``simulations.bench_sink``, a separate process: every
endpoint is a distinct path on its one port, as in ``make bench``). Per client:
one unmeasured warm-up round, then ``--runs`` measured ones. Reported:

  last p50/p99   ms from the round's start to the sink's last receipt
  per_s          deliveries/s of the median round (n / last)
  cpu/1k         CPU seconds of the client process (user + system, every thread
                 — a Rust client's runtime threads too) per 1,000 deliveries
  loop cpu/1k    the same for the event loop's thread alone: the part that
                 competes with alertd's own Python work for the GIL

The body is a synthetic alert of the size alertd sends, with alertd's headers
(idempotency key, ids, HMAC signature). The machine has 2 cores shared with
other work: the numbers are noisy, so run it more than once before believing a
difference of less than ~15%.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from alertd.report import percentile, table
from simulations.bench import OUT_DIR, ROOT, free_port

CLIENTS = ("aiohttp", "alertd", "alertd_httptools", "alertd_pyreqwest", "aiohttp_tuned", "pyreqwest", "pyreqwest_full", "aiosonic", "curl_cffi", "pycurl",
           "httptools", "niquests", "httpx")  # fmt: skip
SLOW = ("niquests", "httpx")  # one run each is enough to see they are not in the race


def sample_payload() -> tuple[bytes, dict[str, str]]:
    """An alert body of alertd's size and shape, and the headers alertd sends with it."""
    headline = "ミサイル発射。ミサイル発射。建物の中、又は地下に避難して下さい。(訓練)"
    body = {
        "id": "01JBENCH0000000000000000", "identifier": "bench-http-clients", "sender": "jp.go.fdma",
        "sent": "2026-12-01T06:00:00+09:00", "status": "Exercise", "msg_type": "Alert", "references": [],
        "kind": "missile", "event": "弾道ミサイル情報", "level": None, "action": None, "reason": None,
        "priority": "flash", "municipality": None, "on_behalf_of": None, "districts": ["13"],
        "expires": "2026-12-01T06:10:00+09:00",
        "text": {"ja": {"headline": headline, "body": headline * 2},
                 "en": {"headline": "Missile launch. Take shelter inside a building or underground. (exercise)",
                        "body": "A missile appears to have been launched. Take shelter now. (exercise)"}},
        "shelters": [],
    }  # fmt: skip
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "alertd/0.1",
        "Idempotency-Key": "01JBENCH0000000000000000:sub-000001:1",
        "X-Alertd-Alert-Id": "01JBENCH0000000000000000",
        "X-Alertd-Subscriber-Id": "sub-000001",
        "X-Alertd-Signature": "t=1764540000000,v1=" + "ab" * 32,
    }
    return json.dumps(body, ensure_ascii=False).encode(), headers


async def run_client(
    client: str, sink_url: str, http: aiohttp.ClientSession, args: argparse.Namespace
) -> dict[str, Any]:
    body, headers = sample_payload()
    runs = 1 if client in SLOW else args.runs
    job = {
        "job": "raw_http", "client": client, "prefix": f"c-{client}", "base": sink_url, "n": args.n,
        "runs": runs, "body": base64.b64encode(body).decode(), "headers": headers,
        "concurrency": args.concurrency, "connections": args.connections, "timeout_s": 30,
    }  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulations.bench_clients", cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(job).encode()), 60 + 40 * (runs + 1))
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"client": client, "error": "did not finish in time"}
    if proc.returncode != 0:
        return {"client": client, "error": err.decode()[-600:]}
    res = json.loads(out)
    lasts, cpus, loop_cpus, failures = [], [], [], 0
    for r in res["runs"]:
        times = await _receipts(http, sink_url, r["key"], args.n)
        failures += r["failures"]
        if len(times) >= args.n:
            lasts.append((max(times) - r["t0"]) * 1000)
        cpus.append(r["cpu_s"] / args.n * 1000)
        loop_cpus.append(r["loop_cpu_s"] / args.n * 1000)
    await _receipts(http, sink_url, f"c-{client}/-1", 0)
    last_p50 = percentile(lasts, 50)
    return {
        "client": client, "runs": len(res["runs"]), "complete_runs": len(lasts), "failures": failures,
        "last_p50_ms": last_p50, "last_p99_ms": percentile(lasts, 99),
        "per_s": args.n / (last_p50 / 1000) if last_p50 else None,
        "cpu_s_per_1k": percentile(cpus, 50),
        "loop_cpu_s_per_1k": percentile(loop_cpus, 50), "last_ms_each": lasts, "cpu_s_per_1k_each": cpus,
    }  # fmt: skip


async def _receipts(http: aiohttp.ClientSession, sink_url: str, key: str, n: int) -> list[float]:
    """Wait (bounded) until the sink has n receipts for key, then take them."""
    deadline = time.monotonic() + 10
    while n and time.monotonic() < deadline:
        async with http.get(f"{sink_url}/_count", params={"key": key}) as resp:
            if int((await resp.json())["n"]) >= n:
                break
        await asyncio.sleep(0.05)
    async with http.get(f"{sink_url}/_take", params={"key": key}) as resp:
        return [float(t) for t in (await resp.json())["times"]]


def _3(v: float | None) -> str | None:
    return None if v is None else f"{v:.3f}"


async def amain(args: argparse.Namespace) -> int:
    OUT_DIR.mkdir(exist_ok=True)
    port = free_port()
    sink_url = f"http://127.0.0.1:{port}"
    with (OUT_DIR / "sink-clients.log").open("wb") as log:
        sink = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulations.bench_sink", "--port", str(port), "--max-seconds", "1800",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
    results = []
    try:
        assert sink.stdout is not None
        line = await asyncio.wait_for(sink.stdout.readline(), 30)
        if b"READY" not in line:
            raise RuntimeError("the bench sink did not start; see bench/sink-clients.log")
        async with aiohttp.ClientSession() as http:
            for client in args.clients:
                print(
                    f"· {client}: {args.runs} × {args.n} POSTs at concurrency {args.concurrency}",
                    file=sys.stderr,
                )
                results.append(await run_client(client, sink_url, http, args))
    finally:
        if sink.returncode is None:
            sink.terminate()
        await asyncio.wait_for(sink.wait(), 15)
    rows = [
        [r["client"], r.get("last_p50_ms"), r.get("last_p99_ms"), r.get("per_s"), _3(r.get("cpu_s_per_1k")),
         _3(r.get("loop_cpu_s_per_1k")),
         r.get("failures"), r.get("error", "").strip().splitlines()[-1] if r.get("error") else ""]
        for r in results
    ]  # fmt: skip
    print(
        table(
            [
                "client",
                "last p50 ms",
                "last p99 ms",
                "per_s",
                "cpu s/1k",
                "loop cpu s/1k",
                "failures",
                "error",
            ],
            rows,
            left={7},
        )
    )
    out = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
        "python": platform.python_version(), "n": args.n, "runs": args.runs, "concurrency": args.concurrency,
        "connections": args.connections, "results": results,
    }  # fmt: skip
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {args.out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from alertd import loop
    from alertd.config import Settings

    ap = argparse.ArgumentParser(
        prog="python -m simulations.bench_http_clients", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--clients", default=",".join(CLIENTS), help=f"comma-separated, of {', '.join(CLIENTS)}")
    ap.add_argument("--runs", type=int, default=5, help="measured rounds per client (default 5)")
    ap.add_argument("--n", type=int, default=2000, help="webhooks per round (default 2000)")
    ap.add_argument(
        "--concurrency", type=int, default=Settings().flash_concurrency, help="deliveries in flight"
    )
    ap.add_argument(
        "--connections", type=int, default=Settings().http_connections, help="connection pool size"
    )
    ap.add_argument("--out", type=Path, default=OUT_DIR / "http-clients.json")
    args = ap.parse_args(argv)
    args.clients = [c for c in args.clients.split(",") if c]
    unknown = set(args.clients) - set(CLIENTS)
    if unknown:
        ap.error(f"unknown client(s): {', '.join(sorted(unknown))}")
    args.runs = max(1, min(args.runs, 50))
    return loop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
