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

from alertd import hazard_texts, places
from alertd.models import DRILL_END_NOTE, Action, Alert, AlertKind, Info, MsgType, Status
from alertd.romaji import romanise
from alertd.text_catalogs import load_catalogs

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
    "eew_forecast": "earthquake",
    "megaquake": "earthquake",
    "tsunami_info": "tsunami",
    "volcano": "volcano",
    "heavy_rain": "heavy-rain",
    "tornado": "tornado",
    "heat": "heat",
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
    (府中市 is in both Tokyo and Hiroshima). The registry (see alertd.places) may be
    absent or may not know the code; a name is only cosmetic, and an alert
    must never fail to render for want of one.
    """
    entry = places.entry(code)
    if entry is None:
        return code
    name = getattr(entry, "full_name", None) if full else None
    name = name or getattr(entry, "name", None)
    return name if isinstance(name, str) and name else code


# Readers of these languages may not read kanji: a town's place names come romanised first,
# Misaka-machi (三坂町), from the registry's kana readings (alertd.romaji).
ROMANISED = ("en", "ko")


def readable_name(code: str, name: str, lang: str | None) -> str:
    """``name`` as a reader of ``lang`` reads it: "Misaka-machi (三坂町)" in en and ko where the
    registry has a reading, else the name as it is."""
    if lang not in ROMANISED:
        return name
    entry = places.entry(code)
    kana = getattr(entry, "kana", None)
    romaji = romanise(getattr(entry, "name", name), kana) if isinstance(kana, str) else None
    return f"{romaji} ({name})" if romaji else name


def readable_district(municipality: str | None, name: str, lang: str | None) -> str:
    """A district a lift or what still stands names by its name (三坂町), as a reader of ``lang``
    reads it: romanised first in en and ko like the order's own places; the town's own name, one
    the registry does not know, or a national alert's place stays as written."""
    if not municipality or lang not in ROMANISED:
        return name
    if name == place_name(municipality):
        return readable_name(municipality, name, lang)
    code = f"{municipality}:{name}"
    return readable_name(code, name, lang) if places.entry(code) is not None else name


def _known_name(code: str | None, lang: str | None = None) -> str | None:
    """A municipality's name only when the registry really knows it (never a bare code in prose)."""
    if not code:
        return None
    name = place_name(code)
    return None if name == code or name.isdigit() else readable_name(code, name, lang)


def district_names(alert: Alert, lang: str | None = None) -> list[str]:
    """Names of the alert's districts, leaving out the municipality itself (that means 全域).

    Without a municipality (national alerts) names carry their prefecture, and are not
    romanised (a prefecture and town together would be too long for a line of signage).
    """
    names: list[str] = []
    for code in alert.districts:
        if alert.municipality and code == alert.municipality:
            continue
        name = place_name(code, full=alert.municipality is None)
        if alert.municipality and name != code:
            name = readable_name(code, name, lang)
        if name not in names:
            names.append(name)
    return names


# --- phrasebooks ------------------------------------------------------------

# The words themselves, one catalog per language in alertd/texts/<lang>.yaml, so a
# translator edits them without touching code (tests/test_text_catalogs.py keeps
# their keys and placeholders in step with ja.yaml).
_PHRASES: dict[str, dict[str, Any]] = load_catalogs(LANGUAGES)


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
    texts = _PHRASES.get(normalise_language(lang), {})
    # Only やさしい日本語 has reasons_explained: it explains a hard word the first time it is used.
    explained = texts.get("reasons_explained", {})
    if explain and canon in explained:
        return explained[canon]
    return texts.get("reasons", {}).get(canon, canon)


# What to show when a language has no text of its own, best first.
_FALLBACK_CHAIN = {
    "ja": ("en",),
    "en": ("ja",),
    "zh": ("en", "ja"),
    "ko": ("en", "ja"),
    "ja-easy": ("ja", "en"),
}

_NATIONAL_KINDS = (AlertKind.MISSILE, AlertKind.EEW, AlertKind.TSUNAMI, AlertKind.SPECIAL_WARNING, AlertKind.WARNING,
                   AlertKind.LANDSLIDE, AlertKind.FLOOD)  # fmt: skip


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
    spoken_title: str  # "" when the body already says everything (the transmission test)
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
    if not kind and alert.level in (3, 4, 5) and alert.action in (Action.ISSUE, Action.LIFT):
        return AlertKind.EVACUATION
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


def _places(lang: str, ctx: _Context, *, named: bool = True) -> tuple[str, bool]:
    """The places phrase and whether it is the whole municipality.

    ``named=False`` says "the whole area" rather than "the whole of 常総市" where the sentence
    names the town elsewhere (代行: "… in 常総市 (issued by 茨城県 on its behalf)")."""
    p = _PHRASES[lang]
    if not ctx.names:
        if named and ctx.muni and "whole_area_named" in p:
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
    elif key == "shelters_full":  # a 満員 shelter is said to be full, never left out in silence
        names = [s.name for s in alert.shelters if s.status == "full"]
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
    # 代行 names the town in its own phrase (on_behalf_part), so the places must not name it again.
    places, whole = _places(lang, ctx, named=ctx.issuer is None)
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
            # The lift names places as the order did: romanised first in en and ko ("Misaka-machi
            # (三坂町)"), and the town itself (its kanji name, whatever ctx.muni reads) is 全域.
            town = place_name(alert.municipality) if alert.municipality else None
            items = [
                p["ended_item"].format(
                    title=p["level_title"].format(n=e["level"], name=p["level_name"][e["level"]]),
                    places=p["whole_area"] if e.get("districts") in ([], [town], [ctx.muni]) else
                    p["list_sep"].join(readable_district(alert.municipality, n, lang) for n in e["districts"]),
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
    body = _join([body, _shelter_line(alert, lang, "shelters_open"), _shelter_line(alert, lang, "shelters_full")], lang)
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
    full = _shelter_line(alert, lang, "shelters_full") if action == "issue" else ""
    if full and not any(s.status == "open" for s in alert.shelters):
        # A notice that shelters are full is not an opening: say only that, and where else to go.
        title = p["shelter_title"]["full"]
        return _Core(title, title, full)
    body = p["shelter_body"][action].format(muni_part=_muni_part(lang, ctx, whole=False))
    line = _shelter_line(alert, lang, "shelters_open" if action == "issue" else "shelters_named")
    return _Core(title, title, _join([body, line, full], lang))


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
    if kind == "tsunami" and "tsunami_regions" in p:
        # 津波情報 (VTSE51): JMA's expected arrival and height per region, in JMA's words.
        regions = [v for i in alert.infos[:1] for k, v in i.parameters if k == hazard_texts.PARAM_TSUNAMI_REGION]
        if regions:
            body = _join([body, p["tsunami_regions"].format(lines=p["list_sep"].join(regions))], lang)
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
    if kind in hazard_texts.HAZARD_KINDS:
        return _hazard(alert, lang, ctx, kind)
    return None


def _hazard(alert: Alert, lang: str, ctx: _Context, kind: str) -> _Core | None:
    """Earthquake reports, volcanoes, great-earthquake information, record rain, tornadoes, heat."""
    p = _PHRASES[lang]
    composed = hazard_texts.compose(alert, kind, p)
    if composed is None:
        return None
    title, body = composed
    # The earthquake text lists its areas with their 震度; the megaquake prefectures are dozens.
    areas = ""
    if ctx.names and kind not in ("earthquake", "megaquake", "tsunami_info"):
        areas = p["areas_line"].format(places=_places(lang, ctx)[0])
    if alert.action == "lift" and kind not in ("megaquake", "volcano"):  # 調査終了, 警報解除 say it themselves
        lifted = p["lift_title"].format(title=title)
        return _Core(title, lifted, _join([p["national_lift"].format(title=title), areas], lang))
    return _Core(title, title, _join([body, areas], lang))


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
    names = list(district_names) if district_names is not None else _names_for(alert, lang)
    issuer = (_known_name(alert.on_behalf_of[:2]) or alert.source) if alert.on_behalf_of else None
    ctx = _Context(names=names, max_places=max_places, muni=_known_name(alert.municipality, lang), compact=compact,
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
        status_sentence = ""  # "これは試験です。これは、防災情報の伝達試験です。" says it twice
    change = change_kind(alert)
    # What still stands where a lift or cancel ended something, and who spoke (代行).
    said_issuer = ctx.issuer is not None and _kind(alert) == "evacuation" and source == "template"
    after = _join([_still_standing(alert, text_lang), "" if said_issuer else _on_behalf(alert, text_lang)], text_lang)
    if alert.msg_type == MsgType.CANCEL:
        markers += p["cancel_marker"]
        where = _where(text_lang, ctx)
        if alert.note == DRILL_END_NOTE and alert.status == Status.EXERCISE:
            # A drill's cleanup: the drill is over, nothing was sent in error.
            main = p["cancel_body_drill_end"].format(what=core.title)
        elif _kind(alert) not in (AlertKind.EVACUATION, AlertKind.SHELTER, ""):
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
    if lang in ROMANISED:
        # Read aloud, the romanised name is the name: a voice reading 三坂町 in English helps nobody.
        spoken = _KANJI_ASIDE.sub("", spoken)
    return Message(lang=lang, headline=headline, body=body, spoken=_plain(spoken), source=source)


# " (三坂町)" after a romanised name: kanji and kana only, in ASCII or full-width parentheses.
_KANJI_ASIDE = re.compile(r" \([\u3040-\u30ff\u3400-\u9fff々〆ヶ]+\)")


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
        places = p["list_sep"].join(readable_district(alert.municipality, n, lang) for n in item.get("districts") or [])
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


def _names_for(alert: Alert, lang: str | None = None) -> list[str]:
    return district_names(alert, lang)


_SPACES = re.compile(r"[ \t\u3000]+")


def _plain(text: str) -> str:
    return _SPACES.sub(" ", text.replace("\n", " ")).strip()


def quake_details(alert: Alert, lang: str) -> str:
    """The 震度 by area, hypocentre, magnitude and depth of an earthquake report, as the
    English body says them: JMA's own Japanese description is only its headline."""
    composed = hazard_texts.compose(alert, "earthquake", _PHRASES.get(lang) or _PHRASES["en"])
    return composed[1] if composed else ""


def with_status_sentence(text: str, status: Status, lang: str) -> str:
    """``text`` starting with 「これは訓練です。」/"This is a drill." for a drill or test: JMA's
    own description of a 訓練 telegram reads word for word like the real one."""
    if not text:
        return text
    p = _PHRASES.get(lang) or _PHRASES["en"]
    sentence = str(p["status_sentence"].get(status.value, ""))
    if not sentence or text.startswith(sentence):
        return text
    return _join([sentence, text], lang if lang in _PHRASES else "en")


def status_marker(status: Status | str, lang: str) -> str:
    """【訓練】, [DRILL] …: what a drill's or test's title starts with in ``lang`` ("" for Actual)."""
    phrases = _PHRASES.get(lang) or _PHRASES["en"]
    return str(phrases["status_marker"].get(str(status), ""))


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
