"""Shared fixtures: a real Redis and a real Mosquitto on 127.0.0.1, real HTTP sockets.

Each engine gets its own Redis key prefix, so tests never see each other's
data even on a developer's shared Redis, and the prefix is wiped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web

from alertd.api import make_app
from alertd.broker import Broker
from alertd.config import Settings
from alertd.constants import Topics
from alertd.engine import Engine
from alertd.feed import clear_retained
from alertd.jma.spool import SpoolConfig, SpoolWatcher
from alertd.models import TERMINAL_STATES, Alert
from alertd.redis_client import connect, is_cluster, key_root
from alertd.store import remove_prefix
from simulations.faults import ClusterGroup
from tests.servers import Hangup
from tests.support import free_port, until

REDIS_URL = os.environ.get("ALERTD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MQTT_HOST = os.environ.get("ALERTD_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("ALERTD_TEST_MQTT_PORT", "1883"))
MQTT_URL = f"mqtt://{MQTT_HOST}:{MQTT_PORT}"
ADMIN_TOKEN = "test-admin-token-0123456789"
FINAL_STATES = {state.value for state in TERMINAL_STATES}


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _services() -> Iterator[None]:
    # The first server named (ALERTD_TEST_REDIS_URL may name a cluster's nodes, comma-separated).
    redis_host, redis_port = REDIS_URL.split("//")[1].split("/")[0].split("@")[-1].split(",")[0].split(":")
    missing = []
    if not _reachable(redis_host, int(redis_port)):
        missing.append(f"Redis at {redis_host}:{redis_port}")
    if not _reachable(MQTT_HOST, MQTT_PORT):
        missing.append(f"Mosquitto at {MQTT_HOST}:{MQTT_PORT}")
    if missing:
        # A hard failure, not a skip: a suite that silently skips its integration
        # tests would pass while testing nothing. `make test` starts both.
        pytest.fail(f"{' and '.join(missing)} not reachable; run `make test` (tests/services.sh starts them)")
    yield
    # The broker keeps retained "what is in force" states for ever: without this, every
    # run of the suite would leave thousands more on a developer's (or CI's) Mosquitto.
    if TOPIC_ROOTS:
        asyncio.run(clear_retained(Broker.parse(MQTT_URL), TOPIC_ROOTS))


# ALERTD_TEST_LANE_SHARDS=3 runs the whole suite with the delivery work split over three
# lane shards (alertd/shards.py), as on a cluster; 1 (alertd's default) unless set.
LANE_SHARDS = int(os.environ.get("ALERTD_TEST_LANE_SHARDS") or 1)


async def wipe(prefix: str) -> None:
    await remove_prefix(REDIS_URL, prefix, LANE_SHARDS)


# The JMA ingest tests keep to database 15 of a single server, apart from the engines'
# keys; a cluster has only database 0.
JMA_REDIS_URL = REDIS_URL if is_cluster(REDIS_URL) else REDIS_URL.rsplit("/", 1)[0] + "/15"


def keyed_prefix(name: str) -> str:
    """A key prefix as the engine would use it on the test Redis: hash-tagged ``{name}`` when
    ALERTD_TEST_REDIS_URL names a cluster, so a test's own keys share one slot as alertd's do."""
    return key_root(name, REDIS_URL)


def redis_for(prefix: str) -> aioredis.Redis:
    """A client to the test Redis as the engine connects: on a cluster, to the master of the
    prefix's slot (the suite runs unchanged with ALERTD_TEST_REDIS_URL=redis+cluster://…)."""
    return connect(REDIS_URL, key_prefix=prefix)


# The first topic level of every engine this run made: their retained states are
# cleared when the run ends, and nobody else's (a suite running beside this one).
TOPIC_ROOTS: set[str] = set()


