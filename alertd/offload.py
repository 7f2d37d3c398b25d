"""Work that must not run on the event loop: geocoding shapes, resolving many names,
building large reports.

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
# Reports for people (an alert's delivery rows, for the API and the console's live board):
# a thread of their own, so a few open consoles never queue ahead of a flash alert's
# cell-broadcast polygons or a desk order's geocoding in the pool above.
_REPORTS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alertd-reports")


async def run_blocking(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    return await _run(_POOL, fn, *args, **kwargs)


async def run_report(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``run_blocking`` for reading work that builds what people are shown."""
    return await _run(_REPORTS, fn, *args, **kwargs)


async def _run(pool: ThreadPoolExecutor, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(pool, call)
