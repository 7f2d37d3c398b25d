"""How alertd reaches Redis from ``ALERTD_REDIS_URL``: one server, or a master found through Sentinel.

Two forms:

  redis://[:password@]host:6379/0          one server (rediss:// for TLS: alertd/tls.py)
  redis+sentinel://[:password@]host:26379,host:26380,host:26381/mymaster/0
                                           the master that these sentinels name ``mymaster``,
                                           database 0; the password is the master's

With Sentinel, every new connection asks the sentinels where the master is, so after a
failover alertd follows the new master by itself: the connections to the dead one fail,
are dropped, and the next ones go to whichever server the sentinels promoted. A replica
that was promoted while alertd still talked to the old master answers writes with
READONLY; that too drops the connection and asks again.

Both forms give a *blocking* pool: hundreds of concurrent deliveries wait their turn for a
connection instead of failing with "Too many connections".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, ConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import DataError, ResponseError

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        bad = ValueError(
            "ALERTD_REDIS_URL in the Sentinel form must look like "
            "redis+sentinel://host:26379,host:26380/mastername/0 (the database number may be left out)"
        )
        parts = urlsplit(url)
        if parts.scheme != SENTINEL_SCHEME:
            raise bad
        auth, _, hosts = parts.netloc.rpartition("@")
        password = unquote(auth.partition(":")[2]) if auth else None
        sentinels = []
        for hostport in hosts.split(","):
            host, _, port = hostport.strip().rpartition(":") if ":" in hostport else (hostport.strip(), "", "")
            if not host:
                raise bad
            try:
                sentinels.append((host, int(port) if port else SENTINEL_PORT))
            except ValueError:
                raise bad from None
        path = [p for p in parts.path.split("/") if p]
        if not path or len(path) > 2:
            raise bad
        try:
            db = int(path[1]) if len(path) == 2 else 0
        except ValueError:
            raise bad from None
        return cls(sentinels, path[0], db, password or None)


def is_sentinel(url: str) -> bool:
    return url.startswith(f"{SENTINEL_SCHEME}://")


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's master-following connections, with the blocking pool's waiting for a free one."""


class _HiredisPacking:
    """Commands packed by hiredis's C serializer rather than redis-py's Python loop.

    redis-py's synchronous client does this when hiredis is installed; its asyncio client
    packs every argument in Python, which was 5 % of alertd's CPU in a 2,000-webhook
    fan-out (each delivery's record, acknowledgement and "sent" mark are arguments).
    Same wire bytes; the command-name split and the refusal of types Redis cannot take
    (None, bool) follow redis-py's own serializer."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from exc


def _pack_with_hiredis(pool: ConnectionPool) -> None:
    base = pool.connection_class
    if not issubclass(base, _HiredisPacking):
        pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})


def connect(url: str, *, max_connections: int = 64, wait_s: float = 10, **options: Any) -> aioredis.Redis:
    """A client for either form of URL; ``options`` are redis-py connection options
    (socket timeouts, keepalive, TLS) and apply to the master's connections."""
    if not is_sentinel(url):
        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=wait_s, **options)
        _pack_with_hiredis(pool)
        return aioredis.Redis(connection_pool=pool)
    target = SentinelUrl.parse(url)
    timeouts = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = Sentinel(target.sentinels, sentinel_kwargs=timeouts)
    pool = _BlockingSentinelPool(
        target.service, sentinel, max_connections=max_connections, timeout=wait_s, db=target.db,
        password=target.password, **options,
    )  # fmt: skip
    _pack_with_hiredis(pool)
    return aioredis.Redis(connection_pool=pool)


@dataclass(frozen=True)
class WaitAof:
    """``ALERTD_REDIS_WAITAOF``: after each accepted alert, wait until ``numlocal`` (0 or 1)
    Redis has fsynced its AOF and ``numreplicas`` replicas have, for at most ``timeout_ms``."""

    numlocal: int
    numreplicas: int
    timeout_ms: int

    @classmethod
    def parse(cls, text: str) -> WaitAof:
        bad = ValueError(
            f"ALERTD_REDIS_WAITAOF={text!r} is not numlocal,numreplicas,timeout_ms — for example 1,0,1000: "
            "this Redis's own fsync (1), no replica (0), waiting at most 1,000 ms"
        )
        try:
            numlocal, numreplicas, timeout_ms = (int(part) for part in text.split(","))
        except ValueError:
            raise bad from None
        if numlocal not in (0, 1) or numreplicas < 0 or timeout_ms < 0 or numlocal + numreplicas == 0:
            raise bad
        return cls(numlocal, numreplicas, timeout_ms)


async def check_waitaof(redis: aioredis.Redis, wanted: WaitAof) -> None:
    """Refuse to start, in a sentence, where WAITAOF cannot do what it is asked: a Redis
    older than 7.2 does not have it, and a local fsync needs ``appendonly yes``. Never
    ignored silently: an operator who set it believes every 202 is on disk."""
    info = await redis.info("server")
    version = info.get("redis_version", "?")
    try:
        # Asks for nothing, so it answers at once where the command exists.
        await redis.execute_command("WAITAOF", 0, 0, 1)
    except ResponseError as exc:
        if "unknown command" not in str(exc).lower():
            raise
        raise RuntimeError(
            f"ALERTD_REDIS_WAITAOF is set, but this Redis ({version}) has no WAITAOF command: it needs Redis "
            "7.2 or later. Upgrade Redis, or unset ALERTD_REDIS_WAITAOF and set 'appendfsync always' in "
            "redis.conf, which flushes every write to disk before Redis answers (the same guarantee for "
            "accepted alerts, paid on every write)."
        ) from None
    if wanted.numlocal:
        persistence = await redis.info("persistence")
        if not int(persistence.get("aof_enabled", 0)):
            raise RuntimeError(
                "ALERTD_REDIS_WAITAOF asks Redis to fsync its AOF (numlocal 1), but this Redis runs without "
                "'appendonly yes': set it in redis.conf, or set numlocal to 0."
            )


__all__ = ["SENTINEL_SCHEME", "SentinelUrl", "WaitAof", "check_waitaof", "connect", "is_sentinel"]
