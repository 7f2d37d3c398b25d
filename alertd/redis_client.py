"""How alertd reaches Redis from ``ALERTD_REDIS_URL``: one server, a master found through
Sentinel, or a Redis Cluster.

Three forms:

  redis://[:password@]host:6379/0          one server (rediss:// for TLS: alertd/tls.py)
  redis+sentinel://[:password@]host:26379,host:26380,host:26381/mymaster/0
                                           the master that these sentinels name ``mymaster``,
                                           database 0; the password is the master's
  redis+cluster://[:password@]host:7000,host:7001,host:7002
                                           a Redis Cluster, found from any of these nodes

``rediss+sentinel://`` and ``rediss+cluster://`` are the same over TLS: every connection,
to the sentinels, the master and the cluster's nodes, is TLS, verified as ``rediss://``
is (alertd/tls.py, ALERTD_REDIS_CA_FILE).

On a cluster every alertd key carries the hash tag ``{prefix}`` (``key_root``), so all of
them live in one slot: alertd's transactions and scripts span many keys (an alert, its
indexes, its log entry and its fan-out are written in one MULTI), and Redis runs a
multi-key transaction only within one slot. alertd therefore talks to one node, the
master of that slot, through an ordinary client, exactly as to a single server: each new
connection asks the cluster which node that is (CLUSTER SLOTS), the way a Sentinel
connection asks the sentinels. redis-py's RedisCluster client was measured and not used:
its transactions run every queued command on a new thread with its own event loop, which
blocked alertd's loop and cut a 2,000-webhook fan-out to a third of its speed.

With Sentinel, every new connection asks the sentinels where the master is, so after a
failover alertd follows the new master by itself: the connections to the dead one fail,
are dropped, and the next ones go to whichever server the sentinels promoted. A replica
that was promoted while alertd still talked to the old master answers writes with
READONLY; that too drops the connection and asks again. On a cluster the same holds,
with MOVED or CLUSTERDOWN from a node that no longer serves the slot.

Both forms give a *blocking* pool: hundreds of concurrent deliveries wait their turn for a
connection instead of failing with "Too many connections".
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
import redis
import redis.asyncio as aioredis
import redis.cluster
import redis.retry
import redis.sentinel
from redis.asyncio.connection import BlockingConnectionPool, Connection, ConnectionPool, SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    DataError,
    MasterDownError,
    MovedError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
CLUSTER_SCHEME = "redis+cluster"
# The same forms over TLS, as rediss:// is redis:// over TLS.
TLS_SCHEMES = ("rediss", "rediss+sentinel", "rediss+cluster")


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
            "redis+sentinel://host:26379,host:26380/mastername/0 (the database number may be left out; "
            "rediss+sentinel:// for TLS)"
        )
        parts = urlsplit(url)
        if parts.scheme not in (SENTINEL_SCHEME, "rediss+sentinel"):
            raise bad
        auth, _, hosts = parts.netloc.rpartition("@")
        password = unquote(auth.partition(":")[2]) if auth else None
        sentinels = []
        for hostport in hosts.split(","):
            host, _, port = (
                hostport.strip().rpartition(":") if ":" in hostport else (hostport.strip(), "", "")
            )
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
    return url.startswith((f"{SENTINEL_SCHEME}://", "rediss+sentinel://"))


def is_cluster(url: str) -> bool:
    return url.startswith((f"{CLUSTER_SCHEME}://", "rediss+cluster://"))


def uses_tls(url: str) -> bool:
    return urlsplit(url).scheme in TLS_SCHEMES


def _tls_options(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """What a client of the sentinels or of a cluster node needs to speak TLS as the
    master's connections do (the ``ssl_*`` options from alertd/tls.py); nothing without TLS."""
    if not uses_tls(url):
        return {}
    return {"ssl": True, **{k: v for k, v in options.items() if k.startswith("ssl_")}}


def has_replicas(url: str) -> bool:
    """Whether this form of URL means a master with replicas (Sentinel, Cluster), where an
    alert should be on a replica before it is answered 202."""
    return is_sentinel(url) or is_cluster(url)


def key_root(prefix: str, url: str) -> str:
    """The start of every alertd key: the prefix, hash-tagged on a cluster so that every
    key falls in one slot (a multi-key transaction must); unchanged elsewhere, so a
    single server keeps the key names it always had."""
    if is_cluster(url) and not (prefix.startswith("{") and prefix.endswith("}")):
        return "{" + prefix + "}"
    return prefix


@dataclass(frozen=True)
class ClusterUrl:
    nodes: list[tuple[str, int]]
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> ClusterUrl:
        bad = ValueError(
            "ALERTD_REDIS_URL in the Cluster form must look like "
            "redis+cluster://host:7000,host:7001,host:7002 (any nodes of the cluster; a cluster has only database 0; "
            "rediss+cluster:// for TLS)"
        )
        parts = urlsplit(url)
        if parts.scheme not in (CLUSTER_SCHEME, "rediss+cluster") or parts.path.strip("/") not in ("", "0"):
            raise bad
        auth, _, hosts = parts.netloc.rpartition("@")
        password = unquote(auth.partition(":")[2]) if auth else None
        nodes = []
        for hostport in hosts.split(","):
            host, _, port = hostport.strip().rpartition(":")
            if not host or not port:
                raise bad
            try:
                nodes.append((host, int(port)))
            except ValueError:
                raise bad from None
        return cls(nodes, password or None)


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
    if _DRIVER_INFO is not None:
        pool.connection_kwargs.setdefault("driver_info", _DRIVER_INFO)


