"""What a resident notices in alert texts: the level, the places, drill and cancel wording, every language."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alertd import messages
from alertd.models import Alert, Info, MsgType, Priority, Shelter, Status
from tests.support import make_alert

NAMES = {"08211": "常総市", "08211:若宮戸": "若宮戸", "08211:三坂町": "三坂町", "08211:本石下": "本石下"}
JOSO_DISTRICTS = ["08211:若宮戸", "08211:三坂町"]
KINDS = [
    "evacuation",
    "shelter",
    "eew",
    "tsunami",
    "special_warning",
    "warning",
    "missile",
    "landslide",
    "flood",
    "test",
    "something-new",
    None,
]


@pytest.fixture(autouse=True)
def fixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Place names from a fixed table, so the texts do not depend on the registry's data."""

    def fake(code: str, *, full: bool = False) -> str:
        name = NAMES.get(code, code)
        return f"茨城県{name}" if full and code == "08211" else name

    monkeypatch.setattr(messages, "place_name", fake)
    # Nor on its kana readings: romanised names (en, ko) are tests/test_romaji.py's.
    monkeypatch.setattr(messages, "readable_name", lambda code, name, lang: name)


def national(kind: str, **kw: object) -> Alert:
    base: dict[str, object] = {
        "kind": kind,
        "level": None,
        "action": None,
        "reason": None,
        "municipality": None,
        "districts": [],
        "origin": "jma",
        "priority": Priority.FLASH,
    }
    base.update(kw)
    return make_alert(**base)


# --- colours and pictograms ----------------------------------------------------


@pytest.mark.parametrize(
    ("level", "hex_", "name", "pictogram"),
    [
        (5, "#0C000C", "black", "secure-safety"),
        (4, "#AA00AA", "purple", "evacuate"),
        (3, "#FF2800", "red", "evacuate-elderly"),
        (2, "#F2E700", "yellow", "check-evacuation"),
        (1, "#FFFFFF", "white", "be-prepared"),
    ],
)
def test_level_style_uses_the_official_colours(level: int, hex_: str, name: str, pictogram: str) -> None:
    style = messages.level_style(level)
    assert (style.colour_hex, style.colour_name, style.pictogram_key) == (hex_, name, pictogram)


def test_level_style_without_a_level_is_neutral() -> None:
    assert messages.level_style(None).pictogram_key == "info"
    assert messages.level_style(9).colour_name == "grey"


def test_alert_style_picks_the_hazard_pictogram_for_national_warnings() -> None:
    assert messages.alert_style(national("missile")).pictogram_key == "missile"
    assert messages.alert_style(national("missile")).colour_name == "black"
    assert messages.alert_style(national("tsunami")).pictogram_key == "tsunami"
    assert messages.alert_style(national("eew")).pictogram_key == "earthquake"
    assert messages.alert_style(make_alert(level=5)).pictogram_key == "secure-safety"


def test_lift_and_cancel_are_not_shown_in_danger_colours() -> None:
    lifted = messages.alert_style(make_alert(level=5, action="lift"))
    cancelled = messages.alert_style(make_alert(level=5, msg_type=MsgType.CANCEL))
    assert (lifted.pictogram_key, lifted.colour_name) == ("lift", "white")
    assert (cancelled.pictogram_key, cancelled.colour_name) == ("cancel", "white")


# --- desk evacuation orders ------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "ja_name", "ja_call", "en_name"),
    [
        (3, "高齢者等避難", "高齢者", "Elderly and others evacuate"),
        (4, "避難指示", "全員避難", "Evacuation order"),
        (5, "緊急安全確保", "直ちに身の安全を確保", "Secure safety immediately"),
    ],
)
def test_evacuation_order_names_level_places_and_what_to_do(
    level: int, ja_name: str, ja_call: str, en_name: str
) -> None:
    alert = make_alert(level=level)
    ja = messages.message(alert, "ja")
    en = messages.message(alert, "en")
    assert ja.headline == f"警戒レベル{level} {ja_name}（洪水）"
    for text in (ja.body, en.body):
        assert "若宮戸" in text and "三坂町" in text
    assert f"警戒レベル{level}" in ja.body and ja_call in ja.body and "発令" in ja.body
    assert "常総市" in ja.body
    assert f"Alert Level {level}" in en.headline and en_name in en.headline
    assert "flooding" in en.body and "issued" in en.body


def test_explicit_district_names_replace_the_looked_up_ones() -> None:
    text = messages.body(make_alert(), "ja", district_names=["本石下", "新石下"])
    assert "本石下、新石下に" in text and "若宮戸" not in text


def test_order_for_the_whole_municipality_says_so() -> None:
    alert = make_alert(districts=[])
    assert "全域" in messages.body(alert, "ja")
    assert "the whole of 常総市" in messages.body(alert, "en")
    assert messages.body(make_alert(districts=["08211"]), "ja") == messages.body(alert, "ja")


