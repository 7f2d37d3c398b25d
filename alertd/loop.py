"""The event loop alertd runs on: uvloop where it is installed, asyncio's own otherwise.

uvloop (libuv) roughly halves the per-request cost of aiohttp and redis
clients, which is most of a fan-out's CPU; it is an optional speed-up, not a
requirement, so alertd still runs where it cannot be installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