def _driver_info() -> Any:
    """What every connection tells Redis it is (CLIENT SETINFO), worked out once. redis-py 8
    works it out for each connection it opens, with importlib.metadata (a scan of
    site-packages): 0.4 ms on an idle machine, 17 ms seen in the bench's storm, on the loop
    the deliveries share, when a flash alert's concurrency grows the pool."""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # an older redis-py: it worked its version out once, at import
        return None
    return DriverInfo(lib_version=redis.__version__)


_DRIVER_INFO = _driver_info()


def connect(
    url: str, *, key_prefix: str = "alertd", max_connections: int = 64, wait_s: float = 10, **options: Any
) -> aioredis.Redis:
    """A client for any form of URL; ``options`` are redis-py connection options
    (socket timeouts, keepalive, TLS) and apply to the master's connections. On a cluster,
    ``key_prefix`` says whose slot: the client talks to the master of that slot."""
    if is_cluster(url):
        target = ClusterUrl.parse(url)
        slot = key_slot(f"{key_root(key_prefix, url)}:".encode())
        pool = _SlotMasterPool(
            target, slot, tls=_tls_options(url, options), max_connections=max_connections, timeout=wait_s,
            password=target.password, **options,
        )  # fmt: skip
        _pack_with_hiredis(pool)
        return aioredis.Redis(connection_pool=pool)
    if not is_sentinel(url):
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=wait_s, **options
        )
        _pack_with_hiredis(pool)
        return aioredis.Redis(connection_pool=pool)
    target = SentinelUrl.parse(url)
    timeouts = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
    # The sentinels speak TLS too, and ssl=True makes the master's connections TLS.
    tls = _tls_options(url, options)
    # Each sentinel asked once, as the cluster's nodes are (_ask_cluster): with redis-py's
    # default retries a dead sentinel named first was connected to 11 times, with backoff,
    # before the next was asked, every connection of the pool waiting (test_redis_sentinel.py).
    once = {"retry": Retry(NoBackoff(), 0)}
    sentinel = Sentinel(target.sentinels, sentinel_kwargs={**timeouts, **tls, **once})
    pool = _BlockingSentinelPool(
        target.service, sentinel, max_connections=max_connections, timeout=wait_s, db=target.db,
        password=target.password, **{**options, **tls},
    )  # fmt: skip
    _pack_with_hiredis(pool)
    return aioredis.Redis(connection_pool=pool)


class _SlotMasterConnection(Connection):
    """A connection to whichever node is the master of alertd's slot when it connects."""

    def __init__(self, **kwargs: Any) -> None:
        self.slot_pool = kwargs.pop("slot_pool")
        super().__init__(**kwargs)

    async def _connect(self) -> None:
        self.host, self.port = await self.slot_pool.master_address()
        try:
            await super()._connect()
        except BaseException:
            self.slot_pool.forget()  # a dead master: the next connection asks the cluster again
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except (MovedError, AskError, ClusterDownError, TryAgainError, MasterDownError, ReadOnlyError) as exc:
            # This node no longer serves the slot (a failover moved it), or the cluster is
            # between masters: like an unreachable server, so the caller answers 503 and
            # the next connection goes to the new master.
            await self.disconnect()
            self.slot_pool.forget()
            if isinstance(exc, ClusterDownError):
                # Every node refuses while any slot is unserved (cluster-require-full-coverage
                # yes, Redis's default), whichever master failed.
                raise RedisConnectionError(
                    f"the Redis Cluster is down until a failed master's replica is promoted: {exc}"
                ) from exc
            raise RedisConnectionError(f"the Redis Cluster is moving one of alertd's slots: {exc}") from exc


class _SlotMasterSSLConnection(_SlotMasterConnection, SSLConnection):
    """The same over TLS (``rediss+cluster://``)."""


