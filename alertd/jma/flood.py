"""River flood information: designated-river forecasts (指定河川洪水予報, VXKOii) and 水位周知河川 (VXSUii).

The forecast is about a river reach, not a municipality; the towns at risk
are the ones JMA lists as 浸水想定地区 (areas expected to be flooded), each
with a 7-digit CityCode. Those become the alert's districts. JMA's own
samples use placeholder codes (0000000) there, which resolve to nothing and
are reported as unresolved rather than guessed at.
"""

from __future__ import annotations

from alertd.jma.head import GEOCODE_JMA_AREA, GEOCODE_RIVER, Header, Part, Resolver, area, text, unique
from alertd.jma.levels import flood_grade

_PLACEHOLDER = {"0000000", "00000", "990000"}


def parse_vxkoii(h: Header, resolver: Resolver) -> list[Part]:
    kind_name = ""
    kind_code = ""
    reaches = []
    for info in h.head.findall("{*}Headline/{*}Information"):
        # 指定河川洪水予報 names its forecast reach （予報区域）; 水位周知河川 (VXSUii) its （発表区間）.
        if not (info.get("type") or "").endswith(("（予報区域）", "（発表区間）")):
            continue
        for item in info.findall("{*}Item"):
            kind_name = kind_name or text(item, "{*}Kind/{*}Name")
            kind_code = kind_code or text(item, "{*}Kind/{*}Code")
            for a in item.findall("{*}Areas/{*}Area"):
                reaches.append(area(text(a, "{*}Name"), text(a, "{*}Code"), GEOCODE_RIVER))
    grade = flood_grade(kind_name or h.title)
    if grade is None:
        return []
    action, level, english = grade

    districts: list[str] = []
    towns = []
    warnings = h.body.findall("{*}Warning") if h.body is not None else []
    for block in warnings:
        for a in block.findall("{*}Item/{*}Areas/{*}Area"):
            city_code = text(a, "{*}CityCode")
            if not city_code:
                continue
            towns.append(area(text(a, "{*}City"), city_code, GEOCODE_JMA_AREA))
            if city_code in _PLACEHOLDER:
                resolver.miss(city_code)
                continue
            districts.extend(resolver.municipalities(city_code))
    event = kind_name or h.title
    return [
        Part(
            key=f"flood-{kind_code or level}-{action}",
            kind="flood",
            event=event,
            event_en=english,
            level=level,
            action=action,
            reason="洪水",
            districts=unique(districts),
            areas=reaches + towns,
            jma_status=text(h.head, "{*}Headline/{*}Information/{*}Item/{*}Kind/{*}Condition"),
        )
    ]
