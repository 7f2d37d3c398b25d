"""Short-notice weather information: 記録的短時間大雨情報 (VPOA50), 竜巻注意情報 (VPHW50/51), 熱中症警戒アラート (VPFT50).

They name forecast areas, not towns: 一次細分区域 and 府県予報区 (6 digits;
the 竜巻 message adds its 市町村等 table). The registry expands them through
JMA's area table (geo/jma_areas.py), so 石狩地方 is 札幌市 … and not all of 北海道.
The most detailed table a message carries is used.

Levels (none of these is a 警戒レベル; placed by what they ask): 記録的短時間大雨情報
4 — JMA issues it when rain at a 警戒レベル4 rate is falling now, under a
大雨警報; 竜巻注意情報 3 — act now, but locally and for an hour; 熱中症警戒アラート
3 — a day's warning to a whole prefecture.
"""

from __future__ import annotations

from alertd.jma.head import GEOCODE_JMA_AREA, Header, Part, Resolver, area, text, unique

# Head/Title tails: the area's name comes before them (埼玉県熱中症警戒アラート).
_HEAT_TAIL = "熱中症警戒アラート"

_DETAIL = ("（市町村等）", "（一次細分区域等）", "（発表細分）")


def _areas(h: Header, resolver: Resolver) -> tuple[list[str], list, str]:
    """Districts, CAP areas and the Kind/Condition of the most detailed Headline table."""
    infos = {i.get("type") or "": i for i in h.head.findall("{*}Headline/{*}Information")}
    for suffix in _DETAIL:
        table = next((i for t, i in infos.items() if t.endswith(suffix)), None)
        if table is None:
            continue
        districts: list[str] = []
        areas = []
        for item in table.findall("{*}Item"):
            for a in item.findall("{*}Areas/{*}Area"):
                code = text(a, "{*}Code")
                districts.extend(resolver.municipalities(code))
                areas.append(area(text(a, "{*}Name"), code, GEOCODE_JMA_AREA))
        return unique(districts), areas, text(table, "{*}Item/{*}Kind/{*}Condition")
    return [], [], ""


def _part(h: Header, resolver: Resolver, *, kind: str, event: str, english: str, level: int) -> Part:
    districts, areas, condition = _areas(h, resolver)
    lifted = condition == "解除"
    return Part(
        key=kind,
        kind=kind,
        event=f"{event}解除" if lifted else event,
        event_en=f"{english} lifted" if lifted else english,
        level=None if lifted else level,
        action="lift" if lifted else "issue",
        reason={"heavy_rain": "大雨", "tornado": "竜巻", "heat": "熱中症"}[kind],
        districts=districts,
        areas=areas,
        jma_status=condition or h.info_type,
        description=h.headline or _comment(h) or None,
        headline=h.title or None,
    )


def _comment(h: Header) -> str:
    return text(h.body, "{*}Comment/{*}Text") if h.body is not None else ""


def parse_vpoa50(h: Header, resolver: Resolver) -> list[Part]:
    return [_part(h, resolver, kind="heavy_rain", event="記録的短時間大雨情報",
                  english="Record short-term heavy rain", level=4)]  # fmt: skip


def parse_vphw(h: Header, resolver: Resolver) -> list[Part]:
    witnessed = h.control_title.endswith("（目撃情報付き）")
    return [_part(h, resolver, kind="tornado", event=h.control_title or "竜巻注意情報",
                  english="Tornado alert (sighted)" if witnessed else "Tornado alert", level=3)]  # fmt: skip


def parse_vpft50(h: Header, resolver: Resolver) -> list[Part]:
    """熱中症警戒アラート names its 府県予報区 only in Head/Title (埼玉県熱中症警戒アラート)."""
    name = (h.title or "").removesuffix(_HEAT_TAIL).strip()
    code = resolver.forecast_area_named(name)
    districts = resolver.municipalities(code) if code else []
    return [
        Part(
            key="heat",
            kind="heat",
            event="熱中症警戒アラート",
            event_en="Heatstroke alert",
            level=3,
            action="issue",
            reason="熱中症",
            districts=districts,
            areas=[area(name, code, GEOCODE_JMA_AREA)] if code else [],
            jma_status=h.info_type,
            description=_comment(h) or h.headline or None,
            headline=h.title or None,
        )
    ]
