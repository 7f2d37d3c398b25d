"""JMA telegrams told in story order: a quake's reports are one story, a drop folder's files go by telegram time.

Over real Redis, through the drop folder's scan; the core is a list of what it was handed.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.jma_samples import delta_to_now, drop, shifted

REDIS_URL = os.environ.get("ALERTD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/15"
SHINDO = "32-35_07_01_100915_VXSE51.xml"  # 震度速報, EventID 20090811050711
HYPOCENTRE_SHINDO = "32-35_07_06_240613_VXSE53.xml"  # 震源・震度に関する情報, the same EventID
# 2011-03-11: 津波警報 (VTSE41) and 津波情報 (VTSE51), alternating.
TSUNAMI_2011 = ["32-39_11_02_250206_VTSE41.xml", "32-39_11_03_250206_VTSE51.xml",
                "32-39_11_06_250206_VTSE41.xml", "32-39_11_08_250206_VTSE51.xml"]  # fmt: skip



async def test_the_hypocentre_and_intensity_report_updates_the_intensity_report_of_the_same_quake(
    watcher, tmp_path: Path
) -> None:
    spool, sink = watcher
    delta = delta_to_now(HYPOCENTRE_SHINDO)
    drop(tmp_path, SHINDO, shifted(SHINDO, delta))
    assert await spool.scan_once() == {SHINDO: "done"}
    first = list(sink)
    assert first and all(a.msg_type.value == "Alert" for a in first)
    drop(tmp_path, HYPOCENTRE_SHINDO, shifted(HYPOCENTRE_SHINDO, delta))
    assert await spool.scan_once() == {HYPOCENTRE_SHINDO: "done"}
    later = sink[len(first) :]
    assert later and all(a.msg_type.value == "Update" for a in later)
    assert all(set(a.references) == {f.reference_key() for f in first} for a in later)
    assert {a.incidents for a in sink} == {"jma-quake-20090811050711"}


async def test_files_dropped_together_are_told_in_telegram_order_not_file_order(watcher, tmp_path: Path) -> None:
    spool, sink = watcher
    delta = delta_to_now(TSUNAMI_2011[-1])
    # Written newest first: file order (mtime) is the reverse of telegram order.
    for age, name in enumerate(TSUNAMI_2011):
        path = drop(tmp_path, name, shifted(name, delta))
        os.utime(path, ns=(1_000_000_000 * (2_000_000 - age),) * 2)
    results = await spool.scan_once()
    assert results == dict.fromkeys(TSUNAMI_2011, "done")
    told = [a.sent for a in sink]
    assert told == sorted(told), [(a.sent.isoformat(), a.event) for a in sink]
    # 津波警報, then the 津波情報 about it, then the next 津波警報 …: not both VTSE41 first.
    kinds = [a.incidents.split("-")[1] for a in sink]
    assert [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]] == ["VTSE41", "VTSE51"] * 2


def test_shift_replays_a_51_hour_sequence_now_in_order_seconds_apart_never_in_the_future(tmp_path: Path) -> None:
    import re
    from datetime import UTC, datetime, timedelta

    from alertd.jma.cli import main
    from tests.jma_samples import path

    samples = ["32-39_11_13_250206_VTSE41.xml", *TSUNAMI_2011]  # the 解除, 51 hours later, given first
    before = datetime.now(UTC)
    assert main(["shift", *(str(path(n)) for n in samples), "--to", str(tmp_path)]) == 0
    after = datetime.now(UTC)

    def times(name: str) -> tuple[datetime, datetime]:
        text = (tmp_path / name).read_text(encoding="utf-8")
        control = re.search(r"<Control>.*?<DateTime>([^<]+)<", text, flags=re.S)
        reported = re.search(r"<ReportDateTime>([^<]+)<", text)
        assert control and reported
        return datetime.fromisoformat(control[1].replace("Z", "+00:00")), datetime.fromisoformat(reported[1])

    told = [times(n) for n in [*TSUNAMI_2011, samples[0]]]
    assert all(c <= after and r <= after for c, r in told), told  # nothing from the future
    assert after - max(c for c, _ in told) < timedelta(seconds=5)  # the last was sent just now
    reported = [r for _, r in told]
    assert reported == sorted(reported)
    assert reported[-1] - reported[0] <= timedelta(seconds=2 * 4) and before - reported[0] < timedelta(minutes=3)


def test_quake_reports_say_intensities_hypocentre_and_magnitude_in_japanese_too() -> None:
    from alertd.jma.parse import parse_message
    from geo.registry import Registry
    from tests.jma_samples import path

    (alert,) = parse_message(path(HYPOCENTRE_SHINDO).read_bytes(), Registry.default(), name=HYPOCENTRE_SHINDO).alerts
    ja = alert.infos[0].description or ""
    assert ja.startswith("１１日０５時０７分ころ、地震がありました。")  # JMA's words first
    for said in ("震度6弱：静岡県伊豆、静岡県中部、静岡県西部。", "震源地は駿河湾です。", "マグニチュード）は6.6"):
        assert said in ja, ja


def test_cell_broadcast_short_text_of_a_drill_investigation_end_keeps_its_end() -> None:
    from adapters.cbc import short_text

    assert short_text("【訓練】【解除】南海トラフ地震臨時情報（調査終了）", 15) == "南海トラフ調査終了(訓練)"
    assert short_text("【訓練】【解除】大雨警報", 15) == "大雨警報(訓練/解除)"  # no end of its own: the marker stays
