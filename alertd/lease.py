"""One holder per deployment for work only one process may do: a Redis lease (SET NX PX).

The JMA ingester (JMA allows one poll a minute, however many processes run),
the MQTT ack listener (one persistent session, so acks queued while it was
down reach its successor) and the retained-state publisher (one writer, so
states are never published out of order) each run under one. The holder renews the lease well within its time to live; when the
holder dies (kill -9, a lost network) the lease lapses and another process
takes it over within one time to live. Renewal and release compare the
owner token first (a Lua script, so the check and the write are one step),
so a process that lost its lease can never extend or delete the new
holder's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from prometheus_client import Gauge

from alertd import logs
from alertd.metrics import REGISTRY

log = logs.get("alertd.lease")

LEADER = Gauge(
    "alertd_leader",
    "1 while this process holds the lease of a role (jma, mqtt).",
    ["role"],
    registry=REGISTRY,
    multiprocess_mode="livemax",
)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """A named lease in Redis. ``ttl_s`` is how long a dead holder blocks a successor."""

    def __init__(
        self, redis: aioredis.Redis, key: str, *, ttl_s: float = 30.0, owner: str | None = None, role: str = "jma"
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("the lease time to live must be positive")
        self.redis = redis
        self.key = key
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.role = role
        self._gauge = LEADER.labels(role=role)

    @property
    def renew_every_s(self) -> float:
        # A third of the time to live: two renewals can fail before the lease lapses.
        return self.ttl_ms / 3000

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it (or we already do)."""
        if await self.redis.set(self.key, self.owner, nx=True, px=self.ttl_ms):
            return True
        return await self.renew()

    async def renew(self) -> bool:
        return bool(await self.redis.eval(_RENEW, 1, self.key, self.owner, self.ttl_ms))

    async def held(self) -> bool:
        """Whether this process still holds the lease (checked before acting on its behalf)."""
        value = await self.redis.get(self.key)
        return value is not None and (value.decode() if isinstance(value, bytes) else value) == self.owner

    async def release(self) -> None:
        await self.redis.eval(_RELEASE, 1, self.key, self.owner)

    async def run_while_held(
        self, stop: asyncio.Event, work: Callable[[asyncio.Event], Awaitable[None]]
    ) -> None:
        """Until ``stop``: wait for the lease, run ``work`` while it is held, start over when it is lost.

        ``work`` gets an event that is set when it must stop (``stop`` or the
        lease lost) and must return soon after. Redis errors while waiting or
        renewing count as "not held": a process that cannot reach Redis must
        not act as the leader.
        """
        while not stop.is_set():
            try:
                got = await self.acquire()
            except Exception as exc:  # Redis unreachable: try again, never act without the lease
                log.warning("lease.error", role=self.role, key=self.key, error=repr(exc))
                got = False
            if not got:
                await _wait(stop, self.renew_every_s)
                continue
            log.info("lease.acquired", role=self.role, key=self.key, owner=self.owner)
            self._gauge.set(1)
            lost = asyncio.Event()
            task = asyncio.create_task(work(lost))
            try:
                while not stop.is_set() and not task.done():
                    await _wait(stop, self.renew_every_s, task)
                    if stop.is_set() or task.done():
                        break
                    try:
                        still = await self.renew()
                    except Exception as exc:
                        log.warning("lease.error", role=self.role, key=self.key, error=repr(exc))
                        still = False
                    if not still:
                        log.warning("lease.lost", role=self.role, key=self.key, owner=self.owner)
                        break
            except asyncio.CancelledError:
                task.cancel()  # the engine is shutting down: no grace period
                raise
            finally:
                lost.set()
                # Give the work its time to live to finish what it holds, then cut it off.
                _done, pending = await asyncio.wait({task}, timeout=self.ttl_ms / 1000)
                for late in pending:
                    late.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await late
                self._gauge.set(0)
                # Stopping (or cancelled): hand over at once instead of after a time to live.
                # After a loss this is a no-op, since release checks the owner.
                with contextlib.suppress(Exception):
                    await self.release()
            if task.done() and not task.cancelled() and task.exception() is not None:
                # A bug in the work must not end ingest for good: logged, then tried again.
                exc = task.exception()
                log.error("lease.work_failed", role=self.role, key=self.key, error=repr(exc))
                await _wait(stop, self.renew_every_s)


async def _wait(stop: asyncio.Event, seconds: float, task: asyncio.Task[None] | None = None) -> None:
    """Sleep up to ``seconds``, waking early when ``stop`` is set or ``task`` ends."""
    waiter = asyncio.create_task(stop.wait())
    pending = {waiter} if task is None else {waiter, task}
    try:
        await asyncio.wait(pending, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
