"""Per-subscriber circuit breaker: a dead endpoint stops costing timeouts.

After ``threshold`` consecutive failures the circuit opens: deliveries to that
subscriber are parked (not failed) until ``cooldown_s`` passes, then a
single probe is let through. Success closes the circuit; failure re-opens it.
State is per process — each alertd process learns about a dead endpoint by
itself within ``threshold`` attempts, which keeps the processes stateless.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from alertd.metrics import CIRCUIT_OPEN, CIRCUITS_OPEN, circuit_closed


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    last_error: str | None = None
    adapter: str = "unknown"


class CircuitBreaker:
    def __init__(self, threshold: int = 5, cooldown_s: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._circuits: dict[str, _Circuit] = {}

    def wait_time(self, key: str, now: float | None = None) -> float:
        """0 if a delivery may go now, else seconds until it may."""
        c = self._circuits.get(key)
        if c is None or c.opened_at is None:
            return 0.0
        now = time.monotonic() if now is None else now
        remaining = c.opened_at + self.cooldown_s - now
        if remaining > 0:
            return remaining
        if c.probing:
            return min(self.cooldown_s, 1.0)
        c.probing = True  # half-open: this caller is the probe
        return 0.0

    def success(self, key: str) -> None:
        self._closed(key, self._circuits.pop(key, None))

    def failure(self, key: str, error: str | None = None, adapter: str | None = None) -> None:
        c = self._circuits.setdefault(key, _Circuit())
        c.failures += 1
        c.last_error = error or c.last_error
        c.adapter = adapter or c.adapter
        c.probing = False
        if c.failures >= self.threshold:
            if c.opened_at is None:  # counted once per opening, not per failed probe
                CIRCUITS_OPEN.labels(adapter=c.adapter).inc()
                CIRCUIT_OPEN.labels(subscriber=key, adapter=c.adapter).set(1)
            c.opened_at = time.monotonic()

    @staticmethod
    def _closed(key: str, c: _Circuit | None) -> None:
        """A circuit that was open no longer is: one fewer in the count, and its series goes
        (a per-subscriber series left at 0 or 1 forever is what issue 17 found)."""
        if c is not None and c.opened_at is not None:
            CIRCUITS_OPEN.labels(adapter=c.adapter).dec()
            circuit_closed(key, c.adapter)

    def is_open(self, key: str) -> bool:
        c = self._circuits.get(key)
        return c is not None and c.opened_at is not None

    def why_open(self, key: str) -> str | None:
        c = self._circuits.get(key)
        if c is None or c.opened_at is None:
            return None
        return f"not sent yet: the receiver failed {c.failures} times in a row (last: {c.last_error or 'unknown'})"

    def clear(self) -> None:
        """This process stops delivering: its circuits no longer count as open."""
        for key in list(self._circuits):
            self.forget(key)

    def forget(self, key: str) -> None:
        """A removed subscriber: no circuit, and no gauge saying one is open."""
        self._closed(key, self._circuits.pop(key, None))
