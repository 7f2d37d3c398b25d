"""Words for the JMA information that is not a warning grade: earthquake reports, volcanoes, great-earthquake
information, record rain, tornadoes, heat, tsunami seen offshore.

These carry their own numbers — 震度 per area, the 噴火警戒レベル, the 臨時情報
kind — so their titles are built from the CAP parameters the JMA parsers set
(the names below), not from a fixed catalog title: 「震度5強 茨城県南部」,
"Seismic intensity 5+ in southern Ibaraki". The phrases come from the
language's catalog (alertd/texts/*.yaml); this module only assembles them,
so alertd.messages stays the one place that picks the language.

Area names: JMA names seismic areas in Japanese (茨城県南部). A catalog that
has ``prefectures`` and ``area_parts`` (English, Korean) words them in its
language — prefecture, then the part (北部 → "northern {pref}"); one without
(Chinese, Japanese) shows JMA's name, which its readers read as written.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from alertd.models import Alert

# CAP parameters the JMA parsers set and these texts read.
PARAM_MAX_INTENSITY = "JMA_MAX_INTENSITY"  # highest 震度 observed: 1 … 4, 5-, 5+, 6-, 6+, 7
PARAM_AREA_INTENSITY = "JMA_AREA_INTENSITY"  # one "<震度> <area>" per area (5+ 茨城県南部), most intense first
PARAM_HYPOCENTER = "JMA_HYPOCENTER"
PARAM_MAGNITUDE = "JMA_MAGNITUDE"
PARAM_DEPTH_KM = "JMA_DEPTH_KM"
PARAM_VOLCANO_LEVEL = "JMA_VOLCANO_LEVEL"  # 噴火警戒レベル 1–5
PARAM_VOLCANO = "JMA_VOLCANO"  # the volcano's name
PARAM_NANKAI_KIND = "JMA_NANKAI_KIND"  # 巨大地震警戒 / 巨大地震注意 / 調査中 / 調査終了 / 後発地震注意
PARAM_TSUNAMI_REGION = "JMA_TSUNAMI_REGION"  # one "<region> <arrival> <height>" per 津波予報区

HAZARD_KINDS = frozenset(
    {"earthquake", "eew_forecast", "tsunami_info", "volcano", "megaquake", "heavy_rain", "tornado", "heat"}
)

# JMA's 臨時情報 kinds → catalog keys under ``megaquake``.
MEGAQUAKE_KEYS = {
    "巨大地震警戒": "warning",
    "巨大地震注意": "advisory",
    "調査中": "investigating",
    "調査終了": "ended",
    "後発地震注意": "trench",
}

_STRONG = ("5-", "5+", "6-", "6+", "7")
SHOWN_INTENSITIES = 2


def _params(alert: Alert, name: str) -> list[str]:
    for info in alert.infos:
        values = [v for k, v in info.parameters if k == name]
        if values:
            return values
    return []


def _param(alert: Alert, name: str) -> str:
    values = _params(alert, name)
    return values[0] if values else ""


def _place(name: str, p: dict[str, Any]) -> str:
    """A JMA name the catalog romanises (御嶽山 → "Ontakesan (御嶽山)"), else as JMA wrote it.

    A volcano whose name JMA qualifies (草津白根山（白根山（湯釜付近））) is looked up by its first word.
    """
    names: dict[str, str] = p.get("place_names") or {}
    head = name.split("（", 1)[0].split("(", 1)[0]
    known = names.get(name) or names.get(head)
    if not known:
        return name
    return str(p.get("place_name", "{name} ({kanji})")).format(name=known, kanji=name)


def area_name(name: str, p: dict[str, Any]) -> str:
    """A JMA area name (茨城県南部) in the catalog's language, or as JMA wrote it (digits made half-width)."""
    name = unicodedata.normalize("NFKC", name)
    prefectures: dict[str, str] = p.get("prefectures") or {}
    pref = next((k for k in sorted(prefectures, key=len, reverse=True) if name.startswith(k)), None)
    if pref is None:
        return _place(name, p)
    rest = name[len(pref) :]
    if not rest:
        return prefectures[pref]
    part = (p.get("area_parts") or {}).get(rest)
    template = part if part is not None else p.get("area_other", "{pref} ({rest})")
    return template.format(pref=prefectures[pref], rest=_place(rest, p))


