"""Signed deliveries: what a receiver checks to know a request came from alertd, unchanged.

Every HTTP delivery to a subscriber with a ``secret`` carries

    X-Alertd-Signature: t=<unix time in ms>,v1=<hex HMAC-SHA256>

where the HMAC is taken with the secret over the bytes

    <t> "." <Idempotency-Key> "." <X-Alertd-Alert-Id> "." <body>

so the timestamp, the key a receiver deduplicates on and the alert id are
covered with the body: none can be swapped without breaking the signature.
Each attempt is signed afresh (a retry has a new ``t``), so a receiver that
refuses replays never refuses alertd's own retry. ``v1`` names the scheme; a
later scheme would add ``v2=`` beside it, and receivers check the one they know.

``verify`` is the reference check a receiver runs (README, "For receivers").
"""

from __future__ import annotations

import hmac
import time

SIGNATURE_HEADER = "X-Alertd-Signature"


def signed_bytes(t_ms: int, idempotency_key: str, alert_id: str, body: bytes) -> bytes:
    return f"{t_ms}.{idempotency_key}.{alert_id}.".encode() + body


def sign(secret: str, t_ms: int, idempotency_key: str, alert_id: str, body: bytes) -> str:
    mac = hmac.digest(secret.encode("utf-8"), signed_bytes(t_ms, idempotency_key, alert_id, body), "sha256")
    return f"t={t_ms},v1={mac.hex()}"


def now_ms() -> int:
    return int(time.time() * 1000)


def verify(
    secret: str, header: str, idempotency_key: str, alert_id: str, body: bytes, *, max_age_s: float = 300
) -> bool:
    """True when ``header`` is alertd's signature of this request, made within ``max_age_s``."""
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    try:
        t_ms = int(fields["t"])
        received = fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs(time.time() * 1000 - t_ms) > max_age_s * 1000:
        return False
    expected = sign(secret, t_ms, idempotency_key, alert_id, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, received)
