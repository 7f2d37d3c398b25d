"""Short, plain alert texts in the languages residents read: ja, en, zh, ko and やさしい日本語.

Every channel (signage, radio, portals) words the same alert the same way, so
the wording lives here once. The texts follow the Cabinet Office's 2021
guideline for 警戒レベル (the key phrases "危険な場所から全員避難" and so on)
and J-Alert's fixed phrases ("ミサイル発射。ミサイル発射。", "緊急地震速報。
大地震です。") because residents have learnt to react to exactly those words.

Rules every text obeys, because a resident may see only one line of it:

- a drill or test says so first (【訓練】, [DRILL], "これは訓練です。");
- a cancellation says first that the earlier message is cancelled and was sent
  in error, and does not repeat the earlier instructions;
- a lift (解除) says the order is lifted;
- where no template fits, the alert's own CAP info text is used; where no
  text exists in a language, another language's text is shown with a note
  saying so; the result is never empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from alertd.models import Alert, Info, MsgType, Status

# Order matters: it is the order signage shows the lines in.
LANGUAGES: tuple[str, ...] = ("ja", "en", "zh", "ko", "ja-easy")

_LANGUAGE_ALIASES = {
    "ja-jp": "ja",
    "jpn": "ja",
    "en-us": "en",
    "en-gb": "en",
    "eng": "en",
    "zh-cn": "zh",
    "zh-hans": "zh",
    "zh-sg": "zh",
    "chi": "zh",
    "zho": "zh",
    "ko-kr": "ko",
    "kor": "ko",
    "ja-easy": "ja-easy",
    "ja-x-easy": "ja-easy",
    "ja-jp-x-easy": "ja-easy",
    "easy-ja": "ja-easy",
    "easy": "ja-easy",
}

# CAP info languages that hold やさしい日本語. Plain "ja-JP" must not match, or
# hard Japanese would be passed off as easy Japanese without a note.
_EASY_INFO_TAGS = frozenset({"ja-x-easy", "ja-jp-x-easy", "ja-easy"})


def supported_languages() -> list[str]:
    """The languages with full templates, in display order."""
    return list(LANGUAGES)


def normalise_language(code: str) -> str:
    """Map a language tag as subscribers write it ("en-US", "ja_JP", "zh-Hans") to ours."""
    tag = code.strip().replace("_", "-").lower()
    if tag in LANGUAGES:
        return tag
    if tag in _LANGUAGE_ALIASES:
        return _LANGUAGE_ALIASES[tag]
    prefix = tag.split("-")[0]
    # zh-TW/zh-Hant readers get Simplified text rather than English: closer to readable.
    return prefix if prefix in LANGUAGES else tag


# --- 警戒レベル colours and pictograms ----------------------------------------


@dataclass(frozen=True)
class Style:
    colour_hex: str
    colour_name: str
    pictogram_key: str


# The colour codes are JMA's colour-universal-design values for the 危険度
# colours (災害切迫 黒, 危険 紫, 警戒 赤, 注意 黄), the ones the 警戒レベル
# guideline tells municipalities to use, so a signage screen matches TV and apps.
_LEVEL_STYLES: dict[int, Style] = {
    5: Style("#0C000C", "black", "secure-safety"),
    4: Style("#AA00AA", "purple", "evacuate"),
    3: Style("#FF2800", "red", "evacuate-elderly"),
    2: Style("#F2E700", "yellow", "check-evacuation"),
    1: Style("#FFFFFF", "white", "be-prepared"),
}
_NEUTRAL = Style("#808080", "grey", "info")

# Pictograms for kinds whose symbol matters more than the level's.
_KIND_PICTOGRAMS = {
    "tsunami": "tsunami",
    "eew": "earthquake",
    "earthquake": "earthquake",
    "missile": "missile",
    "special_warning": "special-warning",
    "landslide": "landslide",
    "flood": "flood",
    "warning": "warning",
    "shelter": "shelter",
    "test": "test",
}

# Level a national kind is shown at when the alert carries none. These follow
# the guideline's 相当 table (土砂災害警戒情報 ≈ 4, 特別警報 ≈ 5, 警報 ≈ 3);
# missile and EEW get 5 because both ask for protective action within seconds.
_KIND_DEFAULT_LEVEL = {
    "missile": 5,
    "eew": 5,
    "special_warning": 5,
    "landslide": 4,
    "warning": 3,
    "flood": 3,
}


def ordered_languages(first: tuple[str, ...], requested: list[str]) -> list[str]:
    """``first`` in that order, then the requested languages (normalised), without repeats."""
    langs = list(first)
    for code in requested:
        lang = normalise_language(code)
        if lang not in langs:
            langs.append(lang)
    return langs


def level_style(level: int | None) -> Style:
    """The official colour and pictogram of a 警戒レベル; grey 'info' when there is none."""
    if level is None:
        return _NEUTRAL
    return _LEVEL_STYLES.get(level, _NEUTRAL)


def effective_level(alert: Alert) -> int | None:
    """The level to show: the alert's own, else the 相当 level of its kind."""
    if alert.level is not None:
        return alert.level
    kind = _kind(alert)
    if kind == "tsunami":
        return _TSUNAMI_LEVEL_BY_GRADE.get(_tsunami_grade(alert))
    return _KIND_DEFAULT_LEVEL.get(kind)


def alert_style(alert: Alert) -> Style:
    """Colour and pictogram for showing this alert.

    A cancellation or a lift is shown white: a screen that stays black or
    purple after the danger has passed teaches people to ignore the colours.
    """
    if alert.msg_type == MsgType.CANCEL:
        return Style("#FFFFFF", "white", "cancel")
    if alert.action == "lift":
        return Style("#FFFFFF", "white", "lift")
    base = level_style(effective_level(alert))
    pictogram = _KIND_PICTOGRAMS.get(_kind(alert), base.pictogram_key)
    return Style(base.colour_hex, base.colour_name, pictogram)


# --- place names ------------------------------------------------------------


def place_name(code: str, *, full: bool = False) -> str:
    """The registry's name for a municipality or district code, else the code itself.

    ``full`` gives the name with its prefecture ("茨城県常総市"), which
    national alerts need because municipality names repeat across Japan
    (府中市 is in both Tokyo and Hiroshima). The registry (geo.registry) may be
    absent or may not know the code; a name is only cosmetic, and an alert
    must never fail to render for want of one.
    """
    try:
        from geo.registry import Registry  # imported late: optional, and loading it is not free

        entry = Registry.default().get(code)
    except Exception:
        return code
    name = getattr(entry, "full_name", None) if full else None
    name = name or getattr(entry, "name", None)
    return name if isinstance(name, str) and name else code


def _known_name(code: str | None) -> str | None:
    """A municipality's name only when the registry really knows it (never a bare code in prose)."""
    if not code:
        return None
    name = place_name(code)
    return None if name == code or name.isdigit() else name


def district_names(alert: Alert) -> list[str]:
    """Names of the alert's districts, leaving out the municipality itself (that means 全域).

    Without a municipality (national alerts) names carry their prefecture.
    """
    names: list[str] = []
    for code in alert.districts:
        if alert.municipality and code == alert.municipality:
            continue
        name = place_name(code, full=alert.municipality is None)
        if name not in names:
            names.append(name)
    return names


# --- phrasebooks ------------------------------------------------------------

# Reasons as desks write them, with the English-style aliases peers send.
_REASON_ALIASES = {
    "flood": "洪水",
    "flooding": "洪水",
    "landslide": "土砂災害",
    "sediment": "土砂災害",
    "storm_surge": "高潮",
    "storm surge": "高潮",
    "tsunami": "津波",
    "inland_flood": "内水氾濫",
    "inland flooding": "内水氾濫",
    "heavy_rain": "大雨",
    "heavy rain": "大雨",
    "rain": "大雨",
    "earthquake": "地震",
    "storm": "暴風",
    "snow": "大雪",
    "eruption": "噴火",
    "がけ崩れ": "崖崩れ",
}

