"""Retry timing: exponential backoff with full jitter (AWS architecture blog's variant).

Full jitter spreads the retries of a thousand receivers that failed together,
so a recovering endpoint is not hit by all of them in the same instant.
"""

from __future__ import annotations

import random


def backoff(
    attempt: int, base_s: float = 0.5, max_s: float = 60.0, rng: random.Random | None = None
) -> float:
    """Delay before attempt ``attempt + 1`` (attempt counts from 1)."""
    ceiling = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(base_s / 2, ceiling)
