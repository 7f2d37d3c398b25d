"""JMA sample telegrams for tests: read from ../shared/data/jmaxml, moved in time, lightly edited.

The samples are years old and alertd rightly refuses what has expired, so a
test that needs a telegram delivered moves a whole sequence by one amount:
relative order and spacing stay as JMA wrote them, the last one is "now".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alertd.drills.jma_replay import drop, shift, with_head
from alertd.drills.jma_replay import report_time as _report_time
from tests.support import JMAXML

__all__ = ["drop", "with_head"]

ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2})")

EEW = ["37_01_01_240613_VXSE43.xml", "37_01_02_240613_VXSE43.xml", "37_01_03_240613_VXSE43.xml"]
# 2015-11-14 (Actual): 津波注意報 for 3 regions, then 注意報解除.
TSUNAMI_2015 = ["38-39_02_01_250206_VTSE41.xml", "38-39_02_04_250206_VTSE41.xml"]
# 2016-09-01 drill (Exercise): 大津波警報/津波警報/津波注意報, an update, then 解除 of everything.
TSUNAMI_DRILL = ["32-39_12_02_250206_VTSE41.xml", "32-39_12_07_250206_VTSE41.xml", "32-39_12_13_250206_VTSE41.xml"]
# 2011-03-11 (Actual): the four grades and their upgrades.
TSUNAMI_2011 = [
    "32-39_11_02_250206_VTSE41.xml",
    "32-39_11_06_250206_VTSE41.xml",
    "32-39_11_09_250206_VTSE41.xml",
    "32-39_11_11_250206_VTSE41.xml",
]


def path(name: str) -> Path:
    p = JMAXML / name
    if not p.exists():
        pytest.skip(f"{p} is absent: the shared JMA samples live in ../shared/data/jmaxml")
    return p


def text(name: str) -> str:
    return path(name).read_text(encoding="utf-8")


def report_time(name: str) -> datetime:
    return _report_time(text(name))


def delta_to_now(last: str, *, ago: timedelta = timedelta(seconds=5)) -> timedelta:
    """How far to move a sequence so that its telegram ``last`` was sent ``ago`` before now."""
    return datetime.now(UTC) - ago - report_time(last)


def shifted(name: str, delta: timedelta, *, status: str | None = None, crlf: bool = False) -> bytes:
    """The sample with every time moved by ``delta``; optionally another Control/Status, CRLF endings."""
    return shift(text(name), delta, status=status, crlf=crlf)


def control_title(name: str) -> str:
    return text(name).split("<Title>", 1)[1].split("</Title>", 1)[0]


