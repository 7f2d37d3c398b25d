"""The one small interface every adapter implements.

Modelled on Alertmanager's notify integrations: an adapter turns an alert
into the bytes one kind of receiver wants (``render``), and the transport
picked by the subscriber's endpoint scheme carries them. What can go wrong
is said with one of two exceptions, so the engine knows whether another
try is worth it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from adapters.signing import SIGNATURE_HEADER, now_ms, sign
from alertd.models import AdapterKind, Alert, Subscriber


@dataclass
class Payload:
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class DeliveryError(Exception):
    """A delivery attempt failed; ``retryable`` says whether to try again."""

    retryable: bool = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RetryableError(DeliveryError):
    """Timeouts, connection refused, 5xx, 429: the receiver may take it later."""

    retryable = True


class PermanentError(DeliveryError):
    """4xx other than 408/429, a bad endpoint: trying again cannot help."""

    retryable = False


class Adapter(ABC):
    """Turns an alert into one receiver kind's payload.

    ``render`` must be pure (same alert and subscriber settings, same
    bytes), so the engine can render once per alert and language set and
    reuse it for every subscriber of the kind; per-subscriber signing is
    done afterwards by ``sign``.
    """

    kind: ClassVar[AdapterKind]
    # Rendering does heavy work (cell broadcast simplifies polygons: tens of ms for one town):
    # the worker runs it in a thread, so the event loop keeps delivering meanwhile.
    render_off_loop: ClassVar[bool] = False

    @abstractmethod
    def render(self, alert: Alert, subscriber: Subscriber) -> Payload: ...

    def render_key(self, alert: Alert, subscriber: Subscriber) -> tuple[object, ...]:
        """What ``render`` depends on besides the alert; equal keys share one render."""
        return (self.kind, tuple(subscriber.languages))

    def sign(self, payload: Payload, subscriber: Subscriber, idempotency_key: str, alert_id: str) -> Payload:
        """Per-subscriber headers for one attempt: every delivery carries its idempotency
        key, and every delivery to a subscriber with a secret is signed afresh."""
        headers = dict(payload.headers)
        headers["Idempotency-Key"] = idempotency_key
        headers["X-Alertd-Alert-Id"] = alert_id
        headers["X-Alertd-Subscriber-Id"] = subscriber.id
        if subscriber.secret:
            headers[SIGNATURE_HEADER] = sign(subscriber.secret, now_ms(), idempotency_key, alert_id, payload.body)
        return Payload(payload.body, payload.content_type, headers)


class DirectAdapter(Adapter):
    """An adapter that carries its own payloads (SMTP, Apprise): the endpoint's scheme is
    the channel's, not one the HTTP or MQTT transport speaks.

    ``deliver`` raises the adapter errors like a transport, and may return one line saying
    what the channel reported (Apprise's word per service, the recipients an SMTP server
    refused); the delivery's record keeps it as ``report``.
    """

    @abstractmethod
    async def deliver(self, payload: Payload, subscriber: Subscriber, timeout_s: float) -> str | None: ...

    async def close(self) -> None:
        """Let go of connections and threads; the worker calls it when it stops."""
