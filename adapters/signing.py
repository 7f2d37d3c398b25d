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

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Alertd-Signature"
_BLOCK = 64  # SHA-256's block size, which the padded key fills (RFC 2104)
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_KEYS_KEPT = 20_000  # subscribers' secrets whose pads are kept


class HmacKey:
    """HMAC-SHA256 under one key, with the key's two padded blocks hashed once: the same
    digest as ``hmac.digest`` (RFC 2104), in a third of its time for a short message
    (~1 µs against ~3 µs; OpenSSL 3 sets the MAC up afresh on each one-shot call). Each
    delivery takes two: its idempotency key and its signature."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_keys: dict[str, HmacKey] = {}


def _key(secret: str) -> HmacKey:
    key = _keys.get(secret)
    if key is None:
        if len(_keys) >= _KEYS_KEPT:
            _keys.clear()
        key = _keys[secret] = HmacKey(secret.encode("utf-8"))
    return key


def signed_bytes(t_ms: int, idempotency_key: str, alert_id: str, body: bytes) -> bytes:
    return f"{t_ms}.{idempotency_key}.{alert_id}.".encode() + body


def sign(secret: str, t_ms: int, idempotency_key: str, alert_id: str, body: bytes) -> str:
    mac = _key(secret).digest(signed_bytes(t_ms, idempotency_key, alert_id, body))
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
    # The reference check computes with the standard library's HMAC, as a receiver would.
    expected = hmac.digest(secret.encode("utf-8"), signed_bytes(t_ms, idempotency_key, alert_id, body), "sha256").hex()
    return hmac.compare_digest(expected, received)
