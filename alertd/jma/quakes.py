"""Earthquake information after the shaking: 震度速報 (VXSE51), 震源に関する情報 (VXSE52), 震源・震度に関する情報 (VXSE53).

These report what was *observed*, unlike the EEW, so one message is one
alert: every area that shook, each with its maximum 震度, and where the
hypocentre, magnitude and depth are known, those too. Districts come from
the message's own hierarchy, so no separate seismic-area table is needed:

- a 地震情報／細分区域 (``静岡県中部``, 3 digits) is listed under its
  地震情報／都道府県等 ``Pref`` (2 digits = the prefecture code): the area is
  routed to that prefecture — 震度速報 names no towns, and every town of the
  prefecture should know its neighbour area shook;
- a 市町村 (``City``, 7-digit 気象・地震・火山情報／市町村等 code, VXSE53) is that
  municipality: the towns that observed the shaking.

震源に関する情報 and 遠地地震に関する情報 name no area in Japan: they are parsed
(hypocentre, magnitude, tsunami comment) but have no districts, so nothing
is relayed (docs/jma.md says why).
"""

from __future__ import annotations

from lxml import etree

from alertd.hazard_texts import PARAM_AREA_INTENSITY, PARAM_MAX_INTENSITY
from alertd.jma.head import GEOCODE_SEISMIC, Header, Part, Resolver, area, text, unique
from alertd.jma.levels import INTENSITIES, intensity_level, normalize

EVENTS_EN = {
    "VXSE51": "Seismic intensity report",
    "VXSE52": "Earthquake hypocentre report",
    "VXSE53": "Earthquake and seismic intensity report",
}


def _earthquake(body: etree._Element | None) -> list[tuple[str, str]]:
    """Hypocentre, magnitude, depth (km) and origin time as CAP parameters, where the message has them."""
    if body is None:
        return []
    eq = body.find("{*}Earthquake")
    if eq is None:
        return []
    params = [("JMA_ORIGIN_TIME", text(eq, "{*}OriginTime"))]
    params.append(("JMA_HYPOCENTER", text(eq, "{*}Hypocenter/{*}Area/{*}Name")))
    mag = eq.find("{*}Magnitude")
    if mag is not None and (mag.text or "").strip() not in ("", "NaN"):
        params.append(("JMA_MAGNITUDE", (mag.text or "").strip()))
    coord = eq.find("{*}Hypocenter/{*}Area/{*}Coordinate")
    depth = _depth_km(coord.text or "") if coord is not None else None
    if depth is not None:
        params.append(("JMA_DEPTH_KM", depth))
    return [(k, v) for k, v in params if v]


def _depth_km(iso6709: str) -> str | None:
    """The depth in an ISO 6709 coordinate (``+34.8+138.5-10000/``: metres below sea level)."""
    body = iso6709.strip().rstrip("/")
    signs = [i for i, c in enumerate(body) if c in "+-"]
    if len(signs) < 3:
        return None
    try:
        metres = -float(body[signs[2] :])
    except ValueError:
        return None
    return str(round(metres / 1000))


def parse_quake(h: Header, resolver: Resolver) -> list[Part]:
    areas = []
    districts: list[str] = []
    by_area: list[tuple[str, str]] = []  # (震度, area name), most intense first
    observation = h.body.find("{*}Intensity/{*}Observation") if h.body is not None else None
    max_int = text(observation, "{*}MaxInt") if observation is not None else ""
    for pref in observation.findall("{*}Pref") if observation is not None else []:
        pref_code = text(pref, "{*}Code")
        cities: list[str] = []
        unknown_city = False
        for a in pref.findall("{*}Area"):
            name, code, a_int = text(a, "{*}Name"), text(a, "{*}Code"), text(a, "{*}MaxInt")
            areas.append(area(name, code, GEOCODE_SEISMIC))
            if a_int:
                by_area.append((a_int, name))
            for city in a.findall("{*}City"):
                towns = resolver.municipalities(text(city, "{*}Code"))
                cities.extend(towns)
                # A code the registry lacks (a town merged since, 茨城県その他 …99900) must not lose the report.
                unknown_city = unknown_city or not towns
        # Towns that observed it when the message lists them (VXSE53); else the whole prefecture.
        districts.extend(cities)
        if not cities or unknown_city:
            districts.extend(resolver.prefecture(pref_code))
    if not by_area:
        by_area = _headline_intensities(h)
        max_int = max_int or (by_area[0][0] if by_area else "")
    by_area.sort(key=lambda p: -INTENSITIES.index(p[0]) if p[0] in INTENSITIES else 0)
    params = _earthquake(h.body)
    if max_int:
        params.append((PARAM_MAX_INTENSITY, max_int))
    params.extend((PARAM_AREA_INTENSITY, f"{i} {n}") for i, n in by_area)
    comment = text(h.body, "{*}Comments/{*}ForecastComment/{*}Text") if h.body is not None else ""
    return [
        Part(
            key="quake",
            kind="earthquake",
            event=h.title or h.control_title,
            event_en="Distant earthquake report" if "遠地" in h.title else EVENTS_EN.get(h.type_code, "Earthquake information"),
            level=intensity_level(max_int),
            action="issue",
            reason="地震",
            districts=unique(districts),
            areas=areas,
            jma_status=h.info_type,
            parameters=params,
            description="\n".join(t for t in (h.headline, comment) if t) or None,
        )
    ]


_INTENSITY_NAMES = {"震度" + normalize(k): v for k, v in {
    "1": "1", "2": "2", "3": "3", "4": "4", "5弱": "5-", "5強": "5+", "6弱": "6-", "6強": "6+", "7": "7",
}.items()}  # fmt: skip


def _headline_intensities(h: Header) -> list[tuple[str, str]]:
    """震度速報 repeats its table in Headline/Information: the fallback when the Body lacks it."""
    out = []
    for item in h.head.findall("{*}Headline/{*}Information/{*}Item"):
        code = _INTENSITY_NAMES.get(normalize(text(item, "{*}Kind/{*}Name")))
        if code is None:
            continue
        out.extend((code, text(a, "{*}Name")) for a in item.findall("{*}Areas/{*}Area"))
    return out
