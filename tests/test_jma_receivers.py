"""What a broadcaster writing a receiver found when it dropped real JMA samples into the folder (issue 13).

Over a real engine: after a tsunami 解除 nothing of the event is in force, 津波情報 and
震度 reports never stand on their own, an expired sample is rejected (not "broadcast"),
and an alert's level never overwrites a log line's level.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio

from alertd.logs import JsonFormatter
from tests.conftest import RunningEngine
from tests.jma_samples import delta_to_now, drop, shifted
from tests.jma_samples import text as sample_text
from tests.support import until

# 2011-03-11, EventID 20110311144640: 大津波警報 (VTSE41), its 津波情報 (VTSE51), the upgrade
# (VTSE41), two days later 津波注意報解除 (VTSE41); and the quake's 震度速報 and 震源・震度情報.
WARNING, INFORMATION, UPGRADE, LIFT = (
    "32-39_11_02_250206_VTSE41.xml", "32-39_11_03_250206_VTSE51.xml",
    "32-39_11_06_250206_VTSE41.xml", "32-39_11_13_250206_VTSE41.xml",
)  # fmt: skip
SHINDO, QUAKE = "32-39_11_01_120615_VXSE51.xml", "32-39_11_05_240613_VXSE53.xml"
ISHINOMAKI = "04202"  # 石巻市 (宮城県, region 220: 大津波警報)


class Lines(logging.Handler):
    """The JSON lines an operator's log pipeline reads, as alertd writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest_asyncio.fixture
async def engine(spool_engine: RunningEngine) -> RunningEngine:
    return spool_engine


def _spool() -> Path:
    return Path(os.environ["ALERTD_JMA_SPOOL"])


async def _handled(*names: str) -> bool:
    done = {p.name for sub in ("done", "rejected") if (_spool() / sub).exists() for p in (_spool() / sub).iterdir()}
    return all(n in done for n in names)


async def _standing(engine: RunningEngine, municipality: str) -> list[dict[str, Any]]:
    status, view = await engine.get(f"/api/v1/in-force?municipality={municipality}")
    assert status == 200, view
    return [a for a in view["alerts"] if a["kind"] in ("tsunami", "tsunami_info", "earthquake")]


async def test_after_the_tsunami_lift_nothing_of_the_event_stands_and_reports_never_stand_alone(
    engine: RunningEngine,
) -> None:
    lines, logger = Lines(), logging.getLogger("alertd.jma")
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        await _sequence(engine, lines)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


async def _sequence(engine: RunningEngine, lines: Lines) -> None:
    sample_text(LIFT)  # skips when the shared samples are absent
    # An expired sample, dropped as it is: refused by the engine, so rejected with the reason beside it.
    drop(_spool(), "old-" + SHINDO, sample_text(SHINDO).encode("utf-8"))
    await until(lambda: _handled("old-" + SHINDO), what="the expired sample to be handled")
    reason = (_spool() / "rejected" / f"old-{SHINDO}.reason.txt").read_text(encoding="utf-8")
    assert "expired" in reason and "nothing was sent" in reason, reason
    assert not (_spool() / "done" / f"old-{SHINDO}").exists()

    # The day of the quake, moved to a minute ago: one telegram after the other.
    delta = delta_to_now(UPGRADE, ago=timedelta(seconds=60))
    for name in (SHINDO, WARNING, INFORMATION, UPGRADE, QUAKE):
        drop(_spool(), name, shifted(name, delta))
        await until(lambda name=name: _handled(name), what=f"{name} to be handled")
    # One standing tsunami alert at 石巻市, the warning's own (大津波警報); the 津波情報 restating
    # it and the 震度 reports were delivered but stand nowhere.
    standing = await until(lambda: _standing(engine, ISHINOMAKI), what="the 大津波警報 in force at 石巻市")
    assert [(a["kind"], a["level"], a["event"]) for a in standing] == [("tsunami", 5, "大津波警報")], standing
    assert all((_spool() / "done" / n).exists() for n in (SHINDO, INFORMATION, QUAKE))

    # Two days later, 津波注意報解除 for every region: nothing of the event stands at 石巻市.
    drop(_spool(), LIFT, shifted(LIFT, delta_to_now(LIFT)))
    await until(lambda: _handled(LIFT), what="the 解除 to be handled")
    await until(lambda: _nothing(engine, ISHINOMAKI), what="nothing of the event in force at 石巻市")

    # The alert's level is its own field; the log line keeps its log level.
    sent = [line for line in lines.lines if line["event"] == "jma.alert_sent"]
    assert sent and all(line["level"] == "info" for line in sent)
    assert 5 in {line["alert_level"] for line in sent}


async def _nothing(engine: RunningEngine, municipality: str) -> bool:
    return not await _standing(engine, municipality)
