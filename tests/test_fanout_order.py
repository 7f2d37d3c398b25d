"""A national flash is queued loudspeakers first: the lane is read in order, and the
town's radio gateway (and the carriers' cell broadcast) speak to people directly, while
broadcasters and portals relay. Registered order must not put a town behind every portal."""

from __future__ import annotations

from alertd.redis_client import connect
from tests.conftest import REDIS_URL, make_settings, start_engine, stop_engine


async def test_a_missile_alert_queues_cell_broadcast_and_radio_before_portals_and_broadcasters() -> None:
    # Nothing reads the lane: its order stays to be seen. One lane shard: with several, the
    # order holds within each (tests/test_lane_shards.py).
    running = await start_engine(make_settings(lane_shards=1), workers=False)
    r = connect(REDIS_URL, key_prefix=running.engine.settings.key_prefix)
    try:
        cabinet = await running.add_issuer("cabinet", [], national=True)
        # Registered portals first, loudspeakers last: the worst order for a town.
        kinds = ["isp", "broadcaster", "isp", "signage", "radio", "broadcaster", "radio", "cbc"]
        for i, kind in enumerate(kinds):
            await running.add_subscriber(id=f"s{i}-{kind}", adapter=kind, endpoint=f"http://127.0.0.1:9/{i}",
                                         districts=["13"])  # fmt: skip
        status, answer = await running.post("/api/v1/alerts", cabinet, {
            "identifier": "order-test-1", "status": "Exercise", "msg_type": "Alert", "kind": "missile",
            "event": "弾道ミサイル情報", "districts": ["13"],
            "headline": {"ja": "ミサイル発射（訓練）", "en": "Missile launch (exercise)"},
        })  # fmt: skip
        assert status == 202, answer
        entries = await r.xrange(running.engine.keys.lane("flash"))
        queued = [f[b"s"].decode() for _, f in entries if f[b"a"].decode() == answer["id"]]
        assert queued[0] == "_feed"
        assert queued[1:] == ["s7-cbc", "s4-radio", "s6-radio", "s1-broadcaster", "s5-broadcaster",
                              "s3-signage", "s0-isp", "s2-isp"]  # fmt: skip
    finally:
        await r.aclose()
        await stop_engine(running)
