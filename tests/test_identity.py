"""No issuer can speak as another, hijack another's references, or read another's deliveries."""

from __future__ import annotations

import json
from datetime import timedelta

from alertd.cap import parse_cap, to_cap
from alertd.models import MsgType, utcnow
from tests.conftest import RunningEngine, Sink
from tests.support import ROOT, until

CAP = ROOT / "tests" / "fixtures" / "cap" / "joso-evacuation-order.xml"
JOSO_SENDER = "bousai@city.joso.lg.jp"
CAP_TYPE = {"Content-Type": "application/cap+xml"}


def cap_for(sender: str, area: str, *, identifier: str = "JP-2024-0001", **changes: object) -> tuple[bytes, str]:
    """The Joso CAP fixture, brought to now, sent by ``sender`` for the JIS area ``area``."""
    alert = parse_cap(CAP.read_bytes())
    alert.sender, alert.identifier = sender, identifier
    alert.sent = utcnow().replace(microsecond=0)
    for info in alert.infos:
        info.effective, info.onset, info.expires = alert.sent, None, alert.sent + timedelta(hours=6)
        info.sender_name = "常総市災害対策本部"
        for area_ in info.areas:
            area_.geocodes = [("JIS X 0402", area)]
            area_.polygons, area_.circles = [], []
    for key, value in changes.items():
        setattr(alert, key, value)
    return to_cap(alert), alert.reference_key()


async def desks(engine: RunningEngine) -> tuple[str, str]:
    joso = await engine.add_issuer("joso", ["08211"], senders=[JOSO_SENDER])
    tsukuba = await engine.add_issuer("tsukuba", ["08220"])
    return joso, tsukuba


async def test_an_issuer_cannot_send_cap_with_another_issuers_sender(engine: RunningEngine, sink: Sink) -> None:
    _, tsukuba = await desks(engine)
    await engine.add_subscriber(id="radio", adapter="radio", endpoint=f"{sink.url}/radio", districts=["08"])
    raw, _ = cap_for(JOSO_SENDER, "082201")  # Joso's sender, over Tsukuba
    status, problem = await engine.post("/api/v1/alerts", tsukuba, raw, headers=CAP_TYPE)
    assert status == 403, problem
    assert "tsukuba@alertd" in problem["detail"] and problem["field"] == "sender"
    raw, _ = cap_for("joso@alertd", "082201")  # Joso's alertd sender
    status, _ = await engine.post("/api/v1/alerts", tsukuba, raw, headers=CAP_TYPE)
    assert status == 403
    status, alerts = await engine.get("/api/v1/alerts")
    assert alerts == []  # nothing half-written


async def test_municipality_sender_name_and_call_sign_come_from_the_issuer(engine: RunningEngine, sink: Sink) -> None:
    _, tsukuba = await desks(engine)
    await engine.add_subscriber(id="radio", adapter="radio", endpoint=f"{sink.url}/radio", districts=["08"])
    # Tsukuba's own sender, but claiming Joso's name and municipality in the parameters.
    alert = parse_cap(cap_for("tsukuba@alertd", "082201")[0])
    for info in alert.infos:
        info.parameters.append(("JP-ALERTD-MUNICIPALITY", "08211"))
        info.parameters.append(("JP-ALERTD-ON-BEHALF-OF", "08211"))
    status, answer = await engine.post("/api/v1/alerts", tsukuba, to_cap(alert), headers=CAP_TYPE)
    assert status == 202, answer
    await sink.wait_for(1)
    script = json.loads(sink.at("/radio")[0]["body"])
    assert "常総" not in script["text"] and "じょうそう" not in (script["call_sign"] or "")
    assert "つくば" in script["text"]
    status, served = await engine.get(f"/api/v1/alerts/{answer['id']}.cap")
    back = parse_cap(served.encode())
    assert back.municipality == "08220" and back.on_behalf_of is None
    assert {i.sender_name for i in back.infos} == {"tsukuba desk"}


async def test_a_reference_resolves_only_to_the_alert_with_that_sent_time(engine: RunningEngine, sink: Sink) -> None:
    joso, _ = await desks(engine)
    raw, ref = cap_for(JOSO_SENDER, "082112")
    status, real = await engine.post("/api/v1/alerts", joso, raw, headers=CAP_TYPE)
    assert status == 202, real
    sender, identifier, _sent = ref.split(",")
    wrong_sent = (parse_cap(raw).sent - timedelta(minutes=5)).isoformat()
    cancel, _ = cap_for(JOSO_SENDER, "082112", identifier="JP-2024-0001-cancel", msg_type=MsgType.CANCEL,
                        references=[f"{sender},{identifier},{wrong_sent}"])  # fmt: skip
    status, problem = await engine.post("/api/v1/alerts", joso, cancel, headers=CAP_TYPE)
    assert status == 409 and problem["unknown_references"], problem
    cancel, _ = cap_for(JOSO_SENDER, "082112", identifier="JP-2024-0001-cancel2", msg_type=MsgType.CANCEL,
                        references=[ref])  # fmt: skip
    status, answer = await engine.post("/api/v1/alerts", joso, cancel, headers=CAP_TYPE)
    assert status == 202, answer
    status, alert = await engine.get(f"/api/v1/alerts/{real['id']}")
    assert alert["state"] == "cancelled"


