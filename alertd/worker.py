"""The delivery worker: takes fan-out work from the lanes and carries it out.

Each lane is a Redis stream read through one consumer group shared by every
alertd process, so the processes split the work and each delivery job is
handed to one of them. A job is acknowledged (XACK) only after its outcome
is recorded; a process that dies holding jobs leaves them pending, and
another process (or the restarted one) claims them after ``claim_idle_s``.
The crash window between "receiver took it" and "recorded" can repeat a
delivery — the idempotency key is there so the receiver can drop it.

The flash lane has its own reader and its own concurrency budget, so no
amount of routine backlog can delay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import OrderedDict
from functools import partial
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from adapters.base import Adapter, DirectAdapter, Payload, PermanentError
from adapters.transport import MqttTransport
from adapters.webhooks import http_transport
from alertd import logs, redis_full
from alertd.breaker import CircuitBreaker
from alertd.config import Settings
from alertd.constants import LANES, Keys, Topics
from alertd.delivery import DeliveryChain, Job
from alertd.feed import FEED_SUBSCRIBER, Feed
from alertd.flashgate import FlashGate
from alertd.ledger import MOVE_DUE_SCRIPT
from alertd.metrics import JOBS_RECLAIMED, POISON_JOBS
from alertd.models import AdapterKind, Alert, Priority, Subscriber
from alertd.offload import run_blocking
from alertd.readonly_lanes import ReadOnlyLanes
from alertd.recorder import Recorder
from alertd.redact import redact_url
from alertd.shards import Shard
from alertd.store import Store
from alertd.supervise import Supervisor, TaskHealth

log = logs.get("alertd.worker")


# Jobs queued between two polls of the event loop (see _dispatch).
YIELD_EVERY = 16
# How many flash entries one read takes: few when the last read emptied the lane (a
# fan-out's first batch: its first receiver goes out sooner, and a prefetch of 256 takes
# ~4 ms more than one of 64), more while the lane has a backlog (the last read came back
# full: two round trips, the read and its prefetch, per batch: 62 for a 2,000-webhook
# fan-out in batches of 64, 18 in batches of 256).
FLASH_FIRST_READ = 64
FLASH_READ = 256
ROUTINE_READ = 500


def first_receiver(jobs: list[Job]) -> None:
    """Put the batch's first receiver (the first job that is not the MQTT feed) at its head.

    The delivery coroutines take a batch in queue order, each running until its first real
    wait: the feed job first rendered the CAP document and handed its 62 (or 1,747)
    messages to paho before the first webhook's request was even written. The first
    webhook now goes out first (flash-only bench, 2,000 webhooks, on a loaded machine:
    first p50/p99 49/139 → 37/75 ms); the feed follows a request write later. Only one
    job moves: the rest keep the lane's order (loudspeakers first)."""
    for i, job in enumerate(jobs):
        if job.sub_id != FEED_SUBSCRIBER:
            if i:
                jobs.insert(0, jobs.pop(i))
            return


