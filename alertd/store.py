"""Everything alertd keeps, in Redis: issuers, subscribers, alerts, delivery state.

The one operation that matters most is ``commit_alert``: the alert, its
entry in the durable log, its first planned deliveries with a marker of the
rest, and the dedup marker are written in one MULTI/EXEC, so an accepted alert
is either wholly there with all its fan-out work queued or marked to be queued
(right after, by this process or, if it died, by any worker), or not there at
all — never half-written.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError

from adapters.signing import HmacKey
from alertd import logs
from alertd.backlog import Backlog, read_backlog
from alertd.constants import Keys
from alertd.inforce import Standing, is_standing_kind
from alertd.ledger import FANOUT_SCRIPT, DeliveryLedger
from alertd.metrics import FSYNC_SHORT, REDIS_REPLICAS_CONNECTED, REDIS_REPLICAS_WANTED, REPLICATION_SHORT
from alertd.models import (
    AdapterKind,
    Alert,
    AlertState,
    Issuer,
    Subscriber,
    utcnow,
)
from alertd.offload import run_report
from alertd.redis_client import WaitAof, connect, is_cluster, key_root, wait_for_copies
from alertd.shards import Shard, ShardUnreachable, shard_index, shard_roots

if TYPE_CHECKING:
    from geo.registry import Registry

log = logs.get("alertd.store")

# Decoded alert documents kept in each process (see Store._docs): ~8 MB at most. Fewer than
# a large disaster keeps in force is fine: a miss costs one decode (tens of microseconds).
DOC_CACHE = 1024
# How often the expiry sweep also checks that every alert in force is in the expiry index.
EXPIRY_CHECK_S = 300.0
# Alerts read per round trip by Store._load: ~200 documents decoded is a few ms of the loop.
LOAD_CHUNK = 200

_FAN_OUT = """
for i = 3, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'a', ARGV[1], 's', ARGV[i], 't', ARGV[2])
end
return #ARGV - 2
"""

# A fan-out's first lane entries are written in the alert's own transaction; the rest in
# parts afterwards (see commit_alert). 64 is one flash batch of the worker: the first read
# finds a full batch while the parts are still being written.
FIRST_ENTRIES = 64
PART_ENTRIES = 256
# A fan-out whose queueing has not moved for this long is taken over by any worker.
FANOUT_STALE_MS = 1000

# One part of a fan-out's remaining lane entries, and its progress, in one step: only if
# the progress is still where the writer last saw it, so two writers (a slow committer and
# a worker taking over, or two workers) never queue the same entries twice.
# KEYS: the queueing hash, the lane. ARGV: alert id, entries queued so far (as the writer
# read it), now (ms), the part's subscriber ids. Returns the new count, -1 when the
# fan-out is no longer being queued (done, or deleted), -2 when another writer moved it.
_QUEUE_PART = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return -1 end
local done, total, _, lane, accepted = string.match(cur, '^(%d+) (%d+) (%d+) (%S+) (%d+)$')
if not done then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return -1
end
if tonumber(done) ~= tonumber(ARGV[2]) then return -2 end
for i = 4, #ARGV do
  redis.call('XADD', KEYS[2], '*', 'a', ARGV[1], 's', ARGV[i], 't', accepted)
end
local now = tonumber(done) + #ARGV - 3
if now >= tonumber(total) then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], now .. ' ' .. total .. ' ' .. ARGV[3] .. ' ' .. lane .. ' ' .. accepted)
end
return now
"""

# One shard's part of a fan-out started: its first entries, and the marker of the rest
# (as _QUEUE_PART keeps it), only if this shard's part was never started, so a worker
# finishing a dead committer's start never queues it twice. KEYS: the started flag, the
# shard's queueing hash, its lane. ARGV: alert id, accepted (ms), now (ms), lane name,
# the shard's planned count, the first subscriber ids. Returns how many were queued, -3
# when it had been started.
_START_SHARD = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', 172800) then return -3 end
for i = 6, #ARGV do
  redis.call('XADD', KEYS[3], '*', 'a', ARGV[1], 's', ARGV[i], 't', ARGV[2])
end
local n = #ARGV - 5
if n < tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[2], ARGV[1], n .. ' ' .. ARGV[5] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[2])
end
return n
"""

# Take over a stalled fan-out: touch it only if it is exactly as read (nobody moved it
# since), so of several workers finding it stale one takes it. ARGV: alert id, the value
# read, now (ms). Returns 1 when taken.
_TAKE_OVER = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
local done, total, _, lane, accepted = string.match(ARGV[2], '^(%d+) (%d+) (%d+) (%S+) (%d+)$')
if not done then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], done .. ' ' .. total .. ' ' .. ARGV[3] .. ' ' .. lane .. ' ' .. accepted)
return 1
"""


async def remove_prefix(redis_url: str, prefix: str, shards: int = 1) -> None:
    """Delete every key of one deployment prefix (a finished drill, a test, a benchmark run),
    its ``shards`` lane shards' included (on a cluster, their slots' masters are asked too)."""
    # Hash-tagged on a cluster, as the engine names them; elsewhere the shards' roots start
    # with the prefix and the first scan finds their keys.
    roots = shard_roots(prefix, redis_url, shards) if is_cluster(redis_url) else [key_root(prefix, redis_url)]
    for root in roots:
        client = connect(redis_url, key_prefix=root)
        try:
            keys = [key async for key in client.scan_iter(match=f"{root}:*", count=1000)]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i : i + 500])
        finally:
            await client.aclose()


def dedup_scope(issuer_id: str | None) -> str:
    return issuer_id or "-"  # "-": trusted internal sources (the JMA poller, tests of the system)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


def _progress(done: int, total: int, at_ms: int, lane: str, accepted_ms: int) -> str:
    """A queueing fan-out's marker value (Keys.fanouts_queueing); the scripts parse it too."""
    return f"{done} {total} {at_ms} {lane} {accepted_ms}"


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _expiry_score(alert: Alert) -> float:
    """An alert's place in the expiry index: when it expires (unix s), or never."""
    return alert.expires.timestamp() if alert.expires is not None else float("inf")


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


class PlannedDelivery(NamedTuple):
    """One delivery of a fan-out: a tuple, so a plan of thousands is packed as it is
    (each one a [subscriber_id, adapter] pair), and the router keeps one per subscriber."""

    subscriber_id: str
    adapter: str


@dataclass
class AlertChange:
    """What a new alert does to one it references: end it, or lift some districts of it."""

    state: str | None = None  # lifted | updated | cancelled: it ends wholly
    lift: list[str] = field(default_factory=list)  # districts lifted from it, which otherwise stands
    expect_rev: int | None = None  # the revision the change was planned against


class StaleState(Exception):
    """A referenced alert changed between planning and commit; plan again."""


def order_municipality(alert: Alert) -> str | None:
    """The municipality of an evacuation order (indexed so a desk plans against its own only)."""
    return alert.municipality if alert.kind == "evacuation" and alert.municipality else None


def prefectures_of(alert: Alert) -> set[str]:
    """The prefectures an alert's districts lie in, by their codes ("xx" when none says)."""
    found = {d[:2] for d in alert.districts if d[:2].isdigit()}
    return found or {"xx"}