_REASONS: dict[str, dict[str, str]] = {
    "洪水": {"en": "flooding", "zh": "洪水", "ko": "홍수", "ja-easy": "こうずい"},
    "土砂災害": {"en": "landslides", "zh": "土砂灾害", "ko": "토사 재해", "ja-easy": "どしゃさいがい"},
    "高潮": {"en": "storm surge", "zh": "风暴潮", "ko": "폭풍 해일", "ja-easy": "たかしお"},
    "津波": {"en": "tsunami", "zh": "海啸", "ko": "쓰나미", "ja-easy": "つなみ"},
    "内水氾濫": {"en": "inland flooding", "zh": "内涝", "ko": "내수 범람", "ja-easy": "ないすいはんらん"},
    "大雨": {"en": "heavy rain", "zh": "暴雨", "ko": "호우", "ja-easy": "おおあめ"},
    "地震": {"en": "earthquake", "zh": "地震", "ko": "지진", "ja-easy": "じしん"},
    "暴風": {"en": "storm", "zh": "暴风", "ko": "폭풍", "ja-easy": "つよい かぜ"},
    "大雪": {"en": "heavy snow", "zh": "大雪", "ko": "대설", "ja-easy": "おおゆき"},
    "噴火": {"en": "volcanic eruption", "zh": "火山喷发", "ko": "화산 분화", "ja-easy": "ふんか"},
    "火山": {"en": "volcanic activity", "zh": "火山活动", "ko": "화산 활동", "ja-easy": "かざん"},
    "高波": {"en": "high waves", "zh": "巨浪", "ko": "높은 파도", "ja-easy": "たかい なみ"},
    "土石流": {"en": "debris flow", "zh": "泥石流", "ko": "토석류", "ja-easy": "どせきりゅう"},
    "崖崩れ": {"en": "slope failure", "zh": "山崩", "ko": "산사태", "ja-easy": "がけくずれ"},
    "地すべり": {"en": "landslide", "zh": "滑坡", "ko": "산사태", "ja-easy": "じすべり"},
    "河川氾濫": {"en": "river flooding", "zh": "河流泛滥", "ko": "하천 범람", "ja-easy": "かわの はんらん"},
}

# やさしい日本語 explains a hard word the first time it is used.
_EASY_EXPLAIN = {
    "洪水": "こうずい（かわの みずが あふれる こと）",
    "土砂災害": "どしゃさいがい（がけが くずれる こと など）",
    "高潮": "たかしお（うみの みずが たかく なる こと）",
    "内水氾濫": "ないすいはんらん（まちに みずが あふれる こと）",
}


def canonical_reason(reason: str | None) -> str | None:
    if reason is None or not reason.strip():
        return None
    text = reason.strip()
    return _REASON_ALIASES.get(text.lower(), text)


def reason_text(reason: str | None, lang: str, *, explain: bool = False) -> str | None:
    """A reason in a language; an unknown reason is passed through as written (it still informs)."""
    canon = canonical_reason(reason)
    if canon is None:
        return None
    lang = normalise_language(lang)
    if lang == "ja":
        return canon
    if lang == "ja-easy" and explain and canon in _EASY_EXPLAIN:
        return _EASY_EXPLAIN[canon]
    return _REASONS.get(canon, {}).get(lang, canon)


