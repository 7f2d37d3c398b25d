"""Flash latency under hostile input, and the desk under a public flood: ``make bench``.

The "never stop silently" targets, measured side by side in one run:

  flash first delivery  a level 5 order to one radio gateway, ``--samples``
                        times, idle and then while attacker processes keep
                        sending each kind of hostile input alertd must refuse:
                        1,500 district names for another town, a CAP with
                        2,000 polygons, JSON nested 400,000 deep, and 24
                        clients flooding the public list with uncacheable
                        queries. Target: p99 within 2x idle.
  desk, split ports     the same flood against ``serve --public-port`` (the
                        public face in its own process): a desk order's
                        POST -> 202 and POST -> webhook, idle and flooded.

Placement: alertd runs as ``python -m alertd serve`` in its own process;
every attacker is a process of its own; this driver sends the level 5
orders and runs the radio gateway (a webhook that only counts arrivals).
Writes ``bench/hostile.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from alertd.report import percentile, table
from alertd.store import remove_prefix

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench"

ATTACK = r"""
import asyncio, json, random, sys, time
import aiohttp

url, kind, token, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
auth = {"Authorization": f"Bearer {token}"}
square = "36.02,139.99 36.02,140.00 36.03,140.00 36.03,139.99 36.02,139.99"
areas = "".join(f"<area><areaDesc>a{i}</areaDesc><polygon>{square}</polygon></area>" for i in range(2000))
now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
cap = (f'<?xml version="1.0" encoding="UTF-8"?><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
       f"<identifier>x</identifier><sender>tsukuba@alertd</sender><sent>{now}</sent><status>Exercise</status>"
       f"<msgType>Alert</msgType><scope>Public</scope><info><category>Safety</category><event>x</event>"
       f"<urgency>Immediate</urgency><severity>Severe</severity><certainty>Observed</certainty>{areas}</info></alert>").encode()
names = {"municipality": "08211", "level": 5, "action": "issue", "reason": "x", "status": "Exercise",
         "districts": [f"存在しない町{i}" for i in range(1500)]}
deep = ("[" * 400_000 + "]" * 400_000).encode()

async def one(http, i):
    if kind == "names":
        r = http.post(f"{url}/api/v1/evacuation-orders", json=names, headers=auth)
    elif kind == "polygons":
        r = http.post(f"{url}/api/v1/alerts", data=cap, headers={**auth, "Content-Type": "application/cap+xml"})
    elif kind == "deep-json":
        r = http.post(f"{url}/api/v1/evacuation-orders", data=deep, headers={**auth, "Content-Type": "application/json"})
    else:
        q = f"limit=200&district={random.choice(['08', '08211', '08220'])}&x={i}"
        r = http.get(f"{url}/api/v1/alerts?{q}")
    async with r as resp:
        await resp.read()
        return resp.status

async def client(http, until, counts, n):
    i = 0
    while time.monotonic() < until:
        i += 1
        try:
            status = await one(http, f"{n}-{i}")
        except aiohttp.ClientError:
            status = "error"
        counts[str(status)] = counts.get(str(status), 0) + 1

async def main():
    counts = {}
    until = time.monotonic() + seconds
    clients = 24 if kind == "flood" else 3
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(client(http, until, counts, n) for n in range(clients)))
    print(json.dumps(counts))

