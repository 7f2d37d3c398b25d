"""The /metrics page is what Prometheus scrapes; it must parse and carry the pinned names."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from tests.conftest import RunningEngine, Sink

PINNED = (
    "alertd_alerts_received_total",
    "alertd_deliveries_total",
    "alertd_delivery_latency_seconds_bucket",
    "alertd_queue_depth",
    "alertd_circuit_open",
)


async def _busy_metrics(engine: RunningEngine, sink: Sink) -> str:
    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="ok", adapter="isp", endpoint=f"{sink.url}/ok", districts=["08211"])
    await engine.add_subscriber(id="bad", adapter="isp", endpoint=f"{sink.url}/bad", districts=["08211"])
    sink.status["/bad"] = 500
    order = {
        "municipality": "08211",
        "level": 3,
        "action": "issue",
        "districts": ["all"],
        "reason": "洪水",
        "status": "Exercise",
    }
    status, answer = await engine.post("/api/v1/evacuation-orders", token, order)
    assert status == 202
    await engine.wait_deliveries(answer["id"], {"delivered", "queued"})
    await asyncio.sleep(1.2)  # one queue-depth sampling period
    status, text = await engine.get("/metrics")
    assert status == 200
    return str(text)


async def test_metrics_carry_the_pinned_names_with_labels(engine: RunningEngine, sink: Sink) -> None:
    text = await _busy_metrics(engine, sink)
    for name in PINNED:
        assert name in text, name
    assert 'alertd_alerts_received_total{source="desk",status="Exercise"}' in text
    assert 'alertd_deliveries_total{adapter="isp",outcome="retry"}' in text
    assert 'alertd_queue_depth{lane="flash"}' in text
    assert 'alertd_delivery_latency_seconds_bucket{adapter="isp",le="0.05",priority="routine"}' in text


async def test_metrics_pass_promtool(engine: RunningEngine, sink: Sink) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; tests/services.sh tries)")
    text = await _busy_metrics(engine, sink)
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
