"""The public face: reads anyone may make, kept from starving the desk and the workers.

The same process (and event loop) that accepts desk orders also delivers
flash warnings, so anonymous reads get three guards:

- **A concurrency gate.** At most ``concurrency`` public requests are worked on
  at once and ``backlog`` more may wait; beyond that the answer is an
  immediate 503 with Retry-After, which costs nothing.
- **Cached answers.** Every public answer is cached with a strong ETag until
  any alert changes (a version counter in Redis, bumped in the same
  transaction as the change). A flood of the same read costs one Redis GET
  each, and ``If-None-Match`` gets a 304.
- **Bounded pages.** Lists are at most ``MAX_PAGE`` long; a ``Link`` header
  names the next page.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from aiohttp import web

from alertd.errors import ServiceUnavailable
from alertd.limits import DEFAULT_PAGE, MAX_PAGE  # noqa: F401  (named in the docstring; the schemas use them)
from alertd.metrics import PUBLIC_SHED


@dataclass(frozen=True)
class CachedView:
    version: int
    etag: str
    body: bytes
    content_type: str
    charset: str | None
    headers: tuple[tuple[str, str], ...] = ()


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match may list several tags, weak or not, or '*' (RFC 9110 §13.1.2)."""
    tags = {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}
    return etag in tags or "*" in tags


class PublicGate:
    """Bounded concurrency with load shedding for anonymous reads."""

    def __init__(self, concurrency: int = 8, backlog: int = 64) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._backlog = backlog
        self._waiting = 0

    async def run(self, work: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if self._slots.locked() and self._waiting >= self._backlog:
            PUBLIC_SHED.inc()
            raise ServiceUnavailable(
                "alertd is answering many public requests right now; try again in a second.", retry_after_s=1
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await work()
        finally:
            self._slots.release()


class ViewCache:
    """Public answers by request (path and query), valid while the views version stands."""

    def __init__(self, size: int = 512) -> None:
        self._views: OrderedDict[str, CachedView] = OrderedDict()
        self._size = size

    def get(self, key: str, version: int) -> CachedView | None:
        view = self._views.get(key)
        if view is None or view.version != version:
            return None
        self._views.move_to_end(key)
        return view

    def put(self, key: str, view: CachedView) -> None:
        self._views[key] = view
        self._views.move_to_end(key)
        while len(self._views) > self._size:
            self._views.popitem(last=False)


def not_modified_since(request: web.Request, last_modified: str | None) -> bool:
    """If-Modified-Since, heard only when there is no If-None-Match (RFC 9110 §13.1.3)."""
    since = request.headers.get("If-Modified-Since")
    if not since or not last_modified or "If-None-Match" in request.headers:
        return False
    try:
        modified = parsedate_to_datetime(last_modified)
        # A date has whole seconds: a change still in this second could follow unseen,
        # so a resource modified within the last second is never "not modified".
        if modified.timestamp() >= time.time() - 1:
            return False
        return modified <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


def respond(request: web.Request, view: CachedView) -> web.Response:
    headers = {"ETag": view.etag, "Cache-Control": "no-cache", **dict(view.headers)}
    if etag_matches(request.headers.get("If-None-Match", ""), view.etag) or not_modified_since(
        request, headers.get("Last-Modified")
    ):
        return web.Response(status=304, headers=headers)
    return web.Response(body=view.body, content_type=view.content_type, charset=view.charset, headers=headers)
