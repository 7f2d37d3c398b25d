"""A desk's evacuation order, end to end over real HTTP, Redis and Mosquitto."""

from __future__ import annotations

import asyncio
import json
import secrets

import aiomqtt

from adapters.isp import SIGNATURE_HEADER, verify
from tests.conftest import MQTT_URL, RunningEngine, Sink

ORDER = {
    "municipality": "08211",
    "level": 4,
    "action": "issue",
    "districts": ["三坂町"],
    "reason": "洪水",
    "status": "Exercise",
    "shelters": [{"name": "石下総合体育館", "status": "open", "capacity": 300}],
}


async def test_order_reaches_webhook_and_mqtt_and_is_confirmed(
    engine: RunningEngine, sink: Sink, mqtt: aiomqtt.Client
) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    secret = secrets.token_hex(16)
    await engine.add_subscriber(
        id="portal", adapter="isp", endpoint=f"{sink.url}/portal", districts=["08"], secret=secret
    )
    radio_topic = f"radio/{secrets.token_hex(4)}/08211"
    await engine.add_subscriber(
        id="radio-joso", adapter="radio", endpoint=f"{MQTT_URL}/{radio_topic}", districts=["08211"]
    )
    await engine.add_subscriber(
        id="tv-tokyo", adapter="broadcaster", endpoint=f"{sink.url}/tv", districts=["13"]
    )
    await mqtt.subscribe(radio_topic, qos=1)
    await mqtt.subscribe(engine.topics.alert("08211"), qos=1)

    status, answer = await engine.post("/api/v1/evacuation-orders", token, ORDER)
    assert status == 202, answer
    assert answer["districts"] == ["08211:三坂町"]
    assert answer["deliveries"] == 2  # the Tokyo station is not subscribed to Ibaraki

    # The portal's webhook: signed JSON it can verify, with the idempotency key.
    await sink.wait_for(1)
    hook = sink.at("/portal")[0]
    h = hook["headers"]
    assert verify(secret, h[SIGNATURE_HEADER], h["Idempotency-Key"], h["X-Alertd-Alert-Id"], hook["body"])
    payload = json.loads(hook["body"])
    assert payload["id"] == answer["id"] and payload["level"] == 4 and payload["status"] == "Exercise"
    assert "三坂町" in payload["text"]["ja"]["headline"] + payload["text"]["ja"]["body"]
    key = hook["headers"]["Idempotency-Key"]

    # The radio gateway over MQTT, and the public feed topic, both get it.
    got: dict[str, bytes] = {}
    async with asyncio.timeout(15):
        async for message in mqtt.messages:
            got[str(message.topic)] = bytes(message.payload)  # type: ignore[arg-type]
            if len(got) == 2:
                break
    envelope = json.loads(got[radio_topic])
    assert envelope["alert_id"] == answer["id"]
    script = json.loads(envelope["body"])
    assert script["text"].count("三坂町") >= 3  # read three times
    assert b"urn:oasis:names:tc:emergency:cap:1.2" in got[engine.topics.alert("08211")]

    # Both receivers confirm: the portal over HTTP, the radio over MQTT.
    status, _ = await engine.post(
        f"/api/v1/alerts/{answer['id']}/ack", "-", {"subscriber": "portal", "idempotency_key": key}
    )
    assert status == 200
    await mqtt.publish(
        envelope["ack_topic"],
        json.dumps({"alert_id": answer["id"], "idempotency_key": envelope["idempotency_key"]}),
        qos=1,
    )
    rows = await engine.wait_deliveries(answer["id"], {"confirmed"}, count=2)
    for row in rows:
        assert row["attempts"] == 1
        assert row["latency_ms"] is not None and row["confirmed_at"]

    # Prometheus shows the deliveries and their latency.
    status, text = await engine.get("/metrics")
    assert 'alertd_deliveries_completed_total{adapter="isp",lane="routine",state="delivered",transport="http"}' in text
    assert 'alertd_delivery_latency_seconds_count{adapter="radio",lane="routine",transport="mqtt"}' in text


async def test_same_identifier_twice_gives_same_answer_and_one_fanout(
    engine: RunningEngine, sink: Sink
) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(
        id="sign", adapter="signage", endpoint=f"{sink.url}/sign", districts=["08211"]
    )
    body = {**ORDER, "identifier": "joso-2026-0001"}
    s1, a1 = await engine.post("/api/v1/evacuation-orders", token, body)
    s2, a2 = await engine.post("/api/v1/evacuation-orders", token, body)
    assert (s1, s2) == (202, 202) and a1 == a2
    rows = await engine.wait_settled(a1["id"])
    assert [r["state"] for r in rows] == ["delivered"]
    assert len(sink.at("/sign")) == 1
    _status, alerts = await engine.get("/api/v1/alerts")
    assert [a["id"] for a in alerts] == [a1["id"]]


async def test_lift_supersedes_and_is_delivered_like_an_order(engine: RunningEngine, sink: Sink) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="portal", adapter="isp", endpoint=f"{sink.url}/p", districts=["08211"])
    s, issued = await engine.post("/api/v1/evacuation-orders", token, {**ORDER, "districts": ["all"]})
    assert s == 202
    await sink.wait_for(1)
    status, active = await engine.get("/api/v1/alerts?active=true&status=all&district=08211")
    assert [a["id"] for a in active] == [issued["id"]]

    s, lifted = await engine.post(
        "/api/v1/evacuation-orders", token, {**ORDER, "districts": ["all"], "action": "lift"}
    )
    assert s == 202, lifted
    await sink.wait_for(2)
    body = json.loads(sink.at("/p")[1]["body"])
    assert body["action"] == "lift" and body["msg_type"] == "Update" and body["references"] == [issued["id"]]
    status, active = await engine.get("/api/v1/alerts?active=true&status=all&district=08211")
    assert status == 200 and active == []
    _status, alert = await engine.get(f"/api/v1/alerts/{issued['id']}")
    assert alert["state"] == "lifted" and alert["superseded_by"] == lifted["id"]


async def test_prefecture_issues_on_behalf_of_a_municipality(engine: RunningEngine, sink: Sink) -> None:
    token = await engine.add_issuer("ibaraki-pref", ["08"])
    await engine.add_subscriber(id="portal", adapter="isp", endpoint=f"{sink.url}/p", districts=["08211"])
    status, answer = await engine.post("/api/v1/evacuation-orders", token, ORDER)
    assert status == 202, answer
    status, alert = await engine.get(f"/api/v1/alerts/{answer['id']}")
    assert alert["on_behalf_of"] == "08211" and alert["issuer_id"] == "ibaraki-pref"
    # For the whole town, as a portal gets it: the town is named once, in every language it reads.
    status, answer = await engine.post("/api/v1/evacuation-orders", token, {**ORDER, "districts": ["all"]})
    assert status == 202, answer
    await sink.wait_for(2)
    texts = json.loads(sink.at("/p")[-1]["body"])["text"]
    assert set(texts) == {"ja", "en"}
    for lang, text in texts.items():
        assert text["body"].count("常総市") == 1, (lang, text["body"])
    # The town romanised first, for a reader who cannot read kanji (alertd.romaji).
    assert "the whole area in Joso-shi (常総市) (issued by 茨城県 on its behalf)" in texts["en"]["body"]
