"""Polls JMA's Atom PULL feeds and hands each new telegram to the JMA ingest path.

JMA asks PULL users to poll no more than once a minute, to use conditional
GET and to keep to a few connections; this poller enforces all three in its
configuration (PollerConfig refuses an interval under 60 s or more than 5
concurrent fetches) rather than trusting deployment settings. The one
exception is a local relay or a test: with ``ALERTD_JMA_ALLOW_FAST_POLL=1`` a
shorter interval is accepted against a base URL that is not JMA's.

Exactly one poller runs per deployment, however many alertd processes share
the Redis: ``run()`` holds a Redis lease (lease.py) and polls only while it
holds it. Feeds start staggered and each round gets a little jitter, so they
never fire in the same millisecond. After errors a feed backs off
exponentially, at most 2 minutes for ``eqvol`` and ``extra`` (they carry
EEW, tsunami and special warnings) and 15 minutes for the others.

State lives in Redis so it survives restarts and is shared by every alertd
process (keys under ``<prefix>:jma:``):

- ``seen``            zset  entry id → time handled; an entry in it is never fetched again
- ``claim:<sha1>``    str   short-lived lock so two processes do not fetch the same entry
- ``pending``         hash  entry id → JSON (feed, url, title) of fetches to retry;
                            retried every poll even when the feed answers 304
- ``attempts``        hash  entry id → failed fetch count; given up after max_entry_attempts
- ``feed:<name>``     hash  etag / last_modified validators for conditional GET
- ``leader``          str   the lease: which process polls
- ``identity:<sha>``, ``event:…``, ``incident:…``  the ingest path's (ingest.py, sequence.py)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis

from alertd import logs
from alertd.constants import DEFAULT_PREFIX, Keys
from alertd.errors import AlertdError
from alertd.jma.atom import Entry, parse_feed
from alertd.jma.head import AreaRegistry
from alertd.jma.ingest import Guard, Ingest, OnAlert, Telegram, TelegramSink
from alertd.jma.metrics import ENTRIES, ENTRY_FAILURES, IGNORED, LAST_SUCCESS, POLL_FAILURES, POLLS
from alertd.jma.parse import KNOWN_TITLES, ParseResult, identify, parse_message
from alertd.jma.policy import Policy
from alertd.lease import Lease
from alertd.redis_client import key_root

log = logs.get("alertd.jma")

FEEDS = ("regular", "extra", "eqvol", "other")
MIN_INTERVAL_S = 60.0  # JMA: no more often than once a minute
FAST_POLL_FLOOR_S = 0.1  # even a local relay is not polled in a busy loop
MAX_CONCURRENCY = 5  # JMA: about 5 connections at most
MAX_ENTRY_BYTES = 5_000_000
# Feeds that carry EEW, tsunami and special warnings: a long outage must not
# leave them 15 minutes behind once the link is back.
URGENT_FEEDS = frozenset({"eqvol", "extra"})
URGENT_BACKOFF_MAX_S = 120.0
JMA_HOST = "jma.go.jp"


class PollerConfigError(ValueError):
    pass


def is_jma_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return host == JMA_HOST or host.endswith("." + JMA_HOST)


@dataclass(frozen=True)
class PollerConfig:
    base_url: str
    feeds: tuple[str, ...] = FEEDS
    interval_s: float = MIN_INTERVAL_S
    max_concurrency: int = MAX_CONCURRENCY
    timeout_s: float = 30.0
    backoff_max_s: float = 900.0
    key_prefix: str = DEFAULT_PREFIX
    seen_retention_s: float = 14 * 86400.0  # far longer than any JMA feed keeps an entry
    claim_ttl_s: float = 300.0
    max_entry_attempts: int = 5
    # Titles JMA puts on entries are the messages' Control/Title; an entry
    # whose title names a type alertd does not parse is marked seen unfetched.
    skip_unsupported: bool = True
    user_agent: str = "alertd-jma-poller/0.1"
    # A local relay or a test may be polled faster than JMA allows; never JMA itself.
    allow_fast_poll: bool = False
    lease_ttl_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise PollerConfigError(f"ALERTD_JMA_FEED_BASE must be an http(s) URL, not {self.base_url!r}")
        floor = MIN_INTERVAL_S
        if self.allow_fast_poll:
            if is_jma_host(self.base_url):
                raise PollerConfigError(
                    "ALERTD_JMA_ALLOW_FAST_POLL is for a local relay or a test: it is refused for "
                    f"{self.base_url}, which is JMA's own server (at most one poll a minute)."
                )
            floor = FAST_POLL_FLOOR_S
        if self.interval_s < floor:
            raise PollerConfigError(
                f"The JMA poll interval is {self.interval_s:g} s; JMA allows at most one poll a minute, "
                f"so it must be at least {MIN_INTERVAL_S:g} s"
                + (
                    ""
                    if self.allow_fast_poll
                    else " (a local relay may set ALERTD_JMA_ALLOW_FAST_POLL=1 for a shorter one)."
                )
            )
        if not 1 <= self.max_concurrency <= MAX_CONCURRENCY:
            raise PollerConfigError(
                f"max_concurrency is {self.max_concurrency}; "
                f"JMA asks for at most {MAX_CONCURRENCY} connections."
            )
        if not self.feeds:
            raise PollerConfigError("No JMA feeds to poll.")
        if self.backoff_max_s < self.interval_s:
            raise PollerConfigError("backoff_max_s must not be shorter than the poll interval.")
        if self.lease_ttl_s <= 0:
            raise PollerConfigError("ALERTD_JMA_LEASE_TTL_S must be positive.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PollerConfig | None:
        """The poller's settings, or None when ALERTD_JMA_FEED_BASE is unset (poller off)."""
        env = os.environ if env is None else env
        base = env.get("ALERTD_JMA_FEED_BASE", "").strip()
        if not base:
            return None
        feeds = tuple(f.strip() for f in env.get("ALERTD_JMA_FEEDS", ",".join(FEEDS)).split(",") if f.strip())
        return cls(
            base_url=base,
            feeds=feeds,
            interval_s=float(env.get("ALERTD_JMA_INTERVAL_S") or MIN_INTERVAL_S),
            key_prefix=key_root(env.get("ALERTD_KEY_PREFIX", DEFAULT_PREFIX), env.get("ALERTD_REDIS_URL") or ""),
            allow_fast_poll=env.get("ALERTD_JMA_ALLOW_FAST_POLL", "").strip().lower() in ("1", "true", "yes"),
            lease_ttl_s=float(env.get("ALERTD_JMA_LEASE_TTL_S") or 30.0),
        )

    def feed_url(self, feed: str) -> str:
        return f"{self.base_url.rstrip('/')}/{feed}.xml"

    def backoff_cap(self, feed: str) -> float:
        if feed in URGENT_FEEDS:
            return max(self.interval_s, min(URGENT_BACKOFF_MAX_S, self.backoff_max_s))
        return self.backoff_max_s

    def jitter_s(self) -> float:
        """Up to 5 % of the interval (at most 3 s): enough that feeds drift apart, never faster."""
        return min(0.05 * self.interval_s, 3.0)

    def start_offsets(self) -> dict[str, float]:
        """When each feed is first polled: staggered over part of an interval, plus jitter.

        The first feed listed starts at once (within its jitter); the others
        follow a stagger apart so all feeds never fire in the same millisecond.
        """
        stagger = min(self.interval_s / len(self.feeds), 5.0)
        return {feed: i * stagger + random.uniform(0, self.jitter_s()) for i, feed in enumerate(self.feeds)}

    def next_delay(self, failures: int, retry_after: float | None = None, feed: str = "") -> float:
        """Interval (plus jitter) after a good poll; exponential backoff with jitter after failures."""
        cap = self.backoff_cap(feed)
        if failures <= 0:
            delay = self.interval_s + random.uniform(0, self.jitter_s())
        else:
            delay = min(self.interval_s * 2 ** min(failures, 16), cap)
            # Jitter so several alertd deployments that failed together do not retry in lockstep.
            delay = min(delay * (1 + random.uniform(0, 0.1)), cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, cap))
        return max(delay, self.interval_s)