def make_settings(**overrides: Any) -> Settings:
    topic_root = f"alertd-test-{secrets.token_hex(4)}"
    TOPIC_ROOTS.add(topic_root)
    s = Settings(
        redis_url=REDIS_URL,
        mqtt_url=MQTT_URL,
        admin_token=ADMIN_TOKEN,
        key_prefix=f"alertd-test-{secrets.token_hex(4)}",
        # Its own MQTT topics too: retained states of other tests (or of a suite running
        # beside this one on the same broker) are never in the way.
        topic_prefix=f"{topic_root}/alerts/v1",
        claim_idle_s=3.0,
        retry_base_s=0.1,
        retry_max_s=1.0,
        breaker_cooldown_s=2.0,
        lane_shards=LANE_SHARDS,
    )
    for k, v in overrides.items():
        setattr(s, k, v)
    return s


@dataclass
class RunningEngine:
    engine: Engine
    url: str
    http: aiohttp.ClientSession
    runner: web.AppRunner

    @property
    def topics(self) -> Topics:
        return Topics(self.engine.settings.topic_prefix)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def add_issuer(
        self, issuer_id: str, jurisdiction: list[str], token: str | None = None, **extra: Any
    ) -> str:
        token = token or f"token-{issuer_id}-{secrets.token_hex(8)}"
        body = {"id": issuer_id, "name": f"{issuer_id} desk", "token": token, "jurisdiction": jurisdiction,
                **extra}  # fmt: skip
        async with self.http.post(f"{self.url}/api/v1/issuers", json=body, headers=self.admin) as resp:
            assert resp.status == 201, await resp.text()
        return token

    async def add_subscriber(self, **body: Any) -> dict[str, Any]:
        # The suite sends Exercise (訓練), so nothing it does could look real, and an Exercise
        # reaches only receivers that take drills: the suite's receivers take them unless a test
        # says otherwise (drills=False: a live receiver that must never hear a drill).
        body.setdefault("drills", True)
        async with self.http.post(f"{self.url}/api/v1/subscribers", json=body, headers=self.admin) as resp:
            assert resp.status == 201, await resp.text()
            return dict(await resp.json())

    async def post(self, path: str, token: str, body: Any, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
        if isinstance(body, bytes | str):
            kw["data"] = body
        else:
            kw["json"] = body
        async with self.http.post(f"{self.url}{path}", headers=headers, **kw) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text and "json" in resp.content_type else text)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.get(f"{self.url}{path}", headers=headers) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text and "json" in resp.content_type else text)

    async def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        status, data = await self.get(f"/api/v1/alerts/{alert_id}/deliveries", headers=self.admin)
        assert status == 200, data
        return list(data["deliveries"])

    async def wait_deliveries(
        self, alert_id: str, states: set[str], count: int | None = None, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Poll until every (non-feed) delivery is in one of ``states``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        rows: list[dict[str, Any]] = []
        while loop.time() < deadline:
            rows = [r for r in await self.deliveries(alert_id) if r["adapter"] != "feed"]
            if rows and all(r["state"] in states for r in rows) and (count is None or len(rows) == count):
                return rows
            await asyncio.sleep(0.1)
        raise AssertionError(f"deliveries did not reach {states} in {timeout}s: {rows}")

    async def wait_settled(self, alert_id: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until nothing more can arrive for this alert, and return its deliveries.

        That is: every delivery is in a final state and no lane holds a job (a job
        leaves its lane only with its outcome recorded, so one still in flight
        counts). A "nothing else arrived" check looks only after this, not after a nap.
        """
        rows = await self.wait_deliveries(alert_id, FINAL_STATES, timeout=timeout)

        async def lanes_empty() -> bool:
            status, health = await self.get("/healthz")
            return status == 200 and not any(n for states in health["pending"].values() for n in states.values())

        await until(lanes_empty, what=f"every delivery lane to empty after alert {alert_id}", timeout=timeout)
        return rows


async def start_engine(settings: Settings | None = None, workers: bool = True) -> RunningEngine:
    engine = Engine(settings or make_settings(), workers=workers)
    await engine.start()
    runner = web.AppRunner(make_app(engine), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return RunningEngine(engine, f"http://127.0.0.1:{port}", aiohttp.ClientSession(), runner)


async def stop_engine(running: RunningEngine, wipe_keys: bool = True) -> None:
    await running.http.close()
    await running.runner.cleanup()
    await running.engine.stop()
    if wipe_keys:
        await wipe(running.engine.settings.key_prefix)


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[RunningEngine]:
    running = await start_engine()
    try:
        yield running
    finally:
        await stop_engine(running)


@dataclass
class Sink:
    """A webhook receiver on a real socket that records what arrives.

    ``status`` maps a path to the HTTP status to answer (default 200);
    ``delay`` maps a path to seconds to wait before answering.
    """

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    event: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None

    def at(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["path"] == path]

    async def wait_for(self, n: int, timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.received) < n:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"sink got {len(self.received)} of {n} deliveries in {timeout}s")
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), remaining)
            except TimeoutError:
                pass


async def start_sink() -> Sink:
    sink = Sink()

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        if request.path in sink.delay:
            # Not a wait: this is the slow or hung receiver the test asked for.
            await asyncio.sleep(sink.delay[request.path])
        code = sink.status.get(request.path, 200)
        if code < 300:
            sink.received.append({"path": request.path, "headers": dict(request.headers), "body": body})
            sink.event.set()
        return web.Response(status=code)

    app = web.Application(client_max_size=10_000_000)
    app.router.add_post("/{tail:.*}", handler)
    # A short shutdown: handlers told to hang must not hold up the test's teardown.
    sink.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await sink.runner.setup()
    port = free_port()
    await web.TCPSite(sink.runner, "127.0.0.1", port).start()
    sink.url = f"http://127.0.0.1:{port}"
    return sink


@pytest_asyncio.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await start_sink()
    try:
        yield s
    finally:
        assert s.runner is not None
        await s.runner.cleanup()


@pytest_asyncio.fixture
async def mqtt() -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        MQTT_HOST, MQTT_PORT, identifier=f"test-{secrets.token_hex(4)}", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        yield client


# --- the JMA drop folder ---------------------------------------------------------------


@pytest_asyncio.fixture
async def spool_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningEngine]:
    """An engine watching its own drop folder (``ALERTD_JMA_SPOOL``), scanned every 0.1 s."""
    monkeypatch.setenv("ALERTD_JMA_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("ALERTD_JMA_SPOOL_INTERVAL_S", "0.1")
    monkeypatch.delenv("ALERTD_JMA_FEED_BASE", raising=False)
    (tmp_path / "spool").mkdir()
    running = await start_engine()
    try:
        yield running
    finally:
        await stop_engine(running)


@pytest_asyncio.fixture
async def watcher(tmp_path: Path) -> AsyncIterator[tuple[SpoolWatcher, list[Alert]]]:
    """The drop-folder watcher alone over ``tmp_path``, and the alerts it hands on."""
    from geo.registry import Registry

    prefix = keyed_prefix(f"test-spool-{secrets.token_hex(6)}")
    client = redis_for(prefix)
    sink: list[Alert] = []

    async def on_alert(alert: Alert) -> None:
        sink.append(alert)

    yield SpoolWatcher(SpoolConfig(tmp_path, key_prefix=prefix), client, on_alert, registry=Registry.default()), sink
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterGroup]:
    """A Redis Cluster of 3 masters and 3 replicas on free loopback ports, one per test module
    that asks for it (tests/test_redis_cluster.py, tests/test_lane_shards.py)."""
    group = ClusterGroup().start()
    try:
        yield group
    finally:
        group.stop()


@pytest_asyncio.fixture
async def hangup() -> AsyncIterator[Hangup]:
    """A port that takes each connection and closes it at once (a dead node or sentinel behind a proxy)."""
    node = await Hangup().start()
    try:
        yield node
    finally:
        await node.stop()
