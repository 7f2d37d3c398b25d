"""The MQTT feed's alert messages go out together, each PUBACK awaited, and a town's
retained state follows the alert messages it lists (issue 12)."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import aiomqtt
import pytest

from adapters.base import RetryableError
from alertd.feed import FEED_SUBSCRIBER, Feed
from alertd.metrics import REGISTRY
from alertd.models import DeliveryState
from tests.conftest import MQTT_HOST, MQTT_PORT, RunningEngine, start_engine, stop_engine
from tests.support import free_port
from tests.test_delivery import retained_state

TOKYO = "13"
MISSILE = {"status": "Exercise", "kind": "missile", "event": "弾道ミサイル情報", "districts": [TOKYO],
           "headline": {"ja": "ミサイル発射。", "en": "Missile launch."}}  # fmt: skip
STATE_FIELDS = {"municipality", "name", "status", "in_force", "level", "districts", "alerts", "updated"}


def towns(engine: RunningEngine) -> list[str]:
    registry = engine.engine.registry
    return [c.code for c in registry.children(TOKYO) if c.level in ("municipality", "ward")]


async def post_missile(engine: RunningEngine) -> str:
    token = await engine.add_issuer(f"national-{secrets.token_hex(3)}", [], national=True)
    status, answer = await engine.post("/api/v1/alerts", token, MISSILE)
    assert status == 202, answer
    return str(answer["id"])


async def test_every_town_gets_the_alert_once_and_its_state_only_after_it(engine: RunningEngine) -> None:
    prefix = engine.topics.prefix
    expected = set(towns(engine))
    seen: list[tuple[str, str, dict[str, Any] | None]] = []  # (kind, town, state), in arrival order
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=f"rx-{secrets.token_hex(3)}",
                              protocol=aiomqtt.ProtocolVersion.V5) as rx:  # fmt: skip
        await rx.subscribe([(f"{prefix}/{TOKYO}/+", 1), (f"{prefix}/{TOKYO}/+/state/exercise", 1)])
        alert_id = await post_missile(engine)

        def states_listing_it() -> set[str]:
            return {
                t
                for k, t, s in seen
                if k == "state" and s and alert_id in {a["alert_id"] for a in s["alerts"]}
            }

        async def collect() -> None:
            async for message in rx.messages:
                if message.retain:  # a state retained before this test subscribed
                    continue
                parts = str(message.topic).split("/")
                payload = bytes(message.payload)  # type: ignore[arg-type]
                if parts[-1] == "exercise":
                    seen.append(("state", parts[-3], json.loads(payload)))
                elif alert_id.encode() in payload:
                    seen.append(("alert", parts[-1], None))
                if states_listing_it() >= expected:
                    return

        try:
            await asyncio.wait_for(collect(), 20)
        except TimeoutError:
            pytest.fail(
                f"states listing the alert reached {len(states_listing_it())} of {len(expected)} towns"
            )
    alerts = [t for k, t, _ in seen if k == "alert"]
    assert sorted(alerts) == sorted(expected), "each town's topic gets the alert message exactly once"
    for town in expected:
        first_alert = next(i for i, (k, t, _) in enumerate(seen) if k == "alert" and t == town)
        first_state = next(
            i for i, (k, t, s) in enumerate(seen)
            if k == "state" and t == town and s and alert_id in {a["alert_id"] for a in s["alerts"]}
        )  # fmt: skip
        assert first_alert < first_state, f"{town}: its state went out before the alert message it lists"
    state = next(s for k, t, s in seen if k == "state" and s and t == sorted(expected)[0])
    assert state is not None and set(state) == STATE_FIELDS
    assert state["in_force"] is True and state["status"] == "Exercise"


async def test_every_failed_publish_is_counted_and_the_job_told(engine: RunningEngine) -> None:
    alert_id = await post_missile(engine)
    alert = await engine.engine.store.get_alert(alert_id)
    assert alert is not None
    # The same feed, but its broker is a port nobody listens on.
    port = free_port()
    e = engine.engine
    feed = Feed(f"mqtt://127.0.0.1:{port}", e.registry, e.store, "test-down", topics=engine.topics)
    feed.publish_timeout_s = 0.5
    labels = {"outcome": "failed"}
    before = REGISTRY.get_sample_value("alertd_feed_messages_published_total", labels) or 0.0
    try:
        with pytest.raises(RetryableError) as raised:
            await feed.publish(alert)
    finally:
        await feed.close()
    assert f"127.0.0.1:{port}" in raised.value.message and "not reachable" in raised.value.message
    after = REGISTRY.get_sample_value("alertd_feed_messages_published_total", labels) or 0.0
    assert after - before == len(towns(engine)), "every town's message that did not go out is counted"
    assert feed._alerts_idle.is_set(), "a failed publish must not keep the state publisher waiting"


@pytest.mark.parametrize("path", ["batch", "aiomqtt"])
async def test_one_message_the_broker_cannot_take_fails_alone(engine: RunningEngine, path: str) -> None:
    conn = engine.engine.feed.conn
    base = f"{engine.topics.prefix}/test/{secrets.token_hex(3)}"
    messages = [(f"{base}/a", b"1"), (f"{base}/+", b"2"), (f"{base}/c", b"3")]
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=f"rx-{secrets.token_hex(3)}") as rx:
        await rx.subscribe(f"{base}/#", qos=1)
        # A wildcard is no topic to publish to: paho refuses that one message.
        if path == "batch":
            outcomes = await conn.publish_many(messages)
        else:  # what publish_many falls back to with an aiomqtt whose internals it does not know
            assert conn._client is not None
            outcomes = await conn._publish_each(conn._client, messages, False, None, 5.0)
        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], RetryableError) and f"{base}/+" in outcomes[1].message
        got: set[str] = set()

        async def receive() -> None:
            async for message in rx.messages:
                got.add(str(message.topic))
                if len(got) == 2:
                    return

        await asyncio.wait_for(receive(), 10)
    assert got == {f"{base}/a", f"{base}/c"}


async def test_the_state_publisher_waits_for_alert_messages_in_flight(engine: RunningEngine) -> None:
    alert_id = await post_missile(engine)
    alert = await engine.engine.store.get_alert(alert_id)
    assert alert is not None
    feed = engine.engine.feed
    publishing = asyncio.create_task(feed.publish(alert))
    # One turn of the loop (no timed wait): the publish hands its messages over and waits for
    # their PUBACKs, which the loop reads only after this turn.
    await asyncio.sleep(0)
    assert not feed._alerts_idle.is_set() and not publishing.done(), "the alert messages are in flight"
    await feed._after_alerts(asyncio.Event())
    assert publishing.done(), "the state round may start only once the alert messages are out"
    await publishing


async def test_a_towns_state_waits_while_the_alerts_own_messages_are_under_way() -> None:
    # No workers: the alert's feed delivery stays queued until this test says it went out.
    running = await start_engine(workers=False)
    try:
        alert_id = await post_missile(running)
        feed, store = running.engine.feed, running.engine.store
        all_towns = towns(running)
        later = await feed._publish_states("Exercise", all_towns)
        assert sorted(later) == sorted(all_towns), "no state may list the alert before its own messages"
        shard = store.shard_of(FEED_SUBSCRIBER)  # where the feed's delivery records are
        await shard.redis.hset(
            shard.ledger.key(alert_id), shard.ledger.state_field(FEED_SUBSCRIBER), DeliveryState.DELIVERED.value
        )
        assert await feed._publish_states("Exercise", all_towns) == []
        topic = running.topics.state(all_towns[0], "Exercise")
        assert topic is not None
        await retained_state(topic, lambda s: alert_id in {a["alert_id"] for a in s["alerts"]})
    finally:
        await stop_engine(running)


@pytest.mark.parametrize(("count", "size"), [(900, 8000), (2500, 3000)])
async def test_more_than_the_socket_takes_at_once_or_paho_keeps_in_flight_all_go_out(
    engine: RunningEngine, count: int, size: int
) -> None:
    # 900 × 8 KB: within paho's 1,000 in flight but past the socket's send buffer (the rest
    # goes when the socket is writable). 2,500 (a national alert reaches ~1,900 towns): past
    # paho's 1,000 in flight too (the rest wait for PUBACKs). Each outcome is None only once
    # the broker's PUBACK for that message came. (No subscriber counts them: Mosquitto's
    # default queue of 1,000 per subscriber would drop some.)
    conn = engine.engine.feed.conn
    base = f"{engine.topics.prefix}/test/{secrets.token_hex(3)}"
    outcomes = await conn.publish_many([(f"{base}/{i}", b"x" * size) for i in range(count)], timeout_s=20)
    assert len(outcomes) == count and [o for o in outcomes if o is not None] == []
    # And the connection still works the ordinary way afterwards (its writer hook intact).
    await conn.publish(f"{base}/after", b"1")


async def _state_listing(
    engine: RunningEngine, town: str, alert_id_of: Any, subscribed: asyncio.Event, timeout: float
) -> float | None:
    """The loop time a live (not retained) state of ``town`` listing the alert arrives, or None
    by ``timeout``; ``alert_id_of()`` is the alert's id once it is known, ``subscribed`` set
    once the subscription is in place."""
    topic = engine.topics.state(town, "Exercise")
    assert topic is not None
    loop = asyncio.get_running_loop()
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=f"rx-{secrets.token_hex(3)}",
                              protocol=aiomqtt.ProtocolVersion.V5) as rx:  # fmt: skip
        await rx.subscribe(topic, qos=1)  # SUBACK awaited
        subscribed.set()
        try:
            async with asyncio.timeout(timeout):
                async for message in rx.messages:
                    state = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                    if not message.retain and alert_id_of() in {a["alert_id"] for a in state["alerts"]}:
                        return loop.time()
        except TimeoutError:
            return None
    return None


async def test_a_flash_alerts_states_go_out_after_its_webhooks_not_among_them(engine: RunningEngine, sink: Any) -> None:
    # A state round for a national alert is 1,747 towns of rendering and publishes: it waits
    # until the process's flash webhooks are answered, so it does not slow the last of them.
    sink.delay["/slow"] = 1.5
    # The bound (2 s from the round's start) out of the way: a loaded CI machine took longer
    # than that from the round to the slow webhook's answer, and the state then went, as it must.
    engine.engine.feed.states_wait_s = 30.0
    await engine.add_subscriber(id=f"slow-{secrets.token_hex(3)}", adapter="isp", endpoint=f"{sink.url}/slow",
                                districts=[TOKYO])  # fmt: skip
    alert: dict[str, str] = {}
    subscribed = asyncio.Event()  # a live state is what is compared, not a retained one
    listening = asyncio.create_task(_state_listing(engine, towns(engine)[0], lambda: alert.get("id"), subscribed, 15))
    await asyncio.wait_for(subscribed.wait(), 10)
    alert["id"] = await post_missile(engine)
    await sink.wait_for(1)
    answered_at = asyncio.get_running_loop().time()
    state_at = await listening
    assert state_at is not None, "the town's state never listed the alert"
    assert state_at > answered_at, "the state round ran while the alert's webhook was still in flight"


async def test_a_hung_webhook_does_not_hold_the_states_back(engine: RunningEngine, sink: Any) -> None:
    sink.delay["/hung"] = 30.0
    await engine.add_subscriber(id=f"hung-{secrets.token_hex(3)}", adapter="isp", endpoint=f"{sink.url}/hung",
                                districts=[TOKYO], timeout_s=20)  # fmt: skip
    alert: dict[str, str] = {}
    subscribed = asyncio.Event()
    listening = asyncio.create_task(_state_listing(engine, towns(engine)[0], lambda: alert.get("id"), subscribed, 10))
    await asyncio.wait_for(subscribed.wait(), 10)
    alert["id"] = await post_missile(engine)
    assert await listening is not None, "a webhook that does not answer kept the town's state from going out"
    assert sink.at("/hung") == [], "the webhook was still unanswered"
