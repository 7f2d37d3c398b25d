"""The retention policy over real Redis: what ended goes, what stands or is still being delivered stays.

Retention is set to one second (a test-only scale; production's is days) and the sweeper
runs ten times a second, so the whole policy is seen in a few seconds.
"""

from __future__ import annotations

from alertd.redis_client import connect
from tests.conftest import REDIS_URL, Sink, make_settings, start_engine, stop_engine
from tests.support import until

ORDER = {"level": 4, "action": "issue", "districts": ["all"], "reason": "洪水", "status": "Exercise"}


async def test_ended_alerts_lose_their_records_while_standing_and_unfinished_ones_keep_them(
    sink: Sink,
) -> None:
    running = await start_engine(make_settings(retention_days=1 / 86_400, retention_sweep_s=0.1))
    keys = running.engine.keys
    redis = connect(REDIS_URL, key_prefix=running.engine.settings.key_prefix)
    try:
        token = await running.add_issuer("pref", ["08"])
        await running.add_subscriber(id="tv", adapter="isp", endpoint=f"{sink.url}/tv", districts=["08211"])
        # This receiver takes 3 s to answer: its delivery stays "sent" that long.
        await running.add_subscriber(
            id="slow", adapter="isp", endpoint=f"{sink.url}/slow", districts=["08220"]
        )
        sink.delay["/slow"] = 3.0

        # Ended: delivered, then cancelled.
        status, ended = await running.post("/api/v1/evacuation-orders", token,
                                           {**ORDER, "municipality": "08211", "identifier": "ended-1"})  # fmt: skip
        assert status == 202, ended
        await running.wait_settled(ended["id"])
        cancel = {"status": "Exercise", "msg_type": "Cancel", "event": "取消", "references": [ended["id"]]}
        status, _ = await running.post("/api/v1/alerts", token, cancel)
        assert status == 202
        # Standing: in force, every delivery done.
        status, standing = await running.post("/api/v1/evacuation-orders", token,
                                              {**ORDER, "municipality": "08212", "identifier": "standing-1"})  # fmt: skip
        assert status == 202
        # Unfinished: cancelled at once, but its delivery to the slow receiver is under way.
        status, unfinished = await running.post("/api/v1/evacuation-orders", token,
                                                {**ORDER, "municipality": "08220", "identifier": "slow-1"})  # fmt: skip
        assert status == 202

        async def slow_under_way() -> bool:
            rows = await running.deliveries(unfinished["id"])
            return any(r["subscriber"] == "slow" and r["state"] == "sent" for r in rows)

        await until(slow_under_way, what="the slow receiver's delivery to be under way", timeout=5)
        status, _ = await running.post("/api/v1/alerts", token, {**cancel, "references": [unfinished["id"]]})
        assert status == 202
        log_before = await redis.xlen(keys.log)

        async def ended_gone() -> bool:
            status, _ = await running.get(f"/api/v1/alerts/{ended['id']}", headers=running.admin)
            return status == 404

        await until(ended_gone, what="the ended alert to be deleted after its retention", timeout=5)
        retention = running.engine.retention
        assert retention is not None
        seen = retention.sweeps
        await until(lambda: retention.sweeps >= seen + 2, what="two more sweeps", timeout=5)
        assert not await redis.exists(keys.deliveries(ended["id"]), keys.alert(ended["id"]))
        status, _ = await running.get(f"/api/v1/alerts/{ended['id']}/deliveries", headers=running.admin)
        assert status == 404
        # The log lost the ended alert's entry (older than the cutoff, nothing standing before it).
        assert await redis.xlen(keys.log) < log_before
        # What stands keeps everything; so does the alert whose delivery is still under way.
        status, body = await running.get(f"/api/v1/alerts/{standing['id']}", headers=running.admin)
        assert status == 200 and body["state"] == "active"
        rows = await running.deliveries(unfinished["id"])
        assert {r["subscriber"]: r["state"] for r in rows if r["adapter"] != "feed"}["slow"] in (
            "queued",
            "sent",
        )
        status, body = await running.get(f"/api/v1/alerts/{unfinished['id']}", headers=running.admin)
        assert status == 200 and body["state"] == "cancelled"
        # The history listing still works on what is left, and no longer lists the deleted one.
        status, listing = await running.get("/api/v1/alerts", headers=running.admin)
        assert status == 200
        listed = {a["id"] for a in (listing["alerts"] if isinstance(listing, dict) else listing)}
        assert standing["id"] in listed and ended["id"] not in listed

        # A resend of the deleted alert's identifier is still the same message: no second fan-out.
        received = len(sink.at("/tv"))
        status, again = await running.post("/api/v1/evacuation-orders", token,
                                           {**ORDER, "municipality": "08211", "identifier": "ended-1"})  # fmt: skip
        assert status in (200, 202) and again["id"] == ended["id"]
        assert len(sink.at("/tv")) == received

        # Once the slow delivery ends, that alert goes too.
        async def unfinished_gone() -> bool:
            status, _ = await running.get(f"/api/v1/alerts/{unfinished['id']}", headers=running.admin)
            return status == 404

        await until(unfinished_gone, what="the cancelled alert to go once its last delivery ended", timeout=6)
    finally:
        await redis.aclose()
        await stop_engine(running)


async def test_the_engine_keeps_a_bounded_number_of_decoded_alerts() -> None:
    # The soak's engine grew 27 % in 25 minutes: every alert ever in force stayed decoded in
    # memory (7.6 KiB each). The cache is bounded, and a listing longer than it is still whole.
    running = await start_engine(make_settings())
    try:
        store = running.engine.store
        store.doc_cache = 5
        token = await running.add_issuer("pref", ["08"])
        towns = [m.code for m in running.engine.registry.municipalities() if m.code.startswith("08")][:8]
        for n, town in enumerate(towns):
            status, _ = await running.post("/api/v1/evacuation-orders", token,
                                           {**ORDER, "municipality": town, "identifier": f"bound-{n}"})  # fmt: skip
            assert status == 202
        status, listing = await running.get("/api/v1/alerts", headers=running.admin)
        assert status == 200
        alerts = listing["alerts"] if isinstance(listing, dict) else listing
        assert len(alerts) == len(towns) == 8
        assert len(store._docs) <= 5
    finally:
        await stop_engine(running)