def test_open_shelters_are_listed() -> None:
    alert = make_alert(shelters=[Shelter("石下総合体育館"), Shelter("水海道小学校", status="closed")])
    ja = messages.body(alert, "ja")
    assert "石下総合体育館" in ja and "水海道小学校" not in ja
    assert "Open shelters: 石下総合体育館" in messages.body(alert, "en")


def test_a_full_shelter_is_said_to_be_full_not_left_out() -> None:
    """A 満員 shelter once just vanished from the text; people would walk to it."""
    shelters = [Shelter("石下総合体育館"), Shelter("水海道小学校", status="full")]
    for alert in (make_alert(shelters=shelters), make_alert(kind="shelter", level=None, shelters=shelters)):
        ja, en = messages.body(alert, "ja"), messages.body(alert, "en")
        assert "満員の避難所：水海道小学校" in ja and "ほかの避難所へ" in ja, ja
        assert "Full: 水海道小学校" in en, en
        assert all("水海道小学校" in messages.body(alert, lang) for lang in ("zh", "ko", "ja-easy"))
    # A notice that shelters are full (none open) is not announced as an opening.
    only_full = make_alert(kind="shelter", level=None, shelters=[Shelter("水海道小学校", status="full")])
    assert "避難所の満員" in messages.headline(only_full, "ja") and "開設" not in messages.message(only_full, "ja").body
    assert "Shelters full" in messages.headline(only_full, "en")


def test_lift_says_the_order_is_lifted_and_gives_no_evacuation_call() -> None:
    alert = make_alert(level=4, action="lift")
    ja = messages.message(alert, "ja")
    en = messages.message(alert, "en")
    assert ja.headline.startswith("【解除】") and "【更新】" not in ja.headline and "解除しました" in ja.body
    assert "全員避難" not in ja.body
    assert en.headline.startswith("[LIFTED]")
    assert ja.spoken.startswith("解除のお知らせです。")
    assert "lifted" in en.body and "must evacuate" not in en.body
    for lang in ("zh", "ko", "ja-easy"):
        assert "4" in messages.body(alert, lang)


@pytest.mark.parametrize("lang", ["zh", "ko", "ja-easy"])
@pytest.mark.parametrize("level", [3, 4, 5])
def test_evacuation_orders_have_their_own_text_in_every_language(lang: str, level: int) -> None:
    msg = messages.message(make_alert(level=level), lang)
    english = messages.message(make_alert(level=level), "en")
    assert msg.source == "template"
    assert str(level) in msg.headline and str(level) in msg.body
    assert "若宮戸" in msg.body
    assert msg.body != english.body


def test_reasons_are_translated() -> None:
    assert messages.reason_text("土砂災害", "en") == "landslides"
    assert messages.reason_text("高潮", "en") == "storm surge"
    assert messages.reason_text("内水氾濫", "zh") == "内涝"
    assert messages.reason_text("津波", "ko") == "쓰나미"
    assert messages.reason_text("flood", "ja") == "洪水"
    assert messages.reason_text("ため池決壊", "en") == "ため池決壊"  # unknown: passed through, still informs
    assert messages.reason_text(None, "en") is None
    assert "landslides" in messages.headline(make_alert(reason="土砂災害"), "en")


def test_easy_japanese_explains_the_hazard() -> None:
    assert "かわの みずが あふれる" in messages.body(make_alert(), "ja-easy")


def test_long_district_lists_can_be_summarised() -> None:
    names = [f"地区{i}" for i in range(12)]
    assert "地区0、地区1、地区2ほか9地区" in messages.body(make_alert(), "ja", names, max_places=3)
    assert "and 9 more areas" in messages.body(make_alert(), "en", names, max_places=3)


# --- status and message type ----------------------------------------------------------

MARKERS = {
    Status.EXERCISE: {
        "ja": "【訓練】",
        "en": "[DRILL]",
        "zh": "【演习】",
        "ko": "[훈련]",
        "ja-easy": "【くんれん】",
    },
    Status.TEST: {
        "ja": "【試験】",
        "en": "[TEST]",
        "zh": "【测试】",
        "ko": "[시험]",
        "ja-easy": "【しけん】",
    },
}


@pytest.mark.parametrize("status", [Status.EXERCISE, Status.TEST])
@pytest.mark.parametrize("kind", ["evacuation", "missile", "tsunami", "something-new"])
def test_drills_and_tests_are_marked_first_in_every_language(status: Status, kind: str) -> None:
    alert = make_alert(status=status, kind=kind, infos=[Info(event="訓練情報", headline="お知らせ")])
    for lang, marker in MARKERS[status].items():
        assert messages.headline(alert, lang).startswith(marker)
    assert messages.body(alert, "ja").startswith(
        "これは訓練です。" if status == Status.EXERCISE else "これは試験です。"
    )
    assert messages.body(alert, "en").startswith(
        "This is a drill." if status == Status.EXERCISE else "This is a test."
    )


