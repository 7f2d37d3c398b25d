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

from tests.conftest import ADMIN_TOKEN, MQTT_URL, REDIS_URL, Sink, wipe
from tests.support import ROOT, free_port, until

N = 1000


async def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    async with aiohttp.ClientSession() as http:

        async def healthy() -> bool:
            assert proc.poll() is None, "alertd serve exited early"
            try:
                async with http.get(f"{url}/healthz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await until(healthy, timeout=timeout, what="alertd serve to come up")


def _serve(port: int, prefix: str, config: Path, consumer: str, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
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
        **(extra or {}),
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
                    {"id": f"s{i}", "adapter": "isp", "endpoint": f"{sink.url}/s/{i}", "districts": ["08211"],
                     "drills": True}
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

        def arrived() -> set[str]:
            return {r["path"] for r in sink.received}

        await until(lambda: len(arrived()) >= N, timeout=60,
                    what=lambda: f"every delivery after the restart ({N - len(arrived())} of {N} still missing)")
        assert arrived() == {f"/s/{i}" for i in range(N)}

        # Repeats (work done but not recorded before the kill) carry the same key.
        keys: dict[str, set[str]] = {}
        for r in sink.received:
            keys.setdefault(r["path"], set()).add(r["headers"]["Idempotency-Key"])
        assert all(len(k) == 1 for k in keys.values())

        async with aiohttp.ClientSession() as http:

            async def all_delivered() -> list[dict[str, object]] | None:
                async with http.get(
                    f"{url}/api/v1/alerts/{answer['id']}/deliveries", headers={"Authorization": f"Bearer {token}"}
                ) as resp:
                    rows = [r for r in (await resp.json())["deliveries"] if r["adapter"] != "feed"]
                return rows if all(r["state"] == "delivered" for r in rows) else None

            # A thousand rows a look: look less often than usual, not to slow the recording.
            rows = await until(all_delivered, interval=0.2, what="every delivery recorded as delivered")
        assert len(rows) == N
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        await wipe(prefix)


async def test_mqtt_acks_sent_while_engines_crash_are_never_lost(tmp_path: Path) -> None:
    """Three kill -9s with acks published in between: every ack confirms its delivery."""
    import json

    import aiomqtt

    from tests.conftest import MQTT_HOST, MQTT_PORT

    prefix = f"alertd-test-{secrets.token_hex(4)}"
    topics = f"alertd-test-{secrets.token_hex(4)}/alerts/v1"
    gateways = f"acks-{secrets.token_hex(3)}/gw"
    token = secrets.token_hex(16)
    n = 10
    config = tmp_path / "seed.yaml"
    config.write_text(yaml.safe_dump({
        "issuers": [{"id": "joso", "name": "常総市", "token": token, "jurisdiction": ["08211"]}],
        "subscribers": [{"id": f"gw{i}", "adapter": "radio", "endpoint": f"{MQTT_URL}/{gateways}/{i}",
                         "districts": ["08211"], "drills": True} for i in range(n)],
    }, allow_unicode=True))  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    extra = {"ALERTD_TOPIC_PREFIX": topics, "ALERTD_FEED_LEASE_TTL_S": "2"}
    proc = _serve(port, prefix, config, "first", extra)
    envelopes: list[dict[str, str]] = []
    try:
        await _wait_http(url, proc)
        async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=f"gws-{secrets.token_hex(3)}") as gw:
            await gw.subscribe(f"{gateways}/+", qos=1)
            order = {"municipality": "08211", "level": 4, "action": "issue", "districts": ["all"],
                     "reason": "洪水", "status": "Exercise"}  # fmt: skip
            async with aiohttp.ClientSession() as http, http.post(
                f"{url}/api/v1/evacuation-orders", json=order, headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                assert resp.status == 202
                alert_id = (await resp.json())["id"]
            async with asyncio.timeout(20):
                async for message in gw.messages:
                    envelopes.append(json.loads(bytes(message.payload)))  # type: ignore[arg-type]
                    if len(envelopes) == n:
                        break
            # Three crashes; a few gateways ack while no engine runs, a few while one does.
            for crash, batch in enumerate((envelopes[0:3], envelopes[3:6], envelopes[6:8])):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                for env in batch:
                    ack = {"alert_id": env["alert_id"], "idempotency_key": env["idempotency_key"]}
                    await gw.publish(env["ack_topic"], json.dumps(ack), qos=1)
                proc = _serve(port, prefix, config, f"restart-{crash}", extra)
                await _wait_http(url, proc)
            for env in envelopes[8:]:
                ack = {"alert_id": env["alert_id"], "idempotency_key": env["idempotency_key"]}
                await gw.publish(env["ack_topic"], json.dumps(ack), qos=1)
        rows: list[dict[str, object]] = []
        async with aiohttp.ClientSession() as http:

            async def all_confirmed() -> bool:
                nonlocal rows
                async with http.get(f"{url}/api/v1/alerts/{alert_id}/deliveries",
                                    headers={"Authorization": f"Bearer {token}"}) as resp:  # fmt: skip
                    rows = [r for r in (await resp.json())["deliveries"] if r["adapter"] != "feed"]
                return sum(r["state"] == "confirmed" for r in rows) == n

            await until(all_confirmed, timeout=30,
                        what=lambda: f"all {n} acks recorded: {[(r['subscriber'], r['state']) for r in rows]}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        await wipe(prefix)