class StandingByTown:
    """Which of a list of standing alerts touch each town: those with a district in the town
    (or the town itself), or covering it (its prefecture), oldest first; a district or town
    the registry does not know touches nothing.
    Worked out once per list: a state round asked every standing alert of a prefecture
    about every dirty town, district by district, and in the bench's storm (2,500 orders in
    force) that held the loop 20–35 ms a round, beside the flash deliveries."""

    def __init__(self, standing: list[Standing], registry: Registry) -> None:
        self.standing = standing
        self.registry = registry
        self._named: dict[str, list[int]] = {}  # a district an alert names → those alerts
        self._inside: dict[str, list[int]] = {}  # that district and each above it → the same
        for i, s in enumerate(standing):
            for district in s.alert.districts:
                try:
                    chain = registry.ancestors(district)
                except Exception:
                    continue  # a code the registry does not know touches no town
                self._named.setdefault(district, []).append(i)
                for above in chain:
                    self._inside.setdefault(above, []).append(i)

    def in_town(self, municipality: str) -> list[Standing]:
        hits = set(self._inside.get(municipality, ()))  # a district in the town, or the town
        try:
            for above in self.registry.ancestors(municipality):
                hits.update(self._named.get(above, ()))  # a district covering the town
        except Exception:
            pass  # a town the registry does not know: only what names it
        return [self.standing[i] for i in sorted(hits)]