async def test_a_reference_that_matches_two_alerts_is_refused_not_guessed(engine: RunningEngine) -> None:
    # The city's sender moves from the city's issuer to the prefecture's (the prefecture
    # takes over, 代行), and both sent a document with the same identifier and time.
    joso = await engine.add_issuer("joso", ["08211"], senders=[JOSO_SENDER])
    raw, ref = cap_for(JOSO_SENDER, "082112")
    status, _ = await engine.post("/api/v1/alerts", joso, raw, headers=CAP_TYPE)
    assert status == 202
    await engine.add_issuer("joso", ["08211"], token=f"joso-new-token-{'x' * 8}")
    pref = await engine.add_issuer("ibaraki", ["08"], senders=[JOSO_SENDER])
    status, _ = await engine.post("/api/v1/alerts", pref, raw, headers=CAP_TYPE)
    assert status == 202
    cancel, _ = cap_for(JOSO_SENDER, "082112", identifier="cancel", msg_type=MsgType.CANCEL, references=[ref])
    status, problem = await engine.post("/api/v1/alerts", pref, cancel, headers=CAP_TYPE)
    assert status == 409, problem
    assert len(problem["candidates"]) == 2


async def test_a_lift_never_reaches_orders_of_another_municipality(engine: RunningEngine, sink: Sink) -> None:
    joso, tsukuba = await desks(engine)
    # Tsukuba's evacuation order over its own town, claiming to be Joso's.
    alert = parse_cap(cap_for("tsukuba@alertd", "082201")[0])
    for info in alert.infos:
        info.parameters += [("JP-ALERTD-MUNICIPALITY", "08211"), ("JP-ALERTD-KIND", "evacuation")]
    status, planted = await engine.post("/api/v1/alerts", tsukuba, to_cap(alert), headers=CAP_TYPE)
    assert status == 202, planted
    order = {"municipality": "08211", "level": 4, "action": "issue", "districts": ["all"], "reason": "洪水",
             "status": "Actual"}  # fmt: skip
    status, issued = await engine.post("/api/v1/evacuation-orders", joso, order)
    assert status == 202, issued
    status, lifted = await engine.post("/api/v1/evacuation-orders", joso, {**order, "action": "lift"})
    assert status == 202, lifted  # not 403 because of Tsukuba's alert
    status, still = await engine.get(f"/api/v1/alerts/{planted['id']}")
    assert still["state"] == "active"


