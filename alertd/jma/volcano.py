"""Volcano warnings: 噴火警報・予報 (VFVO50) and 噴火速報 (VFVO56).

The towns are those JMA names (対象市町村等, 7-digit codes): the municipalities
that must act — close the mountain, evacuate — not every town that can see
the volcano. The 噴火警戒レベル (1–5) is carried as ``JMA_VOLCANO_LEVEL`` and
is the alert's level: JMA designed the levels to line up with what the
municipality does (5 避難, 4 高齢者等避難, 3 入山規制, 2 火口周辺規制, 1 活火山で
あることに留意). A volcano without levels is placed by its warning: 噴火警報（居住
地域） 4, 噴火警報（火口周辺） 3, 噴火予報 1.

噴火速報 says an eruption has just happened: level 4, the flash lane.
"""

from __future__ import annotations

import re

from alertd.hazard_texts import PARAM_VOLCANO, PARAM_VOLCANO_LEVEL
from alertd.jma.head import GEOCODE_JMA_AREA, Header, Part, Resolver, area, text, unique
from alertd.jma.levels import normalize

GEOCODE_VOLCANO = "JP-JMA-VOLCANO"
_LEVEL = re.compile(r"^レベル(\d)")
_TITLE_NAME = re.compile(r"火山名\s*(\S+)")  # Head/Title 「火山名　御嶽山　噴火速報」


def volcano_name(h: Header) -> str:
    """The volcano a telegram is about: Head/Headline's area, or its Head/Title.

    A 取消 of a 噴火速報 has no Headline/Information, only 「火山名　御嶽山　噴火速報」: without
    the title every channel said 「先ほどの「噴火速報 」は取り消されました。」, naming no volcano.
    """
    name = text(h.head, "{*}Headline/{*}Information/{*}Item/{*}Areas/{*}Area/{*}Name")
    if name:
        return name
    m = _TITLE_NAME.search(h.title)
    return m.group(1) if m else ""


def _warning_level(name: str) -> int:
    norm = normalize(name)
    if "居住地域" in norm or norm in ("噴火警報", "噴火特別警報"):
        return 4
    if "火口周辺" in norm or "入山危険" in norm:
        return 3
    return 1


def _towns(infos: list, resolver: Resolver) -> tuple[list[str], list]:
    districts: list[str] = []
    areas = []
    for info in infos:
        for a in info.findall("{*}Item/{*}Areas/{*}Area"):
            code = text(a, "{*}Code")
            districts.extend(resolver.municipalities(code))
            areas.append(area(text(a, "{*}Name"), code, GEOCODE_JMA_AREA))
    return unique(districts), areas


def parse_vfvo50(h: Header, resolver: Resolver) -> list[Part]:
    infos = {i.get("type") or "": i for i in h.head.findall("{*}Headline/{*}Information")}
    target = next((i for t, i in infos.items() if t.endswith("（対象火山）")), None)
    towns = [i for t, i in infos.items() if t.endswith("（対象市町村等）")]
    level_name = text(target, "{*}Item/{*}Kind/{*}Name") if target is not None else ""
    condition = text(target, "{*}Item/{*}Kind/{*}Condition") if target is not None else ""
    volcano = text(target, "{*}Item/{*}Areas/{*}Area/{*}Name") if target is not None else ""
    volcano_code = text(target, "{*}Item/{*}Areas/{*}Area/{*}Code") if target is not None else ""
    warning = text(towns[0], "{*}Item/{*}Kind/{*}Name") if towns else ""
    m = _LEVEL.match(normalize(level_name))
    volcano_level = int(m.group(1)) if m else None
    level = volcano_level if volcano_level is not None else _warning_level(level_name or warning)
    districts, areas = _towns(towns, resolver)
    params = [(PARAM_VOLCANO, volcano)] if volcano else []
    if volcano_level is not None:
        params.append((PARAM_VOLCANO_LEVEL, str(volcano_level)))
    event = f"{warning or '噴火警報・予報'}（{volcano}）" if volcano else (warning or h.title)
    # 噴火予報：警報解除 ends a warning: a lift, heard wherever the warning was (ingest: RESTATED).
    lifted = condition == "解除" or "解除" in normalize(warning)
    return [
        Part(
            key=f"volcano-{volcano_code or 'x'}",
            kind="volcano",
            event=event,
            event_en=f"Volcanic warning: {volcano}" if volcano else "Volcanic warning",
            level=None if lifted else level,
            action="lift" if lifted else "issue",
            reason="火山",
            districts=districts,
            areas=[*([area(volcano, volcano_code, GEOCODE_VOLCANO)] if volcano else []), *areas],
            jma_status=condition or h.info_type,
            parameters=params,
            description=h.headline or None,
            headline=f"{h.title}（{level_name}）" if level_name and level_name not in h.title else None,
        )
    ]


def parse_vfvo56(h: Header, resolver: Resolver) -> list[Part]:
    infos = h.body.findall("{*}VolcanoInfo") if h.body is not None else []
    towns = [i for i in infos if (i.get("type") or "").endswith("（対象市町村等）")]
    volcano = volcano_name(h)
    volcano_code = text(h.head, "{*}Headline/{*}Information/{*}Item/{*}Areas/{*}Area/{*}Code")
    districts, areas = _towns(towns, resolver)
    return [
        Part(
            key=f"eruption-{volcano_code or 'x'}",
            kind="volcano",
            event=f"噴火速報（{volcano}）" if volcano else "噴火速報",
            event_en=f"Eruption: {volcano}" if volcano else "Eruption",
            level=4,
            action="issue",
            reason="火山",
            districts=districts,
            areas=[*([area(volcano, volcano_code, GEOCODE_VOLCANO)] if volcano else []), *areas],
            jma_status=h.info_type,
            parameters=[(PARAM_VOLCANO, volcano)] if volcano else [],
            description=h.headline or None,
        )
    ]
