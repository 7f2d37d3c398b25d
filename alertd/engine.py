"""The engine: wires Redis, the registry, intake, the worker and the feed into one process.

``Engine`` is what ``alertd serve`` and ``alertd demo`` run; tests start it
the same way against real Redis and Mosquitto. It holds no state of its own
beyond caches: everything that matters is in Redis, so any number of
engines can share one Redis and a crashed one loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis

import adapters
from alertd import logs
from alertd.config import Settings, load_seed
from alertd.constants import Keys
from alertd.embedded import EmbeddedServices
from alertd.feed import Feed
from alertd.intake import Intake
from alertd.models import AdapterKind, Alert, Issuer, Subscriber
from alertd.orders import OrderBuilder
from alertd.routing import Router
from alertd.store import Store, token_hash
from alertd.testbroadcast import TestBroadcasts
from alertd.worker import Worker

log = logs.get("alertd.engine")


class Engine:
    def __init__(self, settings: Settings | None = None, *, workers: bool = True) -> None:
        self.settings = settings or Settings.from_env()
        self.run_workers = workers
        self.embedded = EmbeddedServices()
        self.redis: aioredis.Redis | None = None
        self.feed: Feed | None = None
        self.worker: Worker | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Engine:
        from geo.geocoder import Geocoder
        from geo.registry import Registry

        s = self.settings
        if not s.redis_url:
            s.redis_url = await asyncio.to_thread(self.embedded.start_redis)
        if not s.mqtt_url:
            s.mqtt_url = await asyncio.to_thread(self.embedded.start_broker)
        # A blocking pool: hundreds of concurrent deliveries wait their turn for a
        # connection instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            s.redis_url, max_connections=s.redis_connections, timeout=10, health_check_interval=30
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        await self.redis.ping()
        self.keys = Keys(s.key_prefix)
        self.store = Store(self.redis, self.keys)
        self.registry = await asyncio.to_thread(Registry.default)
        self.geocoder = Geocoder(self.registry)
        expiry = timedelta(hours=s.default_expiry_h)
        self.router = Router(self.store, self.registry, feed=bool(s.mqtt_url))
        self.intake = Intake(self.store, self.registry, self.geocoder, self.router, default_expiry=expiry)
        self.orders = OrderBuilder(self.registry, self.store, expiry)
        self.test_broadcasts = TestBroadcasts(self)
        self.consumer = s.consumer_name or f"{socket.gethostname()}-{os.getpid()}"
        s.consumer_name = self.consumer
        self.feed = Feed(s.mqtt_url, self.registry, self.store, self.consumer)
        await self.feed.start()
        if s.seed_file:
            seed = load_seed(s.seed_file)
            # 防災行政無線 call signs per municipality, e.g. {"08211": "こちらは、防災じょうそうです。"}
            s.call_signs = {str(k): str(v) for k, v in (seed.get("call_signs") or {}).items()}
            await self.seed(seed)
        if self.run_workers:
            self.worker = Worker(self.redis, self.store, s, adapters.registry(s.call_signs), self.feed)
            await self.worker.start()
        self._tasks.append(asyncio.create_task(self._expire_loop(), name="expire"))
        await self._start_jma_poller()
        log.info("engine.started", redis=s.redis_url, mqtt=s.mqtt_url, prefix=s.key_prefix)
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.worker is not None:
            await self.worker.stop()
        if self.feed is not None:
            await self.feed.close()
        if self.redis is not None:
            await self.redis.aclose()
        await asyncio.to_thread(self.embedded.stop)

    async def __aenter__(self) -> Engine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _start_jma_poller(self) -> None:
        """JMA ingest (feed poller and/or ALERTD_JMA_SPOOL drop folder); its alerts enter like any other.

        Every process starts it; a Redis lease lets exactly one of them poll and watch.
        """
        from alertd.jma import build_jma

        async def on_alert(alert: Alert) -> None:
            await self.intake.accept(alert, None)

        assert self.redis is not None
        env = {**os.environ, "ALERTD_KEY_PREFIX": self.settings.key_prefix}
        jma = build_jma(self.redis, on_alert, registry=self.registry, env=env)
        if jma is not None:
            self._jma_stop = asyncio.Event()
            self._tasks.append(asyncio.create_task(jma.run(self._jma_stop), name="jma-ingest"))
            log.info("jma.ingest.started", sources=jma.sources)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(10)
            with contextlib.suppress(Exception):
                await self.store.expire_active(time.time())

    async def seed(self, data: dict[str, Any]) -> None:
        """Issuers and subscribers from a config file, as the admin API would take them."""
        for item in data.get("issuers") or []:
            await self.store.put_issuer(issuer_from(item))
        subs = [subscriber_from(item) for item in data.get("subscribers") or []]
        if subs:
            await self.store.put_subscribers(subs)


def issuer_from(item: dict[str, Any]) -> Issuer:
    from alertd.validation import validate_issuer

    validate_issuer(item)
    return Issuer(
        id=item["id"],
        name=item["name"],
        token_hash=token_hash(item["token"]),
        jurisdiction=[str(c) for c in item.get("jurisdiction") or []],
        national=bool(item.get("national", False)),
    )


def subscriber_from(item: dict[str, Any]) -> Subscriber:
    from alertd.validation import validate_subscriber

    validate_subscriber(item)
    return Subscriber(
        id=item["id"],
        adapter=AdapterKind(item["adapter"]),
        endpoint=item["endpoint"],
        districts=[str(c) for c in item["districts"]],
        secret=item.get("secret"),
        min_level=item.get("min_level"),
        languages=list(item.get("languages") or ["ja", "en"]),
        timeout_s=float(item.get("timeout_s", 5.0)),
        max_in_flight=int(item.get("max_in_flight", 4)),
        name=item.get("name"),
    )