_PHRASES: dict[str, dict[str, Any]] = {
    "ja": {
        "sep": "",
        "list_sep": "、",
        "more_places": "{names}ほか{more}地区",
        "whole_area": "全域",
        "muni_part": "{muni}は、",
        "reason_part": "{reason}のため、",
        "title_reason": "{title}（{reason}）",
        "status_marker": {
            "Exercise": "【訓練】",
            "Test": "【試験】",
            "System": "【システム】",
            "Draft": "【下書き】",
        },
        "status_sentence": {
            "Exercise": "これは訓練です。",
            "Test": "これは試験です。",
            "System": "これはシステムの通知です。実際の災害情報ではありません。",
            "Draft": "これは下書きです。実際の災害情報ではありません。",
        },
        "update_marker": "【更新】",
        "where": "{muni}の{places}",
        "ended_item": "{places}の{title}",
        "evac_lift_items": "{muni_part}{items}を解除しました。引き続き、今後の情報に注意してください。",
        "on_behalf_part": "{issuer}は、{muni}に代わって、",
        "cancel_body_national": "先ほどの「{what}」は取り消されました。今後の情報に注意してください。",
        "lift_marker": "【解除】",
        "correction_marker": "【訂正】",
        "spoken_marker": {"lift": "解除のお知らせです。", "cancel": "取り消しのお知らせです。", "correction": "訂正のお知らせです。"},
        "still_standing": "{places}では、{phrases}を引き続き発令中です。",
        "on_behalf": "この情報は、{issuer}が{muni}に代わって発令しました。",
        "cancel_body_where": "先ほど{places}に発令した「{what}」は取り消します。"
        "誤って送信されたものです。今後の情報に注意してください。",
        "correction_title": "避難所情報",
        "correction_body": "{muni_part}避難所の情報を訂正します。",
        "correction_change": "{shelter}の{field}は「{new}」です（先ほどは「{old}」とお伝えしました）。",
        "correction_fields": {"address": "住所", "status": "状況", "capacity": "収容人数", "occupancy": "避難者数",
                              "added": "開設", "removed": "お知らせ"},
        "cancel_marker": "【取消】",
        "cancel_body": "先ほどの「{what}」は取り消します。"
        "誤って送信されたものです。今後の情報に注意してください。",
        "level_name": {3: "高齢者等避難", 4: "避難指示", 5: "緊急安全確保"},
        "level_title": "警戒レベル{n} {name}",
        "level_phrase": "警戒レベル{n}、{name}",
        "level_call": {
            3: "避難に時間のかかる高齢者や障害のある人とその支援者は、危険な場所から避難してください。"
            "その他の人も避難の準備をしてください。",
            4: "危険な場所にいる人は、全員避難してください。",
            5: "すでに災害が発生しているか、切迫しています。"
            "命の危険があります。直ちに身の安全を確保してください。",
        },
        "level_key": {
            3: "危険な場所から高齢者等は避難してください。",
            4: "危険な場所から全員避難してください。",
            5: "命の危険があります。直ちに安全を確保してください。",
        },
        "evac_unknown_title": "避難情報",
        "evac_unknown_phrase": "避難情報",
        "evac_issue": "{muni_part}{places}に、{reason_part}{phrase}を発令しました。{call}",
        "evac_unknown_call": "今後の情報に注意し、危険を感じたら早めに避難してください。",
        "evac_lift": "{muni_part}{places}に発令していた{phrase}を解除しました。"
        "引き続き、今後の情報に注意してください。",
        "lift_title": "{title} 解除",
        "shelters_open": "開設している避難所：{names}。",
        "shelters_named": "対象の避難所：{names}。",
        "shelter_title": {"issue": "避難所開設", "lift": "避難所閉鎖"},
        "shelter_body": {
            "issue": "{muni_part}避難所を開設しました。",
            "lift": "{muni_part}避難所を閉鎖しました。",
        },
        "areas_line": "対象地域：{places}。",
        "level_equiv": "警戒レベル{n}相当の情報です。",
        "national_lift": "{title}は解除されました。引き続き、今後の情報に注意してください。",
        "missile": {
            "title": "ミサイル発射",
            "spoken": "ミサイル発射。ミサイル発射",
            "body": "ミサイルが発射されたものとみられます。建物の中、または地下に避難してください。",
        },
        "eew_final": {"title": "{title}（最終報）", "body": "これが最終報です。"},
        "eew": {
            "title": "緊急地震速報",
            "spoken": "緊急地震速報。大地震です。大地震です",
            "body": "強い揺れに警戒してください。頭を守り、丈夫な机の下など安全な場所に身を隠してください。",
        },
        "tsunami": {
            "major": {
                "title": "大津波警報",
                "spoken": "大津波警報。大津波警報",
                "body": "巨大な津波が来襲します。ただちに、できる限り高い所へ避難してください。",
            },
            "warning": {
                "title": "津波警報",
                "spoken": "津波警報。津波警報",
                "body": "津波が来襲します。"
                "海岸や川の近くにいる人は、ただちに高台や津波避難ビルに避難してください。",
            },
            "advisory": {
                "title": "津波注意報",
                "spoken": "津波注意報",
                "body": "海の中にいる人は、ただちに海から上がって、海岸から離れてください。",
            },
            "forecast": {
                "title": "津波予報",
                "spoken": "津波予報",
                "body": "若干の海面変動が予想されますが、被害の心配はありません。",
            },
            # Only where the grade is not known (a peer's lift without one).
            "any": {
                "title": "津波警報・注意報",
                "spoken": "津波警報・注意報",
                "body": "津波が来襲するおそれがあります。海岸や川の近くから離れてください。",
            },
        },
        "special_warning": {
            "title": "{reason}特別警報",
            "title_plain": "特別警報",
            "body": "これまでに経験したことのないような、重大な危険が差し迫った異常な状況です。"
            "ただちに命を守るための最善の行動をとってください。",
        },
        "warning": {
            "title": "{reason}警報",
            "body": "{title}が発表されました。今後の情報に注意し、早めの行動をとってください。",
        },
        "landslide": {
            "title": "土砂災害警戒情報",
            "body": "土砂災害の危険度が非常に高まっています。崖の近くや谷の出口など危険な場所にいる人は、"
            "ただちに避難してください。",
        },
        "flood": {
            "title": "洪水予報",
            "body": "川が氾濫するおそれがあります。川の近くや低い土地にいる人は、"
            "市町村の避難情報に従い、早めに避難してください。",
        },
        "test": {
            "title": "テスト",
            "body_national": "これは、Jアラートのテストです。",
            "body_local": "これは、防災情報伝達のテストです。",
        },
        "generic_title": "防災情報",
        "generic_body": "{about}防災情報があります。詳しくは市町村や気象庁の情報を確認してください。",
        "generic_about": "{event}について、",
        "fallback_note": {
            "en": "（日本語の文がないため、英語の原文を表示します）",
        },
    },
    "en": {
        "sep": " ",
        "list_sep": ", ",
        "more_places": "{names} and {more} more areas",
        "whole_area": "the whole area",
        "whole_area_named": "the whole of {muni}",
        "muni_part": " in {muni}",
        "reason_part": " because of the risk of {reason}",
        "title_reason": "{title} ({reason})",
        "status_marker": {
            "Exercise": "[DRILL] ",
            "Test": "[TEST] ",
            "System": "[SYSTEM] ",
            "Draft": "[DRAFT] ",
        },
        "status_sentence": {
            "Exercise": "This is a drill.",
            "Test": "This is a test.",
            "System": "This is a system message, not a real alert.",
            "Draft": "This is a draft, not a real alert.",
        },
        "update_marker": "[UPDATE] ",
        "where": "{places} in {muni}",
        "ended_item": "{title} for {places}",
        "evac_lift_items": "Lifted{muni_part}: {items}. Keep following official information.",
        "on_behalf_part": " in {muni} (issued by {issuer} on its behalf)",
        "cancel_body_national": "The earlier “{what}” has been cancelled. Keep following official information.",
        "lift_marker": "[LIFTED] ",
        "correction_marker": "[CORRECTION] ",
        "spoken_marker": {"lift": "This lifts an order.", "cancel": "This is a cancellation.",
                          "correction": "This is a correction."},
        "still_standing": "{phrases} remains in force in {places}.",
        "on_behalf": "{issuer} issued this on behalf of {muni}.",
        "cancel_body_where": "This cancels the earlier “{what}” for {places}. It was sent in error. "
        "Disregard it and keep following official information.",
        "correction_title": "Shelter information",
        "correction_body": "Shelter information{muni_part} is corrected.",
        "correction_change": "{shelter}: the {field} is “{new}” (earlier we said “{old}”).",
        "correction_fields": {"address": "address", "status": "status", "capacity": "capacity",
                              "occupancy": "number of evacuees", "added": "opening", "removed": "notice"},
        "cancel_marker": "[CANCELLED] ",
        "cancel_body": "This cancels the earlier message “{what}”. It was sent in error. "
        "Disregard it and keep following official information.",
        "level_name": {
            3: "Elderly and others evacuate",
            4: "Evacuation order",
            5: "Secure safety immediately",
        },
        "level_title": "Alert Level {n}: {name}",
        "level_phrase": "Alert Level {n} ({name})",
        "level_call": {
            3: "Older people, people with disabilities and others "
            "who need time to evacuate, and their helpers, "
            "must leave dangerous places now. Everyone else, get ready to evacuate.",
            4: "Everyone in a dangerous place must evacuate now.",
            5: "A disaster is happening or about to happen. Your life is in danger. "
            "Move to the safest place you can reach immediately.",
        },
        "level_key": {
            3: "Older people and others who need time must leave dangerous places now.",
            4: "Everyone must leave dangerous places now.",
            5: "Your life is in danger. Secure your safety now.",
        },
        "evac_unknown_title": "Evacuation information",
        "evac_unknown_phrase": "Evacuation information",
        "evac_issue": "{phrase} has been issued for {places}{muni_part}{reason_part}. {call}",
        "evac_unknown_call": "Follow further information and evacuate early if you feel in danger.",
        "evac_lift": "{phrase} for {places}{muni_part} has been lifted. The order is no longer in force. "
        "Keep following official information.",
        "lift_title": "Lifted: {title}",
        "shelters_open": "Open shelters: {names}.",
        "shelters_named": "Shelters: {names}.",
        "shelter_title": {"issue": "Shelters open", "lift": "Shelters closed"},
        "shelter_body": {
            "issue": "Shelters are open{muni_part}.",
            "lift": "Shelters have closed{muni_part}.",
        },
        "areas_line": "Areas: {places}.",
        "level_equiv": "This corresponds to Alert Level {n}.",
        "national_lift": "The {title} has been lifted. Keep following official information.",
        "missile": {
            "title": "Missile launched",
            "spoken": "Missile launched. Missile launched",
            "body": "A missile appears to have been launched. "
            "Take shelter inside a building or underground now.",
        },
        "eew_final": {"title": "{title} (final report)", "body": "This is the final report."},
        "eew": {
            "title": "Earthquake Early Warning",
            "spoken": "Earthquake Early Warning. Strong earthquake",
            "body": "Strong shaking is coming. Protect your head and take cover under a sturdy table "
            "or in another safe place.",
        },
        "tsunami": {
            "major": {
                "title": "Major Tsunami Warning",
                "spoken": "Major Tsunami Warning",
                "body": "A huge tsunami is coming. Evacuate to the highest ground you can reach immediately.",
            },
            "warning": {
                "title": "Tsunami Warning",
                "spoken": "Tsunami Warning",
                "body": "A tsunami is coming. If you are near the coast or a river, evacuate to high ground "
                "or a tsunami evacuation building immediately.",
            },
            "advisory": {
                "title": "Tsunami Advisory",
                "spoken": "Tsunami Advisory",
                "body": "If you are in the sea, get out of the water and move away from the coast now.",
            },
            "forecast": {
                "title": "Tsunami Forecast",
                "spoken": "Tsunami Forecast",
                "body": "Slight sea-level changes are expected, but no damage.",
            },
            "any": {
                "title": "Tsunami Warning or Advisory",
                "spoken": "Tsunami Warning or Advisory",
                "body": "A tsunami may be coming. Move away from the coast and rivers.",
            },
        },
        "special_warning": {
            "title": "Emergency Warning ({reason})",
            "title_plain": "Emergency Warning",
            "body": "An extraordinary, life-threatening situation is imminent. "
            "Take every action you can to protect your life right now.",
        },
        "warning": {
            "title": "{Reason} warning",
            "body": "A {reason} warning has been issued. Follow further information and act early.",
        },
        "landslide": {
            "title": "Landslide Alert",
            "body": "The risk of landslides is very high. If you are near a steep slope or at the mouth "
            "of a valley, evacuate now.",
        },
        "flood": {
            "title": "Flood forecast",
            "body": "A river may overflow. If you are near the river or on low ground, follow your "
            "municipality's evacuation information and evacuate early.",
        },
        "test": {
            "title": "Test",
            "body_national": "This is a test of J-Alert.",
            "body_local": "This is a test of the alert system.",
        },
        "generic_title": "Emergency information",
        "generic_body": "There is emergency information{about}. Check the information from your municipality "
        "or the Japan Meteorological Agency.",
        "generic_about": " about {event}",
        "fallback_note": {"ja": "(No English text is available; the Japanese original follows.)"},
    },
    "zh": {
        "sep": "",
        "list_sep": "、",
        "more_places": "{names}等{total}个地区",
        "whole_area": "全部地区",
        "muni_part": "{muni}",
        "reason_part": "因{reason}危险，",
        "title_reason": "{title}（{reason}）",
        "status_marker": {
            "Exercise": "【演习】",
            "Test": "【测试】",
            "System": "【系统】",
            "Draft": "【草稿】",
        },
        "status_sentence": {
            "Exercise": "这是演习。",
            "Test": "这是测试。",
            "System": "这是系统消息，并非真实警报。",
            "Draft": "这是草稿，并非真实警报。",
        },
        "update_marker": "【更新】",
        "where": "{muni}{places}",
        "ended_item": "{places}的{title}",
        "evac_lift_items": "{muni_part}已解除{items}。请继续关注今后的信息。",
        "on_behalf_part": "{issuer}代{muni}",
        "cancel_body_national": "此前发布的「{what}」已被取消。请继续关注今后的信息。",
        "lift_marker": "【解除】",
        "correction_marker": "【更正】",
        "spoken_marker": {"lift": "解除通知。", "cancel": "取消通知。", "correction": "更正通知。"},
        "still_standing": "{places}的{phrases}继续有效。",
        "on_behalf": "本信息由{issuer}代{muni}发布。",
        "cancel_body_where": "此前对{places}发布的「{what}」已取消。该信息为误发，请忽略，并继续关注今后的信息。",
        "correction_title": "避难所信息",
        "correction_body": "{muni_part}更正避难所信息。",
        "correction_change": "{shelter}的{field}为「{new}」（此前为「{old}」）。",
        "correction_fields": {"address": "地址", "status": "状态", "capacity": "容纳人数", "occupancy": "避难人数",
                              "added": "开放", "removed": "通知"},
        "cancel_marker": "【取消】",
        "cancel_body": "此前发布的「{what}」已取消。该信息为误发，请忽略，并继续关注今后的信息。",
        "level_name": {3: "高龄者等避难", 4: "避难指示", 5: "紧急确保安全"},
        "level_title": "警戒等级{n}：{name}",
        "level_phrase": "警戒等级{n}「{name}」",
        "level_call": {
            3: "老年人、残障人士等避难需要时间的人及其协助者，请离开危险地点避难。其他人请做好避难准备。",
            4: "身处危险地点的所有人，请立即避难。",
            5: "灾害已经发生或迫在眉睫，生命面临危险。请立即确保自身安全。",
        },
        "level_key": {
            3: "老年人等请离开危险地点避难。",
            4: "所有人请离开危险地点避难。",
            5: "生命危险！请立即确保安全。",
        },
        "evac_unknown_title": "避难信息",
        "evac_unknown_phrase": "避难信息",
        "evac_issue": "{muni_part}{reason_part}已对{places}发布{phrase}。{call}",
        "evac_unknown_call": "请关注今后的信息，感到危险时请尽早避难。",
        "evac_lift": "{muni_part}已解除对{places}发布的{phrase}。请继续关注今后的信息。",
        "lift_title": "解除：{title}",
        "shelters_open": "已开放的避难所：{names}。",
        "shelters_named": "相关避难所：{names}。",
        "shelter_title": {"issue": "避难所开放", "lift": "避难所关闭"},
        "shelter_body": {"issue": "{muni_part}已开放避难所。", "lift": "{muni_part}已关闭避难所。"},
        "areas_line": "对象地区：{places}。",
        "level_equiv": "相当于警戒等级{n}。",
        "national_lift": "{title}已解除。请继续关注今后的信息。",
        "missile": {
            "title": "导弹发射",
            "spoken": "导弹发射。导弹发射",
            "body": "似乎有导弹发射。请立即进入建筑物内或地下避难。",
        },
        "eew_final": {"title": "{title}（最终报）", "body": "这是最终报。"},
        "eew": {
            "title": "紧急地震速报",
            "spoken": "紧急地震速报。强烈地震",
            "body": "强烈摇晃即将到来。请保护头部，躲到结实的桌子下等安全的地方。",
        },
        "tsunami": {
            "major": {
                "title": "大海啸警报",
                "spoken": "大海啸警报",
                "body": "巨大海啸即将来袭。请立即前往尽可能高的地方避难。",
            },
            "warning": {
                "title": "海啸警报",
                "spoken": "海啸警报",
                "body": "海啸即将来袭。在海岸或河流附近的人，请立即前往高地或海啸避难大楼避难。",
            },
            "advisory": {
                "title": "海啸注意报",
                "spoken": "海啸注意报",
                "body": "在海中的人请立即上岸，并远离海岸。",
            },
            "forecast": {
                "title": "海啸预报",
                "spoken": "海啸预报",
                "body": "预计海面会有轻微变动，但无需担心受灾。",
            },
            "any": {
                "title": "海啸警报・注意报",
                "spoken": "海啸警报・注意报",
                "body": "海啸可能来袭。请远离海岸和河流。",
            },
        },
        "special_warning": {
            "title": "{reason}特别警报",
            "title_plain": "特别警报",
            "body": "前所未有的重大危险迫在眉睫。请立即采取一切行动保护生命。",
        },
        "warning": {
            "title": "{reason}警报",
            "body": "已发布{title}。请关注今后的信息，尽早采取行动。",
        },
        "landslide": {
            "title": "土砂灾害警戒信息",
            "body": "发生山体滑坡、泥石流等灾害的危险性极高。"
            "在山崖附近或山谷出口等危险地点的人，请立即避难。",
        },
        "flood": {
            "title": "洪水预报",
            "body": "河流可能泛滥。在河流附近或低洼地带的人，请按照市町村的避难信息尽早避难。",
        },
        "test": {
            "title": "测试",
            "body_national": "这是J-Alert（全国瞬时警报系统）的测试。",
            "body_local": "这是防灾信息传达的测试。",
        },
        "generic_title": "防灾信息",
        "generic_body": "有{about}防灾信息。详情请查看市町村或日本气象厅发布的信息。",
        "generic_about": "关于{event}的",
        "fallback_note": {"en": "（暂无中文版本，以下为英文原文）", "ja": "（暂无中文版本，以下为日文原文）"},
    },
    "ko": {
        "sep": " ",
        "list_sep": ", ",
        "more_places": "{names} 외 {more}개 지역",
        "whole_area": "전 지역",
        "muni_part": "{muni}에서 ",
        "reason_part": "{reason} 위험으로 ",
        "title_reason": "{title} ({reason})",
        "status_marker": {
            "Exercise": "[훈련] ",
            "Test": "[시험] ",
            "System": "[시스템] ",
            "Draft": "[초안] ",
        },
        "status_sentence": {
            "Exercise": "이것은 훈련입니다.",
            "Test": "이것은 시험입니다.",
            "System": "이것은 시스템 메시지이며 실제 경보가 아닙니다.",
            "Draft": "이것은 초안이며 실제 경보가 아닙니다.",
        },
        "update_marker": "[업데이트] ",
        "where": "{muni} {places}",
        "ended_item": "{places}의 {title}",
        "evac_lift_items": "{muni_part}{items}를 해제했습니다. 앞으로의 정보에 계속 주의하십시오.",
        "on_behalf_part": "{issuer}가 {muni}를 대신하여 ",
        "cancel_body_national": "앞서 발표된 '{what}'이(가) 취소되었습니다. 앞으로의 정보에 주의하십시오.",
        "lift_marker": "[해제] ",
        "correction_marker": "[정정] ",
        "spoken_marker": {"lift": "해제 안내입니다.", "cancel": "취소 안내입니다.", "correction": "정정 안내입니다."},
        "still_standing": "{places}에는 {phrases}가 계속 발령 중입니다.",
        "on_behalf": "이 정보는 {issuer}가 {muni}를 대신하여 발령했습니다.",
        "cancel_body_where": "앞서 {places}에 보낸 '{what}' 정보를 취소합니다. 잘못 발송된 정보입니다. "
        "앞으로의 정보에 주의하십시오.",
        "correction_title": "대피소 정보",
        "correction_body": "{muni_part}대피소 정보를 정정합니다.",
        "correction_change": "{shelter}의 {field}은(는) '{new}'입니다 (앞서 '{old}'(이)라고 안내했습니다).",
        "correction_fields": {"address": "주소", "status": "상태", "capacity": "수용 인원", "occupancy": "대피자 수",
                              "added": "개설", "removed": "안내"},
        "cancel_marker": "[취소] ",
        "cancel_body": "앞서 보낸 '{what}' 정보를 "
        "취소합니다. 잘못 발송된 정보입니다. 앞으로의 정보에 주의하십시오.",
        # Every name ends in a vowel, so the object particle is always 를.
        "level_name": {3: "고령자 등 대피", 4: "대피 지시", 5: "긴급 안전 확보"},
        "level_title": "경계 레벨 {n}: {name}",
        "level_phrase": "경계 레벨 {n} '{name}'",
        "level_call": {
            3: "고령자, 장애인 등 대피에 시간이 걸리는 분과 그 지원자는 위험한 장소에서 대피하십시오. "
            "그 밖의 분도 대피를 준비하십시오.",
            4: "위험한 장소에 있는 분은 모두 대피하십시오.",
            5: "이미 재해가 발생했거나 임박했습니다. 생명이 위험합니다. 즉시 안전을 확보하십시오.",
        },
        "level_key": {
            3: "고령자 등은 위험한 장소에서 대피하십시오.",
            4: "모두 위험한 장소에서 대피하십시오.",
            5: "생명이 위험합니다. 즉시 안전을 확보하십시오.",
        },
        "evac_unknown_title": "대피 정보",
        "evac_unknown_phrase": "대피 정보",
        "evac_issue": "{muni_part}{reason_part}{places}에 {phrase}를 발령했습니다. {call}",
        "evac_unknown_call": "앞으로의 정보에 주의하고, 위험을 느끼면 일찍 대피하십시오.",
        "evac_lift": "{muni_part}{places}에 발령했던 "
        "{phrase}를 해제했습니다. 앞으로의 정보에 계속 주의하십시오.",
        "lift_title": "해제: {title}",
        "shelters_open": "개설된 대피소: {names}.",
        "shelters_named": "해당 대피소: {names}.",
        "shelter_title": {"issue": "대피소 개설", "lift": "대피소 폐쇄"},
        "shelter_body": {
            "issue": "{muni_part}대피소를 개설했습니다.",
            "lift": "{muni_part}대피소를 폐쇄했습니다.",
        },
        "areas_line": "대상 지역: {places}.",
        "level_equiv": "경계 레벨 {n}에 해당합니다.",
        "national_lift": "{title}가 해제되었습니다. 앞으로의 정보에 계속 주의하십시오.",
        "missile": {
            "title": "미사일 발사",
            "spoken": "미사일 발사. 미사일 발사",
            "body": "미사일이 발사된 것으로 보입니다. 건물 안 또는 지하로 대피하십시오.",
        },
        "eew_final": {"title": "{title} (최종보)", "body": "이것이 최종보입니다."},
        "eew": {
            "title": "긴급 지진 속보",
            "spoken": "긴급 지진 속보. 강한 지진입니다",
            "body": "강한 흔들림이 옵니다. 머리를 보호하고 튼튼한 책상 아래 등 안전한 곳에 몸을 숨기십시오.",
        },
        "tsunami": {
            "major": {
                "title": "대형 쓰나미 경보",
                "spoken": "대형 쓰나미 경보",
                "body": "거대한 쓰나미가 밀려옵니다. 즉시 가능한 한 높은 곳으로 대피하십시오.",
            },
            "warning": {
                "title": "쓰나미 경보",
                "spoken": "쓰나미 경보",
                "body": "쓰나미가 밀려옵니다. 해안이나 강 근처에 있는 분은 즉시 높은 곳이나 "
                "쓰나미 대피 빌딩으로 대피하십시오.",
            },
            "advisory": {
                "title": "쓰나미 주의보",
                "spoken": "쓰나미 주의보",
                "body": "바다에 있는 분은 즉시 바다에서 나와 해안에서 떨어지십시오.",
            },
            "forecast": {
                "title": "쓰나미 예보",
                "spoken": "쓰나미 예보",
                "body": "약간의 해수면 변동이 예상되지만 피해 걱정은 없습니다.",
            },
            "any": {
                "title": "쓰나미 경보·주의보",
                "spoken": "쓰나미 경보·주의보",
                "body": "쓰나미가 올 수 있습니다. 해안과 강에서 떨어지십시오.",
            },
        },
        "special_warning": {
            "title": "{reason} 특별경보",
            "title_plain": "특별경보",
            "body": "지금까지 경험한 적 없는 중대한 위험이 "
            "임박했습니다. 즉시 생명을 지키기 위한 최선의 행동을 하십시오.",
        },
        "warning": {
            "title": "{reason} 경보",
            "body": "{title}가 발표되었습니다. 앞으로의 정보에 주의하고 일찍 행동하십시오.",
        },
        "landslide": {
            "title": "토사 재해 경계 정보",
            "body": "산사태 등 토사 재해의 위험이 매우 높습니다."
            " 절벽 근처나 계곡 입구 등 위험한 곳에 있는 분은 "
            "즉시 대피하십시오.",
        },
        "flood": {
            "title": "홍수 예보",
            "body": "하천이 범람할 우려가 있습니다. 하천 근처나 저지대에 있는 분은 시정촌의 대피 정보에 따라 "
            "일찍 대피하십시오.",
        },
        "test": {
            "title": "테스트",
            "body_national": "이것은 J-Alert(전국 순시 경보 시스템) 테스트입니다.",
            "body_local": "이것은 방재 정보 전달 테스트입니다.",
        },
        "generic_title": "방재 정보",
        "generic_body": "{about}방재 정보가 있습니다."
        " 자세한 내용은 시정촌이나 일본 기상청의 정보를 확인하십시오.",
        "generic_about": "{event}에 관한 ",
        "fallback_note": {
            "en": "(한국어 안내가 없어 영어 원문을 표시합니다)",
            "ja": "(한국어 안내가 없어 일본어 원문을 표시합니다)",
        },
    },
    "ja-easy": {
        "sep": " ",
        "list_sep": "、",
        "more_places": "{names}など {total}の ちいき",
        "whole_area": "ぜんぶの ちいき",
        "muni_part": "{muni}は ",
        "reason_part": "{reason}の きけんが あります。 ",
        "title_reason": "{title}（{reason}）",
        "status_marker": {
            "Exercise": "【くんれん】",
            "Test": "【しけん】",
            "System": "【システム】",
            "Draft": "【したがき】",
        },
        "status_sentence": {
            "Exercise": "これは くんれんです。",
            "Test": "これは しけんです。",
            "System": "これは システムの おしらせです。 ほんとうの さいがいの じょうほうでは ありません。",
            "Draft": "これは したがきです。 ほんとうの さいがいの じょうほうでは ありません。",
        },
        "update_marker": "【あたらしい じょうほう】",
        "where": "{muni}の {places}",
        "ended_item": "{places}の {title}",
        "evac_lift_items": "{muni_part}{items}を やめました。 これからも じょうほうに きを つけて ください。",
        "on_behalf_part": "{issuer}は {muni}の かわりに ",
        "cancel_body_national": "さっきの 「{what}」は とりけしに なりました。 これからも じょうほうに きを つけて ください。",
        "lift_marker": "【かいじょ】",
        "correction_marker": "【ていせい】",
        "spoken_marker": {"lift": "かいじょの おしらせです。", "cancel": "とりけしの おしらせです。",
                          "correction": "ていせいの おしらせです。"},
        "still_standing": "{places}は、 {phrases}が まだ でて います。",
        "on_behalf": "この じょうほうは、 {issuer}が {muni}の かわりに だしました。",
        "cancel_body_where": "さっき {places}に だした 「{what}」は まちがいです。"
        " とりけします。 これからも じょうほうに きを つけて ください。",
        "correction_title": "ひなんじょの じょうほう",
        "correction_body": "{muni_part}ひなんじょの じょうほうを なおします。",
        "correction_change": "{shelter}の {field}は 「{new}」です（さっきは 「{old}」と いいました）。",
        "correction_fields": {"address": "ばしょ", "status": "ようす", "capacity": "はいれる ひとの かず",
                              "occupancy": "いる ひとの かず", "added": "あけました", "removed": "おしらせ"},
        "cancel_marker": "【とりけし】",
        "cancel_body": "さっきの 「{what}」は まちがいです。"
        " とりけします。 これからも じょうほうに きを つけて ください。",
        "level_name": {3: "こうれいしゃとうひなん", 4: "ひなんしじ", 5: "きんきゅうあんぜんかくほ"},
        "level_title": "けいかいレベル{n} {name}",
        "level_phrase": "けいかいレベル{n}（{name}）",
        "level_call": {
            3: "おとしよりや からだの ふじゆうな ひとは、 あぶない ばしょから にげて ください。 "
            "ほかの ひとも にげる じゅんびを して ください。",
            4: "あぶない ばしょに いる ひとは、 みんな にげて ください。",
            5: "いのちが あぶないです。 すぐに いちばん あんぜんな ところへ いって ください。",
        },
        "level_key": {
            3: "おとしより などは あぶない ばしょから にげて ください。",
            4: "みんな あぶない ばしょから にげて ください。",
            5: "いのちが あぶないです。 すぐに あんぜんな ところへ いって ください。",
        },
        "evac_unknown_title": "ひなんの じょうほう",
        "evac_unknown_phrase": "ひなんの じょうほう",
        "evac_issue": "{reason_part}{muni_part}{places}に {phrase}を だしました。 {call}",
        "evac_unknown_call": "これからも じょうほうに きを "
        "つけて ください。 あぶないと おもったら はやく にげて ください。",
        "evac_lift": "{muni_part}{places}の "
        "{phrase}を やめました。 これからも じょうほうに きを つけて ください。",
        "lift_title": "{title} おわり",
        "shelters_open": "ひなんじょ：{names}。",
        "shelters_named": "ひなんじょ：{names}。",
        "shelter_title": {"issue": "ひなんじょを あけました", "lift": "ひなんじょを しめました"},
        "shelter_body": {
            "issue": "{muni_part}ひなんじょを あけました。",
            "lift": "{muni_part}ひなんじょを しめました。",
        },
        "areas_line": "ちいき：{places}。",
        "level_equiv": "けいかいレベル{n}と おなじくらい あぶないです。",
        "national_lift": "{title}は おわりました。 これからも じょうほうに きを つけて ください。",
        "missile": {
            "title": "ミサイル はっしゃ",
            "spoken": "ミサイル はっしゃ。 ミサイル はっしゃ",
            "body": "ミサイルが とんで くるかも しれません。"
            " すぐに たてものの なかや ちかに にげて ください。",
        },
        "eew_final": {"title": "{title}（さいごの おしらせ）", "body": "これが さいごの おしらせです。"},
        "eew": {
            "title": "きんきゅう じしん そくほう",
            "spoken": "きんきゅう じしん そくほう。 おおきな じしんです",
            "body": "おおきな じしんが きます。 あたまを "
            "まもって ください。 つくえの したに はいって ください。",
        },
        "tsunami": {
            "major": {
                "title": "おおつなみけいほう",
                "spoken": "おおつなみけいほう",
                "body": "とても おおきな つなみが きます。 "
                "すぐに できるだけ たかい ところへ にげて ください。",
            },
            "warning": {
                "title": "つなみけいほう",
                "spoken": "つなみけいほう",
                "body": "つなみが きます。 うみや かわの ちかくの "
                "ひとは、 すぐに たかい ところへ にげて ください。",
            },
            "advisory": {
                "title": "つなみちゅういほう",
                "spoken": "つなみちゅういほう",
                "body": "うみの なかの ひとは、 すぐに うみから でて ください。 うみから はなれて ください。",
            },
            "forecast": {
                "title": "つなみよほう",
                "spoken": "つなみよほう",
                "body": "うみの みずの たかさが すこし かわります。 ひがいの しんぱいは ありません。",
            },
            "any": {
                "title": "つなみけいほう・ちゅういほう",
                "spoken": "つなみけいほう・ちゅういほう",
                "body": "つなみが くる かもしれません。 うみや かわから はなれて ください。",
            },
        },
        "special_warning": {
            "title": "{reason}の とくべつけいほう",
            "title_plain": "とくべつけいほう",
            "body": "いままでに ない おおきな さいがいが "
            "おきる かもしれません。 すぐに いのちを まもって ください。",
        },
        "warning": {
            "title": "{reason}の けいほう",
            "body": "{title}が でました。 じょうほうに "
            "きを つけて ください。 はやく じゅんびを して ください。",
        },
        "landslide": {
            "title": "どしゃさいがい けいかい じょうほう",
            "body": "がけが くずれる きけんが とても たかいです。"
            " がけの ちかくの ひとは すぐに にげて ください。",
        },
        "flood": {
            "title": "こうずいの よほう",
            "body": "かわの みずが あふれる かもしれません。 かわの ちかくや ひくい ところに いる ひとは、 "
            "はやく にげて ください。",
        },
        "test": {
            "title": "テスト",
            "body_national": "これは Jアラートの テストです。",
            "body_local": "これは ぼうさいの おしらせの テストです。",
        },
        "generic_title": "ぼうさいの じょうほう",
        "generic_body": "{about}ぼうさいの "
        "じょうほうが あります。 しちょうそんの じょうほうを みて ください。",
        "generic_about": "{event}の ",
        "fallback_note": {
            "ja": "（やさしい にほんごの ぶんしょうが ないので、 ふつうの にほんごで おしらせします）",
            "en": "（にほんごの ぶんしょうが ないので、 えいごで おしらせします）",
        },
    },
}