class Worker:
    """The delivery work of one lane shard (alertd/shards.py); a process runs one per shard,
    all of them by default the deployment's one."""

    def __init__(
        self,
        redis: aioredis.Redis,
        store: Store,
        settings: Settings,
        adapters: dict[AdapterKind, Adapter],
        feed: Feed | None,
        supervisor: Supervisor | None = None,
        *,
        topics: Topics | None = None,
        shard: Shard | None = None,
        gate: FlashGate | None = None,
    ) -> None:
        self.shard = shard or store.shards[0]
        # The shard's master: its lanes, retries and delivery records. Alerts and
        # subscribers are read through the store (the deployment's own slot).
        self.redis = redis if shard is None else shard.redis
        self.store = store
        self.keys: Keys = self.shard.keys
        # Task names, log lines: the first shard's are what they always were.
        self.suffix = f":s{self.shard.index}" if self.shard.index else ""
        self.settings = settings
        self.adapters = adapters
        self.feed = feed
        self.http = http_transport(settings.http_client, settings.http_connections)
        self.mqtt = MqttTransport(topics or Topics())
        self.breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_s)
        self.consumer = settings.consumer_name or f"{socket.gethostname()}-{os.getpid()}"
        # A fixed pool of delivery coroutines per lane, fed by a bounded queue:
        # cheaper than a task and a semaphore per delivery, and the queue bound
        # is the back-pressure on reading the stream.
        # Shared by the shards: their subscribers are disjoint, so the process's total stays.
        shares = len(store.shards)
        self._concurrency = {
            Priority.FLASH: max(1, -(-settings.flash_concurrency // shares)),
            Priority.ROUTINE: max(1, -(-settings.routine_concurrency // shares)),
        }
        self._queues: dict[Priority, asyncio.Queue[Job]] = {
            lane: asyncio.Queue(maxsize=n) for lane, n in self._concurrency.items()
        }
        # Entries this process holds (queued locally or in flight): the reclaimer
        # must not hand this process a second copy of its own slow work.
        self._held: dict[bytes, Priority] = {}
        self._sub_slots: dict[str, asyncio.Semaphore] = {}
        self._subs: dict[str, Subscriber] = {}
        self._subs_version = -1
        self._renders: OrderedDict[tuple[object, ...], Payload] = OrderedDict()
        self.ledger = self.shard.ledger
        self._move_due = self.redis.register_script(MOVE_DUE_SCRIPT)
        # The alerts and the fan-outs' counts are in the deployment's slot: read and written
        # apart from the shard's records where that is another slot's client (a cluster).
        self.apart = self.redis is not store.redis
        self.recorder = Recorder(self.redis, self.keys, counts=store.redis if self.apart else None)
        # An entry whose outcome waits for Redis to write again (disk full) stays held until written.
        self.recorder.on_written = lambda ids: [self._held.pop(i, None) for i in ids]
        self.readonly = ReadOnlyLanes(self.redis, self.keys, self.consumer)
        self.chain = DeliveryChain(
            alert_of=self._alert, subscribers=self._subs, breaker=self.breaker, recorder=self.recorder,
            ledger=self.ledger, feed=feed, send=self._send, lane_key=self.keys.lane,
            retry_base_s=settings.retry_base_s, retry_max_s=settings.retry_max_s,
        )  # fmt: skip
        # While flash deliveries are in flight, this process reads no new routine
        # work: the lanes share one event loop, and the flash lane gets all of it.
        self._flash = gate or FlashGate()
        self._flash_backlog = False  # the last flash read came back full: more is waiting
        self._stopping = False
        self._owns_supervisor = supervisor is None
        self.supervisor = supervisor or Supervisor("worker")
        self._readers: dict[Priority, TaskHealth] = {}
        # Set when a read or a job failed: this consumer may own pending entries
        # nobody is working on (see _recover_own).
        self._recover: dict[Priority, bool] = dict.fromkeys(LANES, True)
        self._crashes: dict[bytes, int] = {}

    # --- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        for lane in LANES:
            try:
                await self._ensure_group(self.keys.lane(lane))
            except RedisError as exc:
                if self.shard.index == 0:
                    raise
                # A shard's master away: the process starts all the same (the desk is served
                # from the deployment's own slot); the reader makes the group once it answers.
                log.warning("worker.shard_unreachable", shard=self.shard.index, error=f"{type(exc).__name__}: {exc}")
                break
        await self.http.start()
        await self.store.secret()  # once, before the first fan-out asks for it two thousand times at once
        sup = self.supervisor
        for lane in LANES:
            for i in range(self._concurrency[lane]):
                # Each delivery coroutine catches every error of its own job; the
                # supervisor only restarts one that ends anyway.
                sup.spawn(f"deliver:{lane.value}{self.suffix}:{i}", partial(self._runner, lane),
                          group=f"deliver:{lane.value}{self.suffix}", critical=False)  # fmt: skip
        block_s = self.settings.lane_block_ms / 1000
        for lane in LANES:
            # A reader that has not come back from a read in several block times
            # (plus the Redis timeout) is stalled, and /healthz says so.
            self._readers[lane] = sup.every(
                f"read:{lane.value}{self.suffix}", partial(self._read_lane, lane), 0,
                stale_after_s=3 * block_s + self.settings.redis_socket_timeout_s,
                backoff_base_s=0.05, backoff_max_s=2.0,
            )  # fmt: skip
            sup.every(f"reclaim:{lane.value}{self.suffix}", partial(self._reclaim, lane),
                      max(0.2, self.settings.claim_idle_s / 4))  # fmt: skip
        sup.every(f"retries{self.suffix}", self._move_retries, 0.1)
        # Fan-outs whose committing process stopped queueing their lane entries (store.py).
        sup.every(f"fanouts{self.suffix}", self._resume_fanouts, 0.5)
        log.info("worker.started", consumer=self.consumer, shard=self.shard.index, lanes=f"{self.keys.lanes_root}:…")

    async def stop(self) -> None:
        await self.drain()
        if self._owns_supervisor:
            await self.supervisor.stop()
        await self.close()

    async def drain(self) -> None:
        """Take no new work; give deliveries under way a bounded time to finish
        rather than leave them to a reclaim."""
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues.values())), 5)

    async def close(self) -> None:
        """Release connections; call after the supervisor has stopped this worker's tasks."""
        await self.recorder.close()
        self.breaker.clear()
        await self.http.close()
        await self.mqtt.close()
        for adapter in self.adapters.values():
            if isinstance(adapter, DirectAdapter):
                await adapter.close()

    async def _ensure_group(self, stream: str) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: another process made it
            await self.redis.xgroup_create(stream, self.keys.group, id="0", mkstream=True)

    # --- reading the lanes ---------------------------------------------------
    async def _read_lane(self, lane: Priority) -> None:
        """One read of a lane; the supervisor calls it back to back and backs off on errors."""
        if self._stopping:
            await asyncio.sleep(0.1)
            return
        reader = self._readers[lane]
        if lane is Priority.ROUTINE and not self._flash.idle.is_set():
            # While flash deliveries are in flight the routine lane waits, with a
            # bounded wait so its heartbeat stays truthful.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flash.idle.wait(), 1.0)
            return
        stream = self.keys.lane(lane)
        try:
            if self._recover[lane]:
                await self._recover_own(lane)
            if lane is Priority.FLASH:
                count = FLASH_READ if self._flash_backlog else FLASH_FIRST_READ
            else:
                count = ROUTINE_READ
            resp = await self.redis.xreadgroup(
                self.keys.group, self.consumer, {stream: ">"}, count=count, block=self.settings.lane_block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream or group was deleted under us: make it again
                log.warning("worker.group_recreated", lane=lane.value)
                await self._ensure_group(stream)
                return
            self._recover[lane] = True
            if redis_full.full_kind(exc) == "disk":
                # Disk full: XREADGROUP (a write) is refused, reads are not (alertd/readonly_lanes.py).
                entries = await self.readonly.read(lane, FLASH_FIRST_READ if lane is Priority.FLASH else ROUTINE_READ)
                if entries:
                    await self._dispatch(lane, entries, reader)
                else:
                    await asyncio.sleep(self.settings.lane_block_ms / 1000)
                return
            raise
        except Exception:
            # A read that timed out may still have handed this consumer entries
            # whose reply never arrived; they are in this consumer's pending list
            # and are read back from there on the next step, not left for the
            # reclaimer's claim_idle_s.
            self._recover[lane] = True
            raise
        if lane is Priority.FLASH:
            self._flash_backlog = sum(len(entries) for _, entries in resp or []) >= count
        for _, entries in resp or []:
            await self._dispatch(lane, entries, reader)

    async def _recover_own(self, lane: Priority) -> None:
        """Re-read this consumer's own pending entries that it does not hold (see _read_lane)."""
        stream = self.keys.lane(lane)
        start: bytes | str = "0"
        while True:
            resp = await self.redis.xreadgroup(self.keys.group, self.consumer, {stream: start}, count=500)
            entries = resp[0][1] if resp else []
            if not entries:
                break
            fresh = [e for e in entries if e[0] not in self._held and self._crashes.get(e[0], 0) < 5]
            if fresh:
                log.info("worker.recovered_pending", lane=lane.value, count=len(fresh))
                await self._dispatch(lane, fresh, self._readers.get(lane))
            start = entries[-1][0]
            if len(entries) < 500:
                break
        self._recover[lane] = False

    async def _reclaim(self, lane: Priority) -> None:
        """Take over jobs a dead (or stuck) consumer left pending."""
        stream = self.keys.lane(lane)
        idle_ms = int(self.settings.claim_idle_s * 1000)
        start = "0-0"
        await self._touch(stream, lane)
        while True:
            try:
                result = await self.redis.xautoclaim(
                    stream, self.keys.group, self.consumer, idle_ms, start_id=start, count=500
                )
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    return  # the reader re-creates the group
                raise
            start, entries = result[0], result[1]
            entries = [e for e in entries if e and e[1]]
            if entries:
                log.info("worker.reclaimed", lane=lane.value, count=len(entries))
                JOBS_RECLAIMED.labels(lane=lane.value).inc(len(entries))
                await self._dispatch(lane, entries)
            if start in (b"0-0", "0-0"):
                break

    async def _touch(self, stream: str, lane: Priority) -> None:
        """Reset the idle time of work this process holds, so no other process
        takes over deliveries that are merely waiting their turn here."""
        held = [e for e, lane_of in self._held.items() if lane_of is lane]
        for i in range(0, len(held), 500):
            await self.redis.xclaim(stream, self.keys.group, self.consumer, 0, held[i : i + 500], justid=True)

    async def _resume_fanouts(self) -> None:
        if not self._stopping:
            await self.store.resume_fanouts(self.shard)

    async def _move_retries(self) -> None:
        await self._move_due(keys=[self.ledger.retry_key], args=[int(time.time() * 1000), self.ledger.lane_prefix])

    # --- one batch -----------------------------------------------------------
    def _job_from_entry(self, lane: Priority, entry_id: bytes, fields: dict[bytes, bytes] | None) -> Job | None:
        """The delivery job a lane entry describes, or None for an entry alertd cannot read."""
        try:
            f = {k.decode(): v.decode() for k, v in (fields or {}).items()}
            return Job(lane, entry_id, f["a"], f["s"], int(f.get("t", 0)))
        except (KeyError, ValueError, AttributeError):
            return None

    async def _drop_poison(self, lane: Priority, entry_ids: list[bytes]) -> None:
        """Entries that are not delivery jobs (written by hand, by another program, or
        half-deleted) are acknowledged and dropped, each one logged: left in the
        lane they would stop its reader on every read."""
        stream = self.keys.lane(lane)
        for entry_id in entry_ids:
            log.error("worker.poison_entry", lane=lane.value, entry_id=entry_id.decode(errors="replace"))
            POISON_JOBS.labels(lane=lane.value).inc()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, self.keys.group, *entry_ids)
            pipe.xdel(stream, *entry_ids)
            await pipe.execute()

    async def _dispatch(self, lane: Priority, entries: list[Any], reader: TaskHealth | None = None) -> None:
        jobs: list[Job] = []
        poison: list[bytes] = []
        for entry_id, fields in entries:
            if entry_id in self._held:
                continue
            job = self._job_from_entry(lane, entry_id, fields)
            if job is None:
                poison.append(entry_id)
            else:
                jobs.append(job)
        if poison:
            await self._drop_poison(lane, poison)
        if not jobs:
            await self._refresh_subscribers()
            return
        # Held from the moment they are read: a batch can wait for free delivery slots longer
        # than claim_idle_s, and entries waiting here unheld were neither kept fresh (_touch)
        # nor skipped by the reclaimers, so another worker took them over and delivered them
        # a second time (tests/test_first_delivery.py). What is not handed to a runner (a
        # failed prefetch, a cancel) is let go again, to be read again.
        waiting = {job.entry_id for job in jobs}
        for job in jobs:
            self._held[job.entry_id] = lane
        try:
            await self._prefetch(jobs)
            first_receiver(jobs)
            for i, job in enumerate(jobs):
                await self._queues[lane].put(job)
                waiting.discard(job.entry_id)
                if lane is Priority.FLASH:
                    self._flash.enter()  # after the put: a cancelled put leaves the gate even
                if reader is not None:
                    reader.beat()  # waiting for a free delivery slot is progress, not a stall
                if i % YIELD_EVERY == 0:
                    # Let the loop poll between slices of the batch: the first receiver goes out
                    # at once, and the request that committed the alert gets its 202 written
                    # without waiting behind a whole batch's renders and request writes.
                    await asyncio.sleep(0)
        finally:
            for entry_id in waiting:
                self._held.pop(entry_id, None)

    async def _prefetch(self, jobs: list[Job]) -> None:
        """One round trip for the whole batch: alert states, documents not yet cached, and
        each delivery's state and attempt count so far."""
        alert_ids = list({j.alert_id for j in jobs})
        # Decoded alerts are the store's, shared with this process's other readers: one copy
        # of each kept alert is fewer objects for every full collection to scan.
        missing = [a for a in alert_ids if self.store.cached(a) is None]
        # One HMGET per alert, not per job: a fan-out batch is mostly one alert.
        fields_by_alert = {a: self.ledger.prefetch_fields(j.sub_id for j in jobs if j.alert_id == a)
                           for a in alert_ids}  # fmt: skip
        if self.apart:
            # The alerts and the shard's records are in two slots (on a cluster, two masters).
            (version, *results), records = await asyncio.gather(
                self._read_alerts(alert_ids, missing), self._read_records(alert_ids, fields_by_alert)
            )
            results += records
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                self._queue_alert_reads(pipe, alert_ids, missing)
                self._queue_record_reads(pipe, alert_ids, fields_by_alert)
                version, *results = await pipe.execute()
        await self._refresh_subscribers(int(version or 0))
        n, m = len(alert_ids), len(missing)
        states = {a: (v.decode() if v else None) for a, v in zip(alert_ids, results[:n], strict=True)}
        for raw in results[n : n + m]:
            if raw:
                self.store.remember(Alert.from_dict(msgpack.unpackb(raw, raw=False)))
        known: dict[str, dict[str, tuple[str | None, dict[str, Any]]]] = {
            alert_id: self.ledger.unpack_prefetch(fields_by_alert[alert_id], values)
            for alert_id, values in zip(alert_ids, results[n + m :], strict=True)
        }
        for job in jobs:
            job.alert_state = states.get(job.alert_id)
            job.state, job.prev = known[job.alert_id][job.sub_id]
            job.attempts = self.ledger.attempts(job.prev)

    def _queue_alert_reads(self, pipe: Any, alert_ids: list[str], missing: list[str]) -> None:
        # The subscribers' version rides along: a separate GET was a round trip of its
        # own before every batch, ahead of the first delivery of a fan-out.
        pipe.get(self.keys.subscribers_version)
        for alert_id in alert_ids:
            pipe.hget(self.keys.alert(alert_id), "state")
        for alert_id in missing:
            pipe.hget(self.keys.alert(alert_id), "doc")

    def _queue_record_reads(self, pipe: Any, alert_ids: list[str], fields_by_alert: dict[str, list[str]]) -> None:
        for alert_id in alert_ids:
            pipe.hmget(self.ledger.key(alert_id), fields_by_alert[alert_id])

    async def _read_alerts(self, alert_ids: list[str], missing: list[str]) -> list[Any]:
        async with self.store.redis.pipeline(transaction=False) as pipe:
            self._queue_alert_reads(pipe, alert_ids, missing)
            return list(await pipe.execute())

    async def _read_records(self, alert_ids: list[str], fields_by_alert: dict[str, list[str]]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            self._queue_record_reads(pipe, alert_ids, fields_by_alert)
            return list(await pipe.execute())

    async def _runner(self, lane: Priority) -> None:
        queue = self._queues[lane]
        while True:
            job = await queue.get()
            try:
                await self._run_job(job)
            finally:
                if lane is Priority.FLASH:
                    self._flash.leave()  # first: nothing below may keep the gate shut
                if not self.recorder.owes(job.entry_id):
                    self._held.pop(job.entry_id, None)
                queue.task_done()

    async def _refresh_subscribers(self, version: int | None = None) -> None:
        if version is None:
            version = await self.store.subscribers_version()
        if version != self._subs_version:
            subs = {s.id: s for s in await self.store.list_subscribers()}
            for gone in set(self._subs) - set(subs):
                self.breaker.forget(gone)
                self._sub_slots.pop(gone, None)
            # In place: the delivery chain holds this table.
            self._subs.clear()
            self._subs.update(subs)
            self._subs_version = version

    async def _alert(self, alert_id: str) -> Alert | None:
        alert = self.store.cached(alert_id)
        if alert is None:
            alert = await self.store.get_alert(alert_id)
            if alert is not None:
                self.store.remember(alert)
        return alert

    async def _run_job(self, job: Job) -> None:
        try:
            await self.chain(job)
        except Exception as exc:
            # The job stays pending in this consumer's list; the lane reader reads
            # it back on its next step (a few tries), then the reclaimer has it.
            self._crashes[job.entry_id] = self._crashes.get(job.entry_id, 0) + 1
            if len(self._crashes) > 10_000:
                self._crashes.clear()
            self._recover[job.lane] = True
            if isinstance(exc, RedisError):
                # Redis away (a failover, a restart): expected, and nothing is lost — no traceback
                # per delivery (a trial counted 154 of them for one failover).
                log.warning("delivery.not_recorded", alert_id=job.alert_id, subscriber_id=job.sub_id,
                            lane=job.lane.value, error=f"{type(exc).__name__}: {exc}",
                            action="its lane entry stays pending: recorded, or delivered again under the same "
                                   "idempotency key, once Redis answers")  # fmt: skip
                return
            log.exception("delivery.crashed", alert_id=job.alert_id, subscriber_id=job.sub_id,
                          lane=job.lane.value, error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    async def _send(self, alert: Alert, sub: Subscriber, attempt: int = 1) -> str | None:
        adapter = self.adapters[sub.adapter]
        rkey = (alert.id, *adapter.render_key(alert, sub))
        payload = self._renders.get(rkey)
        if payload is None:
            try:
                if adapter.render_off_loop:
                    payload = await run_blocking(adapter.render, alert, sub)
                else:
                    payload = adapter.render(alert, sub)
            except Exception as exc:
                raise PermanentError(f"could not render the alert for {sub.adapter.value}: {exc}") from exc
            self._renders[rkey] = payload
            if len(self._renders) > 512:
                self._renders.popitem(last=False)
        key = await self.store.idempotency_key(alert.id, sub.id)
        signed = adapter.sign(payload, sub, key, alert.id)
        slot = self._sub_slots.get(sub.id)
        if slot is None:
            slot = self._sub_slots[sub.id] = asyncio.Semaphore(max(1, sub.max_in_flight))
        timeout = min(sub.timeout_s, self.settings.claim_idle_s / 2)
        async with slot:
            if isinstance(adapter, DirectAdapter):
                return await adapter.deliver(signed, sub, timeout)
            if sub.endpoint.startswith(("http://", "https://")):
                await self.http.send(sub.endpoint, signed, timeout, attempt)
            elif sub.endpoint.startswith(("mqtt://", "mqtts://")):
                expiry = int(alert.expires.timestamp() - time.time()) if alert.expires else None
                await self.mqtt.send(sub.endpoint, signed, timeout, expiry)
            else:
                raise PermanentError(f"the endpoint {redact_url(sub.endpoint)!r} is neither http(s):// nor mqtt://")
        return None
