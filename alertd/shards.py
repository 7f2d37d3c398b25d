"""Lane shards: one deployment's delivery work split over several Redis slots.

On one Redis server, or a Sentinel-watched master, every key lives on one server
anyway and one shard is all there is. On a Redis Cluster, every key of alertd is
hash-tagged into one slot (a multi-key transaction must stay in one slot), so
every fan-out's work lands on one master however many there are. With
``ALERTD_LANE_SHARDS=N`` the delivery work is split into N shards, each its own
slot, chosen so that the slots are spread over the cluster's slot range (and so,
with the cluster's usual even split, over its masters):

- what lives in a shard: its two lanes (streams) and their consumer group, its
  retry schedule, the delivery records of its subscribers, the marker of its
  part of a fan-out still being queued;
- what stays in the deployment's own slot: alerts, the log, issuers, subscribers,
  each fan-out's count of deliveries left (the first/last-delivery metrics).

A subscriber belongs to one shard (a hash of its id), so its deliveries stay in
order, its circuit breaker and its concurrency bound in one place. Every worker
process serves every shard (one Worker per shard: alertd/worker.py), so a process
that dies leaves no shard unserved. The first shard is the deployment's own slot:
with one shard, nothing differs from before.

Changing N moves subscribers between shards; entries already queued in a shard
that no longer exists are not served. Change it with the lanes empty
(``alertd backlog``), as the README says.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from alertd.constants import Keys
from alertd.ledger import DeliveryLedger
from alertd.redis_client import is_cluster, key_root

MAX_SHARDS = 64


@dataclass
class Shard:
    index: int
    keys: Keys  # the deployment's keys, with this shard's lanes_root
    redis: aioredis.Redis  # a client of the master holding this shard's slot
    ledger: DeliveryLedger

    @property
    def root(self) -> str:
        return self.keys.lanes_root


class ShardUnreachable(Exception):
    """A lane shard's Redis (on a cluster, the master of its slot) did not answer, while the
    deployment's own may well: alerts are accepted, that shard's deliveries wait."""

    def __init__(self, shard: Shard, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.shard = shard
        self.cause = cause


def shard_index(subscriber_id: str, count: int) -> int:
    """The shard a subscriber's deliveries go to: the same in every process, every run."""
    return zlib.crc32(subscriber_id.encode()) % count if count > 1 else 0


def shard_roots(prefix: str, url: str, count: int) -> list[str]:
    """The key root of each shard; the first is the deployment's own.

    On a cluster the slot range is cut into ``count`` equal parts; the deployment's own
    slot lies in one of them, and each further root is a hash tag whose slot lies near the
    middle of one of the others. So N shards on a cluster of N masters, each holding a
    contiguous equal range (as ``redis-cli --cluster create`` makes them), fall on N
    different masters. The search is deterministic: every process finds the same roots."""
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"ALERTD_LANE_SHARDS must be between 1 and {MAX_SHARDS}, not {count}")
    main = key_root(prefix, url)
    roots = [main]
    if count == 1:
        return roots
    if not is_cluster(url):
        return roots + [f"{main}:lanes{s}" for s in range(1, count)]
    bare = main.strip("{}")
    slots = REDIS_CLUSTER_HASH_SLOTS
    own_part = slot_of(main) * count // slots
    near = max(1, slots // (8 * count))
    for s, part in enumerate((p for p in range(count) if p != own_part), start=1):
        middle = (2 * part + 1) * slots // (2 * count)
        for i in range(1_000_000):
            root = "{" + f"{bare}:lanes{s}" + (f".{i}" if i else "") + "}"
            if abs(slot_of(root) - middle) <= near:
                roots.append(root)
                break
    return roots


def slot_of(root: str) -> int:
    """The cluster slot of a key root (what ``redis-cli cluster keyslot`` says of it)."""
    return key_slot(f"{root}:".encode())


def open_shards(
    first: Shard, url: str, prefix: str, count: int, connect: Callable[[str], aioredis.Redis]
) -> list[Shard]:
    """The deployment's lane shards: ``first`` (the deployment's own slot), then one per
    further root, through ``connect(root)`` on a cluster (a client of that slot's master)
    and the first's client elsewhere (the same server)."""
    shards = [first]
    for index, root in enumerate(shard_roots(prefix, url, count)[1:], start=1):
        keys = first.keys.shard(root)
        client = connect(root) if is_cluster(url) else first.redis
        shards.append(Shard(index, keys, client, DeliveryLedger(keys)))
    return shards
