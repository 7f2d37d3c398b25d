"""What is in force, district by district, and what a lift, a cancel or a reused identifier does.

The 常総市 flood day: the reproductions of the first findings of the issue on
"what is in force", each over the real API with real receivers.
"""

from __future__ import annotations

from typing import Any

from alertd.cap import parse_cap
from alertd.models import MsgType
from tests.conftest import RunningEngine, Sink

BASE = {"municipality": "08211", "reason": "洪水", "status": "Actual"}


def order(level: int, districts: list[str], action: str = "issue", **extra: Any) -> dict[str, Any]:
    return {**BASE, "level": level, "districts": districts, "action": action, **extra}


async def in_force(engine: RunningEngine) -> dict[str, Any]:
    status, body = await engine.get("/api/v1/in-force?municipality=08211")
    assert status == 200, body
    return dict(body)


def level_of(model: dict[str, Any], name: str) -> int | None:
    """The level standing in a district, as the model says (the town's own level for a
    district no order names)."""
    rows = {r["name"]: r["level"] for r in model["districts"]}
    return rows.get(name, rows.get("常総市"))


async def send(engine: RunningEngine, token: str, body: dict[str, Any], path: str = "/api/v1/evacuation-orders") -> Any:
    status, answer = await engine.post(path, token, body)
    assert status == 202, answer
    return answer


