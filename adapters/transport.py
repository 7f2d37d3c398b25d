"""How payloads travel: HTTP(S) POST or MQTT publish, picked by the endpoint's scheme.

Both report through the adapter errors, classifying failures the way a
retry policy needs: timeouts, refused connections, 5xx, 408 and 429 are
worth another try; other 4xx and malformed endpoints are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import aiomqtt
import yarl
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from adapters.base import DeliveryError, Payload, PermanentError, RetryableError
from alertd import logs
from alertd.broker import Broker
from alertd.constants import Topics
from alertd.limits import RESPONSE_READ_BYTES
from alertd.redact import redact_text, redact_url

log = logs.get("alertd.transport")

RETRYABLE_STATUS = frozenset({408, 425, 429})


def check_status(status: int, endpoint: str, attempt: int) -> None:
    """A webhook's answer by its status, the same for every HTTP client: 2xx is delivered;
    5xx, 408, 425 and 429 are worth another try; other answers are final."""
    if 200 <= status < 300:
        return
    if status == 409 and attempt > 1:
        # "I have this one already": a receiver that refuses repeats answering
        # a retry whose first attempt reached it (its answer lost on the way).
        return
    message = f"HTTP {status} from {redact_url(endpoint)}"
    if status >= 500 or status in RETRYABLE_STATUS:
        raise RetryableError(message)
    raise PermanentError(message)


def redact_error(exc: DeliveryError, endpoint: str) -> None:
    """Take the endpoint's secrets out of the error's message, whatever part raised it."""
    exc.message = redact_text(exc.message, endpoint)
    exc.args = (exc.message,)


class HttpTransport:
    def __init__(self, connections: int = 512) -> None:
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        # Parsed once per endpoint: yarl's parse and quoting cost as much per request as
        # writing the request line does, and an endpoint is posted to on every alert.
        self._urls: dict[str, yarl.URL] = {}

    async def start(self) -> None:
        # One pooled session for every endpoint: connection reuse is most of
        # the speed of a 2,000-endpoint fan-out.
        connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=0, ttl_dns_cache=300)
        # No cookie jar: a receiver must not be able to set state that alertd would
        # replay to it (or to anyone), and skipping cookie handling is cheaper too.
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": "alertd/0.1"},
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, endpoint: str, payload: Payload, timeout_s: float, attempt: int = 1) -> None:
        """POST the payload; only the status counts. Errors name the endpoint without its secrets."""
        try:
            await self._post(endpoint, payload, timeout_s, attempt)
        except DeliveryError as exc:
            redact_error(exc, endpoint)
            raise

    def _url(self, endpoint: str) -> yarl.URL:
        url = self._urls.get(endpoint)
        if url is None:
            if len(self._urls) >= 20_000:  # subscribers come and go; the cache must not grow for ever
                self._urls.clear()
            url = self._urls[endpoint] = yarl.URL(endpoint)
        return url

    async def _post(self, endpoint: str, payload: Payload, timeout_s: float, attempt: int) -> None:
        if self._session is None:
            await self.start()
        assert self._session is not None
        headers = {"Content-Type": payload.content_type, **payload.headers}
        try:
            async with self._session.post(
                self._url(endpoint),
                data=payload.body,
                headers=headers,
                timeout=self._timeout(timeout_s),
                allow_redirects=False,
            ) as resp:
                await _discard_body(resp)
                check_status(resp.status, endpoint, attempt)
        except TimeoutError as exc:
            raise RetryableError(f"no answer from {redact_url(endpoint)} within {timeout_s:g} s") from exc
        except (aiohttp.InvalidURL, ValueError) as exc:
            raise PermanentError(f"the endpoint {redact_url(endpoint)!r} is not a valid URL") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise RetryableError(f"{type(exc).__name__} talking to {redact_url(endpoint)}: {exc}") from exc


async def _discard_body(resp: aiohttp.ClientResponse) -> None:
    """Read at most a few KB of what a receiver answers; only the status matters.

    A small answer is read to its end so the connection can be reused; a large
    one (a misconfigured receiver, or a hostile one sending gigabytes) is cut
    off and its connection closed, so it costs neither memory nor event-loop time.
    """
    length = resp.content_length
    if length is not None and length <= RESPONSE_READ_BYTES:
        await resp.read()
        return
    seen = 0
    while seen <= RESPONSE_READ_BYTES:
        chunk = await resp.content.read(RESPONSE_READ_BYTES + 1 - seen)
        if not chunk:
            return  # the end: the connection goes back to the pool
        seen += len(chunk)
    resp.close()


@dataclass(frozen=True)
class MqttTarget:
    broker: Broker
    topic: str

    @classmethod
    def parse(cls, endpoint: str, home: Broker | None = None) -> MqttTarget:
        """The broker and topic of ``mqtt(s)://[user:pass@]host:port/topic``.

        An endpoint on the deployment's own broker (``home``) that gives no login of its
        own gets in the way the feed does (TLS, CA, credentials): subscribers are
        registered with the broker's address, not with alertd's password.
        """
        parts = urlsplit(endpoint)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise PermanentError(f"the endpoint {redact_url(endpoint)!r} is not an mqtt://host:port/topic address")
        topic = parts.path.lstrip("/")
        if not topic or "+" in topic or "#" in topic:
            raise PermanentError(f"the endpoint {redact_url(endpoint)!r} names no publishable topic")
        try:
            broker = Broker.parse(endpoint, ca_file=home.ca_file if home else None, what="the endpoint")
        except ValueError:
            raise PermanentError(f"the endpoint {redact_url(endpoint)!r} is not an mqtt://host:port/topic address") from None
        if home is not None and broker.username is None and (broker.host, broker.port) == (home.host, home.port):
            broker = home
        return cls(broker, topic)


MessageHandler = Callable[[aiomqtt.Message], Awaitable[None]]

# The protocol each broker answered in, shared by every connection of this process.
_PROTOCOLS: dict[tuple[str, int], aiomqtt.ProtocolVersion] = {}

_client_ids = itertools.count()

# How paho words a CONNACK refusing the login (MQTT 3.1.1 codes 4 and 5, MQTT 5 codes 134 and 135).
LOGIN_REFUSED = ("user name or password", "not authorized", "not authorised")


class MqttConnection:
    """One long-lived, self-reconnecting client to one broker.

    MQTT 5 is tried first (it carries message expiry); a broker that only
    speaks 3.1.1 (amqtt, older bridges) gets 3.1.1 and expiry is then left to
    the payload's own ``expires`` field.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        client_id: str | None = None,
        subscriptions: tuple[str, ...] = (),
        on_message: MessageHandler | None = None,
        share_group: str | None = None,
    ) -> None:
        self.broker = broker
        self.host = broker.host
        self.port = broker.port
        # Built once: loading the system's CAs for every reconnect would be wasted work.
        self._tls = broker.tls_context()
        self.client_id = client_id or f"alertd-{socket.gethostname()}-{os.getpid()}-{next(_client_ids)}"
        self.subscriptions = subscriptions
        # With MQTT 5, several alertd processes split the subscription
        # ($share/<group>/…) so each message is handled once, not once per process.
        self.share_group = share_group
        self.on_message = on_message
        self.protocol: aiomqtt.ProtocolVersion | None = None
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Why the last attempt failed ("Bad user name or password"), for /healthz and
        # the start error; it never holds the password.
        self.last_error: str | None = None
        # Successful connections so far: a change tells the feed the broker came back
        # (and may have lost its retained messages).
        self.connects = 0
        # Set while the broker's last answer was a refused login: at start-up that is
        # final (a wrong password does not get right by waiting), so start fails at once.
        self.login_refused = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def v5(self) -> bool:
        return self.protocol == aiomqtt.ProtocolVersion.V5

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mqtt:{self.host}:{self.port}")

    async def wait_ready(self, timeout: float = 10.0, *, unless_refused: bool = False) -> None:
        """Wait for a connection; with ``unless_refused``, return early if the broker refuses
        alertd's login (the caller checks ``connected``)."""
        self.start()
        if not unless_refused:
            await asyncio.wait_for(self._ready.wait(), timeout)
            return
        waits = [asyncio.ensure_future(self._ready.wait()), asyncio.ensure_future(self.login_refused.wait())]
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if not done:
            raise TimeoutError

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def _make_client(self, protocol: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
        persistent = bool(self.subscriptions)
        kwargs: dict[str, object] = {}
        if protocol == aiomqtt.ProtocolVersion.V5:
            props = Properties(PacketTypes.CONNECT)
            if persistent:
                # Keep the session (and queued acks) for an hour across reconnects.
                props.SessionExpiryInterval = 3600
            kwargs["properties"] = props
            kwargs["clean_start"] = not persistent
        else:
            kwargs["clean_session"] = not persistent
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            protocol=protocol,
            # 0: no cap, so paho sends at once. With a cap, paho rescans every message it
            # holds on each PUBACK (_update_inflight): with a national alert's 3,494 feed
            # messages in hand that was 18% of the engine's CPU. Back-pressure is ours: the
            # feed and the workers bound what they hand over.
            max_inflight_messages=0,
            max_queued_outgoing_messages=100_000,
            timeout=10,
            username=self.broker.username,
            password=self.broker.password,
            tls_context=self._tls,
            **kwargs,  # type: ignore[arg-type]
        )
        # aiomqtt warns on every publish once more than 10 wait for their PUBACK; alertd keeps
        # up to max_inflight_messages in flight on purpose (a fan-out to every town), so
        # that warning would be thousands of log lines per alert. Warn past the queue's size.
        client.pending_calls_threshold = 100_000
        if persistent:
            # A QoS 1 message is acknowledged to the broker only once our handler has
            # recorded it: a process killed in between gets it again on the next session,
            # instead of the broker forgetting an ack nobody wrote down. aiomqtt has no
            # option for this; paho's (its engine) is public API.
            client._client.manual_ack_set(True)
        return client

    async def _run(self) -> None:
        backoff = 0.2
        while not self._closing:
            # A broker that answered one connection in 3.1.1 is not asked for v5 again:
            # a v5 CONNECT to a 3.1.1-only broker can go unanswered for the whole timeout.
            known = self.protocol or _PROTOCOLS.get((self.host, self.port))
            protocols = [known] if known else [aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311]
            for protocol in protocols:
                try:
                    async with self._make_client(protocol) as client:
                        self.protocol = protocol
                        _PROTOCOLS[(self.host, self.port)] = protocol
                        self._client = client
                        for topic in self.subscriptions:
                            if self.share_group and protocol == aiomqtt.ProtocolVersion.V5:
                                topic = f"$share/{self.share_group}/{topic}"
                            await client.subscribe(topic, qos=1)
                        self.connects += 1
                        self._ready.set()
                        self.last_error = None
                        self.login_refused.clear()
                        backoff = 0.2
                        log.info("mqtt.connected", broker=str(self.broker), tls=self.broker.tls, protocol=int(protocol))
                        async for message in client.messages:
                            if self.on_message is not None:
                                try:
                                    await self.on_message(message)
                                except Exception:
                                    # Not acknowledged: the broker hands it over again after a
                                    # reconnect, which the next step forces.
                                    log.exception("mqtt.handler_failed", topic=str(message.topic))
                                    raise aiomqtt.MqttError("handler failed; reconnecting to get it again") from None
                            if self.subscriptions and message.qos > 0:
                                client._client.ack(message.mid, message.qos)
                except aiomqtt.MqttCodeError as exc:
                    # A 3.1.1-only broker refuses the v5 CONNECT; fall through to 3.1.1.
                    if self.protocol is None and protocol == aiomqtt.ProtocolVersion.V5:
                        continue
                    self._failed(exc)
                except aiomqtt.MqttError as exc:
                    if self.protocol is None and protocol == aiomqtt.ProtocolVersion.V5:
                        continue
                    self._failed(exc)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Anything else (a library bug, a broken socket state) must not end the
                    # connection for good: the feed and the ack listener depend on it.
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("mqtt.connection_failed", broker=str(self.broker), error=repr(exc))
                finally:
                    self._ready.clear()
                    self._client = None
                break
            if self._closing:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _failed(self, exc: aiomqtt.MqttError) -> None:
        # paho's reasons name the failure ("Not authorized", a certificate that did not
        # verify), never the credentials; the redaction is for a password quoted back anyway.
        reason = _without_password(str(exc), self.broker)
        if any(refusal in reason.lower() for refusal in LOGIN_REFUSED):
            reason = f"it refused the user name or password alertd gave: {reason}"
            self.login_refused.set()
        self.last_error = reason
        log.warning("mqtt.disconnected", broker=str(self.broker), error=self.last_error)

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        retain: bool = False,
        expiry_s: int | None = None,
        timeout_s: float = 5.0,
        content_type: str | None = None,
    ) -> None:
        """QoS 1 publish that returns once the broker's PUBACK arrives."""
        try:
            await asyncio.wait_for(self.wait_ready(timeout_s), timeout_s)
        except TimeoutError as exc:
            why = f" ({self.last_error})" if self.last_error else ""
            raise RetryableError(f"MQTT broker {self.broker} is not reachable{why}") from exc
        client = self._client
        if client is None:
            raise RetryableError(f"MQTT broker {self.broker} connection was lost")
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)
            if expiry_s is not None:
                props.MessageExpiryInterval = max(1, int(expiry_s))
            if content_type:
                props.ContentType = content_type
        try:
            await client.publish(topic, body, qos=1, retain=retain, properties=props, timeout=timeout_s)
        except aiomqtt.MqttError as exc:
            raise RetryableError(f"MQTT publish to {topic} failed: {exc}") from exc
        except TimeoutError as exc:
            raise RetryableError(f"no PUBACK for {topic} within {timeout_s:g} s") from exc


