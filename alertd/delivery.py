"""The delivery chain: what happens to one delivery job, stage by stage.

    terminal → resolve → supersede → expire → breaker → send → retry → record

Each stage but the last either decides the job's outcome (and says so by returning
True, having written it on the job) or passes it on. ``record`` writes whatever was
decided and acknowledges the lane entry. The order is the contract: a job already
finished is only acknowledged; a superseded alert is never sent, however expired it
also is; a parked job is not an attempt.

This is the hot path of a 2,000-webhook fan-out: the stages are built once per worker,
the job itself is the only per-delivery context, and the chain adds no await and no
Redis round trip to what a delivery costs.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.base import DeliveryError
from alertd import logs, metrics, retry
from alertd.breaker import CircuitBreaker
from alertd.feed import FEED_SUBSCRIBER, Feed
from alertd.ledger import DeliveryLedger
from alertd.models import Alert, AlertState, DeliveryState, Priority, Subscriber
from alertd.recorder import Outcome, Recorder

log = logs.get("alertd.worker")

_COMPLETED = frozenset(metrics.COMPLETED_STATES)
_ENDED_STATES = frozenset({AlertState.UPDATED, AlertState.CANCELLED, AlertState.LIFTED})
# The state names as plain strings, read once: an enum member's .value is a descriptor
# call, and the chain writes one per delivery.
_QUEUED, _DELIVERED, _FAILED, _EXPIRED, _SUPERSEDED = (
    s.value for s in (DeliveryState.QUEUED, DeliveryState.DELIVERED, DeliveryState.FAILED,
                      DeliveryState.EXPIRED, DeliveryState.SUPERSEDED)
)  # fmt: skip


@dataclass(slots=True)
class Job:
    """One delivery job as read from a lane, with what the batch prefetch learned about
    it, and what the stages found and decided (the chain's context)."""

    lane: Priority
    entry_id: bytes
    alert_id: str
    sub_id: str
    accepted_ms: int
    alert_state: str | None = None
    state: str | None = None
    attempts: int = 0
    prev: dict[str, Any] = field(default_factory=dict)
    # Found by the stages.
    alert: Alert | None = None
    sub: Subscriber | None = None  # None for the feed
    adapter_label: str = "feed"
    transport: str = "mqtt"  # what carried it (the feed is MQTT); set by Resolve for a subscriber
    attempt: int = 0  # the attempt under way (send) or just failed (retry)
    error: DeliveryError | None = None
    # Decided by the stages, written by ``Record``.
    fields: dict[str, Any] | None = None
    outcome: str | None = None  # the deliveries metric's outcome label, if one counts
    retry_in: float | None = None  # park: try again after this many seconds
    decided_by: Stage | None = None


class Stage:
    """A step of the chain: ``name`` for logs and tests, and what to do once the outcome
    it decided is written (by default nothing)."""

    name = "stage"
    # Whether after_record does anything; the record stage skips the call when it does not.
    reports = False

    def decide(self, job: Job, fields: dict[str, Any], outcome: str | None = None,
               retry_in: float | None = None) -> bool:  # fmt: skip
        job.fields = fields
        job.outcome = outcome
        job.retry_in = retry_in
        job.decided_by = self
        return True

    def after_record(self, job: Job) -> None:
        return None


class Terminal(Stage):
    """A job whose delivery already reached a final state (delivered, failed, expired,
    superseded) was done before a crash and only its acknowledgement was lost: it is
    acknowledged again, and nothing else."""

    name = "terminal"

    def __call__(self, job: Job) -> bool:
        if job.state is not None and DeliveryState(job.state).terminal:  # None (never tried) is the common case
            return self.decide(job, {})
        return False


class Resolve(Stage):
    """Finds the alert and the subscriber. An alert alertd has no record of, or a
    subscriber removed before delivery, fails the delivery (with the reason)."""

    name = "resolve"

    def __init__(self, alert_of: Callable[[str], Awaitable[Alert | None]], subscribers: dict[str, Subscriber]) -> None:
        self.alert_of = alert_of
        self.subscribers = subscribers  # the worker's table, refreshed in place

    async def __call__(self, job: Job) -> bool:
        alert = job.alert = await self.alert_of(job.alert_id)
        is_feed = job.sub_id == FEED_SUBSCRIBER
        sub = job.sub = None if is_feed else self.subscribers.get(job.sub_id)
        if alert is None or (sub is None and not is_feed):
            why = "the subscriber was removed before delivery" if alert else "unknown alert"
            return self.decide(job, {"state": _FAILED, "error": why})
        if sub is not None:
            job.adapter_label = sub.adapter.value
            job.transport = metrics.transport_of(sub.endpoint)
        return False


class Supersede(Stage):
    """An alert that was updated, cancelled or lifted before this delivery went out is
    not sent: the receiver gets what replaced it instead."""

    name = "supersede"
    reports = True

    def __call__(self, job: Job) -> bool:
        if job.alert_state in _ENDED_STATES:
            return self.decide(job, {"state": _SUPERSEDED}, "superseded")
        return False

    def after_record(self, job: Job) -> None:
        log.info("delivery.superseded", alert_id=job.alert_id, subscriber_id=job.sub_id, by_state=job.alert_state)


class Expire(Stage):
    """An alert past its expiry is not sent: a warning that no longer holds is noise."""

    name = "expire"

    def __call__(self, job: Job) -> bool:
        expires = job.alert.expires if job.alert is not None else None
        if expires is not None and expires.timestamp() < time.time():
            return self.decide(job, {"state": _EXPIRED}, "expired")
        return False


class Breaker(Stage):
    """A subscriber whose circuit is open is not tried: the job is parked until the
    breaker lets a probe through. Parking is not an attempt, and the last real error
    stays the one the operator sees; a delivery never tried says why it waits."""

    name = "breaker"

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def __call__(self, job: Job) -> bool:
        sub = job.sub
        if sub is None:
            return False
        wait = self.breaker.wait_time(sub.id)
        if wait > 0:
            fields: dict[str, Any] = {"state": _QUEUED}
            error = None if job.prev.get("error") else self.breaker.why_open(sub.id)
            if error is not None:
                fields["error"] = error
            return self.decide(job, fields, retry_in=wait)
        return False


class Send(Stage):
    """One attempt: marks it under way, hands the alert to the transport (the feed, a
    webhook, an MQTT broker), and tells the breaker how it went. Success decides the
    job (delivered, with its latency); a failure is left to ``Retry``."""

    name = "send"
    reports = True

    def __init__(
        self,
        recorder: Recorder,
        breaker: CircuitBreaker,
        feed: Feed | None,
        send: Callable[[Alert, Subscriber, int], Awaitable[str | None]],
    ) -> None:
        self.recorder = recorder
        self.breaker = breaker
        self.feed = feed
        self.send = send

    async def __call__(self, job: Job) -> bool:
        alert, sub = job.alert, job.sub
        assert alert is not None
        attempt = job.attempt = job.attempts + 1
        self.recorder.mark_sent(job.alert_id, job.sub_id)
        started = time.monotonic()
        report = None
        try:
            if sub is None:
                assert self.feed is not None
                await self.feed.publish(alert)
            else:
                report = await self.send(alert, sub, attempt)
        except DeliveryError as exc:
            if sub is not None:
                self.breaker.failure(sub.id, exc.message, sub.adapter.value)
                result = "retryable_failure" if exc.retryable else "permanent_failure"
                metrics.attempt(job.adapter_label, job.transport, job.lane.value, result, time.monotonic() - started)
            job.error = exc
            return False
        latency_s = max(0.0, time.time() - job.accepted_ms / 1000)
        if sub is not None:  # the feed has its own counter (alertd_feed_messages_published_total)
            self.breaker.success(sub.id)
            lane = job.lane.value
            metrics.attempt(job.adapter_label, job.transport, lane, "success", time.monotonic() - started)
            metrics.latency(job.adapter_label, job.transport, lane, latency_s)
        fields: dict[str, Any] = {
            "state": _DELIVERED,
            "attempts": attempt,
            "latency_ms": f"{latency_s * 1000:.1f}",
            "delivered_at": f"{time.time():.3f}",
        }
        if report:
            fields["report"] = report  # what the channel's library said (Apprise, SMTP refusals)
        return self.decide(job, fields, "delivered")

    def after_record(self, job: Job) -> None:
        assert job.fields is not None
        log.debug("delivery.delivered", alert_id=job.alert_id, subscriber_id=job.sub_id,
                  latency_ms=float(job.fields["latency_ms"]))  # fmt: skip


class Retry(Stage):
    """After a failed attempt: a permanent error fails the delivery; a retryable one is
    parked with backoff, unless the next try would come after the alert expires."""

    name = "retry"
    reports = True

    def __init__(self, base_s: float, max_s: float) -> None:
        self.base_s = base_s
        self.max_s = max_s

    def __call__(self, job: Job) -> bool:
        exc, attempt = job.error, job.attempt
        assert exc is not None and job.alert is not None
        if not exc.retryable:
            return self.decide(job, {"state": _FAILED, "error": exc.message, "attempts": attempt},
                               "failed")  # fmt: skip
        delay = retry.backoff(attempt, self.base_s, self.max_s)
        expires = job.alert.expires
        if expires is not None and time.time() + delay > expires.timestamp():
            return self.decide(job, {"state": _EXPIRED, "error": exc.message, "attempts": attempt},
                               "expired")  # fmt: skip
        log.info(
            "delivery.retry", alert_id=job.alert_id, subscriber_id=job.sub_id, attempt=attempt,
            retry_in_s=round(delay, 2), error=exc.message,
        )  # fmt: skip
        return self.decide(job, {"state": _QUEUED, "error": exc.message, "attempts": attempt},
                           "retry", retry_in=delay)  # fmt: skip

    def after_record(self, job: Job) -> None:
        assert job.error is not None and job.fields is not None
        state = job.fields.get("state")
        if state == _FAILED:
            log.warning("delivery.failed", alert_id=job.alert_id, subscriber_id=job.sub_id, error=job.error.message)
        elif state == _EXPIRED:
            log.warning("delivery.expired", alert_id=job.alert_id, subscriber_id=job.sub_id, error=job.error.message)


class Record(Stage):
    """Counts the outcome, writes it (and a parked job's retry) through the ledger's
    batched recorder, and acknowledges the lane entry in the same transaction."""

    name = "record"

    def __init__(self, recorder: Recorder, ledger: DeliveryLedger, lane_key: Callable[[Priority], str]) -> None:
        self.recorder = recorder
        self.ledger = ledger
        self.streams = {lane: lane_key(lane) for lane in Priority}  # built once, read per delivery

    async def __call__(self, job: Job) -> None:
        outcome = Outcome(
            self.streams[job.lane], job.entry_id, job.alert_id, job.sub_id, job.fields or {}, prev=job.prev
        )
        state = job.fields.get("state") if job.fields else None
        if state in _COMPLETED and job.sub_id != FEED_SUBSCRIBER:
            # A subscriber's delivery ended: counted here once, and its alert's fan-out
            # learns one fewer delivery is left (the recorder writes it with the outcome).
            # A subscriber removed before delivery has no labels to count it by, but its
            # delivery has ended all the same.
            if job.sub is not None:
                metrics.completed(job.adapter_label, job.transport, job.lane.value, state)
            outcome.fanout = (job.lane.value, job.accepted_ms, state == _DELIVERED)
        if job.retry_in is not None:
            outcome.retry_member = self.ledger.retry_member(job.lane.value, job.alert_id, job.sub_id, job.accepted_ms,
                                                            parked=job.decided_by is not None and job.decided_by.name == "breaker")  # fmt: skip
            outcome.retry_at_ms = int((time.time() + job.retry_in) * 1000)
        await self.recorder.record(outcome)
        decided_by = job.decided_by
        if decided_by is not None and decided_by.reports:
            decided_by.after_record(job)


class DeliveryChain:
    """The stages in their order, built once per worker."""

    def __init__(
        self,
        *,
        alert_of: Callable[[str], Awaitable[Alert | None]],
        subscribers: dict[str, Subscriber],
        breaker: CircuitBreaker,
        recorder: Recorder,
        ledger: DeliveryLedger,
        feed: Feed | None,
        send: Callable[[Alert, Subscriber, int], Awaitable[str | None]],
        lane_key: Callable[[Priority], str],
        retry_base_s: float,
        retry_max_s: float,
    ) -> None:
        self.terminal = Terminal()
        self.resolve = Resolve(alert_of, subscribers)
        self.supersede = Supersede()
        self.expire = Expire()
        self.breaker = Breaker(breaker)
        self.send = Send(recorder, breaker, feed, send)
        self.retry = Retry(retry_base_s, retry_max_s)
        self.record = Record(recorder, ledger, lane_key)
        self.stages: tuple[Stage, ...] = (self.terminal, self.resolve, self.supersede, self.expire,
                                          self.breaker, self.send, self.retry, self.record)  # fmt: skip

    async def __call__(self, job: Job) -> None:
        # Spelled out rather than looped: two stages await and the rest do not, and a
        # loop would make every stage a coroutine on the hot path.
        decided = (
            self.terminal(job)
            or await self.resolve(job)
            or self.supersede(job)
            or self.expire(job)
            or self.breaker(job)
            or await self.send(job)
        )
        if not decided:
            self.retry(job)
        await self.record(job)