async def test_deliveries_need_a_token_that_may_see_them(engine: RunningEngine, sink: Sink) -> None:
    joso, tsukuba = await desks(engine)
    pref = await engine.add_issuer("ibaraki", ["08"])
    await engine.add_subscriber(id="portal", adapter="isp", endpoint=f"{sink.url}/p", districts=["08211"])
    order = {"municipality": "08211", "level": 3, "action": "issue", "districts": ["all"], "reason": "洪水",
             "status": "Exercise"}  # fmt: skip
    status, answer = await engine.post("/api/v1/evacuation-orders", joso, order)
    assert status == 202
    path = f"/api/v1/alerts/{answer['id']}/deliveries"
    status, problem = await engine.get(path)
    assert status == 401, problem
    status, problem = await engine.get(path, headers={"Authorization": f"Bearer {tsukuba}"})
    assert status == 403, problem
    for token in (joso, pref):
        status, rows = await engine.get(path, headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and "portal" in {r["subscriber"] for r in rows["deliveries"]}
    status, rows = await engine.get(path, headers=engine.admin)
    assert status == 200


async def test_endpoint_credentials_never_appear_in_errors_logs_or_answers(
    engine: RunningEngine, sink: Sink, caplog: object
) -> None:
    import logging

    caplog.set_level(logging.INFO)  # type: ignore[attr-defined]
    joso, _ = await desks(engine)
    sink.status["/hook"] = 503
    secret_url = f"{sink.url.replace('http://', 'http://portal-user:hunter2pass@')}/hook?apikey=sk-live-123456"
    sub = await engine.add_subscriber(id="portal", adapter="isp", endpoint=secret_url, districts=["08211"])
    assert "hunter2pass" not in json.dumps(sub) and "sk-live-123456" not in json.dumps(sub)
    order = {"municipality": "08211", "level": 3, "action": "issue", "districts": ["all"], "reason": "洪水",
             "status": "Exercise"}  # fmt: skip
    status, answer = await engine.post("/api/v1/evacuation-orders", joso, order)
    assert status == 202

    async def errored() -> list[dict[str, object]]:
        rows = await engine.deliveries(answer["id"])
        return [r for r in rows if r["adapter"] != "feed" and r["last_error"]]

    rows = await until(errored, what="the failing endpoint's delivery to record its error")
    text = json.dumps(rows) + json.dumps(await engine.get("/api/v1/subscribers/portal", headers=engine.admin))
    text += json.dumps([getattr(r, "fields", None) for r in caplog.records], default=str)  # type: ignore[attr-defined]
    for secret in ("hunter2pass", "sk-live-123456", "portal-user"):
        assert secret not in text, secret
    assert "503" in str(rows[0]["last_error"])


async def test_cancelling_another_towns_alert_by_cap_reference_is_403_as_by_id(engine: RunningEngine) -> None:
    joso, tsukuba = await desks(engine)
    raw, ref = cap_for(JOSO_SENDER, "082112")
    status, real = await engine.post("/api/v1/alerts", joso, raw, headers=CAP_TYPE)
    assert status == 202
    cancel, _ = cap_for("tsukuba@alertd", "082201", identifier="x-cancel", msg_type=MsgType.CANCEL, references=[ref])
    status, problem = await engine.post("/api/v1/alerts", tsukuba, cancel, headers=CAP_TYPE)
    assert status == 403, problem
    body = {"status": "Exercise", "event": "x", "msg_type": "Cancel", "references": [real["id"]]}
    status, problem = await engine.post("/api/v1/alerts", tsukuba, body)
    assert status == 403, problem


async def test_alerts_naming_several_towns_are_accepted_and_speak_for_no_single_town(
    engine: RunningEngine, sink: Sink
) -> None:
    """An EEW for three towns in two prefectures, a prefecture's alert for two of its towns, and
    a ward-by-ward alert of one designated city: each is accepted (a 500 here once meant a
    national warning over two towns never went out) and names the one town only where there is one."""
    cabinet = await engine.add_issuer("cabinet", [], national=True)
    ibaraki = await engine.add_issuer("ibaraki", ["08"])
    kanagawa = await engine.add_issuer("kanagawa", ["14"])
    await engine.add_subscriber(id="tv", adapter="broadcaster", endpoint=f"{sink.url}/tv", districts=["08", "09", "14"])
    eew = {"status": "Exercise", "kind": "eew", "event": "緊急地震速報", "level": 5,
           "districts": ["08211", "08220", "09201"]}  # fmt: skip
    status, answer = await engine.post("/api/v1/alerts", cabinet, eew)
    assert status == 202, answer
    pref = {"status": "Exercise", "event": "土砂災害警戒情報", "level": 4, "districts": ["08211", "08220"]}
    status, answer2 = await engine.post("/api/v1/alerts", ibaraki, pref)
    assert status == 202, answer2
    wards = {"status": "Exercise", "event": "土砂災害警戒情報", "level": 4, "districts": ["14101", "14102"]}
    status, answer3 = await engine.post("/api/v1/alerts", kanagawa, wards)
    assert status == 202, answer3
    await sink.wait_for(3)
    views = {}
    for key, alert_id in (("eew", answer["id"]), ("pref", answer2["id"]), ("wards", answer3["id"])):
        status, views[key] = await engine.get(f"/api/v1/alerts/{alert_id}")
        assert status == 200
    assert views["eew"]["municipality"] is None and views["pref"]["municipality"] is None
    assert views["wards"]["municipality"] == "14100"  # 横浜市, of which both are wards


async def test_a_national_drill_says_it_is_a_drill_first_in_every_title(engine: RunningEngine, sink: Sink) -> None:
    """The Atom feed once showed 「大津波警報・津波警報・津波注意報」 as a drill's entry title for an
    hour: a drill's or test's headline starts with 【訓練】 / [DRILL] (【試験】 / [TEST]) in every
    language, in CAP and in the feed, whoever wrote it."""
    cabinet = await engine.add_issuer("cabinet", [], national=True)
    await engine.add_subscriber(id="tv", adapter="broadcaster", endpoint=f"{sink.url}/tv", districts=["08"])
    body = {"status": "Exercise", "kind": "tsunami", "event": "大津波警報", "level": 5, "districts": ["08202"],
            "headline": {"ja": "大津波警報・津波警報・津波注意報", "en": "Major tsunami warning"}}  # fmt: skip
    status, answer = await engine.post("/api/v1/alerts", cabinet, body)
    assert status == 202, answer
    await sink.wait_for(1)
    cap = parse_cap(sink.at("/tv")[0]["body"])
    headlines = {i.language: i.headline for i in cap.infos}
    assert headlines["ja-JP"] == "【訓練】大津波警報・津波警報・津波注意報", headlines
    assert headlines["en-US"].startswith("[DRILL]"), headlines
    status, feed = await engine.get("/feeds/alerts.atom?status=Exercise")
    assert status == 200 and "<title>【訓練】大津波警報" in feed
    test = {**body, "status": "Test", "identifier": "t1"}
    status, answer = await engine.post("/api/v1/alerts", cabinet, test)
    assert status == 202, answer
    status, shown = await engine.get(f"/api/v1/alerts/{answer['id']}")
    assert status == 200 and all(i["headline"].startswith(("【試験】", "[TEST]")) for i in shown["infos"]), shown