asyncio.run(main())
"""

LEVEL5 = {"municipality": "08211", "level": 5, "action": "issue", "districts": ["all"], "reason": "洪水",
          "status": "Exercise"}  # fmt: skip
LEVEL4 = {**LEVEL5, "level": 4}


class Gateway:
    """The radio gateway: a webhook that signals each arrival."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.count = 0

    async def handler(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        self.arrived.set()
        return web.Response()


class HostileBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.token_joso = secrets.token_hex(16)
        self.token_tsukuba = secrets.token_hex(16)
        self.gateway = Gateway()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.prefixes: list[str] = []
        self.http: aiohttp.ClientSession | None = None

    def say(self, text: str) -> None:
        print(f"[hostile] {text}", file=sys.stderr, flush=True)

    async def serve(self, gateway_url: str, *, split: bool) -> tuple[str, str]:
        prefix = f"alertd-bench-hostile-{secrets.token_hex(3)}"
        self.prefixes.append(prefix)
        seed = OUT / f"hostile-seed-{prefix}.yaml"
        seed.write_text(yaml.safe_dump({
            "issuers": [{"id": "joso", "name": "常総市", "token": self.token_joso, "jurisdiction": ["08211"]},
                        {"id": "tsukuba", "name": "つくば市", "token": self.token_tsukuba, "jurisdiction": ["08220"]}],
            "subscribers": [{"id": "radio", "adapter": "radio", "endpoint": gateway_url, "districts": ["08211"],
                             "drills": True}],  # it takes the Exercise orders the bench sends
        }, allow_unicode=True))  # fmt: skip
        desk, public = _free_port(), _free_port()
        env = {**os.environ, "ALERTD_REDIS_URL": self.args.redis_url, "ALERTD_MQTT_URL": self.args.mqtt_url,
               "ALERTD_ADMIN_TOKEN": secrets.token_hex(16), "ALERTD_KEY_PREFIX": prefix,
               "ALERTD_CONFIG": str(seed), "ALERTD_LOG_LEVEL": "WARNING"}  # fmt: skip
        cmd = [sys.executable, "-m", "alertd", "serve", "--port", str(desk)]
        if split:
            cmd += ["--public-port", str(public)]
        log = (OUT / f"hostile-alertd-{'split' if split else 'single'}.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)  # noqa: ASYNC220 — lives for the phase
        self.procs.append(proc)
        urls = (f"http://127.0.0.1:{desk}", f"http://127.0.0.1:{public}" if split else f"http://127.0.0.1:{desk}")
        for url in set(urls):
            await self._healthy(url, proc)
        return urls

    async def _healthy(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        assert self.http is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"alertd serve exited with {proc.returncode}; see bench/hostile-alertd-*.log")
            try:
                async with self.http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{url} did not become healthy")

    async def flash_once(self, desk: str, n: int, body: dict[str, Any]) -> tuple[float, float]:
        """(POST -> 202, POST -> gateway) in ms for one order."""
        assert self.http is not None
        before = self.gateway.count
        t0 = time.perf_counter()
        async with self.http.post(f"{desk}/api/v1/evacuation-orders", json={**body, "identifier": f"b{n}"},
                                  headers={"Authorization": f"Bearer {self.token_joso}"}) as resp:  # fmt: skip
            if resp.status != 202:
                raise RuntimeError(f"order refused: {resp.status} {await resp.text()}")
        accepted = (time.perf_counter() - t0) * 1000
        while self.gateway.count == before:
            self.gateway.arrived.clear()
            await asyncio.wait_for(self.gateway.arrived.wait(), 30)
        return accepted, (time.perf_counter() - t0) * 1000

    async def samples(self, desk: str, body: dict[str, Any], start: int) -> list[tuple[float, float]]:
        out = []
        for i in range(self.args.samples):
            out.append(await self.flash_once(desk, start + i, body))
            await asyncio.sleep(0.05)  # a paced sender, not a second flood
        return out

    async def attack(self, target: str, kind: str, seconds: float) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", ATTACK, target, kind, self.token_tsukuba, str(seconds),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    async def with_attack(self, desk: str, target: str, kind: str, body: dict[str, Any], start: int) -> dict[str, Any]:
        seconds = self.args.samples * 0.4 + 8
        proc = await self.attack(target, kind, seconds)
        await asyncio.sleep(1.5)  # attackers connected and busy
        got = await self.samples(desk, body, start)
        out, _ = await proc.communicate()
        return {"samples": got, "attacker_answers": json.loads(out or b"{}")}

    async def run(self) -> dict[str, Any]:
        OUT.mkdir(exist_ok=True)
        app = web.Application()
        app.router.add_post("/radio", self.gateway.handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.http = aiohttp.ClientSession()
        results: dict[str, Any] = {"samples": self.args.samples}
        try:
            desk, _ = await self.serve(f"http://127.0.0.1:{port}/radio", split=False)
            await self._populate(desk)
            self.say("single port: flash idle")
            results["single"] = {"idle": {"samples": await self.samples(desk, LEVEL5, 0)}}
            for n, kind in enumerate(("names", "polygons", "deep-json", "flood"), start=1):
                self.say(f"single port: flash during {kind}")
                results["single"][kind] = await self.with_attack(desk, desk, kind, LEVEL5, 1000 * n)
            self.stop()
            desk, public = await self.serve(f"http://127.0.0.1:{port}/radio", split=True)
            await self._populate(desk)
            self.say("split ports: desk order idle, then during a public flood")
            results["split"] = {
                "idle": {"samples": await self.samples(desk, LEVEL4, 0)},
                "flood": await self.with_attack(desk, public, "flood", LEVEL4, 1000),
            }
        finally:
            self.stop()
            await self.http.close()
            await runner.cleanup()
            await self._wipe()
        return results

    async def _populate(self, desk: str) -> None:
        """300 alerts on record, so every uncached page of the flood is a full one."""
        assert self.http is not None
        auth = {"Authorization": f"Bearer {self.token_joso}"}
        for i in range(300):
            body = {"status": "Exercise", "event": "大雨警報", "districts": ["08211"], "identifier": f"h{i}",
                    "adapters": ["feed"], "headline": {"ja": "大雨警報" * 20, "en": "Heavy rain warning " * 10}}
            async with self.http.post(f"{desk}/api/v1/alerts", json=body, headers=auth) as resp:
                await resp.read()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    async def _wipe(self) -> None:
        for prefix in self.prefixes:
            await remove_prefix(self.args.redis_url, prefix)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for mode, what in (("single", "flash: level 5 POST -> radio gateway"), ("split", "desk: level 4 POST -> webhook")):
        idle = [d for _, d in results[mode]["idle"]["samples"]]
        idle_p99 = percentile(idle, 99)
        for kind, data in results[mode].items():
            delivered = [d for _, d in data["samples"]]
            accepted = [a for a, _ in data["samples"]]
            p99 = percentile(delivered, 99)
            ratio = p99 / idle_p99 if kind != "idle" and idle_p99 else None
            rows.append({
                "ports": mode, "measure": what, "during": kind,
                "202 p50 ms": round(percentile(accepted, 50), 1), "p50 ms": round(percentile(delivered, 50), 1),
                "p99 ms": round(p99, 1), "x idle p99": round(ratio, 2) if ratio else None,
                "target": "<= 2x idle" if kind != "idle" else "",
                "met": (ratio <= 2) if ratio else None,
                "attacker answers": json.dumps(data.get("attacker_answers", {})),
            })  # fmt: skip
    return rows


async def amain(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.bench_hostile", description=__doc__)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--redis-url", default=os.environ.get("ALERTD_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--mqtt-url", default=os.environ.get("ALERTD_MQTT_URL", "mqtt://127.0.0.1:1883"))
    args = parser.parse_args(argv)
    results = await HostileBench(args).run()
    rows = summarize(results)
    (OUT / "hostile.json").write_text(json.dumps({"rows": rows, "raw": results}, ensure_ascii=False, indent=2))
    columns = ["ports", "during", "202 p50 ms", "p50 ms", "p99 ms", "x idle p99", "target", "met", "attacker answers"]
    print(table(columns, [["" if r[k] is None else r[k] for k in columns] for r in rows]))
    print(f"\n(bench/hostile.json has every sample; {args.samples} samples per row)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