async def test_a_partial_lift_ends_only_the_level_and_districts_it_names(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    city_l3 = await send(engine, joso, order(3, ["all"]))
    l4 = await send(engine, joso, order(4, ["若宮戸", "本石下"]))
    # The preview says exactly what the lift does, before anything is sent.
    status, preview = await engine.post("/api/v1/evacuation-orders/preview", joso, order(4, ["本石下"], "lift"))
    assert status == 200, preview
    assert preview["ends"] == [] and preview["lifts_from"] == {l4["id"]: ["08211:本石下"]}
    assert {(r["name"], r["level_before"], r["level_after"]) for r in preview["levels"]} == {("本石下", 4, 3)}
    lifted = await send(engine, joso, order(4, ["本石下"], "lift"))
    assert lifted["levels"] == preview["levels"]
    model = await in_force(engine)
    assert level_of(model, "本石下") == 3 and level_of(model, "若宮戸") == 4
    status, active = await engine.get("/api/v1/alerts?active=true")
    by_id = {a["id"]: a for a in active}
    assert set(by_id) == {city_l3["id"], l4["id"]}
    assert by_id[l4["id"]]["lifted_districts"] == ["08211:本石下"] and by_id[l4["id"]]["state"] == "active"


async def test_lifting_level_5_leaves_levels_4_and_3_standing(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    await send(engine, joso, order(3, ["all"]))
    await send(engine, joso, order(4, ["若宮戸", "本石下"]))
    await send(engine, joso, order(5, ["若宮戸"]))
    answer = await send(engine, joso, order(5, ["若宮戸"], "lift"))
    assert answer["levels"] == [{"district": "08211:若宮戸", "name": "若宮戸", "level_before": 5, "level_after": 4}]
    model = await in_force(engine)
    assert level_of(model, "若宮戸") == 4 and level_of(model, "本石下") == 4
    _status, lift = await engine.get(f"/api/v1/alerts/{answer['id']}")
    assert lift["remaining"] == [{"level": 4, "districts": ["若宮戸"]}, {"level": 3, "districts": ["若宮戸"]}]


async def test_a_lift_of_a_level_not_in_force_there_is_409_naming_what_is(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    await send(engine, joso, order(3, ["all"]))
    await send(engine, joso, order(4, ["三坂町"]))
    status, problem = await engine.post("/api/v1/evacuation-orders", joso, order(5, ["三坂町"], "lift"))
    assert status == 409, problem
    assert "警戒レベル5" in problem["detail"] and "警戒レベル4" in problem["detail"]
    assert {o["level"] for o in problem["in_force"]} == {3, 4}
    model = await in_force(engine)
    assert level_of(model, "三坂町") == 4  # nothing ended


async def test_lifting_one_district_keeps_the_city_wide_order(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    city = await send(engine, joso, order(3, ["all"]))
    await send(engine, joso, order(4, ["三坂町"]))
    await send(engine, joso, order(4, ["三坂町"], "lift"))
    _, active = await engine.get("/api/v1/alerts?active=true")
    assert [a["id"] for a in active] == [city["id"]]
    _status, feed = await engine.get("/feeds/alerts.atom")
    assert city["id"] in feed


async def test_lift_all_ends_that_level_and_below_in_the_whole_town(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    await send(engine, joso, order(3, ["all"]))
    await send(engine, joso, order(4, ["若宮戸", "本石下"]))
    l5 = await send(engine, joso, order(5, ["若宮戸"]))
    await send(engine, joso, order(4, ["all"], "lift"))
    model = await in_force(engine)
    assert [s["alert_id"] for s in model["alerts"]] == [l5["id"]]
    assert level_of(model, "本石下") is None and level_of(model, "若宮戸") == 5


async def test_a_lift_reaches_every_receiver_that_got_what_it_ends(engine: RunningEngine, sink: Sink) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="portal-l4", adapter="isp", endpoint=f"{sink.url}/p", districts=["08211"],
                                min_level=4)  # fmt: skip
    first = await send(engine, joso, order(4, ["三坂町"]))
    second = await send(engine, joso, order(4, ["若宮戸"]))
    await engine.wait_deliveries(second["id"], {"delivered"})
    lift = await send(engine, joso, order(3, ["all"], "lift") | {"level": 4})
    rows = await engine.wait_deliveries(lift["id"], {"delivered"})
    assert [r["subscriber"] for r in rows] == ["portal-l4"]  # a level 4 receiver hears the lift
    assert first["id"] != second["id"]


async def test_a_lift_below_a_receivers_min_level_still_reaches_it(engine: RunningEngine, sink: Sink) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="portal-l4", adapter="isp", endpoint=f"{sink.url}/p", districts=["08211"],
                                min_level=4)  # fmt: skip
    await send(engine, joso, order(3, ["all"]))
    l4 = await send(engine, joso, order(4, ["三坂町"]))
    await engine.wait_deliveries(l4["id"], {"delivered"})
    lift = await send(engine, joso, order(3, ["all"], "lift") | {"level": 4})
    rows = await engine.wait_deliveries(lift["id"], {"delivered"})
    assert {r["subscriber"] for r in rows} == {"portal-l4"}


async def test_an_identifier_reused_for_a_different_order_is_409(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    first = await send(engine, joso, order(4, ["三坂町"], identifier="joso-0001"))
    again = await send(engine, joso, order(4, ["三坂町"], identifier="joso-0001"))
    assert again["id"] == first["id"]  # the same message again: the first answer
    status, problem = await engine.post("/api/v1/evacuation-orders", joso, order(5, ["三坂町"], identifier="joso-0001"))
    assert status == 409 and problem["existing_alert"] == first["id"], problem


async def test_every_change_carries_cap_references_and_alertd_reads_its_own_cap(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    issued = await send(engine, joso, order(4, ["三坂町", "若宮戸"]))
    lift = await send(engine, joso, order(4, ["三坂町"], "lift"))
    cancel = await send(engine, joso, {"status": "Actual", "event": "取消", "msg_type": "Cancel",
                                       "references": [issued["id"]]}, "/api/v1/alerts")  # fmt: skip
    status, original = await engine.get(f"/api/v1/alerts/{issued['id']}.cap")
    original_ref = parse_cap(original.encode()).reference_key()
    for answer, kind in ((lift, MsgType.UPDATE), (cancel, MsgType.CANCEL)):
        status, text = await engine.get(f"/api/v1/alerts/{answer['id']}.cap")
        assert status == 200
        doc = parse_cap(text.encode())  # alertd's parser takes alertd's own output
        assert doc.msg_type is kind and doc.references == [original_ref]
    # The cancel says what it is about: the town, the order's kind, its places by name.
    status, body = await engine.get(f"/api/v1/alerts/{cancel['id']}")
    assert body["kind"] == "evacuation" and body["municipality"] == "08211"
    area = body["infos"][0]["areas"][0]
    assert "三坂町" in area["desc"] and "08211:" not in area["desc"]


async def test_district_orders_carry_the_municipality_code_and_still_read_back_as_districts(
    engine: RunningEngine,
) -> None:
    joso = await engine.add_issuer("joso", ["08211"], senders=["bousai@city.joso.lg.jp"])
    issued = await send(engine, joso, order(4, ["三坂町"]))
    status, text = await engine.get(f"/api/v1/alerts/{issued['id']}.cap")
    doc = parse_cap(text.encode())
    geocodes = doc.infos[0].areas[0].geocodes
    assert ("JP-JISX0402", "08211") in geocodes and ("JP-ALERTD-DISTRICT", "08211:三坂町") in geocodes
    # Forwarded to an alertd as CAP, it is still an order for 三坂町, not for the whole city.
    doc.sender, doc.identifier = "bousai@city.joso.lg.jp", "forwarded-1"
    from alertd.cap import to_cap

    status, again = await engine.post("/api/v1/alerts", joso, to_cap(doc), headers={"Content-Type": "application/cap+xml"})
    assert status == 202 and again["districts"] == ["08211:三坂町"], again


# --- texts a resident would misread (finding 13) ----------------------------------------------
async def texts(engine: RunningEngine, alert_id: str) -> dict[str, str]:
    status, body = await engine.get(f"/api/v1/alerts/{alert_id}")
    assert status == 200
    return {i["language"]: f"{i['headline']}\n{i['description']}" for i in body["infos"]}


async def test_a_cancel_names_what_it_withdraws_and_what_still_stands(engine: RunningEngine, sink: Sink) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="radio", adapter="radio", endpoint=f"{sink.url}/radio", districts=["08211"])
    mistake = await send(engine, joso, order(4, ["三坂町"]))
    await send(engine, joso, order(4, ["若宮戸", "本石下"]))
    cancel = await send(engine, joso, {"status": "Actual", "event": "取消", "msg_type": "Cancel",
                                       "references": [mistake["id"]]}, "/api/v1/alerts")  # fmt: skip
    ja = (await texts(engine, cancel["id"]))["ja-JP"]
    assert ja.startswith("【取消】") and "常総市の三坂町" in ja and "警戒レベル4 避難指示" in ja
    assert "若宮戸、本石下では、警戒レベル4 避難指示を引き続き発令中です" in ja, ja
    rows = await engine.wait_deliveries(cancel["id"], {"delivered"})
    assert rows
    import json as _json

    script = _json.loads(next(r for r in sink.received if r["headers"]["X-Alertd-Alert-Id"] == cancel["id"])["body"])
    assert script["marker"] == "【取消】" and script["call_sign"] and "取り消しのお知らせです" in script["text"]


async def test_lift_all_names_every_level_it_ends_and_is_not_marked_as_an_update(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    await send(engine, joso, order(3, ["all"]))
    await send(engine, joso, order(4, ["若宮戸", "本石下"]))
    lift = await send(engine, joso, order(4, ["all"], "lift"))
    t = await texts(engine, lift["id"])
    assert t["ja-JP"].startswith("【解除】") and "【更新】" not in t["ja-JP"]
    # Each level with where it stood: the 避難指示 was never city-wide.
    assert "若宮戸、本石下の警戒レベル4 避難指示、全域の警戒レベル3 高齢者等避難を解除しました" in t["ja-JP"], t["ja-JP"]
    assert t["en-US"].startswith("[LIFTED]")


async def test_lifting_level_5_says_level_4_still_stands(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    await send(engine, joso, order(4, ["若宮戸"]))
    await send(engine, joso, order(5, ["若宮戸"]))
    lift = await send(engine, joso, order(5, ["若宮戸"], "lift"))
    ja = (await texts(engine, lift["id"]))["ja-JP"]
    assert "若宮戸では、警戒レベル4 避難指示を引き続き発令中です" in ja, ja


async def test_a_shelter_correction_says_what_changed_and_opens_nothing_again(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    shelter = {"municipality": "08211", "status": "Actual",
               "shelters": [{"name": "石下総合体育館", "address": "常総市新石下4310"}]}  # fmt: skip
    first = await send(engine, joso, shelter, "/api/v1/shelters")
    fixed = {**shelter, "corrects": first["id"],
             "shelters": [{"name": "石下総合体育館", "address": "常総市新石下4311"}]}  # fmt: skip
    correction = await send(engine, joso, fixed, "/api/v1/shelters")
    t = await texts(engine, correction["id"])
    ja = t["ja-JP"]
    assert ja.startswith("【訂正】") and "【更新】" not in ja
    assert "住所は「常総市新石下4311」" in ja and "常総市新石下4310" in ja, ja
    assert "開設しました" not in ja
    assert t["en-US"].startswith("[CORRECTION]")


async def test_an_order_issued_on_a_towns_behalf_says_who_issued_it(engine: RunningEngine) -> None:
    pref = await engine.add_issuer("ibaraki", ["08"])
    issued = await send(engine, pref, order(4, ["三坂町"]))
    t = await texts(engine, issued["id"])
    assert "茨城県は、常総市に代わって、三坂町に" in t["ja-JP"] and "常総市は、" not in t["ja-JP"], t["ja-JP"]
    assert "issued by 茨城県 on its behalf" in t["en-US"]


async def test_a_name_suggestion_never_stands_in_for_another_district(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    status, problem = await engine.post("/api/v1/evacuation-orders", joso, order(4, ["上三坂"]))
    assert status == 422
    assert "三坂町" in problem["detail"] and "different places" in problem["detail"]
    assert "Did you mean" not in problem["detail"]


async def test_a_town_adds_a_district_the_postal_data_lacks_and_orders_can_name_it(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    tsukuba = await engine.add_issuer("tsukuba", ["08220"])
    body = {"municipality": "08211", "name": "上三坂", "kana": "かみみさか"}
    status, problem = await engine.post("/api/v1/districts", tsukuba, body)
    assert status == 403, problem  # only the town's own desk (or its prefecture)
    status, added = await engine.post("/api/v1/districts", joso, body)
    assert status == 201, added
    assert added["code"] == "08211:layer:desk:上三坂" and added["full_name"].endswith("上三坂")
    status, problem = await engine.post("/api/v1/districts", joso, {**body, "name": "三坂町"})
    assert status == 409, problem  # already a district
    issued = await send(engine, joso, order(4, ["上三坂"]))
    assert issued["districts"] == ["08211:layer:desk:上三坂"]
    model = await in_force(engine)
    assert level_of(model, "上三坂") == 4


async def test_a_district_an_order_names_cannot_be_removed_under_it(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    # (Another name than the other test's: the registry of this test process is shared.)
    status, added = await engine.post("/api/v1/districts", joso, {"municipality": "08211", "name": "東上三坂"})
    assert status == 201, added
    await send(engine, joso, order(4, ["東上三坂"]))
    async with engine.http.delete(f"{engine.url}/api/v1/districts/{added['code']}",
                                  headers={"Authorization": f"Bearer {joso}"}) as resp:  # fmt: skip
        assert resp.status == 409
    await send(engine, joso, order(4, ["東上三坂"], "lift"))
    async with engine.http.delete(f"{engine.url}/api/v1/districts/{added['code']}",
                                  headers={"Authorization": f"Bearer {joso}"}) as resp:  # fmt: skip
        assert resp.status == 204


async def test_a_drill_does_not_move_the_real_feed(engine: RunningEngine) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    await send(engine, joso, order(3, ["all"]))
    async with engine.http.get(f"{engine.url}/feeds/alerts.atom") as resp:
        etag = resp.headers["ETag"]
    await send(engine, joso, order(4, ["三坂町"], status="Exercise"))
    async with engine.http.get(f"{engine.url}/feeds/alerts.atom", headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304
