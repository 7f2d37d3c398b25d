"""Tsunami information: 津波情報 (VTSE51) and 沖合の津波観測に関する情報 (VTSE52).

VTSE51 follows a 津波警報・注意報・予報 (VTSE41) with the numbers people act
on: per 津波予報区 the expected first arrival and maximum height. It restates
each region's grade, so it is read with the VTSE41 parser (one alert per
grade, regions and their coastal towns) and each alert also carries one
``JMA_TSUNAMI_REGION`` parameter per region: "茨城県 08:10 巨大". A 大津波警報 or
津波警報 update therefore travels like the warning (flash lane, policy).

VTSE52 reports a tsunami seen offshore (GPS buoys, pressure gauges) before it
reaches the coast, and the heights and times JMA estimates for the coasts
(Estimation/Item/Area = 津波予報区): those regions and their towns are the
districts. JMA issues it only while a tsunami warning stands.
"""

from __future__ import annotations

from lxml import etree

from alertd.hazard_texts import PARAM_TSUNAMI_REGION
from alertd.jma.head import GEOCODE_TSUNAMI, Header, Part, Resolver, area, text, unique
from alertd.jma.seismic import parse_vtse41


def _region_line(item: etree._Element) -> tuple[str, str]:
    """(region code, "<name> <arrival or condition> <height>") of one Forecast/Estimation item."""
    name, code = text(item, "{*}Area/{*}Name"), text(item, "{*}Area/{*}Code")
    arrival = text(item, "{*}FirstHeight/{*}ArrivalTime")
    when = arrival[11:16] if len(arrival) >= 16 else ""
    condition = text(item, "{*}FirstHeight/{*}Condition")
    height_el = item.find("{*}MaxHeight/{*}TsunamiHeight")
    height = ""
    if height_el is not None:
        height = height_el.get("description") or (height_el.text or "").strip()
        if height == "NaN":
            height = ""
    words = [w for w in (name, when or condition, height) if w]
    return code, " ".join(words)


def parse_vtse51(h: Header, resolver: Resolver) -> list[Part]:
    parts = parse_vtse41(h, resolver)
    forecast = h.body.find("{*}Tsunami/{*}Forecast") if h.body is not None else None
    lines = dict(_region_line(i) for i in forecast.findall("{*}Item")) if forecast is not None else {}
    for part in parts:
        for a in part.areas:
            code = a.geocodes[0][1] if a.geocodes else ""
            if code in lines:
                part.parameters.append((PARAM_TSUNAMI_REGION, lines[code]))
    return parts


def parse_vtse52(h: Header, resolver: Resolver) -> list[Part]:
    estimation = h.body.find("{*}Tsunami/{*}Estimation") if h.body is not None else None
    items = estimation.findall("{*}Item") if estimation is not None else []
    districts: list[str] = []
    areas = []
    params = []
    for item in items:
        code, line = _region_line(item)
        districts.extend(resolver.tsunami(code))
        areas.append(area(text(item, "{*}Area/{*}Name"), code, GEOCODE_TSUNAMI))
        params.append((PARAM_TSUNAMI_REGION, line))
    stations = h.head.findall("{*}Headline/{*}Information/{*}Item/{*}Areas/{*}Area/{*}Name")
    observed = "、".join((s.text or "").strip() for s in stations)
    return [
        Part(
            key="tsunami-offshore",
            kind="tsunami_info",
            event="沖合の津波観測に関する情報",
            event_en="Tsunami observed offshore",
            level=None,
            action="issue",
            reason="津波",
            districts=unique(districts),
            areas=areas,
            jma_status=h.info_type,
            parameters=params,
            description="\n".join(t for t in (h.headline, f"観測点: {observed}" if observed else "") if t) or None,
        )
    ]
