"""Signage and radio payloads as a display controller and a loudspeaker gateway receive them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from lxml import etree

from adapters.radio import (
    CHIME_DOWN_MARKER,
    CHIME_UP_MARKER,
    GENERIC_CALL_SIGN,
    SSML_NS,
    RadioAdapter,
    call_sign,
)
from adapters.signage import (
    BODY_LIMITS,
    HEADLINE_LIMITS,
    LATIN_BODY_LIMIT,
    LATIN_HEADLINE_LIMIT,
    SignageAdapter,
)
from alertd import messages
from alertd.models import AdapterKind, Alert, Info, MsgType, Priority, Status, Subscriber
from tests.support import make_alert

NAMES = {"08211": "常総市", "13101": "千代田区", "08211:若宮戸": "若宮戸", "08211:三坂町": "三坂町"}
SSML = f"{{{SSML_NS}}}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


@pytest.fixture(autouse=True)
def fixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messages, "place_name", lambda code, *, full=False: NAMES.get(code, code))


def missile(**kw: object) -> Alert:
    return make_alert(
        **{
            "kind": "missile",
            "level": None,
            "action": None,
            "reason": None,
            "municipality": None,
            "districts": [],
            "priority": Priority.FLASH,
            **kw,
        }
    )


def subscriber(kind: AdapterKind, languages: list[str] | None = None) -> Subscriber:
    sub = Subscriber(id="s-1", adapter=kind, endpoint="mqtt://localhost/joso", districts=["08211"])
    if languages is not None:
        sub.languages = languages
    return sub


def signage(alert: Alert, languages: list[str] | None = None) -> dict[str, Any]:
    payload = SignageAdapter().render(alert, subscriber(AdapterKind.SIGNAGE, languages))
    assert payload.content_type == "application/json"
    return json.loads(payload.body.decode("utf-8"))


def radio(alert: Alert, languages: list[str] | None = None, **adapter_kw: Any) -> dict[str, Any]:
    payload = RadioAdapter(**adapter_kw).render(alert, subscriber(AdapterKind.RADIO, languages))
    assert payload.content_type == "application/json"
    return json.loads(payload.body.decode("utf-8"))


# --- signage ----------------------------------------------------------------------


def test_signage_level_4_is_purple_scrolling_and_bilingual() -> None:
    doc = signage(make_alert(), ["zh"])
    assert (doc["colour"], doc["colour_name"], doc["pictogram"]) == ("#AA00AA", "purple", "evacuate")
    assert doc["scroll"] is True and doc["level"] == 4
    assert list(doc["lines"]) == ["ja", "en", "zh"]  # ja and en even when not asked for
    assert "警戒レベル4" in doc["lines"]["ja"]["headline"]
    assert "若宮戸" in doc["lines"]["ja"]["body"]
    assert "Alert Level 4" in doc["lines"]["en"]["headline"]
    assert doc["districts"] == [
        {"code": "08211:若宮戸", "name": "若宮戸"},
        {"code": "08211:三坂町", "name": "三坂町"},
    ]
    assert (doc["alert_id"], doc["identifier"], doc["status"], doc["msg_type"]) == (
        "a-1",
        "joso-2026-0001",
        "Actual",
        "Alert",
    )


def test_signage_body_is_utf8_not_escaped() -> None:
    payload = SignageAdapter().render(make_alert(), subscriber(AdapterKind.SIGNAGE))
    assert "避難指示".encode() in payload.body


@pytest.mark.parametrize(("level", "colour", "scroll"), [(3, "red", False), (5, "black", True)])
def test_signage_colour_and_scroll_follow_the_level(level: int, colour: str, scroll: bool) -> None:
    doc = signage(make_alert(level=level))
    assert doc["colour_name"] == colour and doc["scroll"] is scroll


def test_signage_lift_and_cancel_do_not_scroll() -> None:
    lifted = signage(make_alert(level=5, action="lift"))
    assert lifted["pictogram"] == "lift" and lifted["scroll"] is False
    assert "解除" in lifted["lines"]["ja"]["headline"]
    cancelled = signage(make_alert(level=5, msg_type=MsgType.CANCEL))
    assert cancelled["pictogram"] == "cancel" and cancelled["scroll"] is False
    assert cancelled["lines"]["ja"]["headline"].startswith("【取消】")
    assert cancelled["lines"]["en"]["body"].startswith("This cancels the earlier")


def test_signage_drill_is_marked() -> None:
    doc = signage(make_alert(status=Status.EXERCISE))
    assert doc["status"] == "Exercise"
    assert doc["lines"]["ja"]["headline"].startswith("【訓練】")
    assert doc["lines"]["ja"]["body"].startswith("これは訓練です。")
    assert doc["lines"]["en"]["headline"].startswith("[DRILL]")


def test_signage_missile() -> None:
    doc = signage(missile())
    assert (doc["colour_name"], doc["pictogram"], doc["scroll"]) == ("black", "missile", True)
    assert doc["level"] is None
    assert doc["lines"]["ja"]["headline"] == "ミサイル発射"


def test_signage_texts_fit_a_display() -> None:
    names = [f"第{i}地区" for i in range(40)]
    doc = signage(
        make_alert(
            level=3, districts=[f"08211:{n}" for n in names], status=Status.EXERCISE, msg_type=MsgType.UPDATE
        ),
        ["zh", "ko", "ja-easy"],
    )
    for lang, line in doc["lines"].items():
        assert line["headline"] and line["body"]
        assert len(line["headline"]) <= HEADLINE_LIMITS.get(lang, LATIN_HEADLINE_LIMIT)
        assert len(line["body"]) <= BODY_LIMITS.get(lang, LATIN_BODY_LIMIT)
    assert "ほか" in doc["lines"]["ja"]["body"]  # the list was summarised, not cut mid-name
    assert doc["lines"]["ja"]["body"].startswith("これは訓練です。")


WHAT_TO_DO = {
    "ja": {3: "高齢者等は避難", 4: "全員避難", 5: "直ちに安全を確保"},
    "en": {3: "must leave dangerous places", 4: "must leave dangerous places", 5: "Secure your safety now"},
    "zh": {3: "离开危险地点避难", 4: "离开危险地点避难", 5: "立即确保安全"},
    "ko": {3: "대피하십시오", 4: "대피하십시오", 5: "안전을 확보하십시오"},
    "ja-easy": {3: "にげて ください", 4: "にげて ください", 5: "あんぜんな ところへ"},
}


@pytest.mark.parametrize("level", [3, 4, 5])
def test_signage_keeps_what_to_do_even_for_a_long_drill_order(level: int) -> None:
    names = ["水海道橋本町", "水海道宝町", "豊岡町甲", "中妻町", "大生郷町", "新石下", "本石下"]
    alert = make_alert(
        level=level, reason="内水氾濫", status=Status.EXERCISE, districts=[f"08211:{n}" for n in names]
    )
    doc = signage(alert, ["zh", "ko", "ja-easy"])
    for lang, phrases in WHAT_TO_DO.items():
        assert phrases[level] in doc["lines"][lang]["body"], lang


def test_signage_expiry() -> None:
    info = Info(event="避難指示", expires=datetime(2026, 6, 1, 21, 0, tzinfo=UTC))
    assert signage(make_alert(infos=[info]))["expires"] == "2026-06-01T21:00:00-00:00"
    assert signage(make_alert())["expires"] is None


def test_signage_render_is_pure() -> None:
    alert, sub = make_alert(), subscriber(AdapterKind.SIGNAGE, ["ko"])
    assert SignageAdapter().render(alert, sub).body == SignageAdapter().render(alert, sub).body


# --- radio ------------------------------------------------------------------------------


def test_radio_reads_the_message_three_times_between_chimes_and_ends_with_the_call_sign() -> None:
    alert = make_alert()
    doc = radio(alert, ["ja"])
    spoken = messages.spoken(alert, "ja")
    lines = doc["text"].split("\n")
    assert lines[0] == CHIME_UP_MARKER and lines[-1] == CHIME_DOWN_MARKER
    assert lines[1:4] == [spoken] * 3
    assert doc["text"].count(spoken) == 3
    assert lines[-2] == "こちらは、防災じょうそうです。" == doc["call_sign"]
    assert doc["languages"] == ["ja"] and doc["priority"] == "routine"
    assert "避難指示" in spoken and "若宮戸" in spoken


def test_radio_ssml_parses_and_follows_the_broadcast_order() -> None:
    doc = radio(make_alert())
    root = etree.fromstring(doc["ssml"].encode("utf-8"))
    assert root.tag == f"{SSML}speak"
    assert root.get("version") == "1.1" and root.get(XML_LANG) == "ja-JP"
    children = list(root)
    assert children[0].tag == f"{SSML}audio" and children[0].get("src") == "chime-up.wav"
    assert children[-1].tag == f"{SSML}audio" and children[-1].get("src") == "chime-down.wav"
    assert root.find(f"{SSML}break") is not None
    paragraphs = ["".join(p.itertext()) for p in root.iter(f"{SSML}p")]
    ja = messages.spoken(make_alert(), "ja")
    assert paragraphs.count(ja) == 3
    assert paragraphs[-1] == "こちらは、防災じょうそうです。"
    english = [p for p in root.iter(f"{SSML}p") if p.get(XML_LANG) == "en-US"]
    assert len(english) == 1 and "Alert Level 4" in "".join(english[0].itertext())


def test_radio_other_languages_follow_once_after_japanese() -> None:
    alert = make_alert()
    doc = radio(alert, ["ja", "en", "ko"])
    assert doc["languages"] == ["ja", "en", "ko"]
    lines = doc["text"].split("\n")
    assert lines[4] == messages.spoken(alert, "en") and lines[5] == messages.spoken(alert, "ko")
    assert doc["text"].count(messages.spoken(alert, "en")) == 1


def test_radio_missile_is_j_alert_style_without_a_municipal_call_sign() -> None:
    doc = radio(missile(), ["ja"])
    assert doc["call_sign"] is None
    assert doc["priority"] == "flash"
    assert doc["text"].count("ミサイル発射。ミサイル発射。") == 3
    assert "こちらは" not in doc["text"]
    root = etree.fromstring(doc["ssml"].encode("utf-8"))
    assert "こちらは" not in "".join(root.itertext())


def test_radio_national_alert_for_a_known_municipality_gets_its_call_sign() -> None:
    doc = radio(missile(municipality="13101"), ["ja"])
    assert doc["call_sign"] == "こちらは、防災千代田区です。"


def test_radio_drill_says_so_in_every_reading() -> None:
    doc = radio(make_alert(status=Status.EXERCISE), ["ja"])
    readings = doc["text"].split("\n")[1:4]
    assert all(r.startswith("これは訓練です。") for r in readings)


def test_radio_cancel_is_read_three_times() -> None:
    doc = radio(make_alert(msg_type=MsgType.CANCEL), ["ja"])
    assert doc["text"].count("取り消します") == 3 and doc["msg_type"] == "Cancel"
    assert "全員避難してください" not in doc["text"]


def test_radio_tsunami() -> None:
    alert = missile(kind="tsunami", infos=[Info(event="大津波警報")])
    doc = radio(alert, ["ja"])
    assert doc["text"].count("大津波警報。大津波警報。") == 3


def test_radio_ssml_escapes_text_from_peers() -> None:
    info = Info(event="x", headline='<b>注意</b> & "quotes"', description="A < B && C > D\x07")
    doc = radio(make_alert(kind="something-new", infos=[info]), ["ja"])
    root = etree.fromstring(doc["ssml"].encode("utf-8"))
    assert "A < B && C > D" in "".join(root.itertext())
    assert root.find(f".//{SSML}b") is None  # markup in the text stays text


def test_call_sign_default_override_and_fallback() -> None:
    assert call_sign("13101", "千代田区") == "こちらは、防災千代田区です。"
    assert call_sign("08211", "常総市") == "こちらは、防災じょうそうです。"
    assert call_sign("082112") == "こちらは、防災じょうそうです。"  # 6-digit form with check digit
    assert call_sign("13101") == "こちらは、防災千代田区です。"  # name looked up
    assert call_sign("99999") == GENERIC_CALL_SIGN  # never "防災99999"
    assert (
        call_sign("13101", "千代田区", {"13101": "こちらは、ぼうさいちよだです。"})
        == "こちらは、ぼうさいちよだです。"
    )


def test_radio_adapter_call_sign_table_adds_to_the_defaults() -> None:
    adapter_kw = {"call_signs": {"13101": "こちらは、ぼうさいちよだです。"}}
    assert (
        radio(make_alert(municipality="13101"), ["ja"], **adapter_kw)["call_sign"]
        == "こちらは、ぼうさいちよだです。"
    )
    assert radio(make_alert(), ["ja"], **adapter_kw)["call_sign"] == "こちらは、防災じょうそうです。"


def test_radio_render_is_pure() -> None:
    alert, sub = make_alert(), subscriber(AdapterKind.RADIO)
    assert RadioAdapter().render(alert, sub).body == RadioAdapter().render(alert, sub).body
