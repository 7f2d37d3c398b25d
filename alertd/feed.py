"""The MQTT feed: every alert on per-municipality topics, what is in force, and receivers' acks.

Topics (QoS 1), under a deployment prefix (``ALERTD_TOPIC_PREFIX``, default ``alerts/v1``):

  <prefix>/<pref>/<municipality>                 the alert as CAP 1.2 XML; MQTT 5 expiry = alert expiry
  <prefix>/<pref>/<municipality>/state           retained JSON: every Actual alert in force there now
  <prefix>/<pref>/<municipality>/state/exercise  the same for drills (Exercise); Test has none
  <prefix>/ack/<subscriber id>                   receivers publish confirmations here

Publishing an alert is itself a tracked delivery job (subscriber ``_feed``),
so it is as durable as any other delivery.

The retained state is not "the last message": it is drawn from the model of
what is in force (alertd/inforce.py) whenever that changes. A change marks its
municipalities dirty in Redis in the same transaction; one process (holding
the ``mqtt`` lease) publishes the state of dirty municipalities, in order, so
an older state can never overwrite a newer one.
A town's state waits for the alert messages of the alerts it lists (their
``_feed`` delivery), so it never goes before them, nor delays them.

The same lease holder listens for acks, with one stable client identity and a
persistent session: acks published while it was down are queued by the broker
and reach whoever holds the lease next, so none is lost to a crashed process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from typing import TYPE_CHECKING, Any

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from adapters.base import RetryableError
from adapters.transport import MqttConnection
from alertd import logs, metrics
from alertd.broker import Broker
from alertd.constants import Topics
from alertd.inforce import InForce, Standing
from alertd.lease import Lease
from alertd.limits import ACK_MAX_BYTES
from alertd.metrics import ACKS, FEED_PUBLISHED, STATE_PUBLISHED
from alertd.models import AdapterKind, Alert, DeliveryState, format_cap_time, utcnow

if TYPE_CHECKING:
    from alertd.cap_signature import CapSigner
    from alertd.store import Store
    from geo.registry import Registry

log = logs.get("alertd.feed")


class FeedUnavailable(RuntimeError):
    """The broker did not take the feed's connection at start; ``detail`` says which and why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


FEED_SUBSCRIBER = "_feed"

# A town's retained state follows the alert messages of the alerts it lists: while an
# alert's own feed delivery is under way (queued, sent) its towns' states wait, for at
# most this long after its acceptance (a feed that keeps failing must not hold them).
FEED_FIRST_S = 10.0
# How long the deliveries must stay idle before a state round starts: longer than the gap
# between two lane reads of one fan-out.
QUIET_S = 0.02
_UNDER_WAY = {DeliveryState.QUEUED.value, DeliveryState.SENT.value}


def broker_address(url: str) -> tuple[str, int]:
    broker = Broker.parse(url)
    return broker.host, broker.port


def municipalities_of(registry: Registry, alert: Alert, *, reach: bool = False) -> list[str]:
    """The municipalities an alert is in force in (with ``reach``: also those it is delivered
    to); a prefecture-wide alert covers each of its towns."""
    out: dict[str, None] = {}
    for code in [*alert.districts, *(alert.reach if reach else [])]:
        district = registry.find(code)
        if district is None or district.level == "tsunami":
            continue
        if district.level == "prefecture":
            for child in registry.children(code):
                if child.level in ("municipality", "ward"):
                    out[child.code] = None
            continue
        muni = registry.municipality_of(code)
        if muni:
            out[muni] = None
    return list(out)


# Registry → {designated city: its wards}, built once per registry (the registry is immutable).
_WARDS: dict[int, tuple[Registry, dict[str, list[str]]]] = {}


