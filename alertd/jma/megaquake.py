"""Great-earthquake information: 南海トラフ地震臨時情報 (VYSE50) and 北海道・三陸沖後発地震注意情報 (VYSE60).

Neither names an area: both are about the areas the Cabinet Office designated
for the trough (南海トラフ地震防災対策推進地域, 29 都府県, 2014) and for the
Japan/Kuril trenches (日本海溝・千島海溝周辺海溝型地震防災対策推進地域, 後発地震
注意情報の防災対応をとるべき地域: 7 道県). Those prefectures are the districts.

The 臨時情報 kind (InfoSerial/Name) is what municipalities act on: 巨大地震警戒
(事前避難, level 4, flash lane), 巨大地震注意 (level 3), 調査中 (level 2) and
調査終了 (the end of the 調査中, a lift).
"""

from __future__ import annotations

from alertd.hazard_texts import PARAM_NANKAI_KIND
from alertd.jma.head import Header, Part, Resolver, text, unique

NANKAI_PREFECTURES = (
    "08", "12", "13", "14", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29",
    "30", "33", "34", "35", "36", "37", "38", "39", "40", "43", "44", "45", "46", "47",
)  # fmt: skip
TRENCH_PREFECTURES = ("01", "02", "03", "04", "07", "08", "12")

# One story per trough: each report has its own EventID, yet replaces the one before it
# (調査中 → 巨大地震警戒 → … → 調査終了), so the incident is the trough (ingest.py: RESTATED).
NANKAI_INCIDENT = "jma-VYSE50-nankai-trough"
TRENCH_INCIDENT = "jma-VYSE60-japan-kuril-trench"

# kind → (level, action, English)
NANKAI_KINDS = {
    "巨大地震警戒": (4, "issue", "Nankai Trough megaquake warning"),
    "巨大地震注意": (3, "issue", "Nankai Trough megaquake advisory"),
    "調査中": (2, "issue", "Nankai Trough: under investigation"),
    "調査終了": (None, "lift", "Nankai Trough: investigation ended"),
}


def parse_vyse50(h: Header, resolver: Resolver) -> list[Part]:
    kind = text(h.body, "{*}EarthquakeInfo/{*}InfoSerial/{*}Name") if h.body is not None else ""
    if kind not in NANKAI_KINDS:  # the title says it too: 南海トラフ地震臨時情報（調査中）
        kind = next((k for k in NANKAI_KINDS if f"（{k}）" in h.title), kind)
    level, action, english = NANKAI_KINDS.get(kind, (2, "issue", "Nankai Trough earthquake information"))
    return [
        Part(
            key=f"nankai-{kind or 'info'}",
            kind="megaquake",
            event=f"南海トラフ地震臨時情報（{kind}）" if kind else h.title,
            event_en=english,
            level=level,
            action=action,
            reason="地震",
            districts=unique(d for p in NANKAI_PREFECTURES for d in resolver.prefecture(p)),
            areas=[],
            jma_status=kind or h.info_type,
            parameters=[(PARAM_NANKAI_KIND, kind)] if kind else [],
            description=h.headline or None,
            incident=NANKAI_INCIDENT,
        )
    ]


def parse_vyse60(h: Header, resolver: Resolver) -> list[Part]:
    return [
        Part(
            key="trench",
            kind="megaquake",
            event=h.title or "北海道・三陸沖後発地震注意情報",
            event_en="Hokkaido/Sanriku subsequent-earthquake advisory",
            level=3,
            action="issue",
            reason="地震",
            districts=unique(d for p in TRENCH_PREFECTURES for d in resolver.prefecture(p)),
            areas=[],
            jma_status=h.info_type,
            parameters=[(PARAM_NANKAI_KIND, "後発地震注意")],
            description=h.headline or None,
            incident=TRENCH_INCIDENT,
        )
    ]