def _without_password(text: str, broker: Broker) -> str:
    if broker.password and len(broker.password) >= 3:
        text = text.replace(broker.password, "***")
    return text


def mqtt_envelope(payload: Payload, topics: Topics) -> bytes:
    """MQTT 3.1.1 has no headers, so the ids a receiver needs to dedup and ack travel in a JSON envelope."""
    h = payload.headers
    subscriber = h.get("X-Alertd-Subscriber-Id", "")
    return json.dumps(
        {
            "alert_id": h.get("X-Alertd-Alert-Id"),
            "subscriber_id": subscriber,
            "idempotency_key": h.get("Idempotency-Key"),
            "ack_topic": topics.ack(subscriber),
            "content_type": payload.content_type,
            "body": payload.body.decode("utf-8"),
        },
        ensure_ascii=False,
    ).encode("utf-8")


class MqttTransport:
    """Publishes subscriber deliveries, one pooled connection per broker."""

    def __init__(self, topics: Topics, home: Broker | None = None) -> None:
        self.topics = topics
        # The deployment's own broker: endpoints on it get in as the feed does.
        self.home = home
        self._connections: dict[Broker, MqttConnection] = {}

    def connection(self, broker: Broker) -> MqttConnection:
        # One connection per broker *and login*: two receivers with their own
        # accounts on one broker must not publish as each other.
        conn = self._connections.get(broker)
        if conn is None:
            try:
                conn = MqttConnection(broker)
            except ValueError as exc:  # the CA file cannot be used: no retry will help
                raise PermanentError(getattr(exc, "detail", str(exc))) from None
            conn.start()
            self._connections[broker] = conn
        return conn

    async def send(self, endpoint: str, payload: Payload, timeout_s: float, expiry_s: int | None) -> None:
        target = MqttTarget.parse(endpoint, self.home)
        conn = self.connection(target.broker)
        await conn.publish(
            target.topic,
            mqtt_envelope(payload, self.topics),
            expiry_s=expiry_s,
            timeout_s=timeout_s,
            content_type="application/json",
        )

    async def close(self) -> None:
        for conn in self._connections.values():
            await conn.close()
        self._connections.clear()
