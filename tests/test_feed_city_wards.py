"""A designated city's retained state is the sum of its wards': it moves with every ward's.

A receiver author subscribed to 横浜市 (14100) saw the 津波警報 long after the 解除,
because the 解除 named only wards and only the ward topics were republished.
"""

from __future__ import annotations

from tests.conftest import RunningEngine
from tests.test_delivery import retained_state

TSURUMI, YOKOHAMA = "14101", "14100"  # 横浜市鶴見区, 横浜市


async def test_a_ward_order_and_its_lift_reach_the_city_topic_too(engine: RunningEngine) -> None:
    token = await engine.add_issuer("tsurumi", [TSURUMI])
    order = {"municipality": TSURUMI, "level": 4, "action": "issue", "districts": ["all"], "reason": "高潮",
             "status": "Actual", "identifier": "tsurumi-l4"}  # fmt: skip
    status, issued = await engine.post("/api/v1/evacuation-orders", token, order)
    assert status == 202, issued
    city, ward = engine.topics.state(YOKOHAMA, "Actual"), engine.topics.state(TSURUMI, "Actual")
    assert city is not None and ward is not None
    state = await retained_state(city, lambda s: issued["id"] in {a["alert_id"] for a in s["alerts"]})
    assert state["in_force"] is True and state["level"] == 4
    status, _ = await engine.post("/api/v1/evacuation-orders", token,
                                  {**order, "action": "lift", "identifier": "tsurumi-lift"})  # fmt: skip
    assert status == 202
    await retained_state(ward, lambda s: s["in_force"] is False)
    state = await retained_state(city, lambda s: s["in_force"] is False)
    assert state["alerts"] == [] and state["level"] is None
