"""Weather warnings: VPWW54 (H27), VPWW55–61 (R06), VPNO50 (special-warning notice), VXWW50 (landslide alert).

A JMA warning message is a table "municipality → kinds in force, each with
its status". alertd turns it the other way round: one alert per (kind,
action) — e.g. 高潮警報 newly issued, 高潮警報 continuing, 大雨注意報 lifted —
listing every municipality it covers, because subscribers and the policy
choose by kind and level, and a broadcaster announces "高潮警報: 下関市,
宇部市 …", not one town at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from lxml import etree

from alertd.jma.head import GEOCODE_JMA_AREA, Header, Part, Resolver, area, text, unique
from alertd.jma.levels import classify_warning, normalize

MUNICIPAL = "（市町村等）"
PREFECTURAL = "（府県予報区等）"

# Item/Kind/Status → action. A downgrade (特別警報から警報 …) is news about the
# new, lower kind, so it is an issue of that kind, not a continuation.
_ACTION = {
    "発表": "issue",
    "特別警報から警報": "issue",
    "特別警報から注意報": "issue",
    "警報から注意報": "issue",
    "継続": "continue",
    "解除": "lift",
}


def _key(code: str, name: str, action: str) -> str:
    safe = code if code.isascii() and code.isalnum() else hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{safe}-{action}"


class _Groups:
    """Collects (kind, action) → municipalities while walking a message's items."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.parts: dict[tuple[str, str], Part] = {}
        self.none_areas: list[tuple[str, str]] = []  # areas with nothing in force

    def add(
        self,
        *,
        name: str,
        code: str,
        action: str,
        jma_status: str,
        area_name: str,
        area_code: str,
        districts: list[str],
    ) -> None:
        cls = classify_warning(name)
        if cls is None:
            return
        group = (name, action)
        part = self.parts.get(group)
        if part is None:
            lifted = action == "lift"
            part = Part(
                key=_key(code, name, action),
                kind=cls.kind,
                event=f"{name}解除" if lifted else name,
                event_en=f"{cls.english} lifted" if lifted else cls.english,
                level=None if lifted else cls.level,
                action=action,
                reason=cls.phenomenon or None,
                districts=[],
                areas=[],
                jma_status=jma_status,
            )
            self.parts[group] = part
        part.districts = unique([*part.districts, *districts])
        part.areas.append(area(area_name, area_code))

    def result(self, h: Header, none_kind: str = "warning") -> list[Part]:
        parts = list(self.parts.values())
        if parts or not self.none_areas:
            return parts
        # Nothing in force anywhere: still one alert, so receivers can clear their state.
        districts: list[str] = []
        for _, code in self.none_areas:
            districts.extend(self.resolver.municipalities(code) if len(code) == 7 else [])
        return [
            Part(
                key="none",
                kind=none_kind,
                event="発表警報・注意報なし",
                event_en="No warnings or advisories in force",
                level=None,
                action="lift",
                reason=None,
                districts=unique(districts),
                areas=[area(n, c) for n, c in self.none_areas],
                jma_status="発表警報・注意報はなし",
            )
        ]


def _warning_blocks(body: etree._Element | None, suffix: str) -> Iterator[etree._Element]:
    if body is None:
        return
    for block in body.findall("{*}Warning"):
        if (block.get("type") or "").endswith(suffix):
            yield block


def _prefecture_districts(resolver: Resolver, code6: str) -> list[str]:
    """A 府県予報区 (6 digits) → its prefecture; its first two digits are the prefecture code."""
    return resolver.prefecture(code6[:2]) if len(code6) == 6 and code6.isdigit() else []


def parse_vpww(h: Header, resolver: Resolver) -> list[Part]:
    """VPWW54 and VPWW55–61 share the Warning/Item/Kind layout; only the kind names differ."""
    groups = _Groups(resolver)
    blocks = list(_warning_blocks(h.body, MUNICIPAL))
    municipal = bool(blocks)
    if not municipal:
        # A message without the municipal table still names its prefecture.
        blocks = list(_warning_blocks(h.body, PREFECTURAL))
    for block in blocks:
        for item in block.findall("{*}Item"):
            area_name = text(item, "{*}Area/{*}Name")
            area_code = text(item, "{*}Area/{*}Code")
            districts = (
                resolver.municipalities(area_code)
                if municipal
                else _prefecture_districts(resolver, area_code)
            )
            kinds = item.findall("{*}Kind")
            for kind in kinds:
                status = text(kind, "{*}Status")
                name = text(kind, "{*}Name")
                if status == "発表警報・注意報はなし" or not name:
                    groups.none_areas.append((area_name, area_code))
                    continue
                action = _ACTION.get(status)
                if action is None:
                    continue
                groups.add(
                    name=name,
                    code=text(kind, "{*}Code"),
                    action=action,
                    jma_status=status,
                    area_name=area_name,
                    area_code=area_code,
                    districts=districts,
                )
    return groups.result(h)


