"""ISPs and portals: the JSON alert as a webhook.

Like every HTTP delivery to a subscriber with a secret it is signed
(adapters/signing.py, whose ``verify`` this module re-exports as the check a
portal runs): ``X-Alertd-Signature: t=<ms>,v1=<HMAC-SHA256>`` over the
timestamp, the Idempotency-Key, the alert id and the body.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from adapters.base import Adapter, Payload
from adapters.signing import SIGNATURE_HEADER, verify
from alertd.models import AdapterKind, Alert, Subscriber, format_cap_time

__all__ = ["SIGNATURE_HEADER", "IspAdapter", "alert_json", "verify"]


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
