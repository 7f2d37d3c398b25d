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
from alertd.jma.levels import INTENSITIES, eew_level, tsunami_item

# The CAP parameters the texts read (defined once, in alertd.messages): on a lift,
# the level of the grade it ends (5, 4, 2 or 1); on an EEW whose NextAdvisory
# says it is the last report, 最終報.
from alertd.messages import PARAM_FINAL_REPORT as FINAL_REPORT
from alertd.messages import PARAM_LIFTED_LEVEL as LIFTED_LEVEL


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
    # JMA ends an EEW sequence with NextAdvisory 「この情報をもって、緊急地震速報：最終報とします。」.
    next_advisory = text(h.body, "{*}NextAdvisory") if h.body is not None else ""
    final = "最終報" in next_advisory
    if final:
        params.append((FINAL_REPORT, "true"))
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
            description=_join(h.headline, next_advisory) or None,
            headline=f"{h.title or '緊急地震速報（警報）'}（最終報）" if final else None,
            headline_en="Earthquake early warning (final report)" if final else None,
        )
    ]


def _join(*texts: str) -> str:
    return "\n".join(t for t in texts if t)


def parse_vtse41(h: Header, resolver: Resolver) -> list[Part]:
    """One alert per grade the items carry (大津波警報, 津波警報, 津波注意報, 津波予報, and each lift).

    Each part's event, level and headline come from its own items' Kind (and
    LastKind), never from Head/Title, which lists every grade in the message.
    """
    groups: dict[tuple[str, int], Part] = {}
    forecast = h.body.find("{*}Tsunami/{*}Forecast") if h.body is not None else None
    items = forecast.findall("{*}Item") if forecast is not None else []
    for item in items:
        name = text(item, "{*}Category/{*}Kind/{*}Name")
        grade = tsunami_item(name, text(item, "{*}Category/{*}LastKind/{*}Name"))
        if grade is None:
            continue
        a_name, a_code = text(item, "{*}Area/{*}Name"), text(item, "{*}Area/{*}Code")
        rank = grade.level if grade.level is not None else grade.lifted_level or 0
        part = groups.get((grade.action, rank))
        if part is None:
            params = [(LIFTED_LEVEL, str(grade.lifted_level))] if grade.lifted_level is not None else []
            part = groups[(grade.action, rank)] = Part(
                key=f"tsunami-{grade.action}-{rank}",
                kind="tsunami",
                event=grade.event,
                event_en=grade.english,
                level=grade.level,
                action=grade.action,
                reason="津波",
                districts=[],
                areas=[],
                jma_status=name,
                parameters=params,
                headline=grade.event,
                headline_en=grade.english,
            )
        part.districts = unique([*part.districts, *resolver.tsunami(a_code)])
        part.areas.append(area(a_name, a_code, GEOCODE_TSUNAMI))
    # Most urgent first: a reader of the CLI output (or a log) sees 大津波警報 at the top.
    parts = sorted(groups.values(), key=lambda p: (p.action == "lift", -(p.level or 0), -_lifted(p)))
    _describe(parts, h.headline)
    return parts


def _describe(parts: list[Part], headline: str) -> None:
    """Each grade's own description: its grade and regions, and JMA's headline only for the top grade.

    JMA's Head/Headline speaks of the message's gravest grade (「東日本大震災クラスの津波が来襲
    します。大津波警報・津波警報を発表しました。」); under a 津波注意報 alert it told people in
    harbours a 大津波警報 had come. The top grade is the highest level issued or lifted (a
    「津波注意報を解除しました。」 belongs to the 注意報解除, not to the 津波予報 beside it).
    """
    if not parts:
        return
    top = max(parts, key=lambda p: (p.level or _lifted(p), p.action != "lift"))
    for part in parts:
        regions = "、".join(a.desc for a in part.areas)
        own = f"{part.event}：{regions}" if regions else part.event
        part.description = _join(headline, own) if part is top else own


def _lifted(part: Part) -> int:
    return next((int(v) for k, v in part.parameters if k == LIFTED_LEVEL), 0)
