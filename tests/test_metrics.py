"""The /metrics page is what Prometheus scrapes; it must parse and carry the pinned names."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import RunningEngine, Sink
from tests.support import until

LANES = ("flash", "routine", "retry")
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

    async def failed_once() -> bool:
        rows = {r["subscriber"]: r for r in await engine.deliveries(answer["id"])}
        return rows["ok"]["state"] == "delivered" and rows["bad"]["attempts"] >= 1

    await until(failed_once, what="one delivery through and the failing one tried at least once")

    async def sampled() -> str | None:
        # The queue-depth gauge is set by a periodic sampler: its tick is what we wait for.
        status, text = await engine.get("/metrics")
        assert status == 200
        return str(text) if all(f'alertd_queue_depth{{lane="{lane}"}}' in text for lane in LANES) else None

    return await until(sampled, what="the queue-depth sampler to report every lane")


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