class _SlotMasterPool(BlockingConnectionPool):
    """Connections to the master of one slot, found by asking the cluster's nodes."""

    def __init__(self, target: ClusterUrl, slot: int, *, tls: dict[str, Any], **kwargs: Any) -> None:
        connection_class = _SlotMasterSSLConnection if tls else _SlotMasterConnection
        super().__init__(connection_class=connection_class, **kwargs)
        self.connection_kwargs["slot_pool"] = weakref.proxy(self)
        self.slot = slot
        # Every node ever named, the URL's first: any one that answers can say who serves the slot.
        self.nodes: list[tuple[str, int]] = list(target.nodes)
        self.password = target.password
        self.probe_options = {
            k: v for k, v in kwargs.items() if k in ("socket_timeout", "socket_connect_timeout", "username")
        } | tls  # fmt: skip
        self._master: tuple[str, int] | None = None
        self._asking: asyncio.Lock | None = None

    def forget(self) -> None:
        self._master = None

    async def master_address(self) -> tuple[str, int]:
        if self._master is not None:
            return self._master
        if self._asking is None:
            self._asking = asyncio.Lock()
        async with self._asking:  # one question to the cluster, however many connect at once
            if self._master is None:
                self._master = await self._ask_cluster()
        return self._master

    async def _ask_cluster(self) -> tuple[str, int]:
        """Ask the nodes in turn: the one that answered last time first, those that did not
        last. Each is asked once: every connection of the pool waits for this answer, and
        redis-py's client would otherwise retry a dead node ten times with backoff (seconds
        on a refused port, ten connect timeouts on a host that drops packets) before the
        next node was asked."""
        errors = []
        silent: list[tuple[str, int]] = []
        for host, port in list(self.nodes):
            known = {"driver_info": _DRIVER_INFO} if _DRIVER_INFO is not None else {}
            probe = aioredis.Redis(host=host, port=port, password=self.password, retry=Retry(NoBackoff(), 0),
                                   **known, **self.probe_options)  # fmt: skip
            try:
                ranges = await probe.execute_command("CLUSTER SLOTS")
            except (OSError, RedisConnectionError, RedisTimeoutError, ResponseError) as exc:
                errors.append(f"{host}:{port}: {exc}")
                silent.append((host, port))
                continue
            finally:
                await probe.aclose()
            master = None
            for start, end, first, *replicas in ranges:
                for node in (first, *replicas):
                    address = (_text(node[0]) or host, int(node[1]))
                    if address not in self.nodes:
                        self.nodes.append(address)
                if int(start) <= self.slot <= int(end):
                    master = (_text(first[0]) or host, int(first[1]))
            # Sorted in place, the others keeping their order.
            self.nodes.sort(key=lambda node: 0 if node == (host, port) else 2 if node in silent else 1)
            if master is not None:
                return master
            errors.append(f"{host}:{port}: no node serves slot {self.slot}")
        raise RedisConnectionError(
            f"no Redis Cluster node names the master of slot {self.slot}: {'; '.join(errors)}"
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def connect_sync(url: str, **options: Any) -> redis.Redis:
    """A synchronous client for any form of URL, for the command-line tools (alertd audit)."""
    if is_cluster(url):
        target = ClusterUrl.parse(url)
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in target.nodes]
        return redis.cluster.RedisCluster(
            startup_nodes=nodes, password=target.password, **{**options, **_tls_options(url, options)}
        )  # type: ignore[return-value]
    if is_sentinel(url):
        sentinel_target = SentinelUrl.parse(url)
        timeouts = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
        tls = _tls_options(url, options)
        once = {"retry": redis.retry.Retry(NoBackoff(), 0)}  # as in connect()
        sentinel = redis.sentinel.Sentinel(
            sentinel_target.sentinels, sentinel_kwargs={**timeouts, **tls, **once}, **{**options, **tls}
        )
        return sentinel.master_for(
            sentinel_target.service, db=sentinel_target.db, password=sentinel_target.password
        )
    return redis.Redis.from_url(url, **options)


async def wait_for_copies(
    redis: aioredis.Redis, fence_key: str, replicas: int, wait_ms: int, aof: WaitAof | None
) -> tuple[int | None, tuple[int, int] | None]:
    """Wait until ``replicas`` replicas (WAIT), and the AOF fsyncs that ``aof`` asks for
    (WAITAOF), hold everything this process has written so far. Returns what was
    confirmed: (replicas, None if not asked), ((local, replicas), None if not asked).

    WAIT and WAITAOF wait for the last write *of the connection they are sent on*; the
    commit's own connection has gone back to the pool by now, so another could carry this.
    A small write first (the fence) on the same connection makes its last write later than
    the commit's: replication offsets only grow, so a copy of the fence is a copy of the
    commit. On a cluster the fence is in alertd's slot, so it goes to the commit's master."""
    commands: list[tuple[Any, ...]] = [("SET", fence_key, "1", "PX", 60_000)]
    if replicas > 0:
        commands.append(("WAIT", replicas, wait_ms))
    if aof is not None:
        commands.append(("WAITAOF", aof.numlocal, aof.numreplicas, aof.timeout_ms))
    if len(commands) == 1:
        return None, None
    async with redis.pipeline(transaction=False) as pipe:  # one connection for all of them
        for command in commands:
            pipe.execute_command(*command)
        answers = await pipe.execute()
    answers = answers[1:]
    acked = int(answers.pop(0)) if replicas > 0 else None
    fsynced = (int(answers[0][0]), int(answers[0][1])) if aof is not None else None
    return acked, fsynced


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


__all__ = [
    "CLUSTER_SCHEME", "SENTINEL_SCHEME", "ClusterUrl", "SentinelUrl", "WaitAof", "check_waitaof", "connect",
    "connect_sync", "has_replicas", "is_cluster", "is_sentinel", "key_root", "wait_for_copies",
]  # fmt: skip