# What to show when a language has no text of its own, best first.
_FALLBACK_CHAIN = {
    "ja": ("en",),
    "en": ("ja",),
    "zh": ("en", "ja"),
    "ko": ("en", "ja"),
    "ja-easy": ("ja", "en"),
}

_NATIONAL_KINDS = ("missile", "eew", "tsunami", "special_warning", "warning", "landslide", "flood")


# --- composition ------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One alert worded in one language.

    ``source`` says where the words came from: "template", "info" (the
    alert's own CAP text), "fallback:<lang>" (another language's text, with
    a note) or "generic".
    """

    lang: str
    headline: str
    body: str
    spoken: str  # for text-to-speech: no brackets, the J-Alert spoken title first
    source: str


@dataclass(frozen=True)
class _Core:
    title: str  # written title without status/cancel markers
    spoken_title: str  # "" when the body already says everything (J-Alert test)
    body: str


@dataclass(frozen=True)
class _Context:
    names: list[str]
    max_places: int | None
    muni: str | None
    compact: bool = False
    issuer: str | None = None  # 代行: who issued it on the town's behalf


def _kind(alert: Alert) -> str:
    kind = (alert.kind or "").strip().lower()
    # A desk order that forgot its kind is still an evacuation order if it has a level and an action.
    if not kind and alert.level in (3, 4, 5) and alert.action in ("issue", "lift"):
        return "evacuation"
    return kind


# CAP parameters alertd's JMA layer sets (alertd/jma/seismic.py): the level a
# lift ends, and the 最終報 mark of an earthquake early warning.
PARAM_LIFTED_LEVEL = "LIFTED_LEVEL"
PARAM_FINAL_REPORT = "JMA_FINAL_REPORT"

_TSUNAMI_GRADE_BY_LEVEL = {5: "major", 4: "warning", 3: "warning", 2: "advisory", 1: "forecast"}
_TSUNAMI_LEVEL_BY_GRADE = {"major": 5, "warning": 4, "advisory": 2, "forecast": 1}
# The alert's own kind name (CAP <event>, one grade per alert), matched whole.
_TSUNAMI_GRADE_BY_EVENT = {
    "大津波警報": "major",
    "major tsunami warning": "major",
    "津波警報": "warning",
    "tsunami warning": "warning",
    "津波注意報": "advisory",
    "tsunami advisory": "advisory",
    "津波予報": "forecast",
    "津波予報（若干の海面変動）": "forecast",
    "tsunami forecast": "forecast",
}


def _parameter(alert: Alert, name: str) -> str | None:
    for info in alert.infos:
        value = info.parameter(name)
        if value is not None:
            return value
    return None


def _tsunami_grade(alert: Alert) -> str:
    """The tsunami grade to word: from the alert's level, or for a lift the level it lifts.

    Never from the headline: a JMA tsunami message is titled with every grade
    it carries (大津波警報・津波警報・津波注意報・津波予報), and reading that title
    made every per-grade alert a 大津波警報. A peer's alert without a level is
    placed by its own event name, matched whole; a lift whose grade is unknown
    says "津波警報・注意報" rather than guess.
    """
    if alert.action == "lift" or (alert.level is None and alert.msg_type == MsgType.CANCEL):
        lifted = _parameter(alert, PARAM_LIFTED_LEVEL)
        if lifted is not None and lifted.isdigit() and int(lifted) in _TSUNAMI_GRADE_BY_LEVEL:
            return _TSUNAMI_GRADE_BY_LEVEL[int(lifted)]
        return "any"
    if alert.level is not None:
        return _TSUNAMI_GRADE_BY_LEVEL.get(alert.level, "major" if alert.level > 5 else "forecast")
    event = (alert.event or "").strip().lower()
    return _TSUNAMI_GRADE_BY_EVENT.get(event, "warning")


def _final_report(alert: Alert) -> bool:
    return (_parameter(alert, PARAM_FINAL_REPORT) or "").lower() == "true"


def _join(parts: Iterable[str], lang: str) -> str:
    sep = _PHRASES[lang]["sep"] if lang in _PHRASES else " "
    return sep.join(p for p in parts if p)


def _places(lang: str, ctx: _Context) -> tuple[str, bool]:
    """The places phrase and whether it is the whole municipality."""
    p = _PHRASES[lang]
    if not ctx.names:
        if ctx.muni and "whole_area_named" in p:
            return p["whole_area_named"].format(muni=ctx.muni), True
        return p["whole_area"], True
    names = ctx.names
    if ctx.max_places is not None and len(names) > ctx.max_places:
        shown = p["list_sep"].join(names[: max(ctx.max_places, 1)])
        more = len(names) - max(ctx.max_places, 1)
        return p["more_places"].format(names=shown, more=more, total=len(names)), False
    return p["list_sep"].join(names), False


def _muni_part(lang: str, ctx: _Context, whole: bool) -> str:
    p = _PHRASES[lang]
    if ctx.issuer and ctx.muni:
        return p["on_behalf_part"].format(issuer=ctx.issuer, muni=ctx.muni)
    if not ctx.muni or (whole and "whole_area_named" in p):
        return ""
    return p["muni_part"].format(muni=ctx.muni)


def _shelter_line(alert: Alert, lang: str, key: str) -> str:
    if key == "shelters_open":
        names = [s.name for s in alert.shelters if s.status == "open"]
    else:
        names = [s.name for s in alert.shelters]
    if not names:
        return ""
    p = _PHRASES[lang]
    return p[key].format(names=p["list_sep"].join(names))


def _evacuation(alert: Alert, lang: str, ctx: _Context) -> _Core:
    # compact: the guideline's key phrase instead of the full instruction, so a
    # small screen keeps what to do rather than losing it to trimming.
    p = _PHRASES[lang]
    places, whole = _places(lang, ctx)
    muni_part = _muni_part(lang, ctx, whole)
    reason = reason_text(alert.reason, lang)
    level = alert.level if alert.level in p["level_name"] else None
    if level is not None:
        name = p["level_name"][level]
        title = p["level_title"].format(n=level, name=name)
        phrase = p["level_phrase"].format(n=level, name=name)
        call = p["level_key" if ctx.compact else "level_call"][level]
    else:
        title = p["evac_unknown_title"]
        phrase = p["evac_unknown_phrase"]
        call = p["evac_unknown_call"]
    if alert.action == "lift":
        # The headline's 【解除】 marker says it is a lift; the title stays the order's own.
        # The text names every level the lift ends ("全域" may end levels 4 and 3 at once).
        ended = [e for e in alert.ended if e.get("level") in p["level_name"]]
        if ended:
            # Each level with the places it ended in: 「若宮戸の警戒レベル4 避難指示、全域の警戒レベル3
            # 高齢者等避難を解除しました」, never "全域の避難指示" when it stood in one district.
            items = [
                p["ended_item"].format(
                    title=p["level_title"].format(n=e["level"], name=p["level_name"][e["level"]]),
                    places=p["whole_area"] if e.get("districts") in ([], [ctx.muni]) else
                    p["list_sep"].join(e["districts"]),
                )
                for e in ended
            ]
            lift_part = _muni_part(lang, ctx, whole=False)
            body = p["evac_lift_items"].format(muni_part=lift_part, items=p["list_sep"].join(items))
        else:
            body = p["evac_lift"].format(muni_part=muni_part, places=places, phrase=phrase)
        return _Core(title, p["lift_title"].format(title=phrase), body)
    reason_part = ""
    if reason:
        explained = reason_text(alert.reason, lang, explain=not ctx.compact)
        reason_part = p["reason_part"].format(reason=explained)
        title_with_reason = p["title_reason"].format(title=title, reason=reason)
    else:
        title_with_reason = title
    body = p["evac_issue"].format(
        muni_part=muni_part, places=places, reason_part=reason_part, phrase=phrase, call=call
    )
    body = _join([body, _shelter_line(alert, lang, "shelters_open")], lang)
    # Spoken with the 、 form ("警戒レベル4、避難指示"): a space is no pause for TTS.
    return _Core(title_with_reason, phrase, body)


def _shelter(alert: Alert, lang: str, ctx: _Context) -> _Core:
    p = _PHRASES[lang]
    if change_kind(alert) == "correction":
        # A correction says what changed, and never announces an opening again.
        fields = p["correction_fields"]
        lines = [
            p["correction_change"].format(shelter=c["shelter"], field=fields.get(c["field"], c["field"]),
                                          new=c.get("to") or "-", old=c.get("from") or "-")
            for c in alert.corrections
        ]
        body = p["correction_body"].format(muni_part=_muni_part(lang, ctx, whole=False))
        return _Core(p["correction_title"], p["correction_title"], _join([body, *lines], lang))
    action = "lift" if alert.action == "lift" else "issue"
    title = p["shelter_title"][action]
    body = p["shelter_body"][action].format(muni_part=_muni_part(lang, ctx, whole=False))
    line = _shelter_line(alert, lang, "shelters_open" if action == "issue" else "shelters_named")
    return _Core(title, title, _join([body, line], lang))


def _national(alert: Alert, lang: str, ctx: _Context, kind: str) -> _Core | None:
    p = _PHRASES[lang]
    t = p[kind]
    if kind == "tsunami":
        t = t[_tsunami_grade(alert)]
    reason = reason_text(alert.reason, lang)
    if kind == "warning":
        if not reason:
            return None  # "警報" alone says nothing; the JMA info text is better
        title = t["title"].format(reason=reason, Reason=reason[:1].upper() + reason[1:])
    elif kind == "special_warning":
        title = t["title"].format(reason=reason) if reason else t["title_plain"]
    else:
        title = t["title"]
    spoken = t.get("spoken", title)
    areas = ""
    if ctx.names:
        areas = p["areas_line"].format(places=_places(lang, ctx)[0])
    if alert.action == "lift":
        lifted = p["lift_title"].format(title=title)
        return _Core(title, lifted, _join([p["national_lift"].format(title=title), areas], lang))
    body = t["body"].format(title=title, reason=reason or "")
    equiv = p["level_equiv"].format(n=alert.level) if alert.level in (1, 2, 3, 4, 5) else ""
    if kind == "eew" and _final_report(alert):
        title = p["eew_final"]["title"].format(title=title)
        body = _join([body, p["eew_final"]["body"]], lang)
    return _Core(title, spoken, _join([body, equiv, areas], lang))


def _test(alert: Alert, lang: str) -> _Core:
    t = _PHRASES[lang]["test"]
    body = t["body_local"] if alert.municipality else t["body_national"]
    return _Core(t["title"], "", body)


def _template(alert: Alert, lang: str, ctx: _Context) -> _Core | None:
    if lang not in _PHRASES:
        return None
    kind = _kind(alert)
    if kind == "evacuation":
        return _evacuation(alert, lang, ctx)
    if kind == "shelter":
        return _shelter(alert, lang, ctx)
    if kind == "test":
        return _test(alert, lang)
    if kind in _NATIONAL_KINDS:
        return _national(alert, lang, ctx, kind)
    return None


def _find_info(alert: Alert, lang: str) -> Info | None:
    if lang == "ja-easy":
        return next((i for i in alert.infos if i.language.lower() in _EASY_INFO_TAGS), None)
    info = alert.info_for(lang)
    if info is not None and lang == "ja" and info.language.lower() in _EASY_INFO_TAGS:
        return None
    return info


def _from_info(alert: Alert, lang: str) -> _Core | None:
    info = _find_info(alert, lang)
    if info is None:
        return None
    title = (info.headline or info.event or "").strip()
    text = _join(
        [(info.description or "").strip(), (info.instruction or "").strip()],
        lang if lang in _PHRASES else "en",
    )
    if not title and not text:
        return None
    return _Core(title or text, title, text or title)


def _generic(alert: Alert, lang: str) -> _Core:
    p = _PHRASES[lang]
    event = alert.event.strip()
    about = p["generic_about"].format(event=event) if event else ""
    return _Core(p["generic_title"], p["generic_title"], p["generic_body"].format(about=about))


def _resolve(alert: Alert, lang: str, ctx: _Context) -> tuple[_Core, str, str]:
    """The words for ``lang``, their source, and the note to show when they are another language's."""
    core = _template(alert, lang, ctx)
    if core is not None:
        return core, "template", ""
    core = _from_info(alert, lang)
    if core is not None:
        return core, "info", ""
    chain = _FALLBACK_CHAIN.get(lang, ("en", "ja"))
    for other in chain:
        core = _template(alert, other, ctx) or _from_info(alert, other)
        if core is not None:
            notes = _PHRASES[lang]["fallback_note"] if lang in _PHRASES else {}
            note = notes.get(other) or f"(No text in {lang}; shown in {other}.)"
            return core, f"fallback:{other}", note
    if lang in _PHRASES:
        return _generic(alert, lang), "generic", ""
    return _generic(alert, "en"), "fallback:en", f"(No text in {lang}; shown in en.)"


