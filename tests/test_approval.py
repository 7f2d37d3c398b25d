"""Two-person approval: an issuer's Actual level 4–5 orders wait for a second person.

Over real sockets, the real Redis, a webhook sink and an MQTT subscriber, as in
test_end_to_end.py. Users sign in with password and TOTP (pyotp from the
totp_uri alertd returns), exactly as a desk officer's authenticator app does.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import aiomqtt
import pyotp

from alertd.accounts_api import PEOPLE
from tests.conftest import MQTT_URL, RunningEngine, Sink
from tests.support import until

PASSWORD = "correct horse battery staple"
POLICY = {"status": ["Actual"], "min_level": 4}
ORDER = {
    "municipality": "08211",
    "level": 4,
    "action": "issue",
    "districts": ["三坂町"],
    "reason": "洪水",
    "status": "Actual",
}


async def call(e: RunningEngine, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with e.http.request(method, f"{e.url}{path}", json=body, headers=headers) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text and "json" in resp.content_type else text)


async def signed_in(e: RunningEngine, username: str, roles: list[str], issuer: str = "joso") -> str:
    """A new user of ``issuer``, signed in with password and a code from their authenticator app."""
    body = {"username": username, "issuer": issuer, "roles": roles, "password": PASSWORD}
    status, created = await call(e, "POST", "/api/v1/users", e.admin["Authorization"][7:], body)
    assert status == 201, created
    totp = pyotp.parse_uri(created["totp_uri"])
    status, session = await call(e, "POST", "/api/v1/sessions", "", {
        "username": username, "password": PASSWORD, "otp": totp.now()})  # fmt: skip
    assert status == 201, session
    return str(session["token"])


async def desk_with_policy(e: RunningEngine, sink: Sink, mqtt: aiomqtt.Client) -> tuple[str, str]:
    """The joso desk under the two-person rule, a signed portal webhook and a radio gateway on MQTT."""
    token = await e.add_issuer("joso", ["08211"], approval=POLICY)
    await e.add_subscriber(id="portal", adapter="isp", endpoint=f"{sink.url}/portal", districts=["08"])
    radio_topic = f"radio/{secrets.token_hex(4)}/08211"
    await e.add_subscriber(id="radio-joso", adapter="radio", endpoint=f"{MQTT_URL}/{radio_topic}",
                           districts=["08211"])  # fmt: skip
    await mqtt.subscribe(radio_topic, qos=1)
    return token, radio_topic


async def radio_alert_ids(mqtt: aiomqtt.Client, topic: str, until_id: str) -> list[str]:
    """Alert ids the radio gateway got on its topic, up to and including ``until_id``."""
    seen: list[str] = []
    async with asyncio.timeout(20):
        async for message in mqtt.messages:
            if str(message.topic) != topic:
                continue
            seen.append(json.loads(bytes(message.payload))["alert_id"])  # type: ignore[arg-type]
            if seen[-1] == until_id:
                return seen
    raise AssertionError("unreachable")


def sink_alert_ids(sink: Sink) -> list[str]:
    return [r["headers"]["X-Alertd-Alert-Id"] for r in sink.at("/portal")]


def actions(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["actor"], e["action"]) for e in entries]


async def test_an_actual_level_4_order_waits_for_a_second_person(
    engine: RunningEngine, sink: Sink, mqtt: aiomqtt.Client
) -> None:
    _, radio_topic = await desk_with_policy(engine, sink, mqtt)
    tanaka = await signed_in(engine, "tanaka", ["operator"])
    suzuki = await signed_in(engine, "suzuki", ["approver"])

    # The preview says beforehand that it will wait; a drill would not.
    status, preview = await call(engine, "POST", "/api/v1/evacuation-orders/preview", tanaka, ORDER)
    assert status == 200 and preview["needs_approval"] is True, preview
    status, drill = await call(engine, "POST", "/api/v1/evacuation-orders/preview", tanaka,
                               {**ORDER, "status": "Exercise"})  # fmt: skip
    assert status == 200 and drill["needs_approval"] is False, drill
    status, held = await call(engine, "POST", "/api/v1/evacuation-orders", tanaka, ORDER)
    assert status == 202, held
    assert held["state"] == "awaiting_approval" and held["deliveries"] == 0 and held["id"]

    # The approver reads what it would do before approving.
    status, drafts = await call(engine, "GET", "/api/v1/drafts", suzuki)
    assert status == 200 and [d["id"] for d in drafts] == [held["id"]], drafts
    # The deployment's operator sees what waits, whoever's it is.
    status, everything = await call(engine, "GET", "/api/v1/drafts", engine.admin["Authorization"][7:])
    assert status == 200 and [d["id"] for d in everything] == [held["id"]], everything
    preview = drafts[0]["preview"]
    assert preview["districts"] == ["08211:三坂町"] and "三坂町" in preview["district_names"][0]
    assert preview["deliveries"] == 2 and preview["level"] == 4 and preview["status"] == "Actual"
    assert preview["geojson"]["type"] in ("Feature", "FeatureCollection")
    ja = next(t for lang, t in preview["texts"].items() if lang.startswith("ja"))
    assert "三坂町" in ja["headline"] + ja["description"]
    assert any(lang.startswith("en") for lang in preview["texts"])  # every language it goes out in
    assert drafts[0]["drafted_by"] == "user:tanaka"

    # Nothing of it goes out: a later order the rule does not cover (a drill) arrives first and alone.
    status, drill = await call(engine, "POST", "/api/v1/evacuation-orders", tanaka, {**ORDER, "status": "Exercise"})
    assert status == 202 and drill["deliveries"] == 2, drill
    assert await radio_alert_ids(mqtt, radio_topic, drill["id"]) == [drill["id"]]
    await sink.wait_for(1)
    await engine.wait_settled(drill["id"])
    assert sink_alert_ids(sink) == [drill["id"]]
    status, listed = await engine.get("/api/v1/alerts?status=Actual")
    assert status == 200 and listed == []

    # The person who drafted it cannot approve it, even holding the approver role.
    status, problem = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", tanaka)
    assert status == 403 and "drafted" in problem["detail"], problem
    both = await signed_in(engine, "kato", ["operator", "approver"])
    status, own = await call(engine, "POST", "/api/v1/evacuation-orders", both,
                             {**ORDER, "identifier": "kato-1"})  # fmt: skip
    assert status == 202 and own["state"] == "awaiting_approval"
    status, problem = await call(engine, "POST", f"/api/v1/drafts/{own['id']}/approve", both)
    assert status == 403 and "drafted" in problem["detail"], problem

    # A second person approves: every delivery arrives.
    status, sent = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", suzuki)
    assert status == 202, sent
    assert sent["deliveries"] == 2 and sent["status"] == "Actual" and "state" not in sent
    assert await radio_alert_ids(mqtt, radio_topic, sent["id"]) == [sent["id"]]
    await sink.wait_for(2)
    assert sink_alert_ids(sink) == [drill["id"], sent["id"]]
    status, alert = await engine.get(f"/api/v1/alerts/{sent['id']}")
    assert status == 200 and alert["level"] == 4 and alert["status"] == "Actual"

    # Decided once: approving again is refused, and it no longer waits.
    status, problem = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", suzuki)
    assert status == 409 and "already approved" in problem["detail"], problem
    status, drafts = await call(engine, "GET", "/api/v1/drafts", suzuki)
    assert [d["id"] for d in drafts] == [own["id"]]

    trail = await engine.runner.app[PEOPLE].audit.read(0, 10_000)
    assert ("user:tanaka", "draft") in actions(trail) and ("user:suzuki", "approve") in actions(trail)
    assert ("user:tanaka", "send") in actions(trail)  # the drill, sent at once
    approval = next(e for e in trail if e["action"] == "approve")
    assert approval["target"] == f"draft:{held['id']}" and approval["detail"]["alert"] == sent["id"]


async def test_a_rejected_draft_ends_and_a_lift_under_the_rule_waits_too(
    engine: RunningEngine, sink: Sink, mqtt: aiomqtt.Client
) -> None:
    _, radio_topic = await desk_with_policy(engine, sink, mqtt)
    tanaka = await signed_in(engine, "tanaka", ["operator"])
    suzuki = await signed_in(engine, "suzuki", ["approver"])

    status, held = await call(engine, "POST", "/api/v1/evacuation-orders", tanaka, ORDER)
    assert status == 202 and held["state"] == "awaiting_approval"
    status, problem = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/reject", suzuki, {})
    assert status == 422 and problem["field"] == "reason"
    status, rejected = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/reject", suzuki,
                                  {"reason": "水位が下がり始めた"})  # fmt: skip
    assert status == 200 and rejected["state"] == "rejected", rejected
    status, problem = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", suzuki)
    assert status == 409 and "rejected" in problem["detail"], problem
    status, drafts = await call(engine, "GET", "/api/v1/drafts", tanaka)
    assert status == 200 and drafts == []

    # The same order sent again is a new draft; approved, it stands, and its lift waits too.
    status, again = await call(engine, "POST", "/api/v1/evacuation-orders", tanaka, ORDER)
    assert status == 202 and again["state"] == "awaiting_approval" and again["id"] != held["id"]
    status, issued = await call(engine, "POST", f"/api/v1/drafts/{again['id']}/approve", suzuki)
    assert status == 202, issued
    await engine.wait_settled(issued["id"])
    lift = {**ORDER, "action": "lift"}
    status, held_lift = await call(engine, "POST", "/api/v1/evacuation-orders", tanaka, lift)
    assert status == 202 and held_lift["state"] == "awaiting_approval", held_lift
    status, drafts = await call(engine, "GET", "/api/v1/drafts", suzuki)
    assert drafts[0]["preview"]["action"] == "lift" and drafts[0]["preview"]["ends"] == [issued["id"]]
    status, standing = await engine.get(f"/api/v1/alerts/{issued['id']}")
    assert standing["state"] not in ("lifted", "cancelled"), standing
    status, lifted = await call(engine, "POST", f"/api/v1/drafts/{held_lift['id']}/approve", suzuki)
    assert status == 202 and lifted["msg_type"] in ("Update", "Cancel"), lifted
    assert await radio_alert_ids(mqtt, radio_topic, lifted["id"]) == [issued["id"], lifted["id"]]
    await sink.wait_for(2)
    assert sink_alert_ids(sink) == [issued["id"], lifted["id"]]
    trail = await engine.runner.app[PEOPLE].audit.read(0, 10_000)
    assert ("user:suzuki", "reject") in actions(trail)
    assert next(e for e in trail if e["action"] == "reject")["detail"]["reason"] == "水位が下がり始めた"


async def test_an_expired_draft_is_refused(engine: RunningEngine) -> None:
    await engine.add_issuer("joso", ["08211"], approval=POLICY)
    engine.runner.app[PEOPLE].drafts.ttl_s = 1
    tanaka = await signed_in(engine, "tanaka", ["operator"])
    suzuki = await signed_in(engine, "suzuki", ["approver"])
    status, held = await call(engine, "POST", "/api/v1/evacuation-orders", tanaka, ORDER)
    assert status == 202 and held["state"] == "awaiting_approval"

    async def no_longer_listed() -> bool:
        return (await call(engine, "GET", "/api/v1/drafts", suzuki))[1] == []

    await until(no_longer_listed, what="the draft to expire", timeout=10)
    status, problem = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", suzuki)
    assert status == 410 and "expired" in problem["detail"] and "not sent" in problem["detail"], problem
    status, listed = await engine.get("/api/v1/alerts")
    assert status == 200 and listed == []


async def test_below_the_rule_goes_straight_out_and_a_machine_token_waits_for_a_person(
    engine: RunningEngine, sink: Sink, mqtt: aiomqtt.Client
) -> None:
    token, _ = await desk_with_policy(engine, sink, mqtt)
    suzuki = await signed_in(engine, "suzuki", ["approver"])
    watcher = await signed_in(engine, "ito", ["auditor"])

    # Level 3 is below min_level, and an Exercise is not a status the rule names: both go at once.
    status, level3 = await call(engine, "POST", "/api/v1/evacuation-orders", token, {**ORDER, "level": 3})
    assert status == 202 and level3["deliveries"] == 2 and "state" not in level3, level3
    status, drill = await call(engine, "POST", "/api/v1/evacuation-orders", token,
                               {**ORDER, "level": 5, "status": "Exercise", "identifier": "drill-5"})  # fmt: skip
    assert status == 202 and drill["deliveries"] == 2 and "state" not in drill, drill
    await sink.wait_for(2)
    assert sorted(sink_alert_ids(sink)) == sorted([level3["id"], drill["id"]])

    # The issuer's machine token is no second person: its Actual level 4 waits like anyone's.
    status, held = await call(engine, "POST", "/api/v1/evacuation-orders", token, {**ORDER, "identifier": "m-1"})
    assert status == 202 and held["state"] == "awaiting_approval", held
    # Sending it again is the same draft, not a second one.
    status, again = await call(engine, "POST", "/api/v1/evacuation-orders", token, {**ORDER, "identifier": "m-1"})
    assert status == 202 and again == held
    # An auditor may read but not send, nor approve.
    status, problem = await call(engine, "POST", "/api/v1/evacuation-orders", watcher, {**ORDER, "level": 3})
    assert status == 403 and "operator" in problem["detail"], problem
    status, problem = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", watcher)
    assert status == 403 and "approver" in problem["detail"], problem
    # A token cannot approve: approval is a person's act.
    status, problem = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", token)
    assert status == 403, problem

    status, sent = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", suzuki)
    assert status == 202 and sent["deliveries"] == 2, sent
    await sink.wait_for(3)
    assert sink_alert_ids(sink)[-1] == sent["id"]
    trail = await engine.runner.app[PEOPLE].audit.read(0, 10_000)
    assert ("issuer:joso", "draft") in actions(trail) and ("user:suzuki", "approve") in actions(trail)


async def test_an_alert_and_its_cancel_sent_as_json_wait_under_the_rule(engine: RunningEngine) -> None:
    token = await engine.add_issuer("joso", ["08211"], approval=POLICY)
    suzuki = await signed_in(engine, "suzuki", ["approver"])
    warning = {"status": "Actual", "event": "土砂災害警戒情報", "level": 4, "districts": ["08211"],
               "identifier": "dosha-1"}  # fmt: skip
    status, held = await call(engine, "POST", "/api/v1/alerts", token, warning)
    assert status == 202 and held["state"] == "awaiting_approval", held
    status, sent = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", suzuki)
    assert status == 202 and sent["msg_type"] == "Alert", sent
    # The Cancel names no level: it weighs as what it cancels (level 4), so it waits as well.
    cancel = {"status": "Actual", "msg_type": "Cancel", "references": [sent["id"]], "identifier": "dosha-1-x"}
    status, held_cancel = await call(engine, "POST", "/api/v1/alerts", token, cancel)
    assert status == 202 and held_cancel["state"] == "awaiting_approval", held_cancel
    status, alert = await engine.get(f"/api/v1/alerts/{sent['id']}")
    assert alert["state"] != "cancelled", alert
    status, cancelled = await call(engine, "POST", f"/api/v1/drafts/{held_cancel['id']}/approve", suzuki)
    assert status == 202 and cancelled["msg_type"] == "Cancel", cancelled
    status, alert = await engine.get(f"/api/v1/alerts/{sent['id']}")
    assert alert["state"] == "cancelled", alert


async def test_a_cap_alert_under_the_rule_waits_and_is_read_again_on_approval(engine: RunningEngine) -> None:
    from alertd.cap import district_geocode, to_cap
    from alertd.json_alert import parse_json_alert
    from alertd.models import Area

    token = await engine.add_issuer("joso", ["08211"], approval=POLICY)
    suzuki = await signed_in(engine, "suzuki", ["approver"])
    alert = parse_json_alert({"status": "Actual", "event": "土砂災害警戒情報", "level": 4, "identifier": "cap-1",
                              "districts": ["08211"]}, "joso@alertd")  # fmt: skip
    for info in alert.infos:
        info.areas = [Area(desc="常総市", geocodes=[district_geocode("08211")])]
    status, held = await engine.post("/api/v1/alerts", token, to_cap(alert),
                                     headers={"Content-Type": "application/cap+xml"})  # fmt: skip
    assert status == 202 and held["state"] == "awaiting_approval", held
    status, drafts = await call(engine, "GET", "/api/v1/drafts", suzuki)
    assert drafts[0]["kind"] == "alert-cap" and drafts[0]["preview"]["districts"] == ["08211"], drafts
    status, sent = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", suzuki)
    assert status == 202 and sent["districts"] == ["08211"], sent
    status, stored = await engine.get(f"/api/v1/alerts/{sent['id']}")
    assert stored["identifier"] == "cap-1" and stored["level"] == 4, stored


async def test_two_approvers_at_once_send_it_once(engine: RunningEngine) -> None:
    await engine.add_issuer("joso", ["08211"], approval=POLICY)
    tanaka = await signed_in(engine, "tanaka", ["operator"])
    approvers = [await signed_in(engine, name, ["approver"]) for name in ("suzuki", "sato")]
    status, held = await call(engine, "POST", "/api/v1/evacuation-orders", tanaka, ORDER)
    assert status == 202 and held["state"] == "awaiting_approval"
    answers = await asyncio.gather(
        *(call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", who) for who in approvers)
    )
    assert sorted(status for status, _ in answers) == [202, 409], answers
    status, listed = await engine.get("/api/v1/alerts")
    assert status == 200 and len(listed) == 1, listed


async def test_the_drafts_of_a_removed_person_are_withdrawn_with_them(engine: RunningEngine) -> None:
    """A person removed from the desk leaves nothing behind for an approver to send in their name."""
    await engine.add_issuer("joso", ["08211"], approval=POLICY)
    tanaka = await signed_in(engine, "tanaka", ["operator"])
    suzuki = await signed_in(engine, "suzuki", ["approver"])
    status, held = await call(engine, "POST", "/api/v1/evacuation-orders", tanaka, ORDER)
    assert status == 202 and held["state"] == "awaiting_approval"
    status, _ = await call(engine, "DELETE", "/api/v1/users/tanaka", engine.admin["Authorization"][7:])
    assert status == 204
    status, listed = await call(engine, "GET", "/api/v1/drafts", suzuki)
    assert status == 200 and listed == []
    status, problem = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", suzuki)
    assert status == 409 and "rejected" in problem["detail"], problem
    status, alerts = await engine.get("/api/v1/alerts")
    assert status == 200 and alerts == []