def test_actual_alerts_carry_no_drill_marker() -> None:
    msg = messages.message(make_alert(), "ja")
    assert "訓練" not in msg.headline and "訓練" not in msg.body


def test_cancel_says_the_earlier_message_was_cancelled_and_sent_in_error() -> None:
    alert = make_alert(msg_type=MsgType.CANCEL, level=5)
    ja = messages.message(alert, "ja")
    en = messages.message(alert, "en")
    assert ja.headline.startswith("【取消】")
    assert "取り消します" in ja.body and "誤って" in ja.body and "緊急安全確保" in ja.body
    assert en.headline.startswith("[CANCELLED]")
    assert en.body.startswith("This cancels the earlier") and "sent in error" in en.body
    # It names where and what: the town, the districts, the level.
    assert "常総市の若宮戸" in ja.body and "警戒レベル5" in ja.body
    # A cancellation must not repeat the order's instructions.
    assert "身の安全を確保してください" not in ja.body
    assert "Move to the safest place" not in en.body
    for lang in ("zh", "ko", "ja-easy"):
        assert messages.body(alert, lang).strip()


def test_cancelled_drill_keeps_both_markers() -> None:
    alert = make_alert(msg_type=MsgType.CANCEL, status=Status.EXERCISE)
    assert messages.headline(alert, "ja").startswith("【訓練】【取消】")
    assert messages.headline(alert, "en").startswith("[DRILL] [CANCELLED]")


def test_update_is_marked() -> None:
    assert messages.headline(make_alert(msg_type=MsgType.UPDATE), "ja").startswith("【更新】")


# --- national warnings --------------------------------------------------------------------


def test_missile_uses_the_j_alert_wording() -> None:
    alert = national("missile")
    ja = messages.message(alert, "ja")
    assert ja.headline == "ミサイル発射"
    assert "建物の中" in ja.body and "地下" in ja.body
    assert ja.spoken.startswith("ミサイル発射。ミサイル発射。")
    assert "Missile" in messages.headline(alert, "en")
    assert "underground" in messages.body(alert, "en")


def test_eew_spoken_form_is_the_j_alert_phrase() -> None:
    assert messages.spoken(national("eew"), "ja").startswith("緊急地震速報。大地震です。大地震です。")


@pytest.mark.parametrize(
    ("event", "level", "ja_title", "en_title"),
    [
        ("大津波警報", None, "大津波警報", "Major Tsunami Warning"),
        ("津波警報", None, "津波警報", "Tsunami Warning"),
        ("津波注意報", None, "津波注意報", "Tsunami Advisory"),
        ("", 5, "大津波警報", "Major Tsunami Warning"),
    ],
)
def test_tsunami_grade_follows_the_event(event: str, level: int | None, ja_title: str, en_title: str) -> None:
    alert = national("tsunami", level=level, infos=[Info(event=event)] if event else [])
    assert messages.headline(alert, "ja") == ja_title
    assert messages.headline(alert, "en") == en_title
    assert "高" in messages.body(alert, "ja") or "海から" in messages.body(alert, "ja")


def test_national_alert_lists_areas_with_their_prefecture() -> None:
    alert = national("tsunami", districts=["08211"])
    assert "茨城県常総市" in messages.body(alert, "ja")


def test_special_warning_names_the_hazard() -> None:
    alert = national("special_warning", reason="大雨")
    assert messages.headline(alert, "ja") == "大雨特別警報"
    assert "heavy rain" in messages.headline(alert, "en")


def test_warning_without_a_template_uses_the_info_text() -> None:
    info_ja = Info(
        event="気象警報", language="ja-JP", headline="茨城県南部に大雨警報", description="土砂災害に警戒。"
    )
    info_en = Info(
        event="Weather warning", language="en-US", headline="Heavy rain warning for southern Ibaraki"
    )
    alert = national("warning", infos=[info_ja, info_en])
    assert messages.headline(alert, "ja") == "茨城県南部に大雨警報"
    assert messages.body(alert, "ja") == "土砂災害に警戒。"
    assert messages.headline(alert, "en") == "Heavy rain warning for southern Ibaraki"
    assert messages.message(alert, "en").source == "info"


