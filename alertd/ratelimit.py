"""Cheap refusals for clients that flood: before a body is read or Redis is asked.

Two limits, both per process and in memory (like the circuit breaker, so
alertd stays stateless), both answered with 429 and Retry-After:

- **Refusals per caller on the desk side.** A desk that sends a bad order gets
  a clear 4xx and fixes it; a caller that collects 20 refusals in 10 seconds
  is a broken script or an attack, and is refused at the door for the next 10
  seconds. Accepted orders never count, so a busy desk is never slowed down.
- **Requests per address on the public side.** A token bucket per client
  address (20 a second, bursts of 100): far above any feed reader or portal,
  far below a flood.

A caller is its token (hashed) when it sends one, else its address.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass


def caller_key(authorization: str, remote: str | None) -> str:
    if authorization.startswith("Bearer ") and authorization[7:].strip():
        return "t:" + hashlib.sha256(authorization[7:].strip().encode()).hexdigest()[:32]
    return f"a:{remote or '-'}"


@dataclass
class _Refusals:
    window_start: float
    count: int = 0
    blocked_until: float = 0.0


class RefusalLimiter:
    def __init__(self, threshold: int = 20, window_s: float = 10.0, cooldown_s: float = 10.0) -> None:
        self.threshold = threshold
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self._callers: OrderedDict[str, _Refusals] = OrderedDict()

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds this caller must wait, 0 if it may be heard."""
        entry = self._callers.get(key)
        if entry is None:
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, entry.blocked_until - now)

    def refused(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        entry = self._callers.get(key)
        if entry is None or now - entry.window_start > self.window_s:
            entry = _Refusals(window_start=now, blocked_until=entry.blocked_until if entry else 0.0)
            self._callers[key] = entry
        self._callers.move_to_end(key)
        entry.count += 1
        if entry.count >= self.threshold:
            entry.blocked_until = now + self.cooldown_s
        while len(self._callers) > 10_000:
            self._callers.popitem(last=False)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    def __init__(self, rate_per_s: float = 20.0, burst: float = 100.0) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """0 if a request may go now (and counts it), else seconds until one may."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        self._buckets.move_to_end(key)
        while len(self._buckets) > 10_000:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate
