"""A real Prometheus scraping a real `alertd serve --workers 2` reads a flash fan-out's p99
as it was, right after a restart.

Why this is the test: series created on first use made the first burst after a restart
invisible to increase() (Prometheus read p99 29.8 s for a fan-out whose p99 was 146 ms),
and the helper processes of --workers exported nothing. Here the engine is restarted,
Prometheus (started with the shipped deploy/prometheus/prometheus.yml and rules, on a
free port, scraping every 250 ms) sees it before the burst and after it, and its
histogram_quantile must land within one bucket of the p99 alertd's own delivery records
give.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from alertd.metrics import LATENCY_BUCKETS
from tests.conftest import ADMIN_TOKEN, MQTT_URL, REDIS_URL, Sink, wipe
from tests.support import ROOT, free_port, until

FLASH_ORDER = {
    "municipality": "08211", "level": 5, "action": "issue", "districts": ["all"], "reason": "洪水",
    "status": "Exercise",
}  # fmt: skip
RECEIVERS = 40
SLOW = 3  # receivers that take 120 ms to answer: the p99 is theirs


def bucket_index(seconds: float) -> int:
    """Which histogram bucket a duration falls in (the first upper bound at or above it)."""
    return next((i for i, le in enumerate(LATENCY_BUCKETS) if seconds <= le), len(LATENCY_BUCKETS))


def p99(values: list[float]) -> float:
    """Nearest-rank 99th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def serve(env: dict[str, str], port: int) -> AsyncIterator[str]:
    """`alertd serve --workers 2` in its own process group; yields its URL once healthy."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd", "--log-level", "WARNING", "serve", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "2", env=env, cwd=ROOT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                assert proc.returncode is None, f"alertd serve exited with {proc.returncode}"
                try:
                    async with http.get(f"{url}/healthz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await until(healthy, timeout=30, what="alertd serve to answer /healthz with 200")
        yield url
    finally:
        await _stop(proc)


@contextlib.asynccontextmanager
async def prometheus(target: str, tmp: Path) -> AsyncIterator[str]:
    """Prometheus with the shipped scrape config and rules, aimed at ``target``."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: `make test` installs it (tests/services.sh, apt-get install prometheus)")
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="250ms", scrape_timeout="250ms", evaluation_interval="1s")
    config["rule_files"] = [str(ROOT / "deploy" / "prometheus" / "alertd-rules.yml")]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [target]}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await _stop(proc)


async def query(http: aiohttp.ClientSession, prom: str, promql: str) -> list[dict[str, Any]]:
    try:
        async with http.get(f"{prom}/api/v1/query", params={"query": promql}) as resp:
            if resp.status != 200:
                return []
            body = await resp.json()
    except aiohttp.ClientError:
        return []  # not listening yet
    return list(body["data"]["result"])


async def scalar(http: aiohttp.ClientSession, prom: str, promql: str) -> float | None:
    result = await query(http, prom, promql)
    return float(result[0]["value"][1]) if result else None