def test_missing_language_falls_back_and_says_so() -> None:
    info = Info(
        event="新しい種類", language="ja-JP", headline="ため池の決壊のおそれ", description="下流の人は避難。"
    )
    alert = national("something-new", infos=[info])
    en = messages.message(alert, "en")
    assert en.source == "fallback:ja"
    assert "Japanese original" in en.body and "下流の人は避難。" in en.body
    zh = messages.message(alert, "zh")
    assert "日文原文" in zh.body
    easy = messages.message(alert, "ja-easy")
    assert easy.source == "fallback:ja" and "ふつうの にほんご" in easy.body


def test_english_info_is_preferred_over_japanese_for_other_languages() -> None:
    infos = [
        Info(event="x", language="ja-JP", headline="日本語の見出し"),
        Info(event="x", language="en-US", headline="English headline"),
    ]
    ko = messages.message(national("something-new", infos=infos), "ko")
    assert ko.headline == "English headline" and ko.source == "fallback:en"


def test_unsupported_language_gets_english_with_a_note() -> None:
    msg = messages.message(make_alert(), "fr")
    assert "Alert Level 4" in msg.headline
    assert "No text in fr" in msg.body


# --- never empty ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", ["issue", "lift", None])
@pytest.mark.parametrize("msg_type", [MsgType.ALERT, MsgType.UPDATE, MsgType.CANCEL])
def test_no_language_kind_combination_is_empty(
    kind: str | None, action: str | None, msg_type: MsgType
) -> None:
    variants = [
        make_alert(kind=kind, action=action, msg_type=msg_type, level=None, reason=None, districts=[]),
        make_alert(kind=kind, action=action, msg_type=msg_type, level=2, municipality=None),
        make_alert(kind=kind, action=action, msg_type=msg_type, infos=[Info(event="")]),
        make_alert(
            kind=kind,
            action=action,
            msg_type=msg_type,
            status=Status.EXERCISE,
            infos=[Info(event="e", language="en-US", description="desc only")],
        ),
    ]
    for alert in variants:
        for lang in [*messages.supported_languages(), "fr"]:
            msg = messages.message(alert, lang)
            assert msg.headline.strip(), (kind, lang)
            assert msg.body.strip(), (kind, lang)
            assert msg.spoken.strip(), (kind, lang)


# --- helpers ---------------------------------------------------------------------------------


def test_supported_languages() -> None:
    assert messages.supported_languages() == ["ja", "en", "zh", "ko", "ja-easy"]


@pytest.mark.parametrize(
    ("tag", "lang"),
    [
        ("en-US", "en"),
        ("ja_JP", "ja"),
        ("zh-Hans", "zh"),
        ("ko-KR", "ko"),
        ("ja-x-easy", "ja-easy"),
        ("fr", "fr"),
    ],
)
def test_normalise_language(tag: str, lang: str) -> None:
    assert messages.normalise_language(tag) == lang


def test_shorten_keeps_whole_sentences() -> None:
    text = "一文目です。二文目はもう少し長い文です。三文目。"
    assert messages.shorten(text, 20) == "一文目です。二文目はもう少し長い文です。"
    assert messages.shorten(text, 100) == text
    cut = messages.shorten("x" * 50, 10)
    assert len(cut) <= 10 and cut.endswith("…")


def test_expires_does_not_affect_text() -> None:
    info = Info(event="e", expires=datetime(2026, 6, 1, tzinfo=UTC) + timedelta(hours=3))
    assert messages.body(make_alert(infos=[info]), "ja") == messages.body(make_alert(), "ja")


def test_place_name_falls_back_to_the_code_without_a_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real function, not the fixture's table
    from alertd import places

    monkeypatch.setattr(places, "_lookup", None)  # no registry loaded in this process
    assert messages.place_name("08211") == "08211"
    alert = make_alert()
    body = messages.body(alert, "ja")
    assert body.startswith("08211:若宮戸") and "08211は" not in body  # a bare code is never the subject


def test_place_name_uses_the_registry_when_it_knows_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    from geo.registry import Registry

    Registry.default()  # loading the registry is what hands alertd its place names
    assert messages.place_name("08211") == "常総市"
    assert messages.place_name("08211", full=True) == "茨城県常総市"


@pytest.mark.parametrize("action", ["issue", "lift"])
@pytest.mark.parametrize("districts", [[], ["08211:三坂町"]])
def test_an_order_issued_on_a_towns_behalf_names_the_town_once_in_every_language(
    action: str, districts: list[str]
) -> None:
    """代行: the English text said "for the whole of 常総市 in 常総市 (issued by 茨城県 on its behalf)"."""
    alert = make_alert(districts=districts, action=action, on_behalf_of="08211", source="茨城県")
    for lang in messages.LANGUAGES:
        body = messages.body(alert, lang)
        assert body.count("常総市") == 1 and "茨城県" in body, (lang, body)
    en = messages.body(alert, "en")
    assert "in 常総市 (issued by 茨城県 on its behalf)" in en, en
    if not districts:
        assert "the whole area in 常総市" in en, en