def message(
    alert: Alert,
    lang: str,
    district_names: Sequence[str] | None = None,
    *,
    max_places: int | None = None,
    compact: bool = False,
) -> Message:
    """Headline, body and spoken script for ``alert`` in ``lang``.

    ``district_names`` overrides the names looked up from ``alert.districts``
    (an empty list means the whole municipality); ``max_places`` shortens a
    long list to "A、Bほか3地区" for small screens, and ``compact`` uses the
    official short instruction (危険な場所から全員避難) for displays.
    """
    lang = normalise_language(lang)
    names = list(district_names) if district_names is not None else _names_for(alert)
    issuer = (_known_name(alert.on_behalf_of[:2]) or alert.source) if alert.on_behalf_of else None
    ctx = _Context(names=names, max_places=max_places, muni=_known_name(alert.municipality), compact=compact,
                   issuer=issuer)  # fmt: skip
    core, source, note = _resolve(alert, lang, ctx)
    # Markers and sentences come from the reader's language even when the
    # words came from another's, so "this is a drill" is always understood.
    p = _PHRASES.get(lang, _PHRASES["en"])
    text_lang = lang if lang in _PHRASES else "en"
    status = alert.status.value
    markers = p["status_marker"].get(status, "")
    status_sentence = p["status_sentence"].get(status, "")
    if _kind(alert) == "test" and alert.status == Status.TEST:
        status_sentence = ""  # "これは試験です。これは、Jアラートのテストです。" says it twice
    change = change_kind(alert)
    # What still stands where a lift or cancel ended something, and who spoke (代行).
    said_issuer = ctx.issuer is not None and _kind(alert) == "evacuation" and source == "template"
    after = _join([_still_standing(alert, text_lang), "" if said_issuer else _on_behalf(alert, text_lang)], text_lang)
    if alert.msg_type == MsgType.CANCEL:
        markers += p["cancel_marker"]
        where = _where(text_lang, ctx)
        if _kind(alert) not in ("evacuation", "shelter", ""):
            # JMA's or the state's cancellation is not a mis-send by the town: say only that it is cancelled.
            main = p["cancel_body_national"].format(what=core.title)
        elif where:
            main = p["cancel_body_where"].format(what=core.title, places=where)
        else:
            main = p["cancel_body"].format(what=core.title)
        main = _join([main, after], text_lang)
        spoken_main = main
    else:
        if change is not None:
            markers += p[f"{change}_marker"]  # 【解除】 or 【訂正】, never 【更新】 for these
        elif alert.msg_type == MsgType.UPDATE:
            markers += p["update_marker"]
        main = _join([core.body, after], text_lang)
        spoken_title = core.spoken_title
        if spoken_title and not spoken_title.endswith(("。", ".", "!", "！")):
            spoken_title += "。" if text_lang in ("ja", "zh", "ja-easy") else "."
        spoken_main = _join([spoken_title, main], text_lang)
    if change is not None:
        # A loudspeaker cannot show 【解除】: it says so first.
        spoken_main = _join([p["spoken_marker"][change], spoken_main], text_lang)
    headline = f"{markers}{core.title}".strip()
    # "This is a drill" goes before everything, even the fallback note.
    body = _join([status_sentence, note, main], text_lang)
    spoken = _join([status_sentence, note, spoken_main], text_lang)
    return Message(lang=lang, headline=headline, body=body, spoken=_plain(spoken), source=source)


