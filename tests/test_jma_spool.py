"""The JMA drop folder (ALERTD_JMA_SPOOL): files in, alerts out, through a real engine to real receivers.

The folder is how telegrams cross from the internet segment to LGWAN after
sanitising; it is also the simplest way to feed a real engine a JMA sequence.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiomqtt

from alertd.cap import parse_cap
from alertd.jma.spool import SpoolConfig, SpoolWatcher
from alertd.metrics import REGISTRY
from alertd.models import Alert
from alertd.redis_client import connect, key_root
from tests.conftest import JMA_REDIS_URL as REDIS_URL
from tests.conftest import RunningEngine, Sink
from tests.jma_samples import EEW, TSUNAMI_2015, delta_to_now, drop, report_time, shifted, with_head
from tests.jma_samples import path as sample_path
from tests.support import until

HITACHI, OSHIMA = "08202", "13361"  # 日立市 (茨城県, region 300), 大島町 (伊豆諸島, region 320)
SATSUMASENDAI = "46215"  # 薩摩川内市 (鹿児島県西部, region 773)
SHIZUOKA_AOI = "22101"  # 静岡市葵区
SHINDO = "32-35_01_01_100806_VXSE51.xml"  # 震度速報, 2009-08-11: 震度6弱 静岡県中部・西部
NANKAI_INVESTIGATING = "74_01_01_200512_VYSE50.xml"  # 南海トラフ地震臨時情報（調査中）
NANKAI_WARNING = "74_01_04_200512_VYSE50.xml"  # 南海トラフ地震臨時情報（巨大地震警戒）
NANKAI_ENDED = "74_01_07_200512_VYSE50.xml"  # 南海トラフ地震臨時情報（調査終了）


# --- the folder itself --------------------------------------------------------------



async def test_each_file_once_to_done_or_rejected_with_a_reason(watcher, tmp_path: Path) -> None:
    spool, sink = watcher
    drop(tmp_path, "eew-1.xml", shifted(EEW[0], timedelta(0)))
    drop(tmp_path, "broken.xml", b"<Report><Control>")
    drop(tmp_path, "hostile.xml", b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><Report>&x;</Report>')
    drop(tmp_path, "cap.xml", b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'/>")
    (tmp_path / ".half-written.xml").write_bytes(b"<Report")  # a writer's temp names are never read
    (tmp_path / "next.xml.tmp").write_bytes(b"<Report")
    rejected_before = REGISTRY.get_sample_value("alertd_jma_spool_files_total", {"outcome": "rejected"}) or 0

    results = await spool.scan_once()
    assert results == {"eew-1.xml": "done", "broken.xml": "rejected", "hostile.xml": "rejected",
                       "cap.xml": "rejected"}  # fmt: skip
    assert len(sink) == 1 and sink[0].kind == "eew"
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["eew-1.xml"]
    rejected = tmp_path / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == sorted(
        [f"{n}{s}" for n in ("broken.xml", "hostile.xml", "cap.xml") for s in ("", ".reason.txt")]
    )
    assert "forbidden XML" in (rejected / "hostile.xml.reason.txt").read_text(encoding="utf-8")
    assert "not a JMA" in (rejected / "cap.xml.reason.txt").read_text(encoding="utf-8")
    assert (REGISTRY.get_sample_value("alertd_jma_spool_files_total", {"outcome": "rejected"}) or 0) == (
        rejected_before + 3
    )
    assert {p.name for p in tmp_path.iterdir() if p.is_file()} == {".half-written.xml", "next.xml.tmp"}

    # Processed once: a second scan finds nothing; the same telegram dropped again is not announced again.
    assert await spool.scan_once() == {}
    drop(tmp_path, "eew-1.xml", shifted(EEW[0], timedelta(0)))
    assert await spool.scan_once() == {"eew-1.xml": "done"}
    assert len(sink) == 1 and (tmp_path / "done" / "eew-1.xml.1").exists()


async def test_a_file_the_core_cannot_take_stays_for_the_next_scan(tmp_path: Path) -> None:
    from geo.registry import Registry

    prefix = key_root(f"test-spool-{secrets.token_hex(6)}", REDIS_URL)
    client = connect(REDIS_URL, key_prefix=prefix)
    calls: list[Alert] = []
    down = True

    async def on_alert(alert: Alert) -> None:
        calls.append(alert)
        if down:
            raise ConnectionError("Redis is down")

    spool = SpoolWatcher(SpoolConfig(tmp_path, key_prefix=prefix), client, on_alert, registry=Registry.default())
    try:
        drop(tmp_path, "eew.xml", shifted(EEW[0], timedelta(0)))
        assert await spool.scan_once() == {"eew.xml": "retry"}
        assert (tmp_path / "eew.xml").exists()
        down = False
        assert await spool.scan_once() == {"eew.xml": "done"}
        assert len(calls) == 2 and calls[0].identifier == calls[1].identifier  # the core dedups the retry
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


# --- through a real engine ----------------------------------------------------------



def spool_dir(engine: RunningEngine) -> Path:
    return Path(os.environ["ALERTD_JMA_SPOOL"])


async def jma_alerts(engine: RunningEngine, **query: str) -> list[dict[str, Any]]:
    qs = "&".join(f"{k}={v}" for k, v in {"limit": "200", "status": "all", **query}.items())
    status, rows = await engine.get(f"/api/v1/alerts?{qs}")
    assert status == 200
    return [r for r in rows if r["origin"] == "jma"]


async def test_eew_cancel_reaches_a_min_level_5_receiver_and_serials_are_updates(
    spool_engine: RunningEngine, sink: Sink
) -> None:
    """Findings 3 and 4 over real sockets: a receiver that got only the L5 serial gets the 取消."""
    engine = spool_engine
    await engine.add_subscriber(id="radio-uwajima", adapter="radio", endpoint=f"{sink.url}/radio-l5",
                                districts=["38"], min_level=5)  # fmt: skip
    await engine.add_subscriber(id="tv-ehime", adapter="broadcaster", endpoint=f"{sink.url}/tv", districts=["38"])
    delta = delta_to_now(EEW[2])
    t1 = report_time(EEW[0]) + delta
    # Serial 1 forecasts 震度6弱 (L5), serial 2 lowers it to 5弱 (L4), then the 取消 (as JMA sends it, Serial 2).
    drop(spool_dir(engine), "s1.xml", with_head(shifted(EEW[1], delta), serial="1", report_time=t1))
    drop(spool_dir(engine), "s2.xml", with_head(shifted(EEW[0], delta), serial="2",
                                                report_time=t1 + timedelta(seconds=11)))  # fmt: skip
    drop(spool_dir(engine), "c.xml", shifted(EEW[2], delta))
    # tv: serial 1, serial 2, 取消; radio-l5: serial 1, then (having heard serial 1) serial 2 and the 取消
    await sink.wait_for(6)
    rows = await until(lambda: jma_alerts(engine), what="the spooled telegrams to become alerts")
    by_type = {r["msg_type"]: r for r in rows}
    assert set(by_type) == {"Alert", "Update", "Cancel"}
    for row in rows:
        await engine.wait_deliveries(row["id"], {"delivered", "confirmed", "superseded"})
    radio = [json.loads(r["body"]) for r in sink.at("/radio-l5")]
    # Whoever heard serial 1 hears what replaces it and its 取消, whatever its min_level.
    assert [d["msg_type"] for d in radio] == ["Alert", "Update", "Cancel"]
    # JMA's 取消 is said as cancelled by JMA, never as the town's mis-send.
    assert radio[2]["text"].count("取り消されました") == 3 and "誤って" not in radio[2]["text"]
    tv = [parse_cap(r["body"]) for r in sink.at("/tv")]
    assert sorted(a.msg_type.value for a in tv) == ["Alert", "Cancel", "Update"]
    update = next(a for a in tv if a.msg_type.value == "Update")
    cancel = next(a for a in tv if a.msg_type.value == "Cancel")
    first = next(a for a in tv if a.msg_type.value == "Alert")
    assert update.references == [first.reference_key()]
    assert set(cancel.references) == {first.reference_key(), update.reference_key()}
    assert not [r for r in await jma_alerts(engine, active="true") if r["kind"] == "eew"]


async def test_tsunami_sequence_grades_state_and_the_last_lift(
    spool_engine: RunningEngine, sink: Sink, mqtt: aiomqtt.Client
) -> None:
    """Findings 1, 2 and 5 over real sockets, with the 2011 and 2015 samples."""
    engine = spool_engine
    await engine.add_subscriber(id="radio-hitachi", adapter="radio", endpoint=f"{sink.url}/radio-hitachi",
                                districts=[HITACHI])  # fmt: skip
    await engine.add_subscriber(id="radio-oshima", adapter="radio", endpoint=f"{sink.url}/radio-oshima",
                                districts=[OSHIMA])  # fmt: skip
    await engine.add_subscriber(id="radio-satsumasendai", adapter="radio",
                                endpoint=f"{sink.url}/radio-satsumasendai", districts=[SATSUMASENDAI])  # fmt: skip
    await engine.add_subscriber(id="tv-kagoshima", adapter="broadcaster", endpoint=f"{sink.url}/tv-kagoshima",
                                districts=["46"])  # fmt: skip
    # The unedited 2011 sample: 茨城県 and 伊豆諸島 have a 津波警報 (not 大津波警報, not 注意報).
    sample = "32-39_11_06_250206_VTSE41.xml"
    drop(spool_dir(engine), sample, shifted(sample, delta_to_now(sample)))
    await until(lambda: _has(sink, "/radio-hitachi", "/radio-oshima"), what="the 津波警報 at both loudspeakers")
    for path in ("/radio-hitachi", "/radio-oshima"):
        (script,) = [json.loads(r["body"]) for r in sink.at(path)]
        reading = script["text"].split("\n")[1]
        assert reading.startswith("津波警報。津波警報。津波が来襲します。"), reading
        assert "大津波" not in reading and "注意報" not in reading and "海の中にいる人は" not in reading
    # The retained state for 日立市 shows the 津波警報 (the policy now includes the feed).
    warning = next(r for r in await jma_alerts(engine, active="true", district=HITACHI) if r["level"] == 4)
    state = await _retained(mqtt, engine.topics.state(HITACHI, "Actual"), warning["id"])
    (tsunami,) = [a for a in state["alerts"] if a["alert_id"] == warning["id"]]
    assert (tsunami["kind"], tsunami["level"], state["in_force"]) == ("tsunami", 4, True)

    # 2015: 津波注意報 for 鹿児島県 and 津波予報 elsewhere, then 注意報解除. After it, nothing of the event
    # is in force anywhere, and the lift reached the loudspeakers that announced the advisory.
    delta = delta_to_now(TSUNAMI_2015[-1])
    drop(spool_dir(engine), TSUNAMI_2015[0], shifted(TSUNAMI_2015[0], delta))
    advisory = await until(lambda: _scripts(sink, "/radio-satsumasendai", 1), what="the 津波注意報 at 薩摩川内市")
    assert advisory[0]["text"].split("\n")[1].startswith("津波注意報。")
    # In force there: the 注意報 (鹿児島県西部) and the 津波予報 (鹿児島県東部).
    await until(lambda: _levels_in_force(engine, SATSUMASENDAI, [1, 2]), what="注意報 and 予報 in force at 薩摩川内市")
    drop(spool_dir(engine), TSUNAMI_2015[1], shifted(TSUNAMI_2015[1], delta))
    scripts = await until(lambda: _scripts(sink, "/radio-satsumasendai", 2), what="the 解除 at 薩摩川内市")
    assert scripts[1]["msg_type"] == "Update" and "津波注意報は解除されました" in scripts[1]["text"]
    # 注意報, 予報, and their two lifts (the telegram's alerts enter one after another: wait for all).
    await until(lambda: _count(engine, 4), what="four alerts of the 2015 sequence")
    # Nothing of it in force: the 津波予報 regions neither, as the last message no longer names them.
    assert [r for r in await jma_alerts(engine, active="true") if _of_2015(r)] == []
    await until(lambda: _has_n(sink, "/tv-kagoshima", 2), what="the 注意報 and its lift at the broadcaster")
    lift = parse_cap(sink.at("/tv-kagoshima")[-1]["body"])
    assert lift.infos[0].response_types == ["AllClear"] and lift.references


async def _has(sink: Sink, *paths: str) -> bool:
    return all(sink.at(p) for p in paths)


async def _scripts(sink: Sink, path: str, n: int) -> list[dict[str, Any]]:
    scripts = [json.loads(r["body"]) for r in sink.at(path)]
    return scripts if len(scripts) >= n else []


async def _levels_in_force(engine: RunningEngine, district: str, levels: list[int]) -> bool:
    rows = await jma_alerts(engine, active="true", district=district)
    return sorted(r["level"] for r in rows if _of_2015(r)) == levels


async def _has_n(sink: Sink, path: str, n: int) -> bool:
    return len(sink.at(path)) >= n


async def _count(engine: RunningEngine, n: int) -> bool:
    return len([r for r in await jma_alerts(engine) if _of_2015(r)]) == n


def _of_2015(row: dict[str, Any]) -> bool:
    """The 2015 sequence's alerts (the 2011 sample's share the engine; its EventID is 20110311144640)."""
    return row["kind"] == "tsunami" and row["incidents"] != "jma-VTSE41-20110311144640"


async def _retained(client: aiomqtt.Client, topic: str | None, alert_id: str, timeout: float = 20.0) -> dict[str, Any]:
    assert topic is not None
    await client.subscribe(topic, qos=1)
    try:
        async with asyncio.timeout(timeout):
            async for message in client.messages:
                data = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                if any(a["alert_id"] == alert_id for a in data.get("alerts", [])):
                    return dict(data)
    finally:
        await client.unsubscribe(topic)
    raise AssertionError(f"no state for {alert_id} on {topic}")


async def test_a_jma_drill_reaches_only_the_loudspeakers_that_opted_in(spool_engine: RunningEngine, sink: Sink) -> None:
    """訓練 EEWs never reach loudspeaker gateways unless a gateway says it takes drills."""
    engine = spool_engine
    await engine.add_subscriber(id="radio-plain", adapter="radio", endpoint=f"{sink.url}/radio-plain",
                                districts=["38"], drills=False)  # fmt: skip
    await engine.add_subscriber(id="radio-drills", adapter="radio", endpoint=f"{sink.url}/radio-drills",
                                districts=["38"], drills=True)  # fmt: skip
    await engine.add_subscriber(id="tv", adapter="broadcaster", endpoint=f"{sink.url}/tv", districts=["38"])
    delta = delta_to_now(EEW[1])
    drop(spool_dir(engine), "drill.xml", shifted(EEW[1], delta, status="訓練"))
    await until(lambda: _has(sink, "/tv", "/radio-drills"), what="the 訓練 EEW at the broadcaster and the drill-taking gateway")
    rows = await until(lambda: jma_alerts(engine), what="the spooled telegrams to become alerts")
    await engine.wait_deliveries(rows[0]["id"], {"delivered", "confirmed"})
    assert sink.at("/radio-plain") == []
    assert json.loads(sink.at("/radio-drills")[0]["body"])["status"] == "Exercise"


async def test_the_jma_sequences_drill_shows_the_right_grades_in_force_after_every_telegram(
    spool_engine: RunningEngine,
) -> None:
    """The shipped drill: EEW serials and their 取消, tsunami grades and their 解除, through the
    drop folder; after each telegram every view shows what the scenario expects per town."""
    from alertd.drills.runner import DrillRunner
    from alertd.drills.scenario import SCENARIOS, load_scenario
    from tests.conftest import ADMIN_TOKEN, MQTT_URL

    sample_path(EEW[0])  # skips when the shared samples are absent
    engine = spool_engine
    runner = DrillRunner(load_scenario(SCENARIOS / "jma-sequences.yaml"), engine.url, ADMIN_TOKEN, MQTT_URL,
                         speed=8, topic_prefix=engine.engine.settings.topic_prefix, spool=spool_dir(engine))  # fmt: skip
    runner.views_timeout = 20.0  # a tsunami message changes ~1,000 towns' states; a busy CI machine is slow
    rep = await runner.run()
    assert rep["step_errors"] == [] and rep["view_mismatches"] == [], [(s["name"], s["error"], s["views"])
                                                                     for s in rep["steps"]]  # fmt: skip
    # The radio that only takes level 5 heard serial 1, what replaced it, and the 取消.
    by_name = {s["name"]: s for s in rep["steps"]}
    assert all(by_name[n]["by_adapter"].get("radio", {}).get("delivered") for n in list(by_name)[:3])


async def test_a_shindo_report_and_the_nankai_trough_information_dropped_in_the_folder_are_delivered(
    spool_engine: RunningEngine, sink: Sink
) -> None:
    """Issue 13: 震度速報 and 南海トラフ地震臨時情報 through the drop folder to a loudspeaker and a broadcaster."""
    engine = spool_engine
    await engine.add_subscriber(id="radio-aoi", adapter="radio", endpoint=f"{sink.url}/radio",
                                districts=[SHIZUOKA_AOI])  # fmt: skip
    await engine.add_subscriber(id="tv-shizuoka", adapter="broadcaster", endpoint=f"{sink.url}/tv", districts=["22"])
    # 2009-08-11 (Actual): 震度6弱 in 静岡県中部 — named by area; 静岡市葵区 is in that prefecture.
    drop(spool_dir(engine), SHINDO, shifted(SHINDO, delta_to_now(SHINDO)))
    (script,) = await until(lambda: _scripts(sink, "/radio", 1), what="the 震度速報 at the loudspeaker")
    assert "震度6弱 静岡県中部" in script["text"], script["text"]
    (cap,) = await until(lambda: _caps(sink, "/tv", 1), what="the 震度速報 at the broadcaster")
    assert cap.infos[0].parameter("JMA_MAX_INTENSITY") == "6-"

    # 臨時情報（調査中） reaches the broadcaster only; （巨大地震警戒） replaces it, on the flash lane, to both.
    delta = delta_to_now(NANKAI_WARNING)
    drop(spool_dir(engine), NANKAI_INVESTIGATING, shifted(NANKAI_INVESTIGATING, delta))
    caps = await until(lambda: _caps(sink, "/tv", 2), what="the 臨時情報（調査中） at the broadcaster")
    investigating = caps[1]
    assert investigating.infos[0].parameter("JMA_NANKAI_KIND") == "調査中"
    drop(spool_dir(engine), NANKAI_WARNING, shifted(NANKAI_WARNING, delta))
    caps = await until(lambda: _caps(sink, "/tv", 3), what="the 臨時情報（巨大地震警戒） at the broadcaster")
    warning = caps[2]
    assert warning.msg_type.value == "Update" and warning.references == [investigating.reference_key()]
    assert "alertd:jma-rule=nankai-warning" in warning.codes
    scripts = await until(lambda: _scripts(sink, "/radio", 2), what="the 巨大地震警戒 at the loudspeaker")
    assert "巨大地震警戒" in scripts[1]["text"]
    rows = {r["identifier"]: r for r in await jma_alerts(engine)}
    assert rows[warning.identifier]["priority"] == "flash"
    assert not [r for r in await jma_alerts(engine, active="true") if r["identifier"] == investigating.identifier]

    # 調査終了 is by policy for broadcasters and feeds only, yet it ends the 警戒: the loudspeaker that
    # announced the 警戒 hears it too.
    drop(spool_dir(engine), NANKAI_ENDED, shifted(NANKAI_ENDED, delta_to_now(NANKAI_ENDED)))
    scripts = await until(lambda: _scripts(sink, "/radio", 3), what="the 調査終了 at the loudspeaker that heard the 警戒")
    assert scripts[2]["msg_type"] == "Update" and "調査終了" in scripts[2]["text"]
    assert not [r for r in await jma_alerts(engine, active="true") if r["kind"] == "megaquake"]


async def _caps(sink: Sink, path: str, n: int) -> list[Alert]:
    caps = [parse_cap(r["body"]) for r in sink.at(path)]
    return caps if len(caps) >= n else []
