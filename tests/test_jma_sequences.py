"""JMA sequences told right: tsunami state per 津波予報区, EEW per EventID, 取消 — through the drop folder.

Each test drops official samples into a real directory, lets the real
SpoolWatcher take them (same parser, ordering, sequencing and policy as the
feed) against a real Redis, and looks at what reached ``on_alert``. The
delivery side (receivers, ?active=true) is in test_jma_spool.py.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from alertd.jma.spool import SpoolConfig, SpoolWatcher
from alertd.models import Alert, MsgType, Priority, Status
from alertd.redis_client import connect, key_root
from tests.conftest import JMA_REDIS_URL as REDIS_URL
from tests.jma_samples import (
    EEW,
    TSUNAMI_2011,
    TSUNAMI_2015,
    TSUNAMI_DRILL,
    delta_to_now,
    drop,
    report_time,
    shifted,
    with_head,
)


@pytest_asyncio.fixture
async def redis() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    prefix = key_root(f"test-jmaseq-{secrets.token_hex(6)}", REDIS_URL)
    client = connect(REDIS_URL, key_prefix=prefix)
    yield client, prefix
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(scope="module")
def registry():
    from geo.registry import Registry

    return Registry.default()


class Folder:
    """A drop folder, its watcher, and what reached the core."""

    def __init__(self, path: Path, redis: tuple[aioredis.Redis, str], registry) -> None:
        self.path = path
        self.sink: list[Alert] = []

        async def on_alert(alert: Alert) -> None:
            self.sink.append(alert)

        client, prefix = redis
        self.watcher = SpoolWatcher(SpoolConfig(path, key_prefix=prefix), client, on_alert, registry=registry)

    async def feed(self, *telegrams: tuple[str, bytes]) -> list[Alert]:
        """Drop telegrams, take them in one scan; the alerts they produced."""
        before = len(self.sink)
        for name, data in telegrams:
            drop(self.path, name, data)
        await self.watcher.scan_once()
        return self.sink[before:]


@pytest.fixture
def folder(tmp_path: Path, redis, registry) -> Folder:
    return Folder(tmp_path, redis, registry)


def regions(alert: Alert) -> set[str]:
    return {v for a in alert.infos[0].areas for k, v in a.geocodes if k == "JP-JMA-TSUNAMI"}


def by_event(alerts: list[Alert]) -> dict[str, Alert]:
    out = {a.event: a for a in alerts}
    assert len(out) == len(alerts), [a.event for a in alerts]
    return out


async def test_a_tsunami_lift_ends_the_advisory_and_what_the_event_no_longer_names(folder: Folder) -> None:
    """Finding 2: after the final 解除, ?active=true and the Atom feed still listed the tsunami alerts."""
    first = by_event(await folder.feed((TSUNAMI_2015[0], shifted(TSUNAMI_2015[0], timedelta(0)))))
    advisory, forecast = first["津波注意報"], first["津波予報（若干の海面変動）"]
    assert advisory.msg_type is MsgType.ALERT and regions(advisory) == {"771", "772", "773"}
    second = by_event(await folder.feed((TSUNAMI_2015[1], shifted(TSUNAMI_2015[1], timedelta(0)))))
    lift = second["津波注意報解除"]
    assert (lift.msg_type, lift.action, lift.level) == (MsgType.UPDATE, "lift", None)
    assert lift.references == [advisory.reference_key()]
    assert lift.infos[0].response_types == ["AllClear"]
    assert set(lift.adapters or []) == {"radio", "broadcaster", "feed"}  # as far as the advisory went
    # The seven 津波予報 regions are not named any more: nothing is in force there.
    ended = second["津波予報（若干の海面変動）終了"]
    assert ended.references == [forecast.reference_key()] and ended.action == "lift"
    assert regions(ended) == regions(forecast) and ended.adapters == ["feed"]


async def test_a_forecast_after_a_warning_is_its_lift_and_reaches_who_got_it(folder: Folder) -> None:
    """Finding 2: 津波予報 with LastKind 注意報/警報 became a feed-only level 1 alert; no lift reached radio."""
    delta = delta_to_now(TSUNAMI_DRILL[-1])
    issued = by_event(await folder.feed((TSUNAMI_DRILL[0], shifted(TSUNAMI_DRILL[0], delta))))
    assert set(issued) == {"大津波警報", "津波警報", "津波注意報"}
    assert all(a.status is Status.EXERCISE for a in issued.values())
    updated = by_event(await folder.feed((TSUNAMI_DRILL[1], shifted(TSUNAMI_DRILL[1], delta))))
    for event, alert in updated.items():
        assert alert.msg_type is MsgType.UPDATE and alert.references == [issued[event].reference_key()]
    final = by_event(await folder.feed((TSUNAMI_DRILL[2], shifted(TSUNAMI_DRILL[2], delta))))
    assert set(final) == {"大津波警報解除", "津波警報解除", "津波注意報解除"}
    for grade in ("大津波警報", "津波警報", "津波注意報"):
        lift = final[grade + "解除"]
        assert lift.references == [updated[grade].reference_key()] and lift.action == "lift"
        assert regions(lift) == regions(updated[grade])  # every region the grade covered is lifted
    # 茨城県 (300) had a 大津波警報; its item is 津波予報 <- 大津波警報: the lift of the 大津波警報.
    assert "300" in regions(final["大津波警報解除"])
    assert "broadcaster" in (final["大津波警報解除"].adapters or [])
    # A drill: never to loudspeakers, never in the flash lane.
    for alert in [*issued.values(), *updated.values(), *final.values()]:
        assert "radio" not in (alert.adapters or []) and alert.priority is Priority.ROUTINE


async def test_each_region_is_updated_from_its_own_earlier_grade(folder: Folder) -> None:
    delta = delta_to_now(TSUNAMI_2011[-1])
    alerts = [await folder.feed((name, shifted(name, delta))) for name in TSUNAMI_2011]
    first, second, _third, fourth = (by_event(a) for a in alerts)
    # 11_06: 青森県太平洋沿岸 (201) went from 津波警報 to 大津波警報: the new 大津波警報 replaces both.
    major = second["大津波警報"]
    assert "201" in regions(major)
    assert {first["大津波警報"].reference_key(), first["津波警報"].reference_key()} <= set(major.references)
    assert first["津波注意報"].reference_key() not in major.references
    assert major.level == 5 and second["津波警報"].level == 4 and second["津波注意報"].level == 2
    # 11_11: 茨城県 (300) went from 津波警報 to 大津波警報.
    assert "300" in regions(fourth["大津波警報"])
    assert alerts[2][1].reference_key() in fourth["大津波警報"].references  # 11_09's 津波警報


async def test_a_tsunami_cancellation_withdraws_every_report_of_the_event(folder: Folder) -> None:
    issued = by_event(await folder.feed((TSUNAMI_2015[0], shifted(TSUNAMI_2015[0], timedelta(0)))))
    later = report_time(TSUNAMI_2015[0]) + timedelta(minutes=3)
    cancel_bytes = with_head(shifted("38-39_03_01_250206_VTSE41.xml".replace("250206", "210805"), timedelta(0)),
                             event_id="20151114055157", report_time=later)  # fmt: skip
    (cancel,) = await folder.feed(("cancel.xml", cancel_bytes))
    assert cancel.msg_type is MsgType.CANCEL
    assert set(cancel.references) == {a.reference_key() for a in issued.values()}
    assert cancel.level == 2  # the highest level among what it withdraws
    # Nothing of the event after its 取消. (The real 02_04 also names a second quake's EventID;
    # a message about an event that was not cancelled would still be told.)
    late = with_head(shifted(TSUNAMI_2015[1], timedelta(0)), event_id="20151114055157")
    assert await folder.feed((TSUNAMI_2015[1], late)) == []


async def test_eew_serials_supersede_and_the_cancel_reaches_every_level(folder: Folder) -> None:
    """Finding 4: the 取消 took the level of the last report (L4), so a min_level 5 receiver missed it."""
    delta = delta_to_now(EEW[2])
    t1 = report_time(EEW[0]) + delta
    # Serial 1 forecasts 震度6弱 (L5); serial 2 lowers it to 5弱 (L4); then the 取消.
    serial1 = with_head(shifted(EEW[1], delta), serial="1", report_time=t1)
    serial2 = with_head(shifted(EEW[0], delta), serial="2", report_time=t1 + timedelta(seconds=11))
    alerts = await folder.feed(("s1.xml", serial1), ("s2.xml", serial2), ("c.xml", shifted(EEW[2], delta)))
    s1, s2, cancel = alerts
    assert (s1.level, s2.level) == (5, 4)
    assert s2.msg_type is MsgType.UPDATE and s2.references == [s1.reference_key()]
    assert cancel.msg_type is MsgType.CANCEL and cancel.level == 5
    assert cancel.references == [s1.reference_key(), s2.reference_key()]