def _wards_of(registry: Registry) -> dict[str, list[str]]:
    held = _WARDS.get(id(registry))
    if held is None or held[0] is not registry:
        wards: dict[str, list[str]] = {}
        for d in registry.municipalities():
            if d.level == "ward" and d.parent:
                wards.setdefault(d.parent, []).append(d.code)
        held = _WARDS[id(registry)] = (registry, wards)
    return held[1]


def with_city_and_wards(registry: Registry, municipalities: list[str]) -> list[str]:
    """The towns whose retained state changes with these: a designated city's state
    (千葉市 12100, 横浜市 14100 …) is the sum of its wards' (store.StandingByTown), so a change in
    one ward changes the city's too, and a change naming the city changes every ward's.
    Without it a 解除 naming only wards left the city topic showing the 津波警報."""
    wards = _wards_of(registry)
    out: dict[str, None] = dict.fromkeys(municipalities)
    for code in municipalities:
        district = registry.find(code)
        if district is None:
            continue
        if district.level == "ward" and district.parent:
            out[district.parent] = None
        out.update(dict.fromkeys(wards.get(code, ())))
    return list(out)


def state_message(
    registry: Registry, municipality: str, status: str, model: InForce,
    summaries: dict[tuple[str, frozenset[str]], dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What is in force in one municipality: the retained state a gateway or a portal shows.

    ``summaries`` caches each alert's summary across one round of towns: a summary depends
    only on the alert and what was lifted from it, and a prefecture-wide alert is the same
    in each of its 62 towns (summarising it per town was most of a round's time)."""
    orders = model.orders()
    district = registry.find(municipality)
    return {
        "municipality": municipality,
        "name": district.full_name if district is not None else municipality,
        "status": status,
        "in_force": bool(model.standing),
        # The highest evacuation level standing anywhere in the town, and per district.
        "level": max((s.level for s in orders if s.level is not None), default=None),
        "districts": model.per_district() if orders else [],
        "alerts": [_summary(registry, s, summaries) for s in model.standing],
        "updated": format_cap_time(utcnow()),
    }


def _summary(
    registry: Registry, standing: Standing, cache: dict[tuple[str, frozenset[str]], dict[str, Any]] | None
) -> dict[str, Any]:
    if cache is None:
        return standing.summary(registry)
    key = (standing.alert.id, standing.lifted)
    held = cache.get(key)
    if held is None:
        held = cache[key] = standing.summary(registry)
    return held


# How many feed messages are handed to paho at once (see FeedConnection.publish_many).
PUBLISH_WINDOW = 500


class PackedOnce(Properties):
    """A publish's MQTT 5 properties, serialised once: paho packs them again for every
    message (walking all 27 property names), a few percent of a national alert's CPU
    when one set goes with 1,747 messages. Set every property before the first publish."""

    def pack(self) -> bytes:
        packed: bytes | None = self.__dict__.get("_packed")
        if packed is None:
            packed = super().pack()
            object.__setattr__(self, "_packed", packed)  # Properties refuses unknown names
        return packed


class FeedConnection(MqttConnection):
    """The feed's connection: many QoS 1 publishes sent together, every PUBACK awaited.

    ``MqttConnection.publish`` is one message: it checks the connection through two
    nested ``wait_for`` tasks and builds its MQTT 5 properties, then aiomqtt hands the
    message to paho, which asks the loop (``call_soon_threadsafe(add_writer)``) to
    write it when the socket is writable: four or five loop turns before the bytes
    leave, against none for a webhook (the HTTP transport writes at once). On a loop
    that is also posting 2,000 webhooks a turn is milliseconds, so the feed's first
    message left 15–45 ms after the first webhook although its job runs first.

    Here the connection is checked once, the properties built once, every message is
    handed to paho in one go and written to the socket at once (the rest, if the socket
    takes only part, as soon as it is writable); then every PUBACK is awaited together.
    This uses aiomqtt's pending-publish table and paho's socket calls (aiomqtt has no
    batch publish); without them (another aiomqtt) it falls back to aiomqtt's publish.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # True while publish_many hands messages to paho: it writes them itself right after.
        self._batching = False
        self._tuned: object | None = None

    def _make_client(self, protocol: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
        client = super()._make_client(protocol)
        paho = client._client
        register = paho.on_socket_register_write  # aiomqtt's: add_writer, one loop turn later

        def register_write(c: Any, userdata: Any, sock: Any) -> None:
            if not self._batching:
                register(c, userdata, sock)

        paho.on_socket_register_write = register_write
        return client

    async def publish_many(
        self, messages: list[tuple[str, bytes]], *, retain: bool = False, expiry_s: int | None = None,
        content_type: str | None = None, timeout_s: float = 5.0,
    ) -> list[BaseException | None]:  # fmt: skip
        """Publish each (topic, body) at QoS 1; the outcome of each, in order: None once the
        broker's PUBACK came, else why not (a ``RetryableError``, like ``publish``'s)."""
        client = self._client if self.connected else None
        if client is None:
            try:
                await asyncio.wait_for(self.wait_ready(timeout_s), timeout_s)
            except TimeoutError:
                why = f" ({self.last_error})" if self.last_error else ""
                return [RetryableError(f"MQTT broker {self.broker} is not reachable{why}")] * len(messages)
            client = self._client
            if client is None:
                return [RetryableError(f"MQTT broker {self.broker} connection was lost")] * len(messages)
        props = None
        if self.v5:
            props = PackedOnce(PacketTypes.PUBLISH)
            if expiry_s is not None:
                props.MessageExpiryInterval = max(1, int(expiry_s))
            if content_type:
                props.ContentType = content_type
        if not (hasattr(client, "_pending_publishes") and hasattr(client, "_disconnected")):
            return await self._publish_each(client, messages, retain, props, timeout_s)

        # In windows: paho holds no more than a window at once (it has no in-flight cap, see
        # adapters/transport.py), and a broker's queue for a slow subscriber of every town
        # (mosquitto's max_queued_messages, 1,000 by default) is not overrun by one burst.
        outcomes: list[BaseException | None] = []
        for start in range(0, len(messages), PUBLISH_WINDOW):
            window = messages[start : start + PUBLISH_WINDOW]
            outcomes += await self._publish_window(client, window, retain, props, timeout_s)
        return outcomes

    async def _publish_window(
        self, client: aiomqtt.Client, messages: list[tuple[str, bytes]], retain: bool, props: Properties | None,
        timeout_s: float,
    ) -> list[BaseException | None]:  # fmt: skip
        paho = client._client
        pending: dict[int, asyncio.Event] = client._pending_publishes
        outcomes: list[BaseException | None] = [None] * len(messages)
        waits: list[tuple[int, int, asyncio.Event]] = []  # (index, mid, set on its PUBACK)
        self._batching = True
        try:
            for i, (topic, body) in enumerate(messages):
                try:
                    info = paho.publish(topic, body, 1, retain, props)
                except Exception as exc:  # paho refuses the message itself (a wildcard topic)
                    outcomes[i] = RetryableError(f"MQTT publish to {topic} failed: {exc}")
                    continue
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    outcomes[i] = RetryableError(
                        f"MQTT publish to {topic} failed: {mqtt.error_string(info.rc)}"
                    )
                elif not info.is_published():
                    # aiomqtt's on_publish sets it; no PUBACK can be read before the next await.
                    event = pending[info.mid] = asyncio.Event()
                    waits.append((i, info.mid, event))
        finally:
            self._batching = False
            self._flush(client)
        try:
            async with asyncio.timeout(timeout_s):
                for _, _, event in waits:
                    await event.wait()
        except TimeoutError:
            pass
        for i, mid, event in waits:
            pending.pop(mid, None)
            if not event.is_set():
                outcomes[i] = RetryableError(f"no PUBACK for {messages[i][0]} within {timeout_s:g} s")
        return outcomes

    def _flush(self, client: aiomqtt.Client) -> None:
        """Write what paho holds now; what the socket does not take goes when it is writable."""
        paho = client._client
        sock = paho.socket()
        if sock is None:
            return
        if sock is not self._tuned:
            # A 62-town alert is ~200 KB: room for it in one write, not a loop turn per 64 KB.
            with contextlib.suppress(OSError, AttributeError):  # AttributeError: a websocket
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            self._tuned = sock

        def write() -> None:
            try:
                paho.loop_write()
            except Exception as exc:  # a broken pipe: the connection is gone (as aiomqtt does)
                if not client._disconnected.done():
                    client._disconnected.set_exception(exc)

        write()
        if paho.want_write():
            asyncio.get_running_loop().add_writer(sock.fileno(), write)

    @staticmethod
    async def _publish_each(
        client: aiomqtt.Client, messages: list[tuple[str, bytes]], retain: bool, props: Properties | None,
        timeout_s: float,
    ) -> list[BaseException | None]:  # fmt: skip
        async def one(topic: str, body: bytes) -> None:
            try:
                await client.publish(topic, body, qos=1, retain=retain, properties=props, timeout=timeout_s)
            except aiomqtt.MqttError as exc:
                # aiomqtt reports a PUBACK that did not come in time as "Operation timed out".
                if "timed out" in str(exc):
                    raise RetryableError(f"no PUBACK for {topic} within {timeout_s:g} s") from exc
                raise RetryableError(f"MQTT publish to {topic} failed: {exc}") from exc
            except ValueError as exc:  # paho refuses the message itself (a wildcard topic)
                raise RetryableError(f"MQTT publish to {topic} failed: {exc}") from exc

        results = await asyncio.gather(*(one(t, b) for t, b in messages), return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]


class Feed:
    def __init__(
        self,
        mqtt_url: str | Broker,
        registry: Registry,
        store: Store,
        consumer: str,
        *,
        topics: Topics | None = None,
        lease_ttl_s: float = 15.0,
        cap_signer: CapSigner | None = None,
    ) -> None:
        # The feed, the ack listener and the state publisher all get in the same way.
        self.access = mqtt_url if isinstance(mqtt_url, Broker) else Broker.parse(mqtt_url)
        self.host, self.port = self.access.host, self.access.port
        self.registry = registry
        self.store = store
        self.topics = topics or Topics()
        self.consumer = consumer
        self.cap_signer = cap_signer
        # Alert messages and states go out on a plain (clean-session) connection.
        self.conn = FeedConnection(self.access, client_id=f"alertd-{store.keys.prefix}-{consumer}")
        # A dead holder blocks its successor this long: acks wait queued in the broker meanwhile.
        self.lease = Lease(store.redis, store.keys.feed_leader, ttl_s=lease_ttl_s, role="mqtt")
        # Alert publishes under way in this process: the state publisher waits for them
        # (alert messages first; a state round is tens of ms of rendering on the same loop).
        self._alerts_busy = 0
        self._alerts_idle = asyncio.Event()
        self._alerts_idle.set()
        # Set while this process has no flash deliveries in flight (the workers' gate,
        # given by the engine): a national alert's state round of 1,747 towns is about a
        # tenth of the process's CPU, and it waits for the webhooks of the alert it follows.
        self._flash_idle: asyncio.Event | None = None
        # How long a publish waits for the broker (a connection, then each PUBACK).
        self.publish_timeout_s = 5.0
        # The most a state round waits for alert messages and flash webhooks in flight.
        self.states_wait_s = 2.0

    async def start(self) -> None:
        try:
            await self.conn.wait_ready(timeout=15, unless_refused=True)
        except TimeoutError:
            pass
        if not self.conn.connected:
            # Say which broker and why (a refused login, a certificate that did not
            # verify), never with the password: this sentence ends up on a terminal.
            why = self.conn.last_error or "no answer"
            if self.conn.login_refused.is_set():
                raise FeedUnavailable(f"the MQTT broker at {self.broker} would not let alertd in ({why}).")
            raise FeedUnavailable(
                f"the MQTT broker at {self.broker} could not be reached within 15 s ({why})."
            )

    @property
    def connected(self) -> bool:
        return self.conn.connected

    @property
    def broker(self) -> str:
        return str(self.access)

    @property
    def last_error(self) -> str | None:
        return self.conn.last_error

    async def close(self) -> None:
        await self.conn.close()

    def municipalities(self, alert: Alert) -> list[str]:
        """The topics an alert message goes to: everywhere it is delivered."""
        return municipalities_of(self.registry, alert, reach=True)

    # --- the alert messages ------------------------------------------------------
    async def publish(self, alert: Alert) -> None:
        """Every alert message of one alert, all in flight at once, each PUBACK awaited; a
        failed one is counted and logged, and the first failure raised (the delivery job
        retries the alert's messages)."""
        from alertd.cap import to_cap

        body = to_cap(alert)
        if self.cap_signer is not None:
            body = self.cap_signer.sign(body)
        expiry = int(alert.expires.timestamp() - time.time()) if alert.expires else None
        topics = [self.topics.alert(m) for m in self.municipalities(alert)]
        self._alerts_busy += 1
        self._alerts_idle.clear()
        try:
            outcomes = await self.conn.publish_many(
                [(t, body) for t in topics], expiry_s=expiry, content_type="application/cap+xml",
                timeout_s=self.publish_timeout_s,
            )  # fmt: skip
        finally:
            self._alerts_busy -= 1
            if not self._alerts_busy:
                self._alerts_idle.set()
        failures = [(t, o) for t, o in zip(topics, outcomes, strict=True) if o is not None]
        FEED_PUBLISHED.labels(outcome="published").inc(len(topics) - len(failures))
        if failures:
            FEED_PUBLISHED.labels(outcome="failed").inc(len(failures))
            log.warning("feed.publish_failed", alert_id=alert.id, failed=len(failures), of=len(topics),
                        topic=failures[0][0], error=str(failures[0][1]))  # fmt: skip
            raise failures[0][1]

    # --- the lease holder: acks and states -----------------------------------------
    async def lead(self, stop: asyncio.Event) -> None:
        """Run as the deployment's ack listener and state publisher while holding the lease."""
        await self.lease.run_while_held(stop, self._while_leading)

    async def _while_leading(self, lost: asyncio.Event) -> None:
        # One stable identity per deployment and a persistent session: the broker
        # queues acks while nobody listens and hands them to the next holder.
        acks = MqttConnection(
            self.access, client_id=f"alertd-{self.store.keys.prefix}-acks",
            subscriptions=(self.topics.ack_filter,), on_message=self._on_ack,
        )  # fmt: skip
        acks.start()
        seen = self.conn.connects
        try:
            while not lost.is_set():
                try:
                    if self.conn.connects != seen and self.conn.connected:
                        # The broker came back: what it retained may be gone (a kill -9
                        # between its saves, a new broker), so every standing state again.
                        marked = await self.store.mark_standing_dirty(time.time())
                        seen = self.conn.connects
                        log.info("state.republish", states=marked, broker=self.broker)
                    await self._after_alerts(lost, self.states_wait_s)
                    await self.publish_states()
                except Exception as exc:  # the broker is down: the dirty set keeps them
                    log.warning("state.publish_failed", error=repr(exc))
                    await _sleep_unless(lost, 1.0)
                await _sleep_unless(lost, 0.1)
        finally:
            await acks.close()

    def follow_flash(self, idle: asyncio.Event) -> None:
        """Let state rounds wait for this process's flash deliveries (set when none are in flight)."""
        self._flash_idle = idle

    async def _after_alerts(self, lost: asyncio.Event, most_s: float = 2.0) -> None:
        """Wait until this process has no alert messages and no flash deliveries in flight
        (for at most ``most_s``: alerts back to back must not keep the states from going
        out at all), so a state round's rendering and publishes never delay the alert
        messages and webhooks it follows. The state is what a receiver that connects later
        reads; the alert itself has already gone to every subscriber of its town."""
        deadline = time.monotonic() + most_s
        waits = [e for e in (self._alerts_idle, self._flash_idle) if e is not None]
        while not lost.is_set():
            busy = next((e for e in waits if not e.is_set()), None)
            if busy is None:
                # Idle for a moment, not only between two batches of one fan-out.
                await asyncio.sleep(QUIET_S)
                if all(e.is_set() for e in waits):
                    return
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(busy.wait(), left)

    async def publish_states(self, batch: int = 500) -> int:
        """Publish the state of every municipality whose state changed (those waiting for
        an alert's own messages stay dirty for the next round)."""
        published = 0
        later: list[str] = []
        try:
            while True:
                dirty = await self.store.take_dirty_states(batch)
                if not dirty:
                    return published
                by_status: dict[str, list[str]] = {}
                for status, muni in dirty:
                    by_status.setdefault(status, []).append(muni)
                try:
                    for status, munis in by_status.items():
                        later += [f"{status}|{m}" for m in await self._publish_states(status, munis)]
                except Exception:
                    await self.store.mark_dirty([f"{s}|{m}" for s, m in dirty])  # all again, next round
                    raise
                published += len(dirty)
        finally:
            if later:
                await self.store.mark_dirty(later)
                published -= len(later)

    async def _feed_pending(self, standing: dict[str, list[Standing]]) -> set[str]:
        """The alerts standing here whose own feed messages are not out yet (their ``_feed``
        delivery neither delivered nor given up), among those accepted in the last
        ``FEED_FIRST_S``: a feed that keeps failing must not hold the states back for ever."""
        now = time.time()
        recent = {
            s.alert.id
            for rows in standing.values()
            for s in rows
            if s.alert.accepted_at is not None
            and now - s.alert.accepted_at.timestamp() < FEED_FIRST_S
            and (s.alert.adapters is None or AdapterKind.FEED in s.alert.adapters)
        }
        if not recent:
            return set()
        ids = sorted(recent)
        shard = self.store.shard_of(FEED_SUBSCRIBER)  # where the feed's delivery records are
        async with shard.redis.pipeline(transaction=False) as pipe:
            for alert_id in ids:
                pipe.hget(shard.ledger.key(alert_id), shard.ledger.state_field(FEED_SUBSCRIBER))
            states = await pipe.execute()
        return {a for a, v in zip(ids, states, strict=True) if (v.decode() if v else "queued") in _UNDER_WAY}

    async def _publish_states(self, status: str, munis: list[str], *, defer: bool = True) -> list[str]:
        """Publish these towns' states; returns the towns left for later: with ``defer``,
        those where an alert's own messages are not out yet (the state follows them)."""
        standing = await self.store.in_force_many(munis, status, self.registry)
        pending = await self._feed_pending(standing) if defer else set()
        later = [m for m in munis if any(s.alert.id in pending for s in standing[m])]
        summaries: dict[tuple[str, frozenset[str]], dict[str, Any]] = {}
        messages: list[tuple[str, bytes]] = []
        for i, muni in enumerate(m for m in munis if m not in later):
            topic = self.topics.state(muni, status)
            if topic is None:
                continue
            model = InForce(self.registry, muni, standing[muni])
            body = state_message(self.registry, muni, status, model, summaries)
            messages.append((topic, json.dumps(body, ensure_ascii=False).encode()))
            if i % 16 == 15:
                # A round of a thousand towns is a lot of rendering: let the loop run the
                # alert publishes and deliveries in between rather than after all of it.
                await asyncio.sleep(0)
        if messages:
            # All in flight together, one publish per town per round; the next round starts
            # only once every PUBACK of this one came, so an older state never lands after a
            # newer one.
            outcomes = await self.conn.publish_many(messages, retain=True, timeout_s=self.publish_timeout_s)
            failures = [o for o in outcomes if o is not None]
            STATE_PUBLISHED.inc(len(messages) - len(failures))
            if failures:
                log.warning("state.publish_failed_some", failed=len(failures), of=len(messages),
                            error=str(failures[0]))  # fmt: skip
                raise failures[0]
        return later

    async def publish_state(self, status: str, municipality: str) -> None:
        await self._publish_states(status, [municipality], defer=False)

    async def _on_ack(self, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        prefix, _, subscriber_id = topic.rpartition("/")
        if prefix != self.topics.ack_filter[:-2]:
            # Not an ack topic at all (the embedded amqtt broker hands a new session some
            # retained messages its filter does not match): nothing to do.
            log.debug("ack.wrong_topic", topic=topic)
            return
        payload = bytes(message.payload)  # type: ignore[arg-type]
        if len(payload) > ACK_MAX_BYTES:  # an ack is a few dozen bytes: never parse a flood
            log.warning("ack.too_large", subscriber_id=subscriber_id, bytes=len(payload))
            ACKS.labels(path="mqtt", outcome="too_large").inc()
            return
        try:
            data = json.loads(payload)
            alert_id = str(data["alert_id"])
            key = str(data["idempotency_key"])
        except (ValueError, KeyError, TypeError, RecursionError):
            log.warning("ack.malformed", subscriber_id=subscriber_id)
            ACKS.labels(path="mqtt", outcome="malformed").inc()
            return
        now = time.time()
        ok = await self.store.confirm(alert_id, subscriber_id, key, f"{now:.3f}")
        if ok:
            sub = await self.store.get_subscriber(subscriber_id)
            metrics.confirmed(await self.store.get_alert(alert_id), sub, now)
            ACKS.labels(path="mqtt", outcome="confirmed").inc()
            log.info("delivery.confirmed", alert_id=alert_id, subscriber_id=subscriber_id, via="mqtt")
        elif ok is False:
            ACKS.labels(path="mqtt", outcome="repeat").inc()
            log.debug("ack.repeat", alert_id=alert_id, subscriber_id=subscriber_id)
        else:
            ACKS.labels(path="mqtt", outcome="refused").inc()
            log.warning("ack.refused", alert_id=alert_id, subscriber_id=subscriber_id,
                        why="no delivery of this alert to this subscriber with that key")  # fmt: skip


async def _sleep_unless(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def clear_retained(broker: Broker, roots: set[str]) -> int:
    """Remove every retained message under the given first topic levels (a test run's or a
    benchmark's own engines), so the broker does not keep their states for ever."""
    topics: set[str] = set()
    async with aiomqtt.Client(**broker.client_options()) as client:
        await client.subscribe([(f"{root}/#", 0) for root in sorted(roots)])
        # Retained messages come right after the subscription; a broker has no "that was
        # all" signal, so a quiet half second ends the listing.
        with contextlib.suppress(TimeoutError):
            while True:
                async with asyncio.timeout(0.5):
                    message = await anext(client.messages)
                if message.retain:
                    topics.add(str(message.topic))
        # QoS 0 so thousands of topics take no round trip each; the broker handles one
        # connection's messages in order, so the acknowledged last one means all are done.
        ordered = sorted(topics)
        for topic in ordered[:-1]:
            await client.publish(topic, b"", qos=0, retain=True)
        if ordered:
            await client.publish(ordered[-1], b"", qos=1, retain=True)
    return len(topics)


__all__ = [
    "FEED_SUBSCRIBER",
    "Feed",
    "broker_address",
    "clear_retained",
    "municipalities_of",
    "state_message",
]
