"""The retention policy: what alertd deletes from Redis, and when, so its memory stays bounded.

Without it every alert, its delivery records and its log entry stay for ever (the soak
measured +3.7 MB a minute at 2 orders a second). The sweeper, one supervised step every
``ALERTD_RETENTION_SWEEP_S``, deletes an alert and everything kept per alert once

- it has not been in force for ``ALERTD_RETENTION_DAYS`` (it left the in-force set: it
  expired, or a lift, update or cancel ended it; never-in-force messages — cancels,
  lifts, tests — count from their acceptance), and
- every one of its planned deliveries is final (delivered, confirmed, failed, expired,
  superseded): a delivery still queued, sent or waiting for a retry keeps the whole alert,
  however old, because a worker still needs its record, and
- the Atom feed no longer shows it beside what is in force (``Keys.changes``).

What goes: the alert hash (document, state, plan, answer), its delivery records, its
fan-out counter, its entries in the alert index and its sender/identifier reference set,
and the durable log's entries older than the cutoff (XTRIM MINID, never past the oldest
alert still in force). The dedup marker is not deleted with the alert but given
``ALERTD_DEDUP_DAYS`` more: a sender resending the same identifier later still gets the
first alert's id and no second fan-out. Never touched: the audit chain (its own keys,
kept for ever, it is the record of who did what), issuers, subscribers, accounts,
transmission-test records and everything in force.

Each deletion is one WATCHed transaction over the alert and its delivery records, so a
confirmation or state change racing the sweeper makes it look again next round instead
of deleting a record that just changed. Several engines may sweep at once: every step is
idempotent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import msgpack
from redis.exceptions import WatchError

from alertd import logs
from alertd.models import TERMINAL_STATES, Alert, AlertState
from alertd.store import Store, dedup_scope

log = logs.get("alertd.retention")

DAY_S = 86_400.0
_FINAL = {s.value for s in TERMINAL_STATES}


@dataclass
class SweepResult:
    deleted: int = 0  # alerts deleted with their records
    kept: int = 0  # past the cutoff but kept: in force, unfinished deliveries, or still in the feed
    log_trimmed: int = 0  # durable-log entries removed


class Retention:
    """Deletes what the policy lets go; ``sweep`` is the supervised step."""

    def __init__(self, store: Store, retention_s: float, dedup_s: float, *, page: int = 200,
                 max_pages: int = 25) -> None:  # fmt: skip
        self.store = store
        self.keys = store.keys
        self.redis = store.redis
        self.retention_s = retention_s
        self.dedup_s = dedup_s
        # At most page × max_pages alerts looked at per sweep, so one sweep after a long
        # outage of the sweeper never holds Redis for long; the next sweep goes on.
        self.page = page
        self.max_pages = max_pages
        self.sweeps = 0  # finished sweeps, for tests and logs
        # Where a sweep that hit max_pages stopped: the next goes on from there, so many old
        # alerts that must stay (in force, still delivering) never hide the ones behind them.
        self._resume = 0
        self.last = SweepResult()

    async def sweep(self, now: float | None = None) -> SweepResult:
        now = time.time() if now is None else now
        cutoff_ms = int((now - self.retention_s) * 1000)
        result = SweepResult()
        offset, self._resume = self._resume, 0
        for page in range(self.max_pages):
            raw = await self.redis.zrangebyscore(
                self.keys.alerts, "-inf", cutoff_ms, start=offset, num=self.page
            )
            if not raw:
                break
            ids = [m.decode() for m in raw]
            kept = 0
            for alert_id in ids:
                if await self._delete_if_done(alert_id, now, cutoff_ms):
                    result.deleted += 1
                else:
                    kept += 1
            result.kept += kept
            offset += kept  # deleted ones left the index: the next page starts after those kept
            if len(ids) < self.page:
                break
            if page == self.max_pages - 1:
                self._resume = offset  # more to look at: the next sweep starts here
        result.log_trimmed = await self._trim_log(cutoff_ms)
        self.sweeps += 1
        self.last = result
        if result.deleted or result.log_trimmed:
            log.info("retention.swept", deleted=result.deleted, kept=result.kept, log_trimmed=result.log_trimmed,
                     retention_days=round(self.retention_s / DAY_S, 3))  # fmt: skip
        return result

    async def _ended_ms(
        self, alert: Alert, state: str | None, superseded_by: bytes | None, now: float
    ) -> int | None:
        """When the alert stopped standing (unix ms), or None while it still stands."""
        accepted_ms = int(alert.accepted_at.timestamp() * 1000) if alert.accepted_at else 0
        if state == AlertState.ACTIVE:
            # Out of the in-force set but "active": it expired (or expiry has not run yet).
            if alert.expires is None or alert.expires.timestamp() >= now:
                return None
            return int(alert.expires.timestamp() * 1000)
        if superseded_by is not None:
            score = await self.redis.zscore(self.keys.alerts, superseded_by)
            return int(score) if score is not None else accepted_ms
        return accepted_ms  # never in force (a cancel, a lift, a test): over once delivered

    async def _delete_if_done(self, alert_id: str, now: float, cutoff_ms: int) -> bool:
        alert_key = self.keys.alert(alert_id)
        # With lane shards the records are in the shards' slots: not watched (only the
        # alert is), read from each, and deleted after the alert.
        sharded = self.store.sharded
        dlv_key = self.keys.deliveries(alert_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(alert_key, *([] if sharded else [dlv_key]))
                raw_doc, state, superseded_by, raw_plan = await pipe.hmget(
                    alert_key, ["doc", "state", "superseded_by", "plan"]
                )
                if raw_doc is None:
                    # An index entry left without its alert: drop the entry alone.
                    await pipe.reset()
                    await self.redis.zrem(self.keys.alerts, alert_id)
                    return True
                if await pipe.sismember(self.keys.active, alert_id):
                    await pipe.reset()
                    return False  # in force
                feed_until = await pipe.zscore(self.keys.changes, alert_id)
                if feed_until is not None and feed_until > now:
                    await pipe.reset()
                    return False  # the Atom feed still shows this lift or cancel
                alert = Alert.from_dict(msgpack.unpackb(raw_doc, raw=False))
                ended = await self._ended_ms(alert, state.decode() if state else None, superseded_by, now)
                if ended is None or ended > cutoff_ms:
                    await pipe.reset()
                    return False
                plan = [s for s, _ in msgpack.unpackb(raw_plan, raw=False)] if raw_plan else []
                records = await (self.store.delivery_records(alert_id) if sharded else pipe.hgetall(dlv_key))
                if plan and not self._all_final(plan, records):
                    await pipe.reset()
                    return False  # a delivery is still under way: its worker needs the record
                dedup_key = self.keys.dedup(dedup_scope(alert.issuer_id), alert.sender, alert.identifier)
                if sharded:
                    # An expiry first: a sweep that dies between the alert's delete and theirs
                    # leaves the shards' records to go by themselves, not for ever.
                    await self._shard_records(alert_id, "expire")
                pipe.multi()
                pipe.delete(alert_key, dlv_key, self.keys.fanout(alert_id))
                pipe.zrem(self.keys.alerts, alert_id)
                pipe.zrem(self.keys.changes, alert_id)
                pipe.srem(self.keys.reference(alert.sender, alert.identifier), alert_id)
                # Kept a while longer (it is small): a late resend must not fan out again.
                pipe.expire(dedup_key, max(1, int(self.dedup_s)))
                pipe.incr(self.keys.views_version)  # cached listings and pages must drop it
                await pipe.execute()
            except WatchError:
                if sharded:
                    await self._shard_records(alert_id, "persist")  # the alert stays: so do they
                return False  # it changed as we looked: the next sweep looks again
        if sharded:
            await self._shard_records(alert_id, "delete")
        self.store.forget(alert_id)
        return True

    async def _shard_records(self, alert_id: str, action: str) -> None:
        """Expire (in a day), persist or delete an alert's delivery records in the lane shards
        beyond the first (whose records go in the alert's own transaction)."""
        shards = self.store.shards[1:]
        if action == "expire":
            await asyncio.gather(*(s.redis.expire(s.ledger.key(alert_id), int(DAY_S)) for s in shards))
        elif action == "persist":
            await asyncio.gather(*(s.redis.persist(s.ledger.key(alert_id)) for s in shards))
        else:
            await asyncio.gather(*(s.redis.delete(s.ledger.key(alert_id)) for s in shards))

    @staticmethod
    def _all_final(plan: list[str], raw: dict[bytes, bytes]) -> bool:
        for sub in plan:
            if raw.get(f"{sub}|confirmed_at".encode()):
                continue
            state = raw.get(f"{sub}|state".encode())
            if state is None or state.decode() not in _FINAL:
                return False
        return True

    async def _trim_log(self, cutoff_ms: int) -> int:
        """Drop log entries older than the cutoff, but never one of an alert still in force
        (the log is the durable record of what stands). Exact, not "~": the sweep runs
        minutes apart, so the cost of exact trimming is spread thin, and the bound is met."""
        active = [m.decode() for m in await self.redis.smembers(self.keys.active)]
        min_id = cutoff_ms
        if active:
            scores = await self.redis.zmscore(self.keys.alerts, active)
            standing = [int(s) for s in scores if s is not None]
            if standing:
                min_id = min(min_id, min(standing))
        if min_id <= 0:
            return 0
        return int(await self.redis.xtrim(self.keys.log, minid=str(min_id), approximate=False))
