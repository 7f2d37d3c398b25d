"""Operators read one JSON event per line, with the alert and subscriber it concerns."""

from __future__ import annotations

import json
import logging

import pytest

from alertd.logs import JsonFormatter
from tests.conftest import RunningEngine, Sink


async def test_a_failed_delivery_is_one_json_line_naming_alert_and_subscriber(
    engine: RunningEngine, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="gone", adapter="isp", endpoint=f"{sink.url}/gone", districts=["08211"])
    sink.status["/gone"] = 404
    order = {"municipality": "08211", "level": 3, "action": "issue", "districts": ["all"], "reason": "洪水",
             "status": "Exercise"}  # fmt: skip
    with caplog.at_level(logging.INFO):
        status, answer = await engine.post("/api/v1/evacuation-orders", token, order)
        assert status == 202
        await engine.wait_deliveries(answer["id"], {"failed"})
    records = [r for r in caplog.records if r.getMessage() in ("alert.accepted", "delivery.failed")]
    lines = [JsonFormatter().format(r) for r in records]
    events = [json.loads(line) for line in lines]
    assert all("\n" not in line for line in lines)
    accepted = next(e for e in events if e["event"] == "alert.accepted")
    failed = next(e for e in events if e["event"] == "delivery.failed")
    assert accepted["alert_id"] == answer["id"] and accepted["issuer_id"] == "joso"
    assert failed["alert_id"] == answer["id"] and failed["subscriber_id"] == "gone"
    assert "HTTP 404" in failed["error"] and failed["level"] == "warning" and failed["ts"].endswith("Z")
