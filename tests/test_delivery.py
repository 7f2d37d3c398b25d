"""Delivery behaviour a receiver notices: lanes, retries, isolation, supersede, no double delivery."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import pytest

from alertd import store as store_module
from alertd.store import Store
from tests.conftest import (
    MQTT_HOST,
    MQTT_PORT,
    MQTT_URL,
    RunningEngine,
    Sink,
    make_settings,
    start_engine,
    stop_engine,
)
from tests.support import until

ORDER = {
    "municipality": "08211",
    "level": 4,
    "action": "issue",
    "districts": ["all"],
    "reason": "洪水",
    "status": "Exercise",
}
MISSILE = {"status": "Exercise", "kind": "missile", "event": "弾道ミサイル情報", "level": 5, "districts": ["08"],
           "headline": {"ja": "ミサイル発射。", "en": "Missile launch."}}  # fmt: skip


async def test_flash_lane_is_not_delayed_by_a_routine_backlog(sink: Sink) -> None:
    # Routine work is throttled to 4 at a time against slow endpoints: 240 jobs take ~6 s.
    running = await start_engine(make_settings(routine_concurrency=4))
    try:
        token = await running.add_issuer("pref", ["08"])
        for i in range(60):
            await running.add_subscriber(
                id=f"slow{i}", adapter="isp", endpoint=f"{sink.url}/slow/{i}", districts=["08211"]
            )
            sink.delay[f"/slow/{i}"] = 0.1
        await running.add_subscriber(
            id="radio", adapter="radio", endpoint=f"{sink.url}/radio", districts=["08"], min_level=5
        )
        for n in range(4):
            status, _ = await running.post(
                "/api/v1/evacuation-orders", token, {**ORDER, "identifier": f"bulk-{n}"}
            )
            assert status == 202
        await sink.wait_for(8)
        status, health = await running.get("/healthz")
        assert health["queue_depth"]["routine"] > 150  # a real backlog is waiting
        t0 = time.monotonic()
        national = await running.add_issuer("cabinet", [], national=True)  # only the state sends missile alerts
        status, answer = await running.post("/api/v1/alerts", national, MISSILE)
        assert status == 202 and answer["priority"] == "flash"
        rows = await running.wait_deliveries(answer["id"], {"delivered"}, timeout=10)
        elapsed = time.monotonic() - t0
        assert rows[0]["subscriber"] == "radio"
        status, health = await running.get("/healthz")
        # The flash alert went through while most of the backlog still waits.
        assert health["queue_depth"]["routine"] > 100, (elapsed, health)
    finally:
        await stop_engine(running)


async def test_dead_endpoint_does_not_slow_the_others_and_opens_its_circuit(sink: Sink) -> None:
    running = await start_engine(make_settings(breaker_threshold=2, breaker_cooldown_s=30))
    try:
        token = await running.add_issuer("joso", ["08211"])
        # An endpoint that accepts the connection and never answers: the worst kind of dead.
        sink.delay["/hang"] = 30
        await running.add_subscriber(id="hangs", adapter="isp", endpoint=f"{sink.url}/hang", districts=["08211"],
                                     timeout_s=1.0)  # fmt: skip
        for i in range(20):
            await running.add_subscriber(
                id=f"ok{i}", adapter="signage", endpoint=f"{sink.url}/ok/{i}", districts=["08211"]
            )
        for n in range(3):
            status, answer = await running.post(
                "/api/v1/evacuation-orders", token, {**ORDER, "identifier": f"o{n}"}
            )
            assert status == 202
            t0 = time.monotonic()
            await sink.wait_for(20 * (n + 1), timeout=5)
            assert time.monotonic() - t0 < 1.0  # the healthy twenty never waited on the hung one

        async def circuit_open() -> bool:
            _status, text = await running.get("/metrics")
            return 'alertd_circuit_open{adapter="isp",subscriber="hangs"} 1.0' in text

        await until(circuit_open, what="the circuit of the endpoint that never answers to open")

        async def timed_out() -> dict[str, Any] | None:
            hangs = next(r for r in await running.deliveries(answer["id"]) if r["subscriber"] == "hangs")
            return hangs if "within 1 s" in (hangs["last_error"] or "") else None

        hangs = await until(timed_out, what="the hung delivery to record that it got no answer within 1 s")
        assert hangs["state"] == "queued"  # held back by the open circuit, not given up
    finally:
        await stop_engine(running)


async def test_retries_with_backoff_until_the_endpoint_recovers(engine: RunningEngine, sink: Sink) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="flaky", adapter="isp", endpoint=f"{sink.url}/flaky", districts=["08211"])
    sink.status["/flaky"] = 503
    _status, answer = await engine.post("/api/v1/evacuation-orders", token, ORDER)

    async def retried() -> dict[str, Any] | None:
        flaky = next(r for r in await engine.deliveries(answer["id"]) if r["subscriber"] == "flaky")
        return flaky if flaky["attempts"] >= 2 else None

    flaky = await until(retried, what="a second attempt at the endpoint answering 503")
    # Still on its way (between attempts, or in the next one), not given up.
    assert flaky["state"] in ("queued", "sent") and "HTTP 503" in flaky["last_error"]
    sink.status.pop("/flaky")
    rows = await engine.wait_deliveries(answer["id"], {"delivered"}, timeout=15)
    assert rows[0]["attempts"] >= 3
    keys = {r["headers"]["Idempotency-Key"] for r in sink.at("/flaky")}
    assert len(sink.at("/flaky")) == 1 and len(keys) == 1


async def test_permanent_failure_is_not_retried(engine: RunningEngine, sink: Sink) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="gone", adapter="isp", endpoint=f"{sink.url}/gone", districts=["08211"])
    sink.status["/gone"] = 410
    status, answer = await engine.post("/api/v1/evacuation-orders", token, ORDER)
    assert status == 202
    rows = await engine.wait_deliveries(answer["id"], {"failed"})
    assert rows[0]["attempts"] == 1 and "HTTP 410" in rows[0]["last_error"]
    _status, text = await engine.get("/metrics")
    assert 'alertd_delivery_attempts_total{adapter="isp",lane="routine",result="permanent_failure",transport="http"}' in text
    assert 'alertd_deliveries_completed_total{adapter="isp",lane="routine",state="failed",transport="http"} 1.0' in text


async def test_cancel_supersedes_undelivered_work(engine: RunningEngine, sink: Sink) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="down", adapter="isp", endpoint=f"{sink.url}/down", districts=["08211"])
    await engine.add_subscriber(id="up", adapter="isp", endpoint=f"{sink.url}/up", districts=["08211"])
    sink.status["/down"] = 503
    status, first = await engine.post("/api/v1/evacuation-orders", token, ORDER)
    await sink.wait_for(1)
    cancel = {"status": "Exercise", "msg_type": "Cancel", "event": "取消", "references": [first["id"]]}
    status, cancelled = await engine.post("/api/v1/alerts", token, cancel)
    assert status == 202, cancelled
    sink.status.pop("/down")  # back up: it must get the Cancel, and never the stale order
    rows = {
        r["subscriber"]: r for r in await engine.wait_deliveries(first["id"], {"delivered", "superseded"})
    }
    assert rows["down"]["state"] == "superseded" and rows["up"]["state"] == "delivered"
    await engine.wait_deliveries(cancelled["id"], {"delivered"})
    got = [json.loads(r["body"]) for r in sink.at("/down")]
    assert [g["msg_type"] for g in got] == ["Cancel"]
    status, alert = await engine.get(f"/api/v1/alerts/{first['id']}")
    assert alert["state"] == "cancelled"


async def test_two_engines_share_the_work_without_delivering_twice(sink: Sink) -> None:
    settings = make_settings()
    a = await start_engine(settings)
    b_settings = make_settings(key_prefix=settings.key_prefix, consumer_name="second")
    b = await start_engine(b_settings)
    try:
        token = await a.add_issuer("joso", ["08211"])
        n = 300
        for i in range(n):
            sink.delay[f"/s/{i}"] = 0.01
        subs = [
            {"id": f"s{i}", "adapter": "isp", "endpoint": f"{sink.url}/s/{i}", "districts": ["08211"],
             "drills": True}
            for i in range(n)
        ]
        from alertd.engine import subscriber_from

        await a.engine.store.put_subscribers([subscriber_from(s) for s in subs])
        status, answer = await a.post("/api/v1/evacuation-orders", token, ORDER)
        assert status == 202 and answer["deliveries"] == n
        await sink.wait_for(n)
        rows = await b.wait_settled(answer["id"])
        paths = [r["path"] for r in sink.received]
        assert len(paths) == len(set(paths)) == n  # each exactly once
        assert len(rows) == n and {r["state"] for r in rows} == {"delivered"}
    finally:
        await stop_engine(b, wipe_keys=False)
        await stop_engine(a)


async def retained_state(topic: str, until: Any, timeout: float = 10) -> dict[str, Any]:
    """The retained state on a topic, as a receiver connecting now gets it, once ``until`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    state: dict[str, Any] = {}
    while loop.time() < deadline:
        async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=f"late-{secrets.token_hex(3)}",
                                  protocol=aiomqtt.ProtocolVersion.V5) as late:  # fmt: skip
            await late.subscribe(topic, qos=1)
            try:
                async with asyncio.timeout(1):
                    async for message in late.messages:
                        # Retained, or published live while subscribing: the state either way.
                        state = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                        break
            except TimeoutError:
                pass
        if state and until(state):
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"the retained state on {topic} never matched: {state}")


async def test_the_retained_state_lists_what_is_in_force_and_empties_after_the_lift(engine: RunningEngine) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    actual = {**ORDER, "status": "Actual"}
    status, city = await engine.post("/api/v1/evacuation-orders", token, {**actual, "level": 3, "identifier": "l3"})
    status, misaka = await engine.post("/api/v1/evacuation-orders", token,
                                       {**actual, "districts": ["三坂町"], "identifier": "l4"})  # fmt: skip
    assert status == 202
    # A shelter notice comes after: the state still shows both orders, not "the last message".
    status, _ = await engine.post("/api/v1/shelters", token, {"municipality": "08211", "status": "Actual",
                                                              "shelters": [{"name": "石下総合体育館"}]})  # fmt: skip
    topic = engine.topics.state("08211", "Actual")
    assert topic is not None
    state = await retained_state(topic, lambda s: {a["alert_id"] for a in s["alerts"]} >= {city["id"], misaka["id"]})
    assert state["level"] == 4 and state["in_force"] is True
    levels = {d["name"]: d["level"] for d in state["districts"]}
    assert levels["三坂町"] == 4 and levels["常総市"] == 3
    # A drill never touches the real state: it has its own topic.
    status, _ = await engine.post("/api/v1/evacuation-orders", token, {**ORDER, "level": 5, "identifier": "drill"})
    drill_topic = engine.topics.state("08211", "Exercise")
    assert drill_topic is not None
    drill = await retained_state(drill_topic, lambda s: s["level"] == 5)
    assert drill["status"] == "Exercise"
    status, _ = await engine.post("/api/v1/evacuation-orders", token,
                                  {**actual, "level": 4, "action": "lift", "districts": ["all"], "identifier": "lift"})
    assert status == 202
    # After the last lift no order stands (the shelter notice still does).
    state = await retained_state(topic, lambda s: s["level"] is None)
    assert [a["kind"] for a in state["alerts"]] == ["shelter"] and state["districts"] == []


async def test_alert_messages_carry_the_alert_expiry(engine: RunningEngine) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=f"rx-{secrets.token_hex(3)}",
                              protocol=aiomqtt.ProtocolVersion.V5) as rx:  # fmt: skip
        await rx.subscribe(engine.topics.alert("08211"), qos=1)
        status, _ = await engine.post("/api/v1/evacuation-orders", token, ORDER)
        assert status == 202
        async with asyncio.timeout(10):
            async for message in rx.messages:
                expiry = message.properties.MessageExpiryInterval  # type: ignore[union-attr]
                assert 0 < expiry <= 24 * 3600
                break
    assert MQTT_URL


async def test_a_delivery_in_flight_shows_as_sent(engine: RunningEngine, sink: Sink) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="slow", adapter="isp", endpoint=f"{sink.url}/slow", districts=["08211"])
    sink.delay["/slow"] = 1.0  # under the 1.5 s timeout the test settings give
    status, answer = await engine.post("/api/v1/evacuation-orders", token, ORDER)
    assert status == 202
    await engine.wait_deliveries(answer["id"], {"sent"}, timeout=5)
    rows = await engine.wait_deliveries(answer["id"], {"delivered"}, timeout=10)
    assert rows[0]["attempts"] == 1


async def test_an_expired_alert_leaves_the_list_of_alerts_in_force(engine: RunningEngine) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    soon = {"status": "Exercise", "event": "大雨警報", "districts": ["08211"], "identifier": "short",
            "expires": (datetime.now(UTC) + timedelta(seconds=2)).isoformat()}  # fmt: skip
    later = {**soon, "identifier": "long", "expires": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    _, short = await engine.post("/api/v1/alerts", token, soon)
    _, long = await engine.post("/api/v1/alerts", token, later)
    status, active = await engine.get("/api/v1/alerts?active=true&status=Exercise")
    assert status == 200 and {a["id"] for a in active} == {short["id"], long["id"]}
    ended = await engine.engine.store.expire_active(time.time() + 3)
    assert ended == [short["id"]]
    status, active = await engine.get("/api/v1/alerts?active=true&status=Exercise")
    assert [a["id"] for a in active] == [long["id"]]


async def test_every_alert_in_force_is_listed_when_they_are_read_in_several_round_trips(
    engine: RunningEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Alerts are read a chunk at a time (a large disaster's 2,500 in one go held the loop
    # for a quarter of a second); a short chunk here puts the boundaries inside seven alerts.
    monkeypatch.setattr(store_module, "LOAD_CHUNK", 3)
    token = await engine.add_issuer("joso", ["08211"])
    posted = set()
    for i in range(7):
        status, answer = await engine.post("/api/v1/alerts", token, {
            "status": "Exercise", "event": "大雨警報", "districts": ["08211"], "identifier": f"many-{i}"})  # fmt: skip
        assert status == 202, answer
        posted.add(answer["id"])
    for alert_id in posted:  # read back from Redis, not from this process's cache
        engine.engine.store.forget(alert_id)
    status, active = await engine.get("/api/v1/alerts?active=true&status=Exercise")
    assert status == 200 and {a["id"] for a in active} == posted


async def test_an_alert_in_force_from_before_the_expiry_index_still_expires(engine: RunningEngine) -> None:
    # An alertd that kept no expiry index left this alert in force; the process that
    # starts after the upgrade must still end it when it expires.
    token = await engine.add_issuer("joso", ["08211"])
    soon = {"status": "Exercise", "event": "大雨警報", "districts": ["08211"], "identifier": "older",
            "expires": (datetime.now(UTC) + timedelta(seconds=2)).isoformat()}  # fmt: skip
    _, older = await engine.post("/api/v1/alerts", token, soon)
    running = engine.engine.store
    await running.redis.zrem(running.keys.expiry, older["id"])
    upgraded = Store(running.redis, running.keys)
    assert await upgraded.expire_active(time.time()) == []  # not yet due
    assert await upgraded.expire_active(time.time() + 3) == [older["id"]]
    status, active = await engine.get("/api/v1/alerts?active=true&status=Exercise")
    assert status == 200 and active == []


async def test_an_alert_an_older_alertd_committed_beside_this_one_still_expires(
    engine: RunningEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rolling upgrade: an older serve, which keeps no expiry index, commits an alert after
    # this process has already indexed what was in force. This process's periodic check
    # (every EXPIRY_CHECK_S; every sweep here) must still find it and end it.
    monkeypatch.setattr(store_module, "EXPIRY_CHECK_S", 0.0)
    store = engine.engine.store
    await store.expire_active(time.time())
    token = await engine.add_issuer("joso", ["08211"])
    soon = {"status": "Exercise", "event": "大雨警報", "districts": ["08211"], "identifier": "from-older",
            "expires": (datetime.now(UTC) + timedelta(seconds=2)).isoformat()}  # fmt: skip
    _, older = await engine.post("/api/v1/alerts", token, soon)
    await store.redis.zrem(store.keys.expiry, older["id"])  # as the older alertd left it
    assert await store.expire_active(time.time() + 3) == [older["id"]]
    status, active = await engine.get("/api/v1/alerts?active=true&status=Exercise")
    assert status == 200 and active == []


async def test_an_alert_cancelled_before_it_expires_is_not_expired_again(engine: RunningEngine) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    soon = {"status": "Exercise", "event": "大雨警報", "districts": ["08211"], "identifier": "cancelled-soon",
            "expires": (datetime.now(UTC) + timedelta(seconds=2)).isoformat()}  # fmt: skip
    _, first = await engine.post("/api/v1/alerts", token, soon)
    cancel = {"status": "Exercise", "msg_type": "Cancel", "event": "取消", "references": [first["id"]]}
    status, _ = await engine.post("/api/v1/alerts", token, cancel)
    assert status == 202
    store = engine.engine.store
    assert await store.expire_active(time.time() + 3) == []
    assert await store.redis.zscore(store.keys.expiry, first["id"]) is None  # the index holds no leftovers
    status, alert = await engine.get(f"/api/v1/alerts/{first['id']}")
    assert alert["state"] == "cancelled"


async def test_work_held_longer_than_the_claim_time_is_not_delivered_twice(sink: Sink) -> None:
    # One delivery at a time, one second each: the last of five waits ~4 s in this
    # process, past the 3 s after which idle work may be reclaimed.
    running = await start_engine(make_settings(routine_concurrency=1))
    try:
        token = await running.add_issuer("joso", ["08211"])
        for i in range(5):
            sink.delay[f"/q/{i}"] = 1.0
            await running.add_subscriber(id=f"q{i}", adapter="isp", endpoint=f"{sink.url}/q/{i}", districts=["08211"])
        status, answer = await running.post("/api/v1/evacuation-orders", token, ORDER)
        assert status == 202
        rows = await running.wait_settled(answer["id"])
        assert {r["state"] for r in rows} == {"delivered"}
        paths = [r["path"] for r in sink.received]
        assert sorted(paths) == [f"/q/{i}" for i in range(5)]  # each exactly once
    finally:
        await stop_engine(running)


async def test_another_process_does_not_take_over_work_that_is_waiting_its_turn(sink: Sink) -> None:
    settings = make_settings(routine_concurrency=1)
    a = await start_engine(settings)
    b = None
    try:
        token = await a.add_issuer("joso", ["08211"])
        for i in range(5):
            sink.delay[f"/w/{i}"] = 1.0
            await a.add_subscriber(id=f"w{i}", adapter="isp", endpoint=f"{sink.url}/w/{i}", districts=["08211"])
        status, answer = await a.post("/api/v1/evacuation-orders", token, ORDER)
        assert status == 202
        await sink.wait_for(1)  # the first engine has read the whole batch by now
        # A second process joins; it must not take over what the first still holds.
        b = await start_engine(make_settings(key_prefix=settings.key_prefix, consumer_name="second"))
        rows = await a.wait_settled(answer["id"])
        assert {r["state"] for r in rows} == {"delivered"}
        assert sorted(r["path"] for r in sink.received) == [f"/w/{i}" for i in range(5)]
    finally:
        if b is not None:
            await stop_engine(b, wipe_keys=False)
        await stop_engine(a)
