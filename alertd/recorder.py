"""Batched outcome recording: many deliveries' results and acks in one Redis transaction.

A fan-out to 2,000 endpoints finishes 2,000 jobs within a few hundred
milliseconds; recording each with its own MULTI (HSET, XACK, XDEL) costs as
much as the HTTP request itself. The recorder collects outcomes for up to
``max_delay_s`` (or until ``max_batch`` wait, when no transaction is in flight)
and writes them in one MULTI/EXEC.
Each caller still waits until its own outcome is written, so the rule
"record, then acknowledge" holds exactly as before — only the round trips
are shared.

One transaction is in flight at a time (group commit): what arrives while it is
written goes in the next one, sent as soon as the first is answered. Under load a
batch grows to what comes in during one round trip, with no timer to tune; when
deliveries are few, an outcome waits no longer than ``max_delay_s``. (Before,
a transaction went every ``max_delay_s`` whether or not the last was answered:
a 2,000-webhook fan-out took ~36 of them per 1,000 deliveries, now ~20, and a
redis-py round trip is ~0.1–0.2 ms of the engine's CPU.) A transaction not answered
within ``WRITE_STALLED_S`` (its connection hung: a half-open TCP link, a stalled
proxy) no longer holds the others: the next goes beside it on another connection,
up to ``MAX_WRITES`` in flight.

When Redis answers but cannot write (its disk full, its memory limit reached:
alertd/redis_full.py), the deliveries have gone out all the same. Their outcomes are
then kept here, in memory, and written by a retry every second until Redis can write
again; the callers go on delivering meanwhile. Their lane entries stay pending in Redis
and held by this process (``owes``), so no reclaim sends them a second time; should
the process die first, they are reclaimed and sent again under the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from alertd import logs, metrics, redis_full
from alertd.constants import Keys
from alertd.ledger import FANOUT_SCRIPT, DeliveryLedger
from alertd.models import DeliveryState

log = logs.get("alertd.recorder")

# How often outcomes Redis could not take are offered again, and how many go in one
# transaction then.
OWED_RETRY_S = 1.0
OWED_CHUNK = 256


@dataclass
class Outcome:
    stream: str
    entry_id: bytes | str
    alert_id: str
    subscriber_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    prev: dict[str, Any] = field(default_factory=dict)  # the delivery's record so far, merged under fields
    retry_member: str | None = None  # re-schedule: "lane|alert|subscriber|accepted_ms"
    retry_at_ms: int = 0
    # A subscriber delivery that reached its final state: (lane, accepted_ms, delivered).
    # Counted down in the alert's fan-out record in the same transaction.
    fanout: tuple[str, int, bool] | None = None


# Outcomes after which the delivery goes on (a retry): see Recorder._write.
_NOT_FINAL = frozenset({DeliveryState.QUEUED.value, DeliveryState.SENT.value})

# An attempt still without an outcome after this long is written down as "sent".
SENT_MARK_AFTER_S = 0.2
# A transaction unanswered this long is taken for stalled: the next one does not wait for
# it (a round trip under a full fan-out's load is a few ms). At most MAX_WRITES in flight.
WRITE_STALLED_S = 0.1
MAX_WRITES = 4


class Recorder:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, max_batch: int = 256, max_delay_s: float = 0.002,
        *, counts: aioredis.Redis | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        # Where the fan-outs' counts of deliveries left live when that is not ``redis``'s slot
        # (a lane shard's recorder: alertd/shards.py); None: in the same transaction.
        self.counts = counts
        self.ledger = DeliveryLedger(keys)
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._pending: list[tuple[Outcome, asyncio.Future[None]]] = []
        self._sent: list[tuple[str, str]] = []
        # Attempts under way and when they started, oldest first (see mark_sent).
        self._attempts: dict[tuple[str, str], float] = {}
        self._sent_timer: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        # The transaction the next one waits for, and when it went (loop time).
        self._newest: asyncio.Task[None] | None = None
        self._newest_at = 0.0
        # Outcomes (and sent marks) Redis refused because it could not write: see the module doc.
        self._owed: list[Outcome] = []
        self._owed_sent: list[tuple[str, str]] = []
        self._owed_ids: set[bytes | str] = set()
        self._owed_task: asyncio.Task[None] | None = None
        # Told the lane entries whose outcomes are finally written (the worker lets go of them).
        self.on_written: Callable[[list[bytes | str]], object] | None = None

    @property
    def owed(self) -> int:
        """How many delivery outcomes wait in memory for Redis to write again."""
        return len(self._owed)

    def owes(self, entry_id: bytes | str) -> bool:
        """Whether this lane entry was delivered and its outcome waits to be written."""
        return entry_id in self._owed_ids

    def mark_sent(self, alert_id: str, subscriber_id: str) -> None:
        """Note that an attempt is under way, without waiting for it to be written.

        Written only once the attempt has taken ``SENT_MARK_AFTER_S`` without an outcome:
        a person watching a delivery list sees "sent" where a receiver is slow to answer,
        and the common delivery that answers within milliseconds costs no write (it was a
        Redis write per delivery, a fifth of Redis's work in a 2,000-webhook fan-out).
        Written with HSETNX, so it never overwrites a later state that happens to reach
        Redis first; a retry attempt keeps showing "queued".
        """
        key = (alert_id, subscriber_id)
        self._attempts.pop(key, None)  # re-inserted: the dict stays in order of start
        loop = asyncio.get_running_loop()
        self._attempts[key] = loop.time()
        if self._sent_timer is None:
            self._sent_timer = loop.call_later(SENT_MARK_AFTER_S, self._mark_slow_attempts)

    def _mark_slow_attempts(self) -> None:
        self._sent_timer = None
        loop = asyncio.get_running_loop()
        due = loop.time() - SENT_MARK_AFTER_S
        for key, started in list(self._attempts.items()):
            if started > due:
                # The oldest attempt still under way: look again when it is due.
                self._sent_timer = loop.call_later(started - due, self._mark_slow_attempts)
                break
            del self._attempts[key]
            self._sent.append(key)
        if self._sent and self._timer is None:
            self._timer = loop.call_later(self.max_delay_s, self._start_flush)

    async def record(self, outcome: Outcome) -> None:
        self._attempts.pop((outcome.alert_id, outcome.subscriber_id), None)  # no "sent" mark needed now
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((outcome, done))
        if len(self._pending) >= self.max_batch:
            self._start_flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_delay_s, self._start_flush)
        await done

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        if self._newest is not None:
            # The transaction in flight starts the next when it is answered; if it is not
            # answered in time, the next goes beside it.
            if len(self._flushes) >= MAX_WRITES:
                return
            stalled_at = self._newest_at + WRITE_STALLED_S
            if loop.time() < stalled_at:
                self._timer = loop.call_at(stalled_at, self._start_flush)
                return
        batch, self._pending = self._pending, []
        sent, self._sent = self._sent, []
        if batch or sent:
            task = loop.create_task(self._flush(batch, sent))
            self._flushes.add(task)
            self._newest, self._newest_at = task, loop.time()
            task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if task is self._newest:
            self._newest = None
        if self._pending or self._sent:
            self._start_flush()

    async def _flush(
        self, batch: list[tuple[Outcome, asyncio.Future[None]]], sent: list[tuple[str, str]]
    ) -> None:
        try:
            await self._write([outcome for outcome, _ in batch], sent)
        except Exception as exc:
            if redis_full.full_kind(exc) is not None:
                # Redis cannot write: the deliveries went out, so their outcomes are kept
                # and written later; the callers go on.
                self._owe([outcome for outcome, _ in batch], sent, exc)
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
                return
            # Nothing was acknowledged: the jobs stay pending and are reclaimed.
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    def _owe(self, outcomes: list[Outcome], sent: list[tuple[str, str]], exc: BaseException) -> None:
        if not self._owed:
            log.error("recorder.redis_cannot_write", error=redis_full.redis_words(exc),
                      action="outcomes kept in memory, retried every second")  # fmt: skip
        self._owed += outcomes
        self._owed_sent += sent
        self._owed_ids.update(o.entry_id for o in outcomes)
        if self._owed_task is None or self._owed_task.done():
            self._owed_task = asyncio.get_running_loop().create_task(self._write_owed())

    async def _write_owed(self) -> None:
        """Offer the kept outcomes to Redis every second until it takes them all."""
        while self._owed or self._owed_sent:
            await asyncio.sleep(OWED_RETRY_S)
            while self._owed or self._owed_sent:
                chunk, sent = self._owed[:OWED_CHUNK], self._owed_sent[:OWED_CHUNK]
                try:
                    await self._write(chunk, sent)
                except Exception as exc:
                    log.debug("recorder.owed_retry_failed", owed=len(self._owed), error=repr(exc))
                    break  # wait a second, then try again
                del self._owed[: len(chunk)]
                del self._owed_sent[: len(sent)]
                written = [o.entry_id for o in chunk]
                self._owed_ids.difference_update(written)
                if self.on_written is not None and written:
                    self.on_written(written)
                if not self._owed:
                    log.warning(
                        "recorder.owed_written", action="Redis writes again: all outcomes kept written"
                    )

    async def _write(self, outcomes: list[Outcome], sent: list[tuple[str, str]]) -> None:
        """Write outcomes and sent marks in one transaction; raises what Redis said."""
        by_alert: dict[str, dict[str, Any]] = {}
        acks: dict[str, list[bytes | str]] = {}
        retries: dict[str, int] = {}
        # Per alert: (lane, accepted_ms, deliveries ended, of which delivered). One script
        # call per alert and batch, not per delivery: a fan-out's batch is mostly one alert.
        ends: dict[str, list[Any]] = {}
        # Outcomes that are not final (a retry to come) must not overwrite a record the desk
        # ended meanwhile (ledger.GUARDED_RECORD_SCRIPT); final ones are written as they are.
        not_final: dict[str, list[Any]] = {}
        record_mapping = self.ledger.record_mapping
        for outcome in outcomes:
            if outcome.fields and outcome.fields.get("state") in _NOT_FINAL:
                not_final.setdefault(outcome.alert_id, []).extend(
                    self.ledger.guarded_triple(outcome.subscriber_id, outcome.fields, outcome.prev)
                )
            elif outcome.fields:
                mapping = by_alert.setdefault(outcome.alert_id, {})
                record_mapping(mapping, outcome.subscriber_id, outcome.fields, outcome.prev)
            acks.setdefault(outcome.stream, []).append(outcome.entry_id)
            if outcome.retry_member is not None:
                retries[outcome.retry_member] = outcome.retry_at_ms
            if outcome.fanout is not None:
                lane, accepted_ms, delivered = outcome.fanout
                end = ends.setdefault(outcome.alert_id, [lane, accepted_ms, 0, 0])
                end[2] += 1
                end[3] += delivered
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            self.ledger.queue_mark_sent(pipe, sent)
            self.ledger.queue_records(pipe, by_alert, retries, not_final)
            for stream, ids in acks.items():
                pipe.xack(stream, self.keys.group, *ids)
                pipe.xdel(stream, *ids)
            if self.counts is None:
                self._queue_counts(pipe, ends, now_ms)
            results = await pipe.execute()
        if ends and self.counts is not None:
            # After the shard's transaction, so a count is never taken down for outcomes
            # that were not written. A count that fails (its Redis away or full, or the
            # process dying in between) stays high: the fan-out's duration is then not
            # observed; the outcomes themselves are written, so nothing is raised (raising
            # would write them again, and re-add retries already moved).
            try:
                async with self.counts.pipeline(transaction=False) as pipe:
                    self._queue_counts(pipe, ends, now_ms)
                    results = await pipe.execute()
            except Exception as exc:
                log.warning("recorder.fanout_counts_not_written", alerts=len(ends), error=f"{type(exc).__name__}: {exc}")
                return
        if ends:
            self._observe_fanouts(list(ends.values()), results[len(results) - len(ends) :], now_ms)

    def _queue_counts(self, pipe: Any, ends: dict[str, list[Any]], now_ms: int) -> None:
        for alert_id, (_, _, n, delivered) in ends.items():
            # EVAL rather than a registered Script: redis-py checks a Script's cache with
            # a SCRIPT EXISTS round trip before each pipeline, and a cluster pipeline
            # refuses EVALSHA outright. Redis caches the body by its digest either way.
            pipe.eval(FANOUT_SCRIPT, 1, self.keys.fanout(alert_id), n, delivered, now_ms)

    @staticmethod
    def _observe_fanouts(ends: list[list[Any]], results: list[Any], now_ms: int) -> None:
        """An alert's first delivery, and its fan-out once its last delivery ended."""
        for (lane, accepted_ms, _, _), (first, last) in zip(ends, results, strict=True):
            if first:
                metrics.FIRST_DELIVERY.labels(lane).observe(max(0.0, (now_ms - accepted_ms) / 1000))
            if last and int(last) > 0:  # none delivered at all: no fan-out duration to speak of
                metrics.FANOUT_DURATION.labels(lane).observe(max(0.0, (int(last) - accepted_ms) / 1000))

    async def close(self) -> None:
        if self._sent_timer is not None:
            self._sent_timer.cancel()
            self._sent_timer = None
        self._start_flush()
        while self._flushes:  # each one answered starts the next, until none is left
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._flushes, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._owed_task is not None:
            self._owed_task.cancel()
            with contextlib.suppress(BaseException):
                await self._owed_task
        if self._owed:
            # Still pending in their lanes: another process (or this one, restarted)
            # reclaims them and sends them again under the same idempotency key.
            log.error("recorder.owed_dropped", owed=len(self._owed),
                      action="their lane entries stay pending and are delivered again (same idempotency key)")  # fmt: skip
