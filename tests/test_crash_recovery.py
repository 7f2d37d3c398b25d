"""kill -9 in the middle of a 1,000-delivery fan-out: after a restart every delivery arrives."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import yaml

from tests.conftest import ADMIN_TOKEN, MQTT_URL, REDIS_URL, ROOT, Sink, free_port, wipe

N = 1000


async def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            assert proc.poll() is None, "alertd serve exited early"
            try:
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("alertd serve did not come up")


def _serve(port: int, prefix: str, config: Path, consumer: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ALERTD_REDIS_URL": REDIS_URL,
        "ALERTD_MQTT_URL": MQTT_URL,
        "ALERTD_ADMIN_TOKEN": ADMIN_TOKEN,
        "ALERTD_KEY_PREFIX": prefix,
        "ALERTD_CONFIG": str(config),
        "ALERTD_CONSUMER": consumer,
        "ALERTD_CLAIM_IDLE_S": "2",
        # Slow enough that the kill lands mid-fan-out.
        "ALERTD_ROUTINE_CONCURRENCY": "20",
        "ALERTD_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "alertd", "serve", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def test_kill_9_mid_fanout_loses_nothing(sink: Sink, tmp_path: Path) -> None:
    prefix = f"alertd-test-{secrets.token_hex(4)}"
    token = secrets.token_hex(16)
    for i in range(N):
        sink.delay[f"/s/{i}"] = 0.02
    config = tmp_path / "seed.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "issuers": [{"id": "joso", "name": "常総市", "token": token, "jurisdiction": ["08211"]}],
                "subscribers": [
                    {"id": f"s{i}", "adapter": "isp", "endpoint": f"{sink.url}/s/{i}", "districts": ["08211"]}
                    for i in range(N)
                ],
            },
            allow_unicode=True,
        )
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = _serve(port, prefix, config, "first")
    second: subprocess.Popen[bytes] | None = None
    try:
        await _wait_http(url, first)
        order = {"municipality": "08211", "level": 4, "action": "issue", "districts": ["all"], "reason": "洪水",
                 "status": "Exercise"}  # fmt: skip
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{url}/api/v1/evacuation-orders", json=order, headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                assert resp.status == 202
                answer = await resp.json()
        assert answer["deliveries"] == N
        await sink.wait_for(100, timeout=30)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        delivered_before = len({r["path"] for r in sink.received})
        assert delivered_before < N, "the fan-out finished before the kill; the test proves nothing"

        second = _serve(port, prefix, config, "second")
        await _wait_http(url, second)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len({r["path"] for r in sink.received}) < N and loop.time() < deadline:
            await asyncio.sleep(0.2)
        got = {r["path"] for r in sink.received}
        assert got == {f"/s/{i}" for i in range(N)}, f"{N - len(got)} deliveries lost"

        # Repeats (work done but not recorded before the kill) carry the same key.
        keys: dict[str, set[str]] = {}
        for r in sink.received:
            keys.setdefault(r["path"], set()).add(r["headers"]["Idempotency-Key"])
        assert all(len(k) == 1 for k in keys.values())

        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                async with http.get(
                    f"{url}/api/v1/alerts/{answer['id']}/deliveries", headers={"Authorization": f"Bearer {token}"}
                ) as resp:
                    rows = [r for r in (await resp.json())["deliveries"] if r["adapter"] != "feed"]
                if all(r["state"] == "delivered" for r in rows):
                    break
                await asyncio.sleep(0.2)
        assert len(rows) == N and all(r["state"] == "delivered" for r in rows)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        await wipe(prefix)
