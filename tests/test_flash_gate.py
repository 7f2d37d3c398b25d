"""Routine work steps aside for a flash alert in flight in the same process, for a bounded
time only (alertd.flashgate): a desk's order is never held for long by a national alert."""

from __future__ import annotations

import asyncio
import time

import pytest

from alertd.flashgate import ROUTINE_WAIT_S, FlashGate
from tests.conftest import RunningEngine
from tests.test_delivery import ORDER


async def test_a_routine_order_during_flash_work_is_held_back_but_accepted_within_the_bound(
    engine: RunningEngine,
) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    gate = engine.engine.flash_gate
    gate.enter()  # flash work in flight that never ends (a hung flash webhook, say)
    try:
        started = time.monotonic()
        posting = asyncio.create_task(engine.post("/api/v1/evacuation-orders", token, {**ORDER, "identifier": "held"}))
        status, answer = await asyncio.wait_for(posting, 10)
        waited = time.monotonic() - started
    finally:
        gate.leave()
    assert status == 202, answer
    # It stepped aside (its stages waited for the flash work) and then went on regardless.
    assert waited >= ROUTINE_WAIT_S * 0.9, f"accepted after {waited:.2f} s without stepping aside"


def _steps_aside(gate: FlashGate, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The deadlines of every step_aside asked of the gate from now on (it still waits)."""
    asked: list[float] = []
    step_aside = gate.step_aside

    async def counted(deadline: float) -> None:
        asked.append(deadline)
        await step_aside(deadline)

    monkeypatch.setattr(gate, "step_aside", counted)
    return asked


async def test_a_flash_alerts_intake_does_not_wait_for_other_flash_work(
    engine: RunningEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await engine.add_issuer("pref", ["08"], national=True)
    gate = engine.engine.flash_gate
    asked = _steps_aside(gate, monkeypatch)
    gate.enter()
    try:
        body = {"status": "Exercise", "kind": "missile", "event": "弾道ミサイル情報", "districts": ["08"],
                "headline": {"ja": "ミサイル発射。", "en": "Missile launch."}}  # fmt: skip
        status, answer = await engine.post("/api/v1/alerts", token, body)
    finally:
        gate.leave()
    assert status == 202, answer
    assert asked == [], "a flash alert's intake stepped aside for other flash work"
    # And after its commit the gate is held a moment for its deliveries, then let go.
    await asyncio.wait_for(gate.idle.wait(), 10)


async def test_a_routine_message_from_an_internal_source_never_steps_aside(
    engine: RunningEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The JMA feed takes its telegrams one at a time: a routine one waiting for flash work
    # would hold up a flash telegram queued behind it.
    from alertd.json_alert import parse_json_alert

    gate = engine.engine.flash_gate
    asked = _steps_aside(gate, monkeypatch)
    alert = parse_json_alert({"status": "Exercise", "kind": "weather", "event": "大雨警報", "districts": ["08211"],
                              "headline": {"ja": "大雨警報", "en": "Heavy rain warning"}}, "jma@alertd")  # fmt: skip
    gate.enter()
    try:
        answer, created = await engine.engine.intake.accept(alert, None)
    finally:
        gate.leave()
    assert created and answer["priority"] == "routine", answer
    assert asked == [], "an internal source's routine message stepped aside"
