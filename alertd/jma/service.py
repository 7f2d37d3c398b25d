"""JMA ingest as the engine runs it: the feed poller and the drop folder under one lease.

``build_jma`` reads the environment (ALERTD_JMA_FEED_BASE for the poller,
ALERTD_JMA_SPOOL for the drop folder; either, both or neither) and returns a
service whose ``run()`` the engine starts as one task. Both sources share one
ingest path (one lock, one story per EventID) and one Redis lease, so in a
deployment of many alertd processes exactly one polls and watches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import redis.asyncio as aioredis

from alertd.constants import Keys
from alertd.jma.head import AreaRegistry
from alertd.jma.ingest import Ingest, OnAlert
from alertd.jma.policy import Policy
from alertd.jma.poller import JmaPoller, PollerConfig
from alertd.jma.spool import SpoolConfig, SpoolWatcher
from alertd.lease import Lease


class JmaService:
    def __init__(self, lease: Lease, poller: JmaPoller | None, spool: SpoolWatcher | None) -> None:
        self.lease = lease
        self.poller = poller
        self.spool = spool

    @property
    def sources(self) -> list[str]:
        return [name for name, s in (("feed", self.poller), ("spool", self.spool)) if s is not None]

    async def run(self, stop: asyncio.Event | None = None) -> None:
        try:
            await self.lease.run_while_held(stop or asyncio.Event(), self._work)
        finally:
            if self.poller is not None:
                await self.poller.close()

    async def _work(self, stop: asyncio.Event) -> None:
        jobs = []
        if self.poller is not None:
            jobs.append(self.poller.run_feeds(stop))
        if self.spool is not None:
            jobs.append(self.spool.watch(stop))
        await asyncio.gather(*jobs)


def build_jma(
    redis: aioredis.Redis,
    on_alert: OnAlert,
    *,
    registry: AreaRegistry | None = None,
    env: Mapping[str, str] | None = None,
) -> JmaService | None:
    """The JMA ingest the environment asks for, or None when neither a feed nor a drop folder is set."""
    poll_config = PollerConfig.from_env(env)
    spool_config = SpoolConfig.from_env(env)
    if poll_config is None and spool_config is None:
        return None
    # Both read ALERTD_KEY_PREFIX and ALERTD_JMA_LEASE_TTL_S from the same environment.
    prefix = poll_config.key_prefix if poll_config is not None else spool_config.key_prefix  # type: ignore[union-attr]
    ttl = poll_config.lease_ttl_s if poll_config is not None else spool_config.lease_ttl_s  # type: ignore[union-attr]
    keys = Keys(prefix)
    lease = Lease(redis, keys.jma("leader"), ttl_s=ttl)

    def resolve_registry() -> AreaRegistry:
        if registry is not None:
            return registry
        from geo.registry import Registry  # loads data: only when the first telegram needs it

        return Registry.default()

    ingest = Ingest(redis, keys, on_alert, Policy.from_env(env), resolve_registry)
    poller = (
        JmaPoller(poll_config, redis, on_alert, registry=registry, ingest=ingest, lease=lease)
        if poll_config is not None
        else None
    )
    spool = (
        SpoolWatcher(spool_config, redis, on_alert, registry=registry, ingest=ingest, lease=lease)
        if spool_config is not None
        else None
    )
    return JmaService(lease, poller, spool)
