"""The JMA PULL poller against a real local HTTP server and a real Redis (db 15, unique key prefix)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from xml.sax.saxutils import escape

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web

from alertd.jma.poller import JmaPoller, PollerConfig, PollerConfigError
from alertd.metrics import REGISTRY
from alertd.models import Alert, MsgType
from alertd.redis_client import connect, key_root

# The same Redis as the rest of the suite (tests/conftest.py), its database 15.
from tests.conftest import JMA_REDIS_URL as REDIS_URL
from tests.jma_samples import EEW, JMAXML, shifted, text

TSUNAMI = ["32-39_11_02_250206_VTSE41.xml", "38-39_02_01_250206_VTSE41.xml"]
UNSUPPORTED = "32-35_09_01_191111_VXSE56.xml"  # 地震の活動状況等に関する情報: explanatory, not relayed

pytestmark = pytest.mark.skipif(not JMAXML.is_dir(), reason="JMA samples not found at ../shared/data/jmaxml")


def _updated(name: str) -> str:
    return text(name).split("<ReportDateTime>", 1)[1].split("</ReportDateTime>", 1)[0]


@dataclass
class FeedServer:
    """Serves Atom feeds built from sample files, counting what the poller asks for."""

    feeds: dict[str, list[str]] = field(default_factory=dict)
    version: int = 1
    feed_requests: list[tuple[str, str | None, int]] = field(
        default_factory=list
    )  # (feed, If-None-Match, status)
    feed_log: list[tuple[str, str, float]] = field(default_factory=list)  # (feed, User-Agent, monotonic time)
    fetches: Counter[str] = field(default_factory=Counter)
    fail_once: set[str] = field(default_factory=set)
    hold_until: int = 0  # entry handlers wait until this many are in flight (concurrency probe)
    in_flight: int = 0
    max_in_flight: int = 0
    bodies: dict[str, bytes] = field(default_factory=dict)  # name → bytes served instead of the sample
    updated: dict[str, str] = field(default_factory=dict)  # name → Atom <updated> instead of ReportDateTime
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)
    requested: asyncio.Event = field(default_factory=asyncio.Event)
    base: str = ""

    def etag(self, feed: str) -> str:
        return f'"{feed}-v{self.version}"'

    def title(self, name: str) -> str:
        data = self.bodies.get(name)
        raw = data.decode("utf-8") if data is not None else text(name)
        return raw.split("<Title>", 1)[1].split("</Title>", 1)[0]

    async def feed(self, request: web.Request) -> web.Response:
        name = request.match_info["feed"]
        self.feed_log.append((name, request.headers.get("User-Agent", ""), time.monotonic()))
        self.requested.set()
        sent = request.headers.get("If-None-Match")
        if sent == self.etag(name):
            self.feed_requests.append((name, sent, 304))
            return web.Response(status=304)
        self.feed_requests.append((name, sent, 200))
        entries = []
        for file in self.feeds.get(name, []):
            entries.append(
                f"<entry><title>{escape(self.title(file))}</title><id>urn:test:{file}</id>"
                f"<updated>{self.updated.get(file) or _updated(file)}</updated>"
                f'<link type="application/xml" href="{self.base}/data/{file}"/></entry>'
            )
        body = (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>{name}</title><id>urn:test:{name}</id><updated>2024-04-17T14:17:00Z</updated>"
            + "".join(reversed(entries))  # JMA lists newest first
            + "</feed>"
        )
        return web.Response(body=body.encode(), content_type="application/atom+xml",
                            headers={"ETag": self.etag(name)})  # fmt: skip

    async def data(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.fetches[name] += 1
        async with self.cond:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.cond.notify_all()
            if self.hold_until:
                # Hold every fetch until the poller has `hold_until` in flight, proving it
                # both reaches and respects its limit. The timeout only unblocks a poller
                # that stays below the limit; the count is what the test asserts.
                try:
                    await asyncio.wait_for(self.cond.wait_for(lambda: self.in_flight >= self.hold_until), 2)
                except TimeoutError:
                    pass
        try:
            if name in self.fail_once:
                self.fail_once.discard(name)
                return web.Response(status=404)
            body = self.bodies.get(name)
            if body is None:
                body = (JMAXML / name).read_bytes()
            return web.Response(body=body, content_type="application/xml")
        finally:
            async with self.cond:
                self.in_flight -= 1

    async def wait_feed_requests(self, n: int, timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.feed_log) < n:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"only {len(self.feed_log)} of {n} feed requests in {timeout}s")
            self.requested.clear()
            try:
                await asyncio.wait_for(self.requested.wait(), remaining)
            except TimeoutError:
                pass


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FeedServer]:
    state = FeedServer()
    app = web.Application()
    app.router.add_get("/feed/{feed}.xml", state.feed)
    app.router.add_get("/data/{name}", state.data)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.base = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


@pytest_asyncio.fixture
async def redis() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    prefix = key_root(f"test-jma-{secrets.token_hex(6)}", REDIS_URL)
    client = connect(REDIS_URL, key_prefix=prefix)
    try:
        await client.ping()
    except Exception as exc:  # any failure means there is no test Redis to use
        await client.aclose()
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    yield client, prefix
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(scope="module")
def registry():
    from geo.registry import Registry

    return Registry.default()


def make_poller(server: FeedServer, redis: tuple[aioredis.Redis, str], registry, sink: list[Alert],
                feeds: tuple[str, ...] = ("eqvol",), **config: object) -> JmaPoller:  # fmt: skip
    client, prefix = redis

    async def on_alert(alert: Alert) -> None:
        sink.append(alert)

    settings = PollerConfig(base_url=f"{server.base}/feed", feeds=feeds, key_prefix=prefix, **config)  # type: ignore[arg-type]
    return JmaPoller(settings, client, on_alert, registry=registry)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_conditional_get_and_each_entry_fetched_once_across_restart(server, redis, registry) -> None:
    server.feeds["eqvol"] = [*EEW, UNSUPPORTED]
    sink: list[Alert] = []
    async with make_poller(server, redis, registry, sink) as poller:
        assert await poller.poll_once() == {"eqvol": "updated"}
        assert await poller.poll_once() == {"eqvol": "not_modified"}
    assert server.feed_requests == [("eqvol", None, 200), ("eqvol", '"eqvol-v1"', 304)]
    assert server.fetches == Counter(EEW)  # the unsupported VXSE56 is skipped by its title
    assert [a.msg_type for a in sink] == [MsgType.ALERT, MsgType.UPDATE, MsgType.CANCEL]
    serial1, serial2, cancel = sink
    assert serial2.references == [serial1.reference_key()]
    # The cancellation references every report of the EventID, at the highest level among them.
    assert cancel.references == [serial1.reference_key(), serial2.reference_key()]
    assert (serial1.level, serial2.level, cancel.level) == (4, 5, 5)
    assert all(a.priority.value == "flash" for a in sink)

    # A restarted poller (new process, same Redis) with a changed feed fetches only the new entry.
    server.version += 1
    server.feeds["eqvol"].append(TSUNAMI[0])
    restarted: list[Alert] = []
    async with make_poller(server, redis, registry, restarted) as poller:
        assert await poller.poll_once() == {"eqvol": "updated"}
    assert server.feed_requests[-1] == ("eqvol", '"eqvol-v1"', 200)
    assert server.fetches == Counter([*EEW, TSUNAMI[0]])
    assert {a.kind for a in restarted} == {"tsunami"}


async def test_serials_published_in_the_same_second_are_told_oldest_first(server, redis, registry) -> None:
    """Finding 3: serial 2 was handed over before serial 1 when both had the same feed time."""
    server.feeds["eqvol"] = EEW[:2]
    server.updated = {EEW[0]: "2024-04-17T14:15:10Z", EEW[1]: "2024-04-17T14:15:10Z"}
    sink: list[Alert] = []
    async with make_poller(server, redis, registry, sink) as poller:
        await poller.poll_once()
    assert [a.infos[0].parameter("JMA_SERIAL") for a in sink] == ["1", "2"]
    assert sink[1].msg_type is MsgType.UPDATE and sink[1].references == [sink[0].reference_key()]


async def test_an_older_serial_after_a_newer_one_is_recorded_not_passed_on(
    server, redis, registry, caplog: pytest.LogCaptureFixture
) -> None:
    server.feeds["eqvol"] = [EEW[1]]
    sink: list[Alert] = []
    stale_before = metric("alertd_jma_ignored_total", source="eqvol", type="VXSE43", reason="stale")
    async with make_poller(server, redis, registry, sink) as poller:
        await poller.poll_once()
        server.version += 1
        server.feeds["eqvol"] = [EEW[0], EEW[1]]  # serial 1 shows up late
        with caplog.at_level(logging.INFO, logger="alertd.jma"):
            await poller.poll_once()
    assert [a.infos[0].parameter("JMA_SERIAL") for a in sink] == ["2"]
    assert metric("alertd_jma_ignored_total", source="eqvol", type="VXSE43", reason="stale") == stale_before + 1
    ignored = [r for r in caplog.records if r.getMessage() == "jma.entry_ignored"]
    assert [r.fields["reason"] for r in ignored] == ["stale"]  # type: ignore[attr-defined]
    assert server.fetches[EEW[0]] == 1  # recorded as seen: not fetched again


async def test_nothing_of_an_event_after_its_cancellation(server, redis, registry) -> None:
    """Finding 4: serial 2 arrived after a 404, behind the 取消; it must never be passed on."""
    server.feeds["eqvol"] = list(EEW)
    server.fail_once = {EEW[1]}
    sink: list[Alert] = []
    async with make_poller(server, redis, registry, sink) as poller:
        await poller.poll_once()
        assert [a.msg_type for a in sink] == [MsgType.ALERT, MsgType.CANCEL]
        assert sink[1].references == [sink[0].reference_key()]
        await poller.poll_once()  # serial 2 is fetched this time
    assert server.fetches[EEW[1]] == 2
    assert [a.msg_type for a in sink] == [MsgType.ALERT, MsgType.CANCEL]


async def test_the_same_telegram_in_other_bytes_is_announced_once(server, redis, registry) -> None:
    """Finding 9: the same telegram with CRLF line endings was announced again."""
    server.bodies["crlf-copy.xml"] = (JMAXML / EEW[0]).read_bytes().replace(b"\n", b"\r\n")
    server.updated["crlf-copy.xml"] = _updated(EEW[0])
    server.feeds["eqvol"] = [EEW[0], "crlf-copy.xml"]
    sink: list[Alert] = []
    before = metric("alertd_jma_ignored_total", source="eqvol", type="VXSE43", reason="duplicate")
    async with make_poller(server, redis, registry, sink) as poller:
        await poller.poll_once()
    assert len(sink) == 1 and server.fetches["crlf-copy.xml"] == 1
    assert metric("alertd_jma_ignored_total", source="eqvol", type="VXSE43", reason="duplicate") == before + 1


async def test_test_telegrams_are_logged_and_counted(server, redis, registry, caplog) -> None:
    """Finding 6: 試験 was dropped with no log line."""
    server.bodies["test.xml"] = shifted(EEW[0], timedelta(0), status="試験")
    server.updated["test.xml"] = _updated(EEW[0])
    server.feeds["eqvol"] = ["test.xml", UNSUPPORTED]
    sink: list[Alert] = []
    before = metric("alertd_jma_ignored_total", source="eqvol", type="VXSE43", reason="test")
    with caplog.at_level(logging.INFO, logger="alertd.jma"):
        async with make_poller(server, redis, registry, sink) as poller:
            await poller.poll_once()
    assert sink == []
    assert metric("alertd_jma_ignored_total", source="eqvol", type="VXSE43", reason="test") == before + 1
    reasons = {r.fields["reason"] for r in caplog.records if r.getMessage() == "jma.entry_ignored"}  # type: ignore[attr-defined]
    assert reasons == {"test", "unsupported"}  # the skipped VXSE56 leaves a line too


async def test_poll_entry_and_ignored_counters_are_separate(server, redis, registry) -> None:
    """Finding 9: alertd_jma_failures_total mixed poll and entry failures."""
    server.feeds["eqvol"] = [EEW[0]]
    server.fail_once = {EEW[0]}
    sink: list[Alert] = []
    poll_before = metric("alertd_jma_poll_failures_total", feed="eqvol")
    entry_before = metric("alertd_jma_entry_failures_total", source="eqvol", reason="fetch")
    async with make_poller(server, redis, registry, sink) as poller:
        started = time.time()
        assert await poller.poll_once() == {"eqvol": "updated"}  # the feed is fine, one entry is not
        assert metric("alertd_jma_entry_failures_total", source="eqvol", reason="fetch") == entry_before + 1
        assert metric("alertd_jma_poll_failures_total", feed="eqvol") == poll_before
        assert metric("alertd_jma_last_success_timestamp_seconds", feed="eqvol") >= int(started)
    client, prefix = redis
    broken = PollerConfig(base_url="http://127.0.0.1:9/feed", feeds=("eqvol",), key_prefix=prefix, timeout_s=2)
    async with JmaPoller(broken, client, lambda a: asyncio.sleep(0), registry=registry) as poller:
        assert await poller.poll_once() == {"eqvol": "error"}
    assert metric("alertd_jma_poll_failures_total", feed="eqvol") == poll_before + 1
    assert metric("alertd_jma_entry_failures_total", source="eqvol", reason="fetch") == entry_before + 1
    assert "alertd_jma_failures_total" not in {m.name + "_total" for m in REGISTRY.collect()}


async def test_at_most_five_fetches_at_once(server, redis, registry) -> None:
    files = sorted(p.name for p in JMAXML.glob("*_VXWW50.xml")) + sorted(
        p.name for p in JMAXML.glob("*_VPNO50.xml")
    )
    assert len(files) > 10
    server.feeds["extra"] = files
    server.hold_until = 5
    sink: list[Alert] = []
    async with make_poller(server, redis, registry, sink, feeds=("extra",)) as poller:
        assert await poller.poll_once() == {"extra": "updated"}
    assert server.max_in_flight == 5
    assert server.fetches == Counter(files)
    assert sink and all(a.origin == "jma" for a in sink)


async def test_failed_fetch_is_retried_even_when_the_feed_is_unchanged(server, redis, registry) -> None:
    server.feeds["eqvol"] = TSUNAMI
    server.fail_once = {TSUNAMI[1]}
    sink: list[Alert] = []
    async with make_poller(server, redis, registry, sink) as poller:
        await poller.poll_once()
        assert server.fetches == Counter({TSUNAMI[0]: 1, TSUNAMI[1]: 1})
        first = len(sink)
        assert await poller.poll_once() == {"eqvol": "not_modified"}
    assert server.fetches == Counter({TSUNAMI[0]: 1, TSUNAMI[1]: 2})
    assert len(sink) > first


async def test_unreachable_feed_is_an_error_outcome(redis, registry) -> None:
    client, prefix = redis
    config = PollerConfig(base_url="http://127.0.0.1:9/feed", feeds=("regular",), key_prefix=prefix,
                          timeout_s=2)  # fmt: skip

    async def on_alert(alert: Alert) -> None:  # pragma: no cover - never called
        raise AssertionError(alert)

    async with JmaPoller(config, client, on_alert, registry=registry) as poller:
        assert await poller.poll_once() == {"regular": "error"}


async def test_one_poller_per_deployment_and_takeover(server, redis, registry) -> None:
    """Finding 8: `alertd serve --workers 3` ran three pollers; feeds were hit three times a minute.

    Two pollers share one Redis: only the lease holder polls. When it stops, the
    other takes over; when a holder dies without a word, its lease lapses and the
    other takes over then. The real run() loop, at a fast interval a local feed allows.
    """
    feeds = ("regular", "extra", "eqvol", "other")
    fast = {"allow_fast_poll": True, "interval_s": 0.2, "lease_ttl_s": 3.0}
    a = make_poller(server, redis, registry, [], feeds=feeds, user_agent="poller-a", **fast)
    b = make_poller(server, redis, registry, [], feeds=feeds, user_agent="poller-b", **fast)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    await server.wait_feed_requests(4)
    task_b = asyncio.create_task(b.run(stop_b))
    await server.wait_feed_requests(len(server.feed_log) + 16)
    assert {agent for _, agent, _ in server.feed_log} == {"poller-a"}
    # Jitter: the four feeds' first polls are spread out, not in the same millisecond.
    firsts = [next(t for f, _, t in server.feed_log if f == feed) for feed in feeds]
    assert len({round(t * 1000) for t in firsts}) == 4

    stop_a.set()  # a clean stop hands the lease over
    await task_a
    handed_over = len(server.feed_log)
    await server.wait_feed_requests(handed_over + 4)
    assert {agent for _, agent, _ in server.feed_log[handed_over:]} == {"poller-b"}

    stop_b.set()
    await task_b
    # A holder that died: its lease stays until it lapses; nobody polls meanwhile.
    client, prefix = redis
    await client.set(f"{prefix}:jma:leader", "dead-process", px=1500)
    c = make_poller(server, redis, registry, [], feeds=feeds, user_agent="poller-c", **fast)
    stop_c = asyncio.Event()
    task_c = asyncio.create_task(c.run(stop_c))
    before = len(server.feed_log)
    await server.wait_feed_requests(before + 4)
    assert {agent for _, agent, _ in server.feed_log[before:]} == {"poller-c"}
    assert await client.get(f"{prefix}:jma:leader") == c.lease.owner.encode()
    stop_c.set()
    await task_c
    assert await client.get(f"{prefix}:jma:leader") is None


def test_interval_floor_and_connection_cap_are_enforced() -> None:
    with pytest.raises(PollerConfigError, match="at least 60"):
        PollerConfig(base_url="http://127.0.0.1/feed", interval_s=59)
    with pytest.raises(PollerConfigError, match="at most 5"):
        PollerConfig(base_url="http://127.0.0.1/feed", max_concurrency=6)
    with pytest.raises(PollerConfigError):
        PollerConfig.from_env(
            {"ALERTD_JMA_FEED_BASE": "http://127.0.0.1/feed", "ALERTD_JMA_INTERVAL_S": "30"}
        )
    assert PollerConfig.from_env({}) is None  # off when unset
    config = PollerConfig.from_env(
        {"ALERTD_JMA_FEED_BASE": "http://127.0.0.1/feed", "ALERTD_JMA_INTERVAL_S": "90"}
    )
    assert (
        config is not None
        and config.interval_s == 90
        and config.feeds == ("regular", "extra", "eqvol", "other")
    )
    assert config.feed_url("eqvol") == "http://127.0.0.1/feed/eqvol.xml"


def test_fast_polling_only_against_a_relay_that_is_not_jma() -> None:
    """Finding 10: a local relay could not be polled faster than every 60 s."""
    relay = {"ALERTD_JMA_FEED_BASE": "http://relay.lgwan.example/feed", "ALERTD_JMA_INTERVAL_S": "5",
             "ALERTD_JMA_ALLOW_FAST_POLL": "1"}  # fmt: skip
    config = PollerConfig.from_env(relay)
    assert config is not None and config.interval_s == 5
    for jma in ("https://www.data.jma.go.jp/developer/xml/feed", "https://JMA.GO.JP/feed"):
        with pytest.raises(PollerConfigError, match="JMA's own server"):
            PollerConfig.from_env({**relay, "ALERTD_JMA_FEED_BASE": jma})
    with pytest.raises(PollerConfigError, match="ALLOW_FAST_POLL"):
        PollerConfig.from_env({**relay, "ALERTD_JMA_ALLOW_FAST_POLL": ""})
    with pytest.raises(PollerConfigError):  # never a busy loop
        PollerConfig.from_env({**relay, "ALERTD_JMA_INTERVAL_S": "0.01"})


def test_backoff_grows_and_never_polls_faster_than_the_interval() -> None:
    config = PollerConfig(base_url="http://127.0.0.1/feed", interval_s=60, backoff_max_s=600)
    assert 60 <= config.next_delay(0, feed="regular") <= 63
    delays = [config.next_delay(n, feed="regular") for n in range(1, 8)]
    assert all(60 < d <= 600 for d in delays)
    assert delays[0] < delays[2] and delays[-1] == 600
    assert 60 <= config.next_delay(0, retry_after=5, feed="regular") <= 63
    assert config.next_delay(0, retry_after=300, feed="regular") == 300


def test_urgent_feeds_back_off_two_minutes_at_most() -> None:
    """Finding 7: after a 2-minute outage eqvol waited up to 15 minutes; a 津波警報 came 250 s late."""
    config = PollerConfig(base_url="http://127.0.0.1/feed")
    for feed in ("eqvol", "extra"):
        assert max(config.next_delay(n, feed=feed) for n in range(1, 20)) <= 120
        assert config.next_delay(1, retry_after=900, feed=feed) <= 120
    assert max(config.next_delay(n, feed="regular") for n in range(1, 20)) > 120


def test_feeds_start_staggered() -> None:
    config = PollerConfig(base_url="http://127.0.0.1/feed")
    offsets = config.start_offsets()
    ordered = [offsets[f] for f in config.feeds]
    assert ordered == sorted(ordered) and len(set(ordered)) == 4
    assert ordered[0] <= config.jitter_s() and ordered[-1] < config.interval_s