@dataclass
class _Fetched:
    entry: Entry
    feed: str
    data: bytes | None  # None: failed, to retry


class JmaPoller:
    """Polls the configured feeds; every new telegram goes through the ingest path.

    ``on_alert`` may be called again for the same alert (same sender and
    identifier) if the core failed on an earlier alert of the same telegram
    and the telegram is retried; the core's dedup on (sender, identifier)
    absorbs that. An ``AlertdError`` from it is final (the alert is refused,
    logged, counted); any other exception retries the telegram next poll.
    """

    def __init__(
        self,
        config: PollerConfig,
        redis: aioredis.Redis,
        on_alert: OnAlert,
        *,
        registry: AreaRegistry | None = None,
        policy: Policy | None = None,
        session: aiohttp.ClientSession | None = None,
        ingest: TelegramSink | None = None,
        lease: Lease | None = None,
        keep_bytes: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.config = config
        self.redis = redis
        self._registry = registry
        self.keys = Keys(config.key_prefix)
        # `alertd jma poll --to DIR` writes the fetched bytes on rather than broadcasting (handover.py).
        self._keep_bytes = keep_bytes
        self.ingest: TelegramSink = ingest or Ingest(
            redis,
            self.keys,
            on_alert,
            policy or Policy.default(),
            lambda: self.registry,
            retention_s=config.seen_retention_s,
        )
        self.lease = lease or Lease(redis, self.keys.jma("leader"), ttl_s=config.lease_ttl_s)
        self._session = session
        self._owns_session = session is None
        self._sem = asyncio.Semaphore(config.max_concurrency)
        self._retry_after: dict[str, float] = {}
        self._guard: Guard | None = None

    # --- lifecycle ------------------------------------------------------------------

    @property
    def registry(self) -> AreaRegistry:
        if self._registry is None:
            from geo.registry import Registry  # the full registry loads data; only when first needed

            self._registry = Registry.default()
        return self._registry

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.config.max_concurrency),
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
                headers={"User-Agent": self.config.user_agent},
            )
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> JmaPoller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll every feed until ``stop`` is set — only while this process holds the deployment's lease."""
        stop = stop or asyncio.Event()
        try:
            await self.lease.run_while_held(stop, self.run_feeds)
        finally:
            await self.close()

    async def run_feeds(self, stop: asyncio.Event) -> None:
        """Each feed on its own schedule and backoff, until ``stop``; the caller holds the lease."""
        self._guard = self.lease.held
        offsets = self.config.start_offsets()
        try:
            await asyncio.gather(*(self._run_feed(feed, offsets[feed], stop) for feed in self.config.feeds))
        finally:
            self._guard = None

    async def _run_feed(self, feed: str, offset: float, stop: asyncio.Event) -> None:
        if await _sleep(stop, offset):
            return
        failures = 0
        while not stop.is_set():
            outcome = await self.poll_feed(feed)
            failures = failures + 1 if outcome == "error" else 0
            delay = self.config.next_delay(failures, self._retry_after.pop(feed, None), feed)
            if await _sleep(stop, delay):
                return

    # --- one poll -------------------------------------------------------------------

    async def poll_once(self) -> dict[str, str]:
        """Poll every feed once (concurrently); returns feed → outcome. For tools and tests; no lease."""
        outcomes = await asyncio.gather(*(self.poll_feed(feed) for feed in self.config.feeds))
        return dict(zip(self.config.feeds, outcomes, strict=True))

    async def poll_feed(self, feed: str) -> str:
        """One conditional GET of a feed and its new entries: 'updated', 'not_modified' or 'error'."""
        try:
            outcome = await self._poll_feed(feed)
        except Exception:  # one bad poll must not end the poller; it is counted and retried with backoff
            log.exception("jma.poll_failed", feed=feed)
            outcome = "error"
        POLLS.labels(feed=feed, outcome=outcome).inc()
        if outcome == "error":
            POLL_FAILURES.labels(feed=feed).inc()
        else:
            LAST_SUCCESS.labels(feed=feed).set(time.time())
        return outcome

    async def _poll_feed(self, feed: str) -> str:
        url = self.config.feed_url(feed)
        validators_key = self.keys.jma(f"feed:{feed}")
        validators = await self.redis.hgetall(validators_key)
        headers = {}
        etag = _s(validators.get(b"etag") or validators.get("etag"))
        modified = _s(validators.get(b"last_modified") or validators.get("last_modified"))
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        session = await self._http()
        new_validators: dict[str, str] = {}
        try:
            async with self._sem, session.get(url, headers=headers) as resp:
                if resp.status == 304:
                    outcome, body = "not_modified", b""
                elif resp.status == 200:
                    outcome, body = "updated", await resp.read()
                    new_validators = {
                        k: v
                        for k, v in (
                            ("etag", resp.headers.get("ETag")),
                            ("last_modified", resp.headers.get("Last-Modified")),
                        )
                        if v
                    }
                else:
                    self._note_retry_after(feed, resp.headers.get("Retry-After"))
                    log.warning("jma.feed_http_error", feed=feed, status=resp.status)
                    return "error"
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("jma.feed_unreachable", feed=feed, error=repr(exc))
            return "error"

        entries: list[Entry] = []
        if outcome == "updated":
            try:
                entries = parse_feed(body, url)
            except AlertdError as exc:
                log.warning("jma.feed_unreadable", feed=feed, error=exc.detail)
                return "error"
        complete = await self._handle(feed, entries)
        if outcome == "updated" and complete:
            # Saved only after the entries are handled (or queued in 'pending'):
            # a crash before this point re-reads the feed instead of missing entries.
            pipe = self.redis.pipeline()
            pipe.delete(validators_key)
            if new_validators:
                pipe.hset(validators_key, mapping=new_validators)
            await pipe.execute()
        await self.redis.zremrangebyscore(
            self.keys.jma("seen"), "-inf", time.time() - self.config.seen_retention_s
        )
        return outcome

    def _note_retry_after(self, feed: str, value: str | None) -> None:
        if value and value.strip().isdigit():
            self._retry_after[feed] = float(value.strip())

    async def _handle(self, feed: str, entries: list[Entry]) -> bool:
        """Fetch, parse and ingest new entries. False when the lease was lost midway (leave the rest)."""
        pending = await self._pending(feed)
        known = {e.id for e in entries}
        candidates = entries + [e for e in pending if e.id not in known]
        if not candidates:
            return True
        scores = await self.redis.zmscore(self.keys.jma("seen"), [e.id for e in candidates])
        new = [e for e, score in zip(candidates, scores, strict=True) if score is None]
        fetch: list[Entry] = []
        for entry in new:
            if self.config.skip_unsupported and _unsupported_title(entry.title):
                code = KNOWN_TITLES.get(entry.title, entry.title)
                log.info(
                    "jma.entry_ignored",
                    source=feed,
                    name=entry.url,
                    type=code,
                    title=entry.title,
                    reason="unsupported",
                )
                IGNORED.labels(source=feed, type=code, reason="unsupported").inc()
                await self._mark_seen(feed, entry)
                continue
            if await self._claim(entry):
                fetch.append(entry)
        fetched = await asyncio.gather(*(self._fetch(feed, e) for e in fetch))
        telegrams: list[Telegram] = []
        by_position: dict[int, Entry] = {}
        # Atom lists newest first; arrival order (oldest first) is the tie-break between events.
        for position, item in enumerate(sorted(fetched, key=lambda f: f.entry.updated)):
            if item.data is None:
                ENTRY_FAILURES.labels(source=feed, reason="fetch").inc()
                await self._failed_fetch(feed, item.entry)
                continue
            result = await self._parse(feed, item.entry, item.data)
            if result is None:
                continue
            if self._keep_bytes is not None:
                self._keep_bytes(item.entry.url, item.data)
            telegrams.append(Telegram(feed, item.entry.url, result, position))
            by_position[position] = item.entry
        if not telegrams:
            return True
        try:
            outcomes = await self.ingest.handle(telegrams, guard=self._guard)
        except Exception:
            # The core could not take them (Redis down …): fetch and try again next poll.
            log.exception("jma.on_alert_failed", feed=feed)
            ENTRY_FAILURES.labels(source=feed, reason="core").inc()
            for entry in by_position.values():
                await self._failed_fetch(feed, entry, count=False)
            return False
        complete = True
        for position, outcome in outcomes.items():
            entry = by_position[position]
            if outcome.done:
                await self._mark_seen(feed, entry)
            else:
                complete = False
                await self.redis.delete(self._claim_key(entry))  # the new lease holder fetches it
        return complete

    async def _parse(self, feed: str, entry: Entry, data: bytes) -> ParseResult | None:
        try:
            # lxml work on a 1 MB warning takes long enough to stall other feeds' I/O.
            return await asyncio.to_thread(parse_message, data, self.registry, name=entry.url)
        except AlertdError as exc:
            # Refetching the same bytes cannot help: recorded as seen, counted, logged.
            ENTRY_FAILURES.labels(source=feed, reason="unparsable").inc()
            log.error(
                "jma.entry_unparsable",
                feed=feed,
                url=entry.url,
                error=exc.detail,
            )
            await self._mark_seen(feed, entry)
            return None

    async def _fetch(self, feed: str, entry: Entry) -> _Fetched:
        session = await self._http()
        try:
            async with self._sem, session.get(entry.url) as resp:
                if resp.status != 200:
                    log.warning(
                        "jma.entry_http_error",
                        feed=feed,
                        url=entry.url,
                        status=resp.status,
                    )
                    return _Fetched(entry, feed, None)
                # Read no more than the parser would accept; a bigger body fails
                # parsing as TooLarge instead of filling memory.
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(65536):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_ENTRY_BYTES:
                        break
                return _Fetched(entry, feed, b"".join(chunks))
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "jma.entry_unreachable",
                feed=feed,
                url=entry.url,
                error=repr(exc),
            )
            return _Fetched(entry, feed, None)

    # --- bookkeeping ----------------------------------------------------------------

    def _claim_key(self, entry: Entry) -> str:
        return self.keys.jma("claim:" + hashlib.sha1(entry.id.encode()).hexdigest())

    async def _claim(self, entry: Entry) -> bool:
        return bool(
            await self.redis.set(self._claim_key(entry), "1", nx=True, ex=int(self.config.claim_ttl_s))
        )

    async def _mark_seen(self, feed: str, entry: Entry) -> None:
        pipe = self.redis.pipeline()
        pipe.zadd(self.keys.jma("seen"), {entry.id: time.time()})
        pipe.hdel(self.keys.jma("pending"), entry.id)
        pipe.hdel(self.keys.jma("attempts"), entry.id)
        pipe.delete(self._claim_key(entry))
        await pipe.execute()
        ENTRIES.labels(feed=feed).inc()

    async def _failed_fetch(self, feed: str, entry: Entry, *, count: bool = True) -> None:
        """Queue the entry for the next poll; ``count``: a failed fetch, which is given up after a few.

        A telegram the core could not take is not counted: giving up on a
        warning because Redis was down for five minutes would lose it.
        """
        attempts = await self.redis.hincrby(self.keys.jma("attempts"), entry.id, 1) if count else 0
        if attempts >= self.config.max_entry_attempts:
            ENTRY_FAILURES.labels(source=feed, reason="given_up").inc()
            log.error("jma.entry_given_up", feed=feed, url=entry.url, attempts=attempts)
            await self._mark_seen(feed, entry)
            return
        pipe = self.redis.pipeline()
        pipe.hset(
            self.keys.jma("pending"),
            entry.id,
            json.dumps({"feed": feed, "url": entry.url, "title": entry.title, "updated": entry.updated}),
        )
        pipe.delete(self._claim_key(entry))
        await pipe.execute()

    async def _pending(self, feed: str) -> list[Entry]:
        raw = await self.redis.hgetall(self.keys.jma("pending"))
        out = []
        for entry_id, value in raw.items():
            data = json.loads(value)
            if data.get("feed") == feed:
                out.append(
                    Entry(
                        id=_s(entry_id) or "",
                        title=data.get("title", ""),
                        url=data["url"],
                        updated=data.get("updated", ""),
                    )
                )
        return out


async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop``; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return stop.is_set()
    return True


def _s(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _unsupported_title(title: str) -> bool:
    """Only titles known to be unsupported are skipped; anything unfamiliar is fetched and reported."""
    return title in KNOWN_TITLES and identify(title)[1] is None


def build_poller(
    redis: aioredis.Redis,
    on_alert: OnAlert,
    *,
    registry: AreaRegistry | None = None,
    env: Mapping[str, str] | None = None,
) -> JmaPoller | None:
    """The poller the environment asks for (None when ALERTD_JMA_FEED_BASE is unset)."""
    config = PollerConfig.from_env(env)
    if config is None:
        return None
    return JmaPoller(config, redis, on_alert, registry=registry, policy=Policy.from_env(env))