def parse_vpno50(h: Header, resolver: Resolver) -> list[Part]:
    """気象特別警報報知: the notice has only a Headline; its 市町村等 table names the towns."""
    groups = _Groups(resolver)
    infos = {i.get("type") or "": i for i in h.head.findall("{*}Headline/{*}Information")}
    municipal = next((i for t, i in infos.items() if t.endswith(MUNICIPAL)), None)
    table = (
        municipal
        if municipal is not None
        else next((i for t, i in infos.items() if t.endswith(PREFECTURAL)), None)
    )
    if table is None:
        return []
    lifted_areas: list[tuple[str, str, list[str]]] = []
    for item in table.findall("{*}Item"):
        names = [(text(k, "{*}Name"), text(k, "{*}Code")) for k in item.findall("{*}Kind")]
        for a in item.findall("{*}Areas/{*}Area"):
            a_name, a_code = text(a, "{*}Name"), text(a, "{*}Code")
            districts = (
                resolver.municipalities(a_code)
                if municipal is not None
                else _prefecture_districts(resolver, a_code)
            )
            for name, code in names:
                if normalize(name) == "解除":
                    lifted_areas.append((a_name, a_code, districts))
                else:
                    groups.add(
                        name=name,
                        code=code,
                        action="issue",
                        jma_status="発表",
                        area_name=a_name,
                        area_code=a_code,
                        districts=districts,
                    )
    parts = groups.result(h, none_kind="special_warning")
    if lifted_areas:
        parts.append(
            Part(
                key="00-lift",
                kind="special_warning",
                event="特別警報解除",
                event_en="Emergency warning lifted",
                level=None,
                action="lift",
                reason=None,
                districts=unique(d for _, _, ds in lifted_areas for d in ds),
                areas=[area(n, c) for n, c, _ in lifted_areas],
                jma_status="解除",
            )
        )
    return parts


_LANDSLIDE_ACTION = {"発表": "issue", "継続": "continue", "解除": "lift"}


def parse_vxww50(h: Header, resolver: Resolver) -> list[Part]:
    """土砂災害警戒情報 (警戒レベル4相当; R06 renames it レベル４土砂災害危険警報)."""
    groups: dict[str, Part] = {}
    none_areas: list[tuple[str, str]] = []
    for block in _warning_blocks(h.body, "土砂災害警戒情報"):
        for item in block.findall("{*}Item"):
            status = text(item, "{*}Kind/{*}Status") or text(item, "{*}Kind/{*}Condition")
            a_name, a_code = text(item, "{*}Area/{*}Name"), text(item, "{*}Area/{*}Code")
            action = _LANDSLIDE_ACTION.get(status)
            if action is None:
                none_areas.append((a_name, a_code))
                continue
            part = groups.get(action)
            if part is None:
                lifted = action == "lift"
                part = groups[action] = Part(
                    key=f"landslide-{action}",
                    kind="landslide",
                    event="土砂災害警戒情報解除" if lifted else "土砂災害警戒情報",
                    event_en="Landslide alert lifted" if lifted else "Landslide alert (level 4)",
                    level=None if lifted else 4,
                    action=action,
                    reason="土砂災害",
                    districts=[],
                    areas=[],
                    jma_status=status,
                )
            part.districts = unique([*part.districts, *resolver.municipalities(a_code)])
            part.areas.append(area(a_name, a_code, GEOCODE_JMA_AREA))
    parts = list(groups.values())
    if not parts:
        parts.append(
            Part(
                key="landslide-none",
                kind="landslide",
                event="土砂災害警戒情報なし",
                event_en="No landslide alert in force",
                level=None,
                action="lift",
                reason="土砂災害",
                districts=unique(d for _, c in none_areas for d in resolver.municipalities(c)),
                areas=[area(n, c) for n, c in none_areas],
                jma_status="なし",
            )
        )
    return parts
