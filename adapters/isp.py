"""ISPs and portals: a JSON webhook signed with HMAC-SHA256 over timestamp and body.

Headers (documented in the README):
  X-Alertd-Timestamp: unix seconds when this attempt was sent
  X-Alertd-Signature: "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body))
  Idempotency-Key:    the same for every attempt and path of one alert to one subscriber

A portal recomputes the signature and rejects a timestamp older than a few
minutes, which stops a captured request from being replayed later.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any, ClassVar

from adapters.base import Adapter, Payload
from alertd.models import AdapterKind, Alert, Subscriber, format_cap_time

SIGNATURE_HEADER = "X-Alertd-Signature"
TIMESTAMP_HEADER = "X-Alertd-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.digest(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, "sha256")
    return "sha256=" + mac.hex()


def verify(secret: str, timestamp: str, body: bytes, received: str, *, max_age_s: float = 300) -> bool:
    """What a receiving portal does; alertd's own demo receivers use it too."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= max_age_s and hmac.compare_digest(signature(secret, timestamp, body), received)


def alert_json(alert: Alert, languages: list[str]) -> dict[str, Any]:
    """The project's JSON view of an alert: what a portal needs to show it."""
    from alertd import messages

    langs = list(dict.fromkeys(["ja", "en", *languages]))
    return {
        "id": alert.id,
        "identifier": alert.identifier,
        "sender": alert.sender,
        "sent": format_cap_time(alert.sent),
        "status": alert.status.value,
        "msg_type": alert.msg_type.value,
        "references": alert.referenced_ids,
        "kind": alert.kind,
        "event": alert.event,
        "level": alert.level,
        "action": alert.action,
        "reason": alert.reason,
        "priority": alert.priority.value,
        "municipality": alert.municipality,
        "on_behalf_of": alert.on_behalf_of,
        "districts": alert.districts,
        "expires": format_cap_time(alert.expires) if alert.expires else None,
        "text": {
            lang: {"headline": messages.headline(alert, lang), "body": messages.body(alert, lang)}
            for lang in langs
        },
        "shelters": [s.__dict__ for s in alert.shelters],
    }


class IspAdapter(Adapter):
    kind: ClassVar[AdapterKind] = AdapterKind.ISP

    def render(self, alert: Alert, subscriber: Subscriber) -> Payload:
        body = json.dumps(alert_json(alert, subscriber.languages), ensure_ascii=False).encode("utf-8")
        return Payload(body, "application/json; charset=utf-8")

    def sign(self, payload: Payload, subscriber: Subscriber, idempotency_key: str, alert_id: str) -> Payload:
        signed = super().sign(payload, subscriber, idempotency_key, alert_id)
        if subscriber.secret:
            ts = str(int(time.time()))
            signed.headers[TIMESTAMP_HEADER] = ts
            signed.headers[SIGNATURE_HEADER] = signature(subscriber.secret, ts, payload.body)
        return signed
