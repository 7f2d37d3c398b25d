"""The event loop alertd runs on: uvloop where it is installed, asyncio's own otherwise.

uvloop (libuv) roughly halves the per-request cost of aiohttp and redis
clients, which is most of a fan-out's CPU; it is an optional speed-up, not a
requirement, so alertd still runs where it cannot be installed.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    # A fan-out allocates thousands of short-lived futures and requests; the
    # default generation-0 threshold (700) ran the cyclic collector hundreds of
    # times per fan-out. Long-lived startup objects are frozen out of its scans.
    gc.set_threshold(50_000, 20, 20)
    gc.freeze()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def settle_heap() -> None:
    """Call once a process has started (its registry, geometry and configuration loaded):
    those objects live as long as the process, and a full collection scanned them all.
    Measured in the bench's storm: 260–310 ms with the loop stopped, the time a flash alert
    arriving then waited. Frozen, the collector never scans them again; garbage is
    collected first, or it would be kept for good. What is frozen is still freed when its
    last reference goes; only a cycle among frozen objects that later becomes garbage (a
    replaced index, say) is kept: a one-off of what the start made, not a growth.
    Called by Engine.start, before it reads the lanes (Engine(settle_heap=True))."""
    gc.collect()
    gc.freeze()


def name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