class Store:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.ledger = DeliveryLedger(keys)
        self._secret: bytes | None = None
        self._idempotency_hmac: tuple[bytes, HmacKey] | None = None  # (the secret it is for, its key)
        # Decoded alert documents by id, for listings and the in-force reads (documents are
        # write-once), least recently used out first. A decoded alert costs about 7.6 KiB
        # (against 2 KiB packed): the old bound of 20,000 was ~150 MB, and the soak's 27 %
        # RSS growth was this cache filling (one entry per alert ever in force).
        self._docs: OrderedDict[str, Alert] = OrderedDict()
        self.doc_cache = DOC_CACHE
        # When this process last put in the expiry index what it lacked (expire_active).
        self._expiry_checked = -EXPIRY_CHECK_S
        # Which retained states an alert touches ("<status>|<municipality>"); the engine
        # sets it (it needs the registry), so expiry can mark them as a commit does.
        self.dirty_states: Callable[[Alert, list[Alert]], list[str]] | None = None
        # Replicas that must hold a commit before it is answered 202 (Redis WAIT), and how
        # long to wait for them: with Sentinel, a failover then cannot lose an accepted alert.
        self.wait_replicas = 0
        self.wait_ms = 500
        # ALERTD_REDIS_WAITAOF: the AOF fsynced (here and/or on replicas) before 202.
        self.waitaof: WaitAof | None = None
        # Replicas connected to the master, as check_replicas last read them
        # (None: not read, or none wanted).
        self.replicas_connected: int | None = None
        # Fan-outs whose remaining lane entries this process is queueing (commit_alert).
        # queue_rest False leaves them to the workers' take-over, as if this process had
        # died just after the commit (what tests of that take-over need).
        self._queueing: set[asyncio.Task[None]] = set()
        self.queue_rest = True
        # Where delivery work lives (alertd/shards.py): the deployment's own slot alone
        # unless the engine splits it (ALERTD_LANE_SHARDS).
        self.shards: list[Shard] = [Shard(0, keys, redis, self.ledger)]
        # Replicas connected to each further shard's master, where it has one of its own.
        self.shard_replicas: dict[int, int] = {}

    @property
    def sharded(self) -> bool:
        return len(self.shards) > 1

    def shard_of(self, subscriber_id: str) -> Shard:
        return self.shards[shard_index(subscriber_id, len(self.shards))]

    # --- deployment secret ---------------------------------------------------
    async def secret(self) -> bytes:
        """The HMAC key behind idempotency keys; the first process to start makes it."""
        if self._secret is None:
            await self.redis.set(self.keys.secret, secrets.token_bytes(32), nx=True)
            self._secret = await self.redis.get(self.keys.secret)
        assert self._secret is not None
        return self._secret

    async def refresh_secret(self) -> None:
        """Read the secret again: after Redis lost its data every process must agree
        on the new one, or acks proven with the old keys would be refused."""
        await self.redis.set(self.keys.secret, secrets.token_bytes(32), nx=True)
        self._secret = await self.redis.get(self.keys.secret)

    async def mark_deployment(self, who: str) -> bool:
        """Note that this deployment has started; False if it had (the data is there)."""
        return bool(await self.redis.set(self.keys.deployment, f"{who} {time.time():.0f}", nx=True))

    async def deployment_known(self) -> bool:
        return bool(await self.redis.exists(self.keys.deployment))

    async def idempotency_key(self, alert_id: str, subscriber_id: str) -> str:
        """Same alert and subscriber, same key — across retries, paths and processes.

        Keyed with the deployment secret so that knowing a key proves the
        receiver got the delivery; that is what the HTTP ack checks.
        """
        # Once per delivery: the secret's pads are hashed once (adapters.signing.HmacKey).
        secret = await self.secret()
        key = self._idempotency_hmac
        if key is None or key[0] is not secret:
            key = self._idempotency_hmac = (secret, HmacKey(secret))
        return key[1].digest(f"{alert_id}/{subscriber_id}".encode()).hex()[:32]

    # --- issuers -------------------------------------------------------------
    async def put_issuer(self, issuer: Issuer) -> None:
        from alertd.errors import Conflict

        owner = await self.redis.get(self.keys.issuer_token(issuer.token_hash))
        if owner is not None and owner.decode() != issuer.id:
            raise Conflict("That token already belongs to another issuer; give each issuer its own token.")
        for sender in issuer.senders:
            owner = await self.redis.get(self.keys.sender_owner(sender))
            if owner is not None and owner.decode() != issuer.id:
                raise Conflict(
                    f"The sender {sender!r} already belongs to issuer {owner.decode()!r}; a sender names one "
                    "issuer only.",
                    field="senders",
                )
        old = await self.get_issuer(issuer.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            if old is not None:
                pipe.delete(self.keys.issuer_token(old.token_hash))
                for sender in old.senders:
                    pipe.delete(self.keys.sender_owner(sender))
            pipe.set(self.keys.issuer(issuer.id), _pack(asdict(issuer)))
            pipe.set(self.keys.issuer_token(issuer.token_hash), issuer.id)
            for sender in issuer.senders:
                pipe.set(self.keys.sender_owner(sender), issuer.id)
            pipe.sadd(self.keys.issuers, issuer.id)
            await pipe.execute()

    async def get_issuer(self, issuer_id: str) -> Issuer | None:
        raw = await self.redis.get(self.keys.issuer(issuer_id))
        return Issuer(**_unpack(raw)) if raw else None

    async def issuer_by_token(self, token: str) -> Issuer | None:
        issuer_id = await self.redis.get(self.keys.issuer_token(token_hash(token)))
        return await self.get_issuer(issuer_id.decode()) if issuer_id else None

    async def list_issuers(self) -> list[Issuer]:
        ids = sorted(m.decode() for m in await self.redis.smembers(self.keys.issuers))
        found = [await self.get_issuer(i) for i in ids]
        return [i for i in found if i is not None]

    async def delete_issuer(self, issuer_id: str) -> bool:
        issuer = await self.get_issuer(issuer_id)
        if issuer is None:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.issuer(issuer_id), self.keys.issuer_token(issuer.token_hash))
            for sender in issuer.senders:
                pipe.delete(self.keys.sender_owner(sender))
            pipe.srem(self.keys.issuers, issuer_id)
            await pipe.execute()
        return True

    # --- subscribers ---------------------------------------------------------
    async def put_subscriber(self, sub: Subscriber) -> None:
        data = asdict(sub)
        data["adapter"] = sub.adapter.value
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.subscriber(sub.id), _pack(data))
            pipe.sadd(self.keys.subscribers, sub.id)
            pipe.incr(self.keys.subscribers_version)
            await pipe.execute()

    async def put_subscribers(self, subs: list[Subscriber]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for sub in subs:
                data = asdict(sub)
                data["adapter"] = sub.adapter.value
                pipe.set(self.keys.subscriber(sub.id), _pack(data))
                pipe.sadd(self.keys.subscribers, sub.id)
            pipe.incr(self.keys.subscribers_version)
            await pipe.execute()

    @staticmethod
    def _subscriber(raw: bytes) -> Subscriber:
        data = _unpack(raw)
        data["adapter"] = AdapterKind(data["adapter"])
        return Subscriber(**data)

    async def get_subscriber(self, subscriber_id: str) -> Subscriber | None:
        raw = await self.redis.get(self.keys.subscriber(subscriber_id))
        return self._subscriber(raw) if raw else None

    async def subscriber_ids(self) -> set[str]:
        return {m.decode() for m in await self.redis.smembers(self.keys.subscribers)}

    async def list_subscribers(self) -> list[Subscriber]:
        ids = sorted(m.decode() for m in await self.redis.smembers(self.keys.subscribers))
        if not ids:
            return []
        raws = await self.redis.mget([self.keys.subscriber(i) for i in ids])
        return [self._subscriber(r) for r in raws if r]

    async def delete_subscriber(self, subscriber_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.subscriber(subscriber_id))
            pipe.srem(self.keys.subscribers, subscriber_id)
            pipe.incr(self.keys.subscribers_version)
            deleted, _, _ = await pipe.execute()
        return bool(deleted)

    async def subscribers_version(self) -> int:
        return int(await self.redis.get(self.keys.subscribers_version) or 0)

    # --- alerts --------------------------------------------------------------
    async def answer_for(self, scope: str, sender: str, identifier: str) -> dict[str, Any] | None:
        """The 202 answer given when this issuer first sent this sender's identifier."""
        alert_id = await self.redis.get(self.keys.dedup(scope, sender, identifier))
        if alert_id is None:
            return None
        raw = await self.redis.hget(self.keys.alert(alert_id.decode()), "answer")
        return _unpack(raw) if raw else None

    async def commit_alert(
        self,
        alert: Alert,
        plan: list[PlannedDelivery],
        answer: dict[str, Any],
        changes: dict[str, AlertChange],
        *,
        fingerprint: str = "",
        dirty: list[str] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Write the alert, its log entry, its fan-out work and what it changes, atomically.

        ``changes`` maps referenced alert ids to what this alert does to them
        (end them in a state, or lift some of their districts). A change made
        from a reading of the referenced alert (``expect_rev``) is refused with
        StaleState when that alert changed since: the caller plans again.
        Returns (answer, created): when another request with the same sender and
        identifier won the race, its answer and False.
        """
        scope = dedup_scope(alert.issuer_id)
        dedup_key = self.keys.dedup(scope, alert.sender, alert.identifier)
        accepted_ms = int(alert.accepted_at.timestamp() * 1000) if alert.accepted_at else now_ms()
        doc = _pack(alert.to_dict())
        lane = self.keys.lane(alert.priority)
        in_force = is_standing_kind(alert)
        changed_keys = [self.keys.alert(ref_id) for ref_id in changes]
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(dedup_key, *changed_keys)
                existing = await pipe.get(dedup_key)
                if existing is not None:
                    await pipe.reset()
                    previous = await self.answer_for(scope, alert.sender, alert.identifier)
                    return (previous or {"id": existing.decode()}), False
                current = {}
                ref_prefs: dict[str, set[str]] = {}
                ref_munis: dict[str, str | None] = {}
                for ref_id, change in changes.items():
                    rev, lifted, raw_doc = await pipe.hmget(self.keys.alert(ref_id), ["rev", "lifted", "doc"])
                    if change.expect_rev is not None and int(rev or 0) != change.expect_rev:
                        await pipe.reset()
                        raise StaleState(ref_id)
                    current[ref_id] = set(_unpack(lifted)) if lifted else set()
                    ref_doc = Alert.from_dict(_unpack(raw_doc)) if raw_doc else None
                    ref_prefs[ref_id] = prefectures_of(ref_doc) if ref_doc else set()
                    ref_munis[ref_id] = order_municipality(ref_doc) if ref_doc else None
                pipe.multi()
                pipe.set(dedup_key, alert.id)
                pipe.hset(
                    self.keys.alert(alert.id),
                    mapping={
                        "doc": doc,
                        "state": AlertState.ACTIVE if in_force else AlertState.ENDED,
                        "answer": _pack(answer),
                        "fingerprint": fingerprint,
                        "planned": len(plan),
                        "rev": 0,
                        # Who is to get it; a delivery with no recorded state yet is "queued".
                        "plan": _pack(plan),  # [[subscriber_id, adapter], ...]
                    },
                )
                pipe.zadd(self.keys.alerts, {alert.id: accepted_ms})
                pipe.sadd(self.keys.reference(alert.sender, alert.identifier), alert.id)
                if in_force:
                    pipe.sadd(self.keys.active, alert.id)
                    pipe.zadd(self.keys.expiry, {alert.id: _expiry_score(alert)})
                    for pref in prefectures_of(alert):
                        pipe.sadd(self.keys.active_in(pref), alert.id)
                    if (muni := order_municipality(alert)) is not None:
                        pipe.sadd(self.keys.active_orders(muni), alert.id)
                for ref_id, change in changes.items():
                    key = self.keys.alert(ref_id)
                    mapping: dict[str, Any] = {}
                    if change.state is not None:
                        mapping.update(state=change.state, superseded_by=alert.id)
                        pipe.srem(self.keys.active, ref_id)
                        for pref in ref_prefs[ref_id]:
                            pipe.srem(self.keys.active_in(pref), ref_id)
                        if ref_munis[ref_id] is not None:
                            pipe.srem(self.keys.active_orders(ref_munis[ref_id]), ref_id)
                    if change.lift:
                        mapping["lifted"] = _pack(sorted(current[ref_id] | set(change.lift)))
                        mapping["lifted_by"] = alert.id
                    if mapping:
                        pipe.hset(key, mapping=mapping)
                        pipe.hincrby(key, "rev", 1)
                pipe.xadd(self.keys.log, {"id": alert.id, "doc": doc})
                pipe.incr(self.keys.views_version)
                pipe.set(f"{self.keys.views_updated}:{alert.status.value}", accepted_ms)
                if not in_force and alert.msg_type.value in ("Update", "Cancel"):
                    until = alert.expires.timestamp() if alert.expires else accepted_ms / 1000 + 86400
                    pipe.zadd(self.keys.changes, {alert.id: until})
                if dirty:  # the municipalities whose retained state this changes
                    pipe.sadd(self.keys.state_dirty, *dirty)
                subs = [p.subscriber_id for p in plan]
                self._queue_fan_out(pipe, alert, plan, accepted_ms)
                await pipe.execute()
                if subs and self.sharded:
                    self._in_background(self._start_shards(alert.id, subs, alert.priority.value, accepted_ms))
                elif len(subs) > FIRST_ENTRIES:
                    self._in_background(self._queue_rest(self.shards[0], alert.id, lane, subs, FIRST_ENTRIES))
                # At least once across a failover: the WAIT below (when replicas are asked
                # for) covers this transaction — the alert, its first entries and the marker
                # of the rest; the parts may reach a replica only after the 202. Each part
                # and its progress are one script, so a replica has both or neither: after a
                # failover that lost parts, the marker there counts only the entries it has,
                # and a worker takes the fan-out over once the marker has not moved for
                # FANOUT_STALE_MS (resume_fanouts) and queues the rest again. The committer,
                # if alive, stops at its next part (its count no longer matches). A delivery
                # already made from a lost part is made again, under the same idempotency key.
                await self._replicated(alert.id)
            except WatchError as exc:
                previous = await self.answer_for(scope, alert.sender, alert.identifier)
                if previous is None and changes:
                    raise StaleState(",".join(changes)) from None  # a referenced alert changed meanwhile
                if previous is None:
                    # No twin committed: the watch broke because the connection did (redis-py
                    # turns a connection error while watching into WatchError) — a failover,
                    # a restart. Nothing was written; the desk must hear "not accepted, send
                    # again" (503), never an empty success.
                    raise RedisConnectionError(f"the commit was interrupted, nothing was written: {exc}") from exc
                return previous, False
        return answer, True

    def _queue_fan_out(self, pipe: Any, alert: Alert, plan: list[PlannedDelivery], accepted_ms: int) -> None:
        """On the alert's transaction: its first lane entries and the marker of the rest (with
        lane shards, the marker of the shards still to start), and its count of deliveries left.

        The first entries go in with the alert (one command: one round trip however many);
        a larger fan-out's rest is queued in parts right after the commit, under a marker
        written here, in the same transaction, so an accepted alert always has either all its
        entries or the marker saying which are still to come. Why: 2,000 XADDs in this
        transaction held Redis (and the worker's read) ~10 ms before the first delivery."""
        subs = [p.subscriber_id for p in plan]
        if not subs:
            return
        if self.sharded:
            # The shards' slots are not this transaction's: each shard's part is started
            # right after it, under this marker (_start_shards).
            pipe.hset(self.keys.fanouts_sharding, alert.id,
                      _progress(0, len(subs), now_ms(), alert.priority.value, accepted_ms))  # fmt: skip
        else:
            pipe.eval(_FAN_OUT, 1, self.keys.lane(alert.priority), alert.id, accepted_ms, *subs[:FIRST_ENTRIES])
            if len(subs) > FIRST_ENTRIES:
                pipe.hset(self.keys.fanouts_queueing, alert.id,
                          _progress(FIRST_ENTRIES, len(subs), now_ms(), alert.priority.value, accepted_ms))  # fmt: skip
        receivers = sum(1 for p in plan if p.adapter != "feed")
        if receivers:
            # How many subscriber deliveries are left, for the fan-out's duration
            # (ledger.FANOUT_SCRIPT counts them down); gone a day after expiry at most.
            fanout = self.keys.fanout(alert.id)
            pipe.hset(fanout, "left", receivers)
            until_s = alert.expires.timestamp() if alert.expires else accepted_ms / 1000 + 86400
            pipe.expireat(fanout, int(until_s) + 86400)

    # --- a fan-out's remaining lane entries ------------------------------------------
    def _in_background(self, queueing: Coroutine[Any, Any, None]) -> None:
        if not self.queue_rest:
            queueing.close()
            return
        task = asyncio.create_task(queueing)
        self._queueing.add(task)
        task.add_done_callback(self._queueing.discard)

    async def _start_shards(self, alert_id: str, subs: list[str], lane: str, accepted_ms: int) -> None:
        """Start every shard's part of a sharded fan-out (its first entries and the marker of
        its rest, one script in the shard's slot), wait for the shards' replicas as the
        commit waited for the alert's, then drop the alert's marker; the parts meanwhile.

        The alert's marker (Keys.fanouts_sharding) is dropped only once every shard holds
        its start on as many replicas as the commit did, so a failover of a shard's master
        cannot lose a start nobody would make again; each start is made once (its flag), so
        a worker finishing a dead committer's work (resume_fanouts) never doubles one."""
        by_shard: dict[int, list[str]] = {}
        for sub in subs:
            by_shard.setdefault(self.shard_of(sub).index, []).append(sub)
        shards = [(self.shards[i], part) for i, part in sorted(by_shard.items())]
        started = await asyncio.gather(*(self._start_shard(shard, alert_id, part, lane, accepted_ms)
                                         for shard, part in shards), return_exceptions=True)  # fmt: skip
        failed = [f"shard {shard.index}: {type(e).__name__}: {e}"
                  for (shard, _), e in zip(shards, started, strict=True) if isinstance(e, BaseException)]  # fmt: skip
        # The rest of each shard that started, at once; one that did not start is left with
        # the alert's marker to a worker (a shard's master away: the others go on meanwhile).
        rest = asyncio.gather(*(self._queue_rest(shard, alert_id, shard.keys.lane(lane), part, done)
                                for (shard, part), done in zip(shards, started, strict=True)
                                if isinstance(done, int) and 0 <= done < len(part)))  # fmt: skip
        try:
            if failed:
                log.warning("store.fanout_start_failed", alert_id=alert_id, error="; ".join(failed),
                            action="a worker starts it once the shard's Redis answers")  # fmt: skip
            else:
                copied = await asyncio.gather(*(self._replicated(alert_id, shard) for shard, _ in shards))
                if all(copied):
                    await self.redis.hdel(self.keys.fanouts_sharding, alert_id)
                # else the marker stays: a shard's start is on its master only, and a failover
                # there could lose it; a worker takes the marker over a second later (each start
                # is made once) and waits for the replicas again.
        except Exception as exc:  # never lost: the marker stays, and a worker takes it over
            log.warning("store.fanout_start_failed", alert_id=alert_id, error=f"{type(exc).__name__}: {exc}")
        await rest

    async def _start_shard(self, shard: Shard, alert_id: str, subs: list[str], lane: str, accepted_ms: int) -> int:
        keys = shard.keys
        return int(await shard.redis.eval(
            _START_SHARD, 3, keys.fanout_started(alert_id), keys.fanouts_queueing, keys.lane(lane),
            alert_id, accepted_ms, now_ms(), lane, len(subs), *subs[:FIRST_ENTRIES],
        ))  # fmt: skip

    async def _queue_rest(self, shard: Shard, alert_id: str, lane: str, subs: list[str], done: int) -> None:
        """Queue a fan-out's entries from ``done`` on, a part at a time, each part and the
        progress in one script. It stops when another writer has moved the progress (it
        took the fan-out over) or the fan-out is done, and after three refusals from Redis,
        which leaves the rest to resume_fanouts."""
        try:
            await self._queue_parts(shard, alert_id, lane, subs, done)
        except Exception as exc:  # never lost: the marker stays, and a worker takes it over
            log.warning("store.fanout_queue_failed", alert_id=alert_id, error=f"{type(exc).__name__}: {exc}")

    async def _queue_parts(self, shard: Shard, alert_id: str, lane: str, subs: list[str], done: int) -> None:
        while done < len(subs):
            part = subs[done : done + PART_ENTRIES]
            for attempt in range(3):
                try:
                    got = int(await shard.redis.eval(_QUEUE_PART, 2, shard.keys.fanouts_queueing, lane, alert_id,
                                                    done, now_ms(), *part))  # fmt: skip
                    break
                except RedisError:
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.05 * 2**attempt)
            if got < 0:
                return
            done = got

    async def resume_fanouts(self, shard: Shard | None = None, stale_ms: int = FANOUT_STALE_MS) -> int:
        """Queue the rest of every fan-out of this shard (the first by default) whose queueing
        stopped (its process died after the commit, or Redis refused the parts) and has not
        moved for ``stale_ms``; the workers call it, each for its shard. The first shard's
        worker also starts the shards of sharded fan-outs whose committer never did.
        Returns how many fan-outs it took over."""
        shard = shard or self.shards[0]
        taken = 0
        if shard.index == 0 and self.sharded:
            taken += await self._resume_starts(stale_ms)
        raw = await shard.redis.hgetall(shard.keys.fanouts_queueing)
        for field_, value in raw.items():
            alert_id, text = field_.decode(), value.decode()
            taken_over = await self._take_over(shard, shard.keys.fanouts_queueing, alert_id, text, stale_ms)
            if taken_over is None:
                continue
            done, total, lane = taken_over
            subs = [s for s, _ in await self.plan(alert_id) if self.shard_of(s) is shard][:total]
            if len(subs) < total:  # the alert itself is gone (a retention sweep): nothing to deliver
                await shard.redis.hdel(shard.keys.fanouts_queueing, alert_id)
                continue
            log.warning("store.fanout_resumed", alert_id=alert_id, queued=done, of=total, shard=shard.index)
            await self._queue_rest(shard, alert_id, shard.keys.lane(lane), subs, done)
            taken += 1
        return taken

    async def _resume_starts(self, stale_ms: int) -> int:
        """Start the shards of every sharded fan-out whose committer did not (see _start_shards)."""
        # Side by side, a few at a time: a shard whose master is away makes each start wait
        # out its timeout, and one after another that was seconds per fan-out.
        bound = asyncio.Semaphore(16)

        async def resume(alert_id: str, text: str) -> int:
            async with bound:
                taken_over = await self._take_over(self.shards[0], self.keys.fanouts_sharding, alert_id, text,
                                                   stale_ms)  # fmt: skip
                if taken_over is None:
                    return 0
                _, total, lane = taken_over
                subs = [s for s, _ in await self.plan(alert_id)][:total]
                if len(subs) < total:  # the alert itself is gone (a retention sweep): nothing to deliver
                    await self.redis.hdel(self.keys.fanouts_sharding, alert_id)
                    return 0
                log.warning("store.fanout_start_resumed", alert_id=alert_id, of=total)
                await self._start_shards(alert_id, subs, lane, int(text.split(" ")[4]))
                return 1

        raw = await self.redis.hgetall(self.keys.fanouts_sharding)
        return sum(await asyncio.gather(*(resume(f.decode(), v.decode()) for f, v in raw.items())))

    async def unstarted_fanouts(self) -> tuple[int, float]:
        """(how many, the oldest's age in s since its alert was accepted) of the sharded
        fan-outs some of whose shards have not been started: /healthz names them when a
        shard's Redis keeps refusing (full, or away), since their entries are in no lane."""
        if not self.sharded:
            return 0, 0.0
        raw = await self.redis.hgetall(self.keys.fanouts_sharding)
        ages = []
        for value in raw.values():
            try:
                ages.append(max(0.0, now_ms() / 1000 - int(value.decode().split(" ")[4]) / 1000))
            except (ValueError, IndexError):
                continue
        return len(ages), max(ages, default=0.0)

    async def _take_over(self, shard: Shard, marker: str, alert_id: str, text: str,
                         stale_ms: int) -> tuple[int, int, str] | None:  # fmt: skip
        """(queued, planned, lane) of a stalled fan-out's marker, once this process has taken
        it over; None when it is not stalled or another process took it first."""
        try:
            done_s, total_s, touched, lane, _ = text.split(" ")
            done, total = int(done_s), int(total_s)
            stale = now_ms() - int(touched) >= stale_ms
        except ValueError:
            await shard.redis.hdel(marker, alert_id)  # not alertd's: nothing to resume
            return None
        if not stale or not await shard.redis.eval(_TAKE_OVER, 1, marker, alert_id, text, now_ms()):
            return None
        return done, total, lane

    async def settle_fanouts(self, timeout_s: float = 5.0) -> None:
        """Let this process's fan-outs finish queueing (a graceful stop); what is left after
        ``timeout_s`` another process takes over."""
        if self._queueing:
            await asyncio.wait(set(self._queueing), timeout=timeout_s)

    async def check_replicas(self) -> None:
        """Read how many replicas the master has connected (every second, from the engine),
        for _replicated, /healthz and alertd_redis_replicas_connected. Connected in any state,
        a replica still syncing included: WAIT will have it once it is in sync, and counting
        only "online" ones missed a replica for the second before its first acknowledgement
        (an order just after the start went unreplicated in a CI run)."""
        info = await self.redis.info("replication")
        if info.get("role") != "master":
            return  # a demoted master, mid-failover: the next connection finds the new one
        connected = int(info.get("connected_slaves", 0))
        before, self.replicas_connected = self.replicas_connected, connected
        await self._check_shard_replicas()
        # The gauge is the fewest any of alertd's masters has: the one a second failure hits.
        REDIS_REPLICAS_CONNECTED.set(min([connected, *self.shard_replicas.values()]))
        REDIS_REPLICAS_WANTED.set(self.wait_replicas)
        if connected < self.wait_replicas and (before is None or before >= self.wait_replicas):
            log.warning("store.replicas_missing", connected=connected, wanted=self.wait_replicas,
                        meaning="accepted alerts are on one Redis only until a replica (re)joins")  # fmt: skip
        elif connected >= self.wait_replicas and before is not None and before < self.wait_replicas:
            log.info("store.replicas_back", connected=connected, wanted=self.wait_replicas)

    async def _check_shard_replicas(self) -> None:
        """The same for each lane shard on a master of its own (a cluster's other masters):
        after a failover of a shard's master, it too has no replica until the failed server
        rejoins, and /healthz must say so (a README-only trial found it silent)."""
        for shard in self.shards[1:]:
            if shard.redis is self.redis:
                continue  # the same server as the deployment's own
            try:
                info = await shard.redis.info("replication")
            except RedisError:
                # Away: /healthz says so through the backlog. Its count is not known now (the
                # replica promoted in its place will have none): not shown as it last was.
                self.shard_replicas.pop(shard.index, None)
                continue
            if info.get("role") == "master":
                now = int(info.get("connected_slaves", 0))
                if now < self.wait_replicas and self.shard_replicas.get(shard.index, self.wait_replicas) >= self.wait_replicas:
                    log.warning("store.replicas_missing", shard=shard.index, connected=now, wanted=self.wait_replicas,
                                meaning="that shard's delivery work is on one Redis only until a replica (re)joins")  # fmt: skip
                self.shard_replicas[shard.index] = now

    def replicas_short(self) -> list[tuple[str, int]]:
        """(where, replicas connected) of each of alertd's masters with fewer than wanted."""
        wanted = self.wait_replicas
        short = [("alertd's own master", self.replicas_connected)] if (
            self.replicas_connected is not None and self.replicas_connected < wanted) else []  # fmt: skip
        return short + [(f"the master of lane shard {i} ({self.shards[i].root})", n)
                        for i, n in sorted(self.shard_replicas.items()) if n < wanted]  # fmt: skip

    async def _replicated(self, alert_id: str, shard: Shard | None = None) -> bool:
        """Wait until ``wait_replicas`` replicas hold everything written so far (WAIT), on
        the deployment's master or, given a shard, on the master of that shard's slot.

        A replica that does not answer in ``wait_ms`` does not refuse the alert: it is
        committed on the master already, and a disaster desk must not be stopped by a dead
        replica. It is logged and counted instead (alertd_replication_short_total), since
        a failover in that window could lose it.

        Only the replicas there are are waited for: after a failover the promoted master
        has none until the failed one rejoins, and waiting for a replica that is not there
        added the whole wait (500 ms) to every order of a README-only trial while /healthz
        said nothing. Such alerts are counted short at once; /healthz warns and
        alertd_redis_replicas_connected says how many there are."""
        aof = self.waitaof
        wanted = self.wait_replicas
        # The counters count accepted alerts (the commit's wait); a shard's start waited for
        # after it is logged alone, with its shard.
        count = shard is None
        where = {} if shard is None else {"shard": shard.index}
        connected = self.replicas_connected if shard is None else self.shard_replicas.get(shard.index,
                                                                                            self.replicas_connected)  # fmt: skip
        if wanted and connected is not None and connected < wanted:
            if count:
                REPLICATION_SHORT.inc()
            wanted = connected
        if shard is None:
            acked, fsynced = await wait_for_copies(self.redis, self.keys.wait_fence, wanted, self.wait_ms, aof)
        else:
            acked, fsynced = await wait_for_copies(shard.redis, shard.keys.lanes_fence, wanted, self.wait_ms, aof)
        copied = True
        if acked is not None and acked < wanted:
            copied = False
            if count:
                REPLICATION_SHORT.inc()
            log.warning("store.replication_short", alert_id=alert_id, replicas=acked, wanted=self.wait_replicas,
                        wait_ms=self.wait_ms, **where)  # fmt: skip
        if aof is not None and fsynced is not None:
            # Like WAIT: a short answer does not refuse the alert (it is committed), it is
            # logged and counted — an operating-system crash in that window could lose it.
            local, replicas = fsynced
            if local < aof.numlocal or replicas < aof.numreplicas:
                if count:
                    FSYNC_SHORT.inc()
                log.warning("store.fsync_short", alert_id=alert_id, local=local, replicas=replicas,
                            wanted=f"{aof.numlocal},{aof.numreplicas}", timeout_ms=aof.timeout_ms, **where)  # fmt: skip
        return copied

    async def earlier_message(
        self, scope: str, sender: str, identifier: str
    ) -> tuple[dict[str, Any], str] | None:
        """(first answer, content fingerprint) of the alert this issuer already sent with this
        sender and identifier; None when it is new. Two round trips, whatever is found."""
        alert_id = await self.redis.get(self.keys.dedup(scope, sender, identifier))
        if alert_id is None:
            return None
        raw_answer, fingerprint = await self.redis.hmget(self.keys.alert(alert_id.decode()), ["answer", "fingerprint"])
        if raw_answer is None:
            # The alert itself is past its retention (alertd/retention.py) but its marker is
            # kept longer: the resend is the same message, answered with the first id.
            return {"id": alert_id.decode()}, ""
        return _unpack(raw_answer), fingerprint.decode() if fingerprint is not None else ""

    async def in_force(
        self, municipality: str, status: str, registry: Registry, *, orders_only: bool = False
    ) -> list[Standing]:
        """Every alert in force that touches this municipality, with its status, now
        (``orders_only``: its evacuation orders, all a desk order plans against)."""
        if orders_only:
            members = await self.redis.smembers(self.keys.active_orders(municipality))
            return self._standing_in(await self._load_standing(members), municipality, status, registry)
        return (await self.in_force_many([municipality], status, registry))[municipality]

    async def in_force_many(
        self, municipalities: list[str], status: str, registry: Registry
    ) -> dict[str, list[Standing]]:
        """``in_force`` for many municipalities at once: each prefecture's alerts are read once
        (a tsunami message can change the state of a thousand towns)."""
        out: dict[str, list[Standing]] = {}
        for pref in sorted({m[:2] for m in municipalities}):
            members = await self.redis.sunion(self.keys.active_in(pref), self.keys.active_in("xx"))
            # Whether each alert stands at all is worked out once, not once per town: a state
            # round of a prefecture's towns under dozens of standing alerts was that many
            # times over (tens of ms on the loop the flash deliveries share).
            by_town = StandingByTown(self._standing(await self._load_standing(members), status, registry), registry)
            for muni in (m for m in municipalities if m[:2] == pref):
                out[muni] = by_town.in_town(muni)
        return out

    async def _load_standing(self, members: Any) -> list[tuple[Alert, dict[str, Any]]]:
        return await self._load(sorted(m.decode() for m in members), extra=("lifted", "rev"))

    @classmethod
    def _standing_in(
        cls, rows: list[tuple[Alert, dict[str, Any]]], municipality: str, status: str, registry: Registry
    ) -> list[Standing]:
        return StandingByTown(cls._standing(rows, status, registry), registry).in_town(municipality)

    @staticmethod
    def _standing(rows: list[tuple[Alert, dict[str, Any]]], status: str, registry: Registry) -> list[Standing]:
        """The alerts of ``rows`` in force now with this status, oldest first."""
        now = utcnow()
        out = []
        for alert, meta in rows:
            if alert.status.value != status or meta.get("state") != AlertState.ACTIVE:
                continue
            standing = Standing(alert, frozenset(meta.get("lifted") or ()), int(meta.get("rev") or 0))
            if standing.in_force(registry, now):
                out.append(standing)
        out.sort(key=lambda s: (s.alert.accepted_at or s.alert.sent, s.alert.id))
        return out

    async def plan_of(self, alert_ids: list[str]) -> list[tuple[str, str]]:
        """Who the given alerts were planned for (subscriber id, adapter), each once."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for alert_id in alert_ids:
                pipe.hget(self.keys.alert(alert_id), "plan")
            raws = await pipe.execute()
        out: dict[str, str] = {}
        for raw in raws:
            for sub_id, adapter in _unpack(raw) if raw else []:
                out.setdefault(sub_id, adapter)
        return list(out.items())

    async def referenced(self, sender: str, identifier: str) -> list[str]:
        """Alert ids accepted with this CAP sender and identifier (normally one)."""
        return sorted(m.decode() for m in await self.redis.smembers(self.keys.reference(sender, identifier)))

    async def get_alert(self, alert_id: str) -> Alert | None:
        raw = await self.redis.hget(self.keys.alert(alert_id), "doc")
        return Alert.from_dict(_unpack(raw)) if raw else None  # a fresh copy: callers may change it

    async def alert_meta(self, alert_id: str) -> dict[str, Any]:
        names = ("state", "superseded_by", "planned", "lifted")
        raw = await self.redis.hmget(self.keys.alert(alert_id), list(names))
        return {k: (_unpack(v) if k == "lifted" else v.decode()) for k, v in zip(names, raw, strict=True) if v is not None}

    async def _load(
        self, ids: list[str], extra: tuple[str, ...] = ()
    ) -> list[tuple[Alert, dict[str, Any]]]:
        """Alerts and their state, a round trip per ``LOAD_CHUNK`` of them.

        An alert's document never changes once written, so decoded documents are
        kept (shared, read-only) and only the state is read again. ``extra``
        fields come back decoded too ("lifted" as a list). In chunks: the loop that
        runs this also delivers flash alerts, and every alert of a large disaster
        read and decoded in one go held it for 100 ms and more.
        """
        out: list[tuple[Alert, dict[str, Any]]] = []
        for start in range(0, len(ids), LOAD_CHUNK):
            out += await self._load_chunk(ids[start : start + LOAD_CHUNK], extra)
        return out

    async def _load_chunk(self, ids: list[str], extra: tuple[str, ...]) -> list[tuple[Alert, dict[str, Any]]]:
        names = ("state", "superseded_by", "planned", *extra)
        known = {alert_id: self.cached(alert_id) for alert_id in ids}
        async with self.redis.pipeline(transaction=False) as pipe:
            for alert_id in ids:
                pipe.hmget(self.keys.alert(alert_id), list(names) if known[alert_id] else ["doc", *names])
            rows = await pipe.execute()
        out = []
        for alert_id, row in zip(ids, rows, strict=True):
            alert = known[alert_id]
            if alert is None:
                raw_doc, *row = row
                if raw_doc is None:
                    continue
                alert = self.remember(Alert.from_dict(_unpack(raw_doc)))
            elif row[0] is None:
                self._docs.pop(alert_id, None)  # deleted meanwhile (by another process's retention sweep)
                continue
            values: dict[str, Any] = {}
            for k, v in zip(names, row, strict=True):
                if v is not None:
                    values[k] = _unpack(v) if k == "lifted" else v.decode()
            out.append((alert, values))
        return out

    def forget(self, alert_id: str) -> None:
        """The retention sweeper deleted this alert: its document is no longer worth keeping."""
        self._docs.pop(alert_id, None)

    def cached(self, alert_id: str) -> Alert | None:
        """The decoded alert if this process holds it (shared: read, never change it)."""
        alert = self._docs.get(alert_id)
        if alert is not None:
            self._docs.move_to_end(alert_id)  # in use: the last to go
        return alert

    def remember(self, alert: Alert) -> Alert:
        """Keep a decoded alert for the readers of this process (the delivery workers share it)."""
        self._docs[alert.id] = alert
        while len(self._docs) > self.doc_cache:
            self._docs.popitem(last=False)
        return alert

    async def list_alerts(
        self, *, active: bool = False, limit: int = 200, before: str | None = None, extra: tuple[str, ...] = ()
    ) -> list[tuple[Alert, dict[str, Any]]]:
        """Newest first; ``before`` (an alert id) pages back from that alert, excluded."""
        if active:
            ids = [m.decode() for m in await self.redis.smembers(self.keys.active)]
            if before is not None:
                ids = [i for i in ids if i < before]
        elif before is not None:
            score = await self.redis.zscore(self.keys.alerts, before)
            if score is None:
                return []
            # Alerts of the same millisecond share a score: take a few more, keep those before.
            raw = await self.redis.zrevrangebyscore(self.keys.alerts, score, "-inf", start=0, num=limit + 50)
            ids = [m.decode() for m in raw if m.decode() < before]
        else:
            ids = [m.decode() for m in await self.redis.zrevrange(self.keys.alerts, 0, limit - 1)]
        out = await self._load(ids, extra)
        out.sort(key=lambda pair: (pair[0].accepted_at or pair[0].sent, pair[0].id), reverse=True)
        return out[:limit]

    async def expire_active(self, now: float) -> list[str]:
        """Drop alerts whose expiry has passed from the in-force set.

        Only the alerts past due are read (the expiry index), not every alert in force:
        reading and decoding all of them every sweep took 100–300 ms of the loop once a
        storm had left 2,500 orders standing, and a flash alert arriving then waited it out.
        """
        if time.monotonic() >= self._expiry_checked + EXPIRY_CHECK_S:
            await self._index_expiries()
            self._expiry_checked = time.monotonic()
        due = [m.decode() for m in await self.redis.zrangebyscore(self.keys.expiry, "-inf", f"({now}")]
        if not due:
            return []
        standing = await self.redis.smismember(self.keys.active, due)
        ended = [i for i, still in zip(due, standing, strict=True) if still]
        loaded = {alert.id: alert for alert, _ in await self._load(ended)}
        async with self.redis.pipeline(transaction=True) as pipe:
            # Those lifted or superseded meanwhile are only dropped from the index.
            pipe.zrem(self.keys.expiry, *due)
            if ended:
                pipe.srem(self.keys.active, *ended)
                for alert_id in ended:
                    doc = loaded.get(alert_id)
                    prefs = prefectures_of(doc) if doc is not None else {"xx"}
                    for pref in prefs:
                        pipe.srem(self.keys.active_in(pref), alert_id)
                    if doc is not None and (muni := order_municipality(doc)) is not None:
                        pipe.srem(self.keys.active_orders(muni), alert_id)
                    if doc is not None and self.dirty_states is not None:
                        for member in self.dirty_states(doc, []):
                            pipe.sadd(self.keys.state_dirty, member)
                pipe.incr(self.keys.views_version)
                for status in {d.status.value for d in (loaded.get(i) for i in ended) if d is not None}:
                    pipe.set(f"{self.keys.views_updated}:{status}", int(now * 1000))
            await pipe.execute()
        return ended

    async def _index_expiries(self) -> None:
        """Put in the expiry index the alerts in force it does not hold: those committed before
        it existed, or by an older alertd still running beside this one (a rolling upgrade).
        One whose document is gone is indexed as due now, so the sweep drops it; one that
        never expires at +inf, so it is not read again. Two cheap reads when all are indexed."""
        ids = [m.decode() for m in await self.redis.smembers(self.keys.active)]
        if not ids:
            return
        scores = await self.redis.zmscore(self.keys.expiry, ids)
        missing = [i for i, score in zip(ids, scores, strict=True) if score is None]
        if missing:
            loaded = {alert.id: alert for alert, _ in await self._load(missing)}
            await self.redis.zadd(self.keys.expiry, {i: _expiry_score(loaded[i]) if i in loaded else 0.0
                                                     for i in missing})  # fmt: skip

    async def take_dirty_states(self, count: int) -> list[tuple[str, str]]:
        """Municipalities whose retained state changed, as (status, municipality)."""
        raw = await self.redis.spop(self.keys.state_dirty, count)
        return [tuple(m.decode().split("|", 1)) for m in raw or []]  # type: ignore[misc]

    async def mark_dirty(self, members: list[str]) -> None:
        if members:
            await self.redis.sadd(self.keys.state_dirty, *members)

    async def mark_standing_dirty(self, now: float) -> int:
        """Mark dirty the retained state of every municipality with an alert in force or a
        recent lift or cancel: after the broker came back it may have lost its retained
        messages (a kill -9 between saves, a replaced broker), and states are otherwise
        published only when they change. Returns how many states were marked."""
        ids = {m.decode() for m in await self.redis.smembers(self.keys.active)}
        ids |= {m.decode() for m in await self.redis.zrangebyscore(self.keys.changes, now, "+inf")}
        members: set[str] = set()
        if self.dirty_states is not None:
            for alert, _ in await self._load(sorted(ids)):
                members.update(self.dirty_states(alert, []))
        await self.mark_dirty(sorted(members))
        return len(members)

    async def recent_changes(self, now: float) -> list[tuple[Alert, dict[str, Any]]]:
        """Lifts, cancels and corrections that still matter (not yet expired), newest first."""
        await self.redis.zremrangebyscore(self.keys.changes, "-inf", now)
        ids = [m.decode() for m in await self.redis.zrange(self.keys.changes, 0, -1)]
        out = await self._load(ids)
        out.sort(key=lambda pair: (pair[0].accepted_at or pair[0].sent, pair[0].id), reverse=True)
        return out

    async def views_updated(self, status: str = "Actual") -> float | None:
        """When any alert of this status last changed (unix seconds): what a feed's <updated> says."""
        raw = await self.redis.get(f"{self.keys.views_updated}:{status}")
        return int(raw) / 1000 if raw else None

    # --- transmission tests ------------------------------------------------------
    async def put_test_run(self, run_id: str, record: dict[str, Any]) -> None:
        await self.redis.hset(self.keys.testruns, run_id, _pack(record))

    async def test_run(self, run_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.keys.testruns, run_id)
        return _unpack(raw) if raw is not None else None

    # --- districts a municipality adds ---------------------------------------
    async def put_district(self, municipality: str, name: str, feature: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.districts(municipality), name, _pack(feature))
            pipe.sadd(self.keys.district_munis, municipality)
            pipe.incr(self.keys.districts_version)
            await pipe.execute()

    async def delete_district(self, municipality: str, name: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.districts(municipality), name)
            pipe.incr(self.keys.districts_version)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    async def added_districts(self) -> tuple[int, dict[str, list[dict[str, Any]]]]:
        """(version, municipality -> features) of every district municipalities added."""
        version = int(await self.redis.get(self.keys.districts_version) or 0)
        munis = sorted(m.decode() for m in await self.redis.smembers(self.keys.district_munis))
        out: dict[str, list[dict[str, Any]]] = {}
        for muni in munis:
            raw = await self.redis.hgetall(self.keys.districts(muni))
            out[muni] = [_unpack(v) for _, v in sorted(raw.items())]
        return version, out

    async def put_layer(self, municipality: str, layer: str, features: list[dict[str, Any]]) -> None:
        """A municipality's own layer of districts, replacing the layer of that name."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.layers, f"{municipality}|{layer}", _pack(features))
            pipe.incr(self.keys.districts_version)
            await pipe.execute()

    async def delete_layer(self, municipality: str, layer: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.layers, f"{municipality}|{layer}")
            pipe.incr(self.keys.districts_version)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    async def layers(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """(municipality, layer) -> features of every layer municipalities loaded."""
        raw = await self.redis.hgetall(self.keys.layers)
        out: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for k, v in sorted(raw.items()):
            muni, _, layer = k.decode().partition("|")
            out[(muni, layer)] = _unpack(v)
        return out

    async def views_version(self) -> int:
        return int(await self.redis.get(self.keys.views_version) or 0)

    # --- deliveries ----------------------------------------------------------
    async def plan(self, alert_id: str) -> list[tuple[str, str]]:
        raw = await self.redis.hget(self.keys.alert(alert_id), "plan")
        return [(s, a) for s, a in _unpack(raw)] if raw else []

    async def delivery_inputs(self, alert_id: str) -> tuple[list[tuple[str, str]], dict[bytes, bytes]]:
        """What an alert's delivery rows are built from: its plan and its records."""
        return await self.plan(alert_id), await self.delivery_records(alert_id)

    async def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        plan, records = await self.delivery_inputs(alert_id)
        # Off the loop: 3,000 rows are ~15 ms of decoding, and the console's live board reads
        # them twice a second while the fan-out they show is still going out on this loop.
        return await run_report(self.ledger.rows, records, plan)

    async def delivery_records(self, alert_id: str) -> dict[bytes, bytes]:
        """An alert's delivery records (the ledger's fields), from every shard."""
        if not self.sharded:
            return await self.redis.hgetall(self.ledger.key(alert_id))
        records: dict[bytes, bytes] = {}
        for part in await asyncio.gather(*(s.redis.hgetall(s.ledger.key(alert_id)) for s in self.shards)):
            records.update(part)
        return records

    async def end_deliveries(self, alert_id: str, reason: str) -> list[str]:
        """End every unfinished subscriber delivery of an alert as superseded, with the reason, in
        one transaction (retried if a worker records an outcome meanwhile); the subscribers ended.

        What a drill calls at its end: a retry still parked for a live gateway would otherwise
        announce, hours later, the lift of an order that gateway never heard."""
        subscribers = [s for s, adapter in await self.plan(alert_id) if adapter != "feed"]
        ended: list[str] = []
        for shard in self.shards:
            ended += await self._end_in_shard(shard, alert_id, [s for s in subscribers if self.shard_of(s) is shard],
                                              reason)  # fmt: skip
        return sorted(ended)

    async def _end_in_shard(self, shard: Shard, alert_id: str, subscribers: list[str], reason: str) -> list[str]:
        if not subscribers:
            return []
        key = shard.ledger.key(alert_id)
        # In the same transaction where the fan-out's count is on the same client (one server,
        # or the first shard); another slot's (a cluster's other shards) right after.
        fanout_here = shard.redis is self.redis
        async with shard.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    mapping = shard.ledger.end_mapping(await pipe.hgetall(key), subscribers, reason)
                    ended = sorted({k.rpartition("|")[0] for k in mapping})
                    pipe.multi()
                    if mapping:
                        pipe.hset(key, mapping=mapping)
                        # These deliveries are over: the fan-out counts them down as the recorder would.
                        if fanout_here:
                            pipe.eval(FANOUT_SCRIPT, 1, self.keys.fanout(alert_id), len(ended), 0, now_ms())
                    await pipe.execute()
                    break
                except WatchError:
                    continue
        if ended and not fanout_here:
            await self.redis.eval(FANOUT_SCRIPT, 1, self.keys.fanout(alert_id), len(ended), 0, now_ms())
        return ended

    async def last_error(self, alert_id: str, subscriber_id: str) -> str | None:
        shard = self.shard_of(subscriber_id)
        return self.ledger.error_of(
            await shard.redis.hget(shard.ledger.key(alert_id), self.ledger.record_field(subscriber_id))
        )

    async def confirm(self, alert_id: str, subscriber_id: str, key: str, at: str) -> bool | None:
        """Record a receiver's confirmation, if the key proves it got this delivery.

        True: newly confirmed; False: it had confirmed already; None: refused.
        """
        if not key.isascii() or not hmac.compare_digest(key, await self.idempotency_key(alert_id, subscriber_id)):
            return None
        if subscriber_id not in {s for s, _ in await self.plan(alert_id)}:
            return None
        # HSETNX: the first confirmation's time is the one that counts.
        shard = self.shard_of(subscriber_id)
        return bool(
            await shard.redis.hsetnx(shard.ledger.key(alert_id), self.ledger.confirmed_field(subscriber_id), at)
        )

    async def backlog(self) -> Backlog:
        """Unfinished deliveries per lane and state, how old, and which waits longest. A lane
        shard whose Redis does not answer is left out and named in ``unreachable`` (the
        others' figures still count); the deployment's own Redis not answering raises."""
        if not self.sharded:
            return await read_backlog(self.redis, self.keys, self.ledger.retry_key)
        parts = await asyncio.gather(*(self._shard_backlog(s) for s in self.shards), return_exceptions=True)
        away = {p.shard.index: str(p) for p in parts if isinstance(p, ShardUnreachable)}
        for p in parts:
            if isinstance(p, BaseException) and not isinstance(p, ShardUnreachable):
                raise p
        return Backlog.merged([p for p in parts if isinstance(p, Backlog)], away)

    async def _shard_backlog(self, shard: Shard) -> Backlog:
        try:
            # Within /healthz's 2 s and /metrics' 1 s: a master gone with its host times out.
            return await asyncio.wait_for(read_backlog(shard.redis, shard.keys, shard.ledger.retry_key), 0.8)
        except (RedisError, TimeoutError) as exc:
            if shard.index == 0:
                raise  # the deployment's own Redis: /healthz says so as ever
            raise ShardUnreachable(shard, exc) from exc
