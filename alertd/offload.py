"""Work that must not run on the event loop: geocoding shapes, resolving many names.

The event loop that accepts desk orders also delivers flash warnings, so
CPU-heavy steps of one request run here instead. Two threads: shapely and
numpy release the GIL for the heavy part, and a queue of hostile requests
waits its turn here rather than in the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alertd-geo")


async def run_blocking(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(_POOL, call)