def change_kind(alert: Alert) -> str | None:
    """'lift', 'cancel' or 'correction' when an alert changes an earlier one, else None."""
    if alert.msg_type == MsgType.CANCEL:
        return "cancel"
    if alert.action == "lift":
        return "lift"
    if alert.msg_type == MsgType.UPDATE and alert.kind == "shelter":
        return "correction"
    return None


def marker(alert: Alert, lang: str = "ja") -> str:
    """The change marker (【解除】, 【取消】, 【訂正】) for ``alert`` in ``lang``, or ""."""
    change = change_kind(alert)
    p = _PHRASES.get(normalise_language(lang), _PHRASES["en"])
    return p[f"{change}_marker"].strip() if change else ""


def _where(lang: str, ctx: _Context) -> str:
    places, whole = _places(lang, ctx)
    if not ctx.muni:
        return places if ctx.names else ""
    if whole and "whole_area_named" in _PHRASES[lang]:
        return places
    return _PHRASES[lang]["where"].format(muni=ctx.muni, places=places)


def _still_standing(alert: Alert, lang: str) -> str:
    """「若宮戸では、警戒レベル4 避難指示を引き続き発令中です。」 for what a lift or cancel left."""
    p = _PHRASES[lang]
    sentences = []
    for item in alert.remaining:
        level = item.get("level")
        if level not in p["level_name"]:
            continue
        phrase = p["level_title"].format(n=level, name=p["level_name"][level])
        places = p["list_sep"].join(item.get("districts") or [])
        sentences.append(p["still_standing"].format(places=places, phrases=phrase))
    return _join(sentences, lang)


