"""Reading the lanes while Redis refuses writes because its disk is full.

With its AOF failing (``MISCONF``: alertd/redis_full.py) Redis refuses ``XREADGROUP``,
which is a write (it moves the group's cursor and fills the pending list), but still
answers reads. Without this, the jobs of an alert accepted just before the disk filled
would wait in their lane until someone freed space: a level 5 order to 2,000
loudspeakers would reach the 64 a worker had already read.

So while the disk is full each worker reads the lane with ``XRANGE`` (a read) from where
the group stopped, and takes its own share of the entries no process has read yet: the
consumers of the lane's group that were alive when Redis stopped writing, sorted by name,
split the entries by a hash of their id. Alive means seen (by Redis) since shortly before
this process first met the refusal: every live reader's last read then lies in the same
few seconds, while a consumer that died earlier was last seen long before. A process not
among them (started while the disk was full) takes no share; the share of a consumer that
died in those few seconds waits for the disk, as all work did before.

What a worker delivers this way is recorded like any delivery: its outcome is kept in
memory until Redis writes again (alertd/recorder.py), and then acknowledged and deleted
from the lane in one transaction, so no reader gets it once Redis writes again. In the
second or so between Redis writing again and that transaction, another process's
``XREADGROUP`` may still be handed such an entry and send it again, under the same
idempotency key.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import redis.asyncio as aioredis

from alertd import logs
from alertd.constants import Keys
from alertd.models import Priority

log = logs.get("alertd.worker")

# A reader's last read lies within this long of any other live reader's (the readers block
# for 1 s and back off at most 2 s after a refusal).
ALIVE_SLACK_S = 5.0
# After this long without being asked, a refusal is a new episode: cursors start again.
EPISODE_GAP_S = 10.0


class ReadOnlyLanes:
    def __init__(self, redis: aioredis.Redis, keys: Keys, consumer: str) -> None:
        self.redis = redis
        self.keys = keys
        self.consumer = consumer
        self._since: float | None = None  # when this process first met the refusal (monotonic)
        self._asked = 0.0
        self._cursor: dict[Priority, bytes | str] = {}
        self._share: dict[Priority, tuple[int, int] | None] = {}  # (index, of how many), fixed per episode

    async def read(self, lane: Priority, count: int) -> list[Any]:
        """This process's share of the lane's unread entries after the last read, at most
        ``count`` of them (XRANGE entries: ``(id, fields)``); [] when there are none."""
        now = time.monotonic()
        if self._since is None or now - self._asked > EPISODE_GAP_S:
            log.error("worker.reading_while_redis_cannot_write", consumer=self.consumer,
                      action="unread jobs read with XRANGE, this process's share delivered")  # fmt: skip
            self._since, self._cursor, self._share = now, {}, {}
        self._asked = now
        stream = self.keys.lane(lane)
        if lane not in self._share:
            self._share[lane] = await self._my_share(stream, now - self._since)
        share = self._share[lane]
        if share is None:
            return []
        index, of = share
        start = self._cursor.get(lane) or await self._group_cursor(stream)
        if start is None:
            return []
        mine: list[Any] = []
        while len(mine) < count:
            page = await self.redis.xrange(stream, min=f"({_text(start)}", max="+", count=count)
            if not page:
                break
            for entry_id, fields in page:
                if zlib.crc32(_text(entry_id).encode()) % of == index:
                    mine.append((entry_id, fields))
            start = page[-1][0]
            self._cursor[lane] = start
        return mine

    async def _group_cursor(self, stream: str) -> bytes | str | None:
        """The id of the last entry the group handed out: everything after it is unread."""
        for group in await self.redis.xinfo_groups(stream):
            name = group.get("name")
            if _text(name) == self.keys.group:
                return group.get("last-delivered-id")
        return None

    async def _my_share(self, stream: str, refused_for_s: float) -> tuple[int, int] | None:
        consumers = await self.redis.xinfo_consumers(stream, self.keys.group)
        limit_ms = (refused_for_s + ALIVE_SLACK_S) * 1000
        alive = sorted(_text(c["name"]) for c in consumers if int(c.get("idle", 0)) <= limit_ms)
        if self.consumer not in alive:
            log.warning("worker.no_share_while_redis_cannot_write", consumer=self.consumer, stream=stream)
            return None
        return alive.index(self.consumer), len(alive)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


__all__ = ["ReadOnlyLanes"]
