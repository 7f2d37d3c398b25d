"""JMA's forecast-area hierarchy (気象警報・注意報の発表区域), read from the shared area table.

Warnings name municipalities (7-digit 二次細分区域), but 竜巻注意情報, 記録的短時間大雨情報,
熱中症警戒アラート and 府県気象情報 name the areas above them: 市町村等をまとめた地域,
一次細分区域 and 府県予報区 (6-digit codes). Hokkaido, Kagoshima and Okinawa have
several 府県予報区 each (``013000`` 網走・北見・紋別地方), so "first two digits" is
not enough there. The table that says which municipalities each of those
areas holds is ``../shared/data/jma-areas/jma-warning-areas.csv`` (from JMA's
個別コード表 AreaInformationCity / AreaForecastLocalM; see its README). It is
read where it lies — at run time, like the other shared reference data —
never copied into the project: ``ALERTD_JMA_AREAS`` names the file, and by
default it is looked for beside the project (``../shared/data``). Without it
the registry still knows whole-prefecture 府県予報区 (``080000``) and every
7-digit code; the 6-digit codes of smaller areas are then reported unresolved.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "jma-areas" / "jma-warning-areas.csv"

# Municipalities renumbered after JMA fixed a code that its telegrams (and samples) still use:
# 那珂川町 (40305) became 那珂川市 (40231) on 2018-10-01.
RENUMBERED = {"40305": "40231"}

_AREA_COLUMNS = (
    ("matomeareacode", "matomeareaname"),
    ("firstareacode", "firstareaname"),
    ("prefcode", "prefname"),
)


def table_path() -> Path:
    env = os.environ.get("ALERTD_JMA_AREAS")
    return Path(env) if env else DEFAULT_TABLE


def load_forecast_areas(path: Path | None = None) -> tuple[dict[str, list[str]], dict[str, str]]:
    """6-digit area code → municipality codes (5 digits, table order), and 府県予報区 name → code.

    The names are those of 府県予報区 only (埼玉県, 宗谷地方): 一次細分区域 names
    repeat across prefectures (南部), so they cannot be looked up alone.

    An absent table gives empty maps (the registry then knows less, and says
    so per code); a present but malformed one raises, because a half-read
    table would silently drop towns from warnings.
    """
    path = path or table_path()
    if not path.is_file():
        return {}, {}
    members: dict[str, list[str]] = defaultdict(list)
    names: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            muni = row["citycode"][:5]
            for code_col, name_col in _AREA_COLUMNS:
                code = row[code_col]
                if code_col == "prefcode":
                    names.setdefault(row[name_col], code)
                if muni not in members[code]:
                    members[code].append(muni)
    return dict(members), names