def _on_behalf(alert: Alert, lang: str) -> str:
    """代行: a prefecture issuing for a town says so, with the prefecture's name."""
    if not alert.on_behalf_of:
        return ""
    muni = _known_name(alert.on_behalf_of)
    issuer = _known_name(alert.on_behalf_of[:2]) or alert.source
    if not muni or not issuer:
        return ""
    return _PHRASES[lang]["on_behalf"].format(issuer=issuer, muni=muni)


def _names_for(alert: Alert) -> list[str]:
    return district_names(alert)


_SPACES = re.compile(r"[ \t\u3000]+")


def _plain(text: str) -> str:
    return _SPACES.sub(" ", text.replace("\n", " ")).strip()


def headline(alert: Alert, lang: str) -> str:
    """A one-line title, with drill/test and cancellation markers first."""
    return message(alert, lang).headline


def body(
    alert: Alert,
    lang: str,
    district_names: list[str] | None = None,
    *,
    max_places: int | None = None,
) -> str:
    """A few short sentences: what was issued where, and what to do."""
    return message(alert, lang, district_names, max_places=max_places).body


def spoken(alert: Alert, lang: str, district_names: list[str] | None = None) -> str:
    """The script a loudspeaker or disaster radio reads once."""
    return message(alert, lang, district_names).spoken


_SENTENCE_END = re.compile(r"(?<=[。！？])|(?<=[.!?])\s")


def shorten(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, at a sentence end when one is near.

    Cutting mid-sentence can invert a message ("…避難する必要はありません"
    read as "…避難する"), so whole sentences are kept wherever possible.
    """
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    best = 0
    for m in _SENTENCE_END.finditer(text):
        end = m.start()
        if 0 < end <= limit:
            best = end
    if best >= limit // 3:
        return text[:best].rstrip()
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 2 // 3:
        cut = cut[:space]
    return cut.rstrip(" 、,") + "…"