def _earthquake(alert: Alert, p: dict[str, Any]) -> tuple[str, str]:
    t = p["earthquake"]
    words = p["intensity"]
    by_area = [v.split(" ", 1) for v in _params(alert, PARAM_AREA_INTENSITY) if " " in v]
    lines: dict[str, list[str]] = {}
    for intensity, name in by_area:
        lines.setdefault(intensity, []).append(area_name(name, p))
    top = _param(alert, PARAM_MAX_INTENSITY)
    if by_area and top in words:
        first = lines.get(top) or next(iter(lines.values()))
        key = "title_more" if len(first) > 1 else "title"
        title = t[key].format(intensity=words[top], area=first[0])
    else:
        title = t["title_plain"]
    # The two highest intensities by area; the rest as a count, so a loudspeaker reads it in
    # seconds (a 震度速報 can name 40 areas; the CAP parameters keep every one).
    shown = list(lines.items())[:SHOWN_INTENSITIES]
    parts = [t["line"].format(intensity=words.get(i, i), areas=p["list_sep"].join(a)) for i, a in shown]
    rest = list(lines.items())[SHOWN_INTENSITIES:]
    if rest:
        lowest = rest[-1][0]
        parts.append(t["others"].format(n=sum(len(a) for _, a in rest), intensity=words.get(lowest, lowest)))
    place, magnitude, depth = (_param(alert, n) for n in (PARAM_HYPOCENTER, PARAM_MAGNITUDE, PARAM_DEPTH_KM))
    if place:
        parts.append(t["hypocenter"].format(place=area_name(place, p)))
    if magnitude:
        parts.append(t["magnitude"].format(magnitude=magnitude))
    if depth:
        parts.append(t["depth"].format(depth=depth))
    parts.append(t["body"] if top in _STRONG else t["body_minor"])
    return title, p["sep"].join(parts)


def _volcano(alert: Alert, p: dict[str, Any]) -> tuple[str, str]:
    t = p["volcano"]
    volcano = _place(_param(alert, PARAM_VOLCANO), p)
    if _param(alert, "JMA_TYPE") == "VFVO56":
        return t["eruption"].format(volcano=volcano), t["eruption_body"].format(volcano=volcano)
    level = _param(alert, PARAM_VOLCANO_LEVEL)
    if alert.action == "lift":  # 噴火予報：警報解除: the warning ends, the level is what remains
        body = t["lifted_body"].format(n=level) if level else ""
        return t["lifted"].format(volcano=volcano), p["sep"].join(x for x in (body, t["calls"][1]) if x)
    title = t["title"].format(volcano=volcano, n=level) if level else t["title_plain"].format(volcano=volcano)
    call = t["calls"].get(int(level)) if level.isdigit() else None
    if call is None:
        call = t["calls"][4 if (alert.level or 0) >= 4 else 3 if (alert.level or 0) >= 3 else 1]
    return title, call


def compose(alert: Alert, kind: str, p: dict[str, Any]) -> tuple[str, str] | None:
    """(title, body) for ``alert`` of a hazard ``kind`` in the catalog ``p``; None for other kinds."""
    if kind not in HAZARD_KINDS:
        return None
    if kind == "earthquake":
        return _earthquake(alert, p)
    if kind == "volcano":
        return _volcano(alert, p)
    if kind == "megaquake":
        t = p["megaquake"][MEGAQUAKE_KEYS.get(_param(alert, PARAM_NANKAI_KIND), "investigating")]
        return t["title"], t["body"]
    t = p[kind]
    return t["title"], t["body"]


__all__ = ["HAZARD_KINDS", "area_name", "compose"]
