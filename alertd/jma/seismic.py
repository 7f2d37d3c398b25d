"""Earthquake early warnings (VXSE43) and tsunami warnings (VTSE41).

Both go to whole prefectures or coasts within seconds, so their districts
are coarse on purpose: an EEW names prefectures (its 府県予報区), a tsunami
warning names 津波予報区 regions and, so that municipal loudspeakers can be
triggered, every coastal municipality of those regions.
"""

from __future__ import annotations

from alertd.jma.head import (
    GEOCODE_EEW_PREF,
    GEOCODE_SEISMIC,
    GEOCODE_TSUNAMI,
    Header,
    Part,
    Resolver,
    area,
    text,
    unique,
)
from alertd.jma.levels import INTENSITIES, eew_level, tsunami_grade


def _eew_prefecture(code: str) -> str | None:
    """緊急地震速報／府県予報区 codes are 9PPx: the middle two digits are the prefecture code."""
    if len(code) == 4 and code.isdigit() and code[0] == "9":
        return code[1:3]
    return None


def parse_vxse43(h: Header, resolver: Resolver) -> list[Part]:
    prefs: list[str] = []
    areas = []
    for info in h.head.findall("{*}Headline/{*}Information"):
        kind = info.get("type") or ""
        for a in info.findall("{*}Item/{*}Areas/{*}Area"):
            name, code = text(a, "{*}Name"), text(a, "{*}Code")
            if kind.endswith("（府県予報区）"):
                pref = _eew_prefecture(code)
                if pref:
                    prefs.append(pref)
                areas.append(area(name, code, GEOCODE_EEW_PREF))
            elif kind.endswith("（細分区域）"):
                areas.append(area(name, code, GEOCODE_SEISMIC))
    forecast = h.body.find("{*}Intensity/{*}Forecast") if h.body is not None else None
    max_from = text(forecast, "{*}ForecastInt/{*}From") if forecast is not None else ""
    max_to = text(forecast, "{*}ForecastInt/{*}To") if forecast is not None else ""
    hypocenter = text(h.body, "{*}Earthquake/{*}Hypocenter/{*}Area/{*}Name") if h.body is not None else ""
    magnitude = ""
    if h.body is not None:
        mag = h.body.find("{*}Earthquake/{*}Magnitude")
        magnitude = (mag.text or "").strip() if mag is not None else ""
    params = [
        (k, v)
        for k, v in (
            ("JMA_HYPOCENTER", hypocenter),
            ("JMA_MAGNITUDE", magnitude),
            ("JMA_MAX_INTENSITY_FROM", max_from),
            ("JMA_MAX_INTENSITY_TO", max_to),
        )
        if v
    ]
    districts = unique(d for p in prefs for d in resolver.prefecture(p))
    level = eew_level(max_from if max_from in INTENSITIES else "")
    return [
        Part(
            key="eew",
            kind="eew",
            event="緊急地震速報（警報）",
            event_en="Earthquake early warning",
            level=level,
            action="issue",
            reason="地震",
            districts=districts,
            areas=areas,
            jma_status=h.info_type,
            parameters=params,
        )
    ]


def parse_vtse41(h: Header, resolver: Resolver) -> list[Part]:
    groups: dict[str, Part] = {}
    forecast = h.body.find("{*}Tsunami/{*}Forecast") if h.body is not None else None
    items = forecast.findall("{*}Item") if forecast is not None else []
    for item in items:
        name = text(item, "{*}Category/{*}Kind/{*}Name")
        grade = tsunami_grade(name)
        if grade is None:
            continue
        action, level, event, english = grade
        a_name, a_code = text(item, "{*}Area/{*}Name"), text(item, "{*}Area/{*}Code")
        part = groups.get(event)
        if part is None:
            part = groups[event] = Part(
                key=f"tsunami-{level if level is not None else 'lift'}-{'w' if '警報' in event else 'a'}",
                kind="tsunami",
                event=event,
                event_en=english,
                level=level,
                action=action,
                reason="津波",
                districts=[],
                areas=[],
                jma_status=name,
            )
        part.districts = unique([*part.districts, *resolver.tsunami(a_code)])
        part.areas.append(area(a_name, a_code, GEOCODE_TSUNAMI))
    # Most urgent first: a reader of the CLI output (or a log) sees 大津波警報 at the top.
    return sorted(groups.values(), key=lambda p: -(p.level or 0))