async def test_prometheus_reads_the_flash_p99_within_one_bucket_after_a_restart(sink: Sink, tmp_path: Path) -> None:
    prefix = f"alertd-test-{secrets.token_hex(4)}"
    env = {
        **os.environ, "ALERTD_REDIS_URL": REDIS_URL, "ALERTD_MQTT_URL": MQTT_URL, "ALERTD_ADMIN_TOKEN": ADMIN_TOKEN,
        "ALERTD_KEY_PREFIX": prefix, "ALERTD_TOPIC_PREFIX": f"{prefix}/alerts/v1", "PYTHONPATH": str(ROOT),
        "ALERTD_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    token = f"token-joso-{secrets.token_hex(8)}"
    for i in range(SLOW):
        sink.delay[f"/r{i}"] = 0.12
    try:
        async with aiohttp.ClientSession() as http:
            # The engine has run and been configured before: then it restarts.
            async with serve(env, port) as url:
                body = {"id": "joso", "name": "常総市", "token": token, "jurisdiction": ["08211"]}
                async with http.post(f"{url}/api/v1/issuers", json=body, headers=admin) as resp:
                    assert resp.status == 201, await resp.text()
                for i in range(RECEIVERS):
                    body = {"id": f"r{i}", "adapter": "radio", "endpoint": f"{sink.url}/r{i}", "districts": ["08211"],
                            "drills": True}  # the order is an Exercise, which reaches only receivers taking drills
                    async with http.post(f"{url}/api/v1/subscribers", json=body, headers=admin) as resp:
                        assert resp.status == 201, await resp.text()
            async with serve(env, port) as url, prometheus(f"127.0.0.1:{port}", tmp_path) as prom:
                # Prometheus has seen the restarted engine (every series at zero) before the burst.
                await until(lambda: scalar(http, prom, 'count(alertd_delivery_latency_seconds_bucket{lane="flash"})'),
                            timeout=20, what="Prometheus's first scrape of the restarted engine")  # fmt: skip
                headers = {"Authorization": f"Bearer {token}"}
                async with http.post(f"{url}/api/v1/evacuation-orders", json=FLASH_ORDER, headers=headers) as resp:
                    assert resp.status == 202, await resp.text()
                    answer = await resp.json()
                assert answer["priority"] == "flash"

                async def all_delivered() -> list[dict[str, Any]] | None:
                    async with http.get(f"{url}/api/v1/alerts/{answer['id']}/deliveries", headers=admin) as resp:
                        rows = [r for r in (await resp.json())["deliveries"] if r["adapter"] != "feed"]
                    return rows if len(rows) == RECEIVERS and all(r["state"] == "delivered" for r in rows) else None

                rows = await until(all_delivered, what="every flash delivery delivered")
                latencies = sorted(float(r["latency_ms"]) / 1000 for r in rows)
                truth = p99(latencies)

                # Every delivery counted, whichever of the three processes made it.
                counted = 'sum(alertd_delivery_latency_seconds_count{lane="flash"})'
                await until(lambda: _equals(scalar(http, prom, counted), RECEIVERS), timeout=20,
                            what=f"Prometheus scraping all {RECEIVERS} flash deliveries")  # fmt: skip
                attempts = await scalar(http, prom, 'sum(alertd_delivery_attempts_total{lane="flash",result="success"})')
                assert attempts == RECEIVERS
                estimate = await scalar(
                    http, prom,
                    'histogram_quantile(0.99, sum by (le) (increase(alertd_delivery_latency_seconds_bucket{lane="flash"}[1m])))',
                )  # fmt: skip
                assert estimate is not None and not math.isnan(estimate), "Prometheus saw no flash burst"
                assert abs(bucket_index(estimate) - bucket_index(truth)) <= 1, (
                    f"Prometheus p99 {estimate * 1000:.0f} ms, truth {truth * 1000:.0f} ms"
                )
                print(f"flash p99: Prometheus {estimate * 1000:.0f} ms, truth {truth * 1000:.0f} ms")
                # The rest of the on-call table, against the same truth.
                median = await scalar(
                    http, prom,
                    'histogram_quantile(0.5, sum by (le) (increase(alertd_delivery_latency_seconds_bucket{lane="flash"}[1m])))',
                )  # fmt: skip
                assert median is not None and abs(bucket_index(median) - bucket_index(latencies[len(latencies) // 2])) <= 1
                delivered = 'alertd_deliveries_completed_total{lane="flash",adapter="radio",state="delivered"}'
                assert await scalar(http, prom, f"sum({delivered})") == RECEIVERS
                # Never under, as it was (11.8 % low) when the burst came before its series: the
                # series was there at zero. (Over it may be: increase() extrapolates a few
                # seconds of samples towards the window's edges.)
                grown = await scalar(http, prom, f"sum(increase({delivered}[1m]))")
                assert grown is not None and grown >= RECEIVERS, grown
                failed = await scalar(http, prom, 'sum(increase(alertd_deliveries_completed_total{state!="delivered"}[1m]))')
                assert failed == 0
                assert await scalar(http, prom, "min(alertd_dependency_up)") == 1
                assert await scalar(http, prom, "sum(alertd_circuits_open)") == 0
                await until(lambda: _equals(scalar(http, prom, "sum(alertd_deliveries_pending) + sum(alertd_queue_oldest_age_seconds)"), 0),
                            timeout=10, what="Prometheus seeing the backlog drained")  # fmt: skip
                # The fan-out is one alert, counted once, as long as its slowest delivery.
                fanouts = await scalar(http, prom, 'sum(alertd_fanout_duration_seconds_count{lane="flash"})')
                assert fanouts == 1
                slowest = max(float(r["latency_ms"]) for r in rows) / 1000
                over = await scalar(http, prom, f'sum(alertd_fanout_duration_seconds_bucket{{lane="flash",le="{_le_below(slowest)}"}})')
                assert over == 0, "the fan-out ended before its slowest delivery"
    finally:
        await wipe(prefix)


async def _equals(value: Any, want: float) -> bool:
    return (await value) == want


def _le_below(seconds: float) -> str:
    """The largest bucket bound below ``seconds`` (a fan-out that long is not in it)."""
    below = [le for le in LATENCY_BUCKETS if le < seconds * 0.9]
    return repr(below[-1]) if below else "0.005"
