"""The MQTT feed: every alert on per-municipality topics, plus receivers' confirmations.

Topics (QoS 1):
  alerts/v1/<pref 2 digits>/<municipality 5 digits>        the alert as CAP 1.2 XML;
                                                            MQTT 5 message expiry = alert expiry
  alerts/v1/<pref>/<municipality>/state                     retained JSON: what is in force now
  alerts/v1/ack/<subscriber id>                             receivers publish confirmations here

Publishing the feed is itself a tracked delivery job (subscriber ``_feed``),
so it is as durable as any other delivery and survives a crash the same way.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiomqtt

from alertd import logs
from alertd.constants import ACK_TOPIC_FILTER, FEED_TOPIC, STATE_TOPIC
from alertd.limits import ACK_MAX_BYTES
from alertd.metrics import DELIVERIES, FEED_PUBLISHED
from alertd.models import Alert, MsgType, format_cap_time

if TYPE_CHECKING:
    from adapters.transport import MqttConnection
    from alertd.store import Store
    from geo.registry import Registry

log = logs.get("alertd.feed")

FEED_SUBSCRIBER = "_feed"


def broker_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"ALERTD_MQTT_URL must look like mqtt://host:port, not {url!r}")
    return parts.hostname, parts.port or 1883


class Feed:
    def __init__(self, mqtt_url: str, registry: Registry, store: Store, consumer: str) -> None:
        from adapters.transport import MqttConnection

        host, port = broker_address(mqtt_url)
        self.registry = registry
        self.store = store
        # The ack listener keeps a persistent session so acks sent while this
        # process restarts are still delivered to it.
        self.conn: MqttConnection = MqttConnection(
            host, port, client_id=f"alertd-{store.keys.prefix}-{consumer}", subscriptions=(ACK_TOPIC_FILTER,),
            on_message=self._on_ack, share_group=f"{store.keys.prefix}-acks",
        )  # fmt: skip

    async def start(self) -> None:
        await self.conn.wait_ready(timeout=15)

    @property
    def connected(self) -> bool:
        return self.conn.connected

    @property
    def broker(self) -> str:
        return f"{self.conn.host}:{self.conn.port}"

    async def close(self) -> None:
        await self.conn.close()

    def municipalities(self, alert: Alert) -> list[str]:
        """The municipality topics an alert goes to; a prefecture-wide alert goes to each of its towns."""
        out: dict[str, None] = {}
        for code in alert.districts:
            district = self.registry.find(code)
            if district is None or district.level == "tsunami":
                continue
            if district.level == "prefecture":
                for child in self.registry.children(code):
                    if child.level in ("municipality", "ward"):
                        out[child.code] = None
                continue
            muni = self.registry.municipality_of(code)
            if muni:
                out[muni] = None
        return list(out)

    def state_message(self, alert: Alert, municipality: str) -> dict[str, Any]:
        in_force = alert.msg_type is not MsgType.CANCEL and alert.action != "lift"
        return {
            "municipality": municipality,
            "alert_id": alert.id,
            "status": alert.status.value,
            "msg_type": alert.msg_type.value,
            "kind": alert.kind,
            "level": alert.level if in_force else None,
            "action": alert.action,
            "in_force": in_force,
            "districts": [
                d for d in alert.districts if d == municipality or d.startswith(municipality + ":")
            ],
            "expires": format_cap_time(alert.expires) if alert.expires else None,
            "updated": format_cap_time(alert.accepted_at or alert.sent),
        }

    async def publish(self, alert: Alert) -> None:
        from alertd.cap import to_cap

        body = to_cap(alert)
        expiry = int(alert.expires.timestamp() - time.time()) if alert.expires else None

        async def one(muni: str) -> None:
            pref = muni[:2]
            try:
                await self.conn.publish(
                    FEED_TOPIC.format(pref=pref, muni=muni), body, expiry_s=expiry,
                    content_type="application/cap+xml",
                )  # fmt: skip
                state = json.dumps(self.state_message(alert, muni), ensure_ascii=False).encode()
                await self.conn.publish(
                    STATE_TOPIC.format(pref=pref, muni=muni), state, retain=True, expiry_s=expiry
                )
            except Exception:
                FEED_PUBLISHED.labels(outcome="failed").inc()
                raise
            FEED_PUBLISHED.labels(outcome="published").inc()

        # Concurrently: each publish waits for its PUBACK, and the client keeps many in flight.
        results = await asyncio.gather(*(one(m) for m in self.municipalities(alert)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    async def _on_ack(self, message: aiomqtt.Message) -> None:
        subscriber_id = str(message.topic).rsplit("/", 1)[-1]
        payload = bytes(message.payload)  # type: ignore[arg-type]
        if len(payload) > ACK_MAX_BYTES:  # an ack is a few dozen bytes: never parse a flood
            log.warning("ack.too_large", subscriber_id=subscriber_id, bytes=len(payload))
            return
        try:
            data = json.loads(payload)
            alert_id = str(data["alert_id"])
            key = str(data["idempotency_key"])
        except (ValueError, KeyError, TypeError, RecursionError):
            log.warning("ack.malformed", subscriber_id=subscriber_id)
            return
        ok = await self.store.confirm(alert_id, subscriber_id, key, f"{time.time():.3f}")
        if ok:
            sub = await self.store.get_subscriber(subscriber_id)
            DELIVERIES.labels(adapter=sub.adapter.value if sub else "unknown", outcome="confirmed").inc()
            log.info("delivery.confirmed", alert_id=alert_id, subscriber_id=subscriber_id, via="mqtt")
        elif ok is False:
            log.debug("ack.repeat", alert_id=alert_id, subscriber_id=subscriber_id)
        else:
            log.warning("ack.rejected", alert_id=alert_id, subscriber_id=subscriber_id)
