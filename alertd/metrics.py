"""Prometheus metrics: each series counts one thing, and exists from startup.

Why every label combination is created at zero here, at import: Prometheus's
``rate()`` and ``increase()`` need a sample *before* the first increment. A
series born with the first burst after a restart (a level 5 fan-out is
exactly such a burst) is invisible to them, and ``histogram_quantile`` then
reads whatever the older series say — 20 s for a fan-out that took 146 ms.

Why the buckets are this fine: the flash lane is held to 50 ms for the first
delivery and 500 ms for the last, so 20 / 30 / 50 / 75 / 100 / 150 / 200 /
300 / 500 ms must be told apart; retried routine work needs 1 to 30 s.

Several processes (``alertd serve --workers N``, ``--public-port``) use
prometheus-client's multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set
(``serve`` sets it for itself and its children): each process writes its
values to files there, and ``/metrics`` sums them. Gauges say how to combine
processes (``multiprocess_mode``). What is measured at scrape time from Redis
(the backlog, whether Redis and the broker answer) is not stored here: the
engine layer reads it and hands it to ``Snapshot`` just before each scrape.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterable, Iterator
from importlib import metadata

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alertd.models import SUBSCRIBER_ADAPTERS, Alert, Origin, Priority, Status, Subscriber

# `_created` series are one useless sample per series here (29 of them before): off.
prometheus_client.disable_created_metrics()

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

REGISTRY = CollectorRegistry(auto_describe=True)

LANES = tuple(p.value for p in Priority)
ADAPTERS = tuple(a.value for a in SUBSCRIBER_ADAPTERS)
TRANSPORTS = ("http", "mqtt", "smtp", "apprise")
# What can carry each kind: e-mail goes by SMTP, the relays through Apprise, cell broadcast
# by HTTP; the rest by HTTP or MQTT. Series exist at zero for these pairs only.
ADAPTER_TRANSPORTS = {"email": ("smtp",), "apprise": ("apprise",), "cbc": ("http",)}


def transports_for(adapter: str) -> tuple[str, ...]:
    return ADAPTER_TRANSPORTS.get(adapter, ("http", "mqtt"))
ATTEMPT_RESULTS = ("success", "retryable_failure", "permanent_failure")
COMPLETED_STATES = ("delivered", "failed", "expired", "superseded")
PENDING_STATES = ("new", "retry_wait", "parked")

# Seconds. Fine where the flash targets are (50 ms first, 500 ms last), then up to
# the 30 s a flash delivery may take before /healthz calls it stuck, then retries.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 300.0,
)  # fmt: skip
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def transport_of(endpoint: str) -> str:
    """The transport label of an endpoint: what carried the delivery, not what it carried."""
    scheme = endpoint.partition("://")[0].lower()
    if scheme in ("mqtt", "mqtts"):
        return "mqtt"
    if scheme in ("http", "https"):
        return "http"
    return "smtp" if scheme in ("smtp", "smtps") else "apprise"  # any other scheme is an Apprise URL


# --- intake ---------------------------------------------------------------------
ALERTS_RECEIVED = Counter(
    "alertd_alerts_received",
    "Alerts accepted into the durable log (answered 202 and queued), by ingest source and CAP status. "
    "Refused alerts and drafts awaiting approval are not counted.",
    ["source", "status"],
    registry=REGISTRY,
)

# --- deliveries -------------------------------------------------------------------
ATTEMPTS = Counter(
    "alertd_delivery_attempts",
    "Delivery attempts to subscribers (not alertd's own MQTT feed): every try, retries included, "
    "by result. A job parked behind an open circuit is not an attempt.",
    ["adapter", "transport", "lane", "result"],
    registry=REGISTRY,
)
COMPLETED = Counter(
    "alertd_deliveries_completed",
    "Deliveries to subscribers that reached a final state, counted once each: delivered (the receiver's "
    "transport took it), failed (permanent error), expired (the alert expired before it got through), "
    "superseded (an update, cancel or lift replaced it first).",
    ["adapter", "transport", "lane", "state"],
    registry=REGISTRY,
)
CONFIRMED = Counter(
    "alertd_deliveries_confirmed",
    "Delivered deliveries the receiver then confirmed (acked by HTTP or MQTT), counted once each; "
    "a subset of completed{state=\"delivered\"}.",
    ["adapter", "transport", "lane"],
    registry=REGISTRY,
)
DELIVERY_LATENCY = Histogram(
    "alertd_delivery_latency_seconds",
    "Per successful delivery: time from the alert's acceptance to the receiver's transport "
    "acknowledgement (HTTP 2xx, MQTT PUBACK). Includes queue wait and every earlier failed attempt.",
    ["adapter", "transport", "lane"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ATTEMPT_DURATION = Histogram(
    "alertd_delivery_attempt_duration_seconds",
    "Per attempt, failed ones too: time from handing the alert to the transport to its answer "
    "(or the error, or the timeout). Queue wait is not included.",
    ["transport", "lane", "result"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
CONFIRMATION_LATENCY = Histogram(
    "alertd_confirmation_latency_seconds",
    "Per confirmed delivery: time from the alert's acceptance to the receiver's confirmation (first ack).",
    ["adapter", "lane"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
FANOUT_DURATION = Histogram(
    "alertd_fanout_duration_seconds",
    "Per alert: time from acceptance to its last successful delivery to a subscriber, observed once every "
    "delivery of the alert has reached a final state (deliveries that failed or expired do not stretch it).",
    ["lane"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
LOOP_LAG = Histogram(
    "alertd_event_loop_lag_seconds",
    "How late this process's event loop ran a timer due every 100 ms: the time a flash alert "
    "arriving then would have waited before alertd could even read it (a long computation, a "
    "garbage collection, a starved CPU). Observed ten times a second.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
FIRST_DELIVERY = Histogram(
    "alertd_first_delivery_seconds",
    "Per alert: time from acceptance to its first successful delivery to a subscriber.",
    ["lane"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
JOBS_RECLAIMED = Counter(
    "alertd_jobs_reclaimed",
    "Delivery jobs this process took over from another consumer that held them past ALERTD_CLAIM_IDLE_S "
    "(a dead or stuck process).",
    ["lane"],
    registry=REGISTRY,
)
POISON_JOBS = Counter(
    "alertd_poison_jobs",
    "Lane entries that were not delivery jobs alertd can read; acknowledged and dropped, each logged.",
    ["lane"],
    registry=REGISTRY,
)
CIRCUIT_OPEN = Gauge(
    "alertd_circuit_open",
    "1 while a subscriber's circuit is open in some process; the series is removed when it closes or the "
    "subscriber is deleted.",
    ["subscriber", "adapter"],
    registry=None,  # shown through _Circuits, which also derives alertd_circuits_open from it
    multiprocess_mode="livemax",
)


# --- the feed and acks -------------------------------------------------------------
FEED_PUBLISHED = Counter(
    "alertd_feed_messages_published",
    "Alerts published to alertd's own MQTT feed topics (alerts/v1/<pref>/<muni>), by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
STATE_PUBLISHED = Counter(
    "alertd_state_messages_published",
    "Retained per-municipality state messages published (what is in force).",
    registry=REGISTRY,
)
ACK_OUTCOMES = ("confirmed", "repeat", "refused", "malformed", "too_large")
ACKS = Counter(
    "alertd_acks",
    "Receivers' confirmation messages by path (http, mqtt) and outcome (confirmed, repeat, refused, "
    "malformed, too_large).",
    ["path", "outcome"],
    registry=REGISTRY,
)

# --- HTTP -------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "alertd_http_requests",
    "HTTP requests answered, by listener (desk, public), route template (never the raw path; "
    "'unmatched' for addresses alertd does not serve) and status code.",
    ["listener", "route", "code"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "alertd_http_request_duration_seconds",
    "Time from a request's arrival to its answer, by listener and route template.",
    ["listener", "route"],
    buckets=HTTP_BUCKETS,
    registry=REGISTRY,
)
REJECTED = Counter(
    "alertd_requests_rejected",
    "Requests answered with problem JSON (4xx or 5xx), by HTTP status.",
    ["status"],
    registry=REGISTRY,
)
PUBLIC_SHED = Counter(
    "alertd_public_requests_shed",
    "Public reads answered 503 because the public face was at its concurrency limit.",
    registry=REGISTRY,
)

# --- background tasks ----------------------------------------------------------------
TASK_RESTARTS = Counter(
    "alertd_task_restarts",
    "Background tasks (lane readers, reclaimer, retry mover, expiry, feed, poller) restarted after they ended; "
    "task=\"child:<name>\": a child process of alertd serve (w0, w1 … delivery workers, public) started again "
    "after it exited, counted by serve.",
    ["task"],
    registry=REGISTRY,
)
TASK_STEP_FAILURES = Counter(
    "alertd_task_step_failures",
    "Steps of a background task that raised and were retried after a backoff.",
    ["task"],
    registry=REGISTRY,
)

# --- the transmission test --------------------------------------------------------
TEST_RESULTS = ("confirmed", "unconfirmed", "failed")
TEST_BROADCAST = Gauge(
    "alertd_test_broadcast_subscribers",
    "Subscribers in the last finished transmission test (情報伝達試験), by result.",
    ["result"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
TEST_BROADCAST_LAST = Gauge(
    "alertd_test_broadcast_last_finished_timestamp_seconds",
    "Unix time the last transmission test finished (0: none since this deployment's processes started).",
    registry=REGISTRY,
    multiprocess_mode="max",
)

# --- JMA ------------------------------------------------------------------------------
JMA_ENABLED = Gauge(
    "alertd_jma_enabled",
    "1 when this deployment is configured to ingest JMA (feed poller or drop folder), else 0.",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)

BUILD_INFO = Gauge(
    "alertd_build_info",
    "Always 1; the labels say which alertd and Python run.",
    ["version", "python"],
    registry=REGISTRY,
    multiprocess_mode="livemax",
)

REPLICATION_SHORT = Counter(
    "alertd_replication_short",
    "Alerts answered 202 before the Redis replicas ALERTD_REDIS_WAIT_REPLICAS asks for confirmed them (WAIT timed out).",
    registry=REGISTRY,
)

REDIS_REPLICAS_CONNECTED = Gauge(
    "alertd_redis_replicas_connected",
    "Replicas connected to alertd's Redis master (INFO replication, every second when "
    "ALERTD_REDIS_WAIT_REPLICAS asks for any). Below alertd_redis_replicas_wanted, accepted alerts are on one "
    "server only: after a failover, until the failed master rejoins as a replica.",
    registry=REGISTRY,
    multiprocess_mode="livemin",
)

REDIS_REPLICAS_WANTED = Gauge(
    "alertd_redis_replicas_wanted",
    "Replicas each accepted alert should be on before its 202 (ALERTD_REDIS_WAIT_REPLICAS; 1 by default with a "
    "Sentinel or Cluster URL).",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)

FSYNC_SHORT = Counter(
    "alertd_fsync_short",
    "Alerts answered 202 before Redis confirmed the AOF fsync ALERTD_REDIS_WAITAOF asks for (WAITAOF timed out).",
    registry=REGISTRY,
)


def _precreate() -> None:
    """Every label combination alertd can produce, at zero (see the module docstring)."""
    for origin in Origin:
        for status in Status:
            ALERTS_RECEIVED.labels(origin.value, status.value)
    for adapter in ADAPTERS:
        for transport in transports_for(adapter):
            for lane in LANES:
                for result in ATTEMPT_RESULTS:
                    ATTEMPTS.labels(adapter, transport, lane, result)
                for state in COMPLETED_STATES:
                    COMPLETED.labels(adapter, transport, lane, state)
                CONFIRMED.labels(adapter, transport, lane)
                DELIVERY_LATENCY.labels(adapter, transport, lane)
        for lane in LANES:
            CONFIRMATION_LATENCY.labels(adapter, lane)
    for lane in LANES:
        for transport in TRANSPORTS:
            for result in ATTEMPT_RESULTS:
                ATTEMPT_DURATION.labels(transport, lane, result)
        FANOUT_DURATION.labels(lane)
        FIRST_DELIVERY.labels(lane)
        JOBS_RECLAIMED.labels(lane)
        POISON_JOBS.labels(lane)
    for outcome in ("published", "failed"):
        FEED_PUBLISHED.labels(outcome)
    for path in ("http", "mqtt"):
        for outcome in ACK_OUTCOMES:
            ACKS.labels(path, outcome)
    for result in TEST_RESULTS:
        TEST_BROADCAST.labels(result)
    # What alertd answers with problem JSON (bad input, auth, limits, outages): the first
    # refusal after a restart must show in rate(). Rarer codes appear when used.
    for status in ("400", "401", "403", "404", "405", "409", "413", "415", "422", "429", "500", "503"):
        REJECTED.labels(status)
    try:
        version = metadata.version("alertd")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    BUILD_INFO.labels(version, platform.python_version()).set(1)


_precreate()


def precreate_routes(listener: str, routes: Iterable[str]) -> None:
    """A listener's routes at zero, with the codes an on-call alert watches (500, 503):
    the first failure after a restart must show in rate(). Other codes appear when used."""
    for route in routes:
        HTTP_DURATION.labels(listener, route)
        for code in ("200", "500", "503"):
            HTTP_REQUESTS.labels(listener, route, code)


def precreate_test_broadcast() -> None:
    """The transmission test's series at zero in the process that runs it (the desk's), from
    its start. Its gauge is "mostrecent" across processes, and prometheus-client leaves out a
    value never set: so it is set here, once, and only here (zeros set by other processes
    later would hide the desk's real result). One process makes its desk app once."""
    for result in TEST_RESULTS:
        child = TEST_BROADCAST.labels(result)
        if MULTIPROC_DIR is not None:
            child.set(0)


def precreate_tasks(names: Iterable[str]) -> None:
    for name in names:
        TASK_RESTARTS.labels(name)
        TASK_STEP_FAILURES.labels(name)


def circuit_closed(subscriber: str, adapter: str) -> None:
    """The subscriber's series goes. The multiprocess files cannot drop a series: there it
    is set to 0, and /metrics leaves zeros out (_Circuits)."""
    if MULTIPROC_DIR is not None:
        CIRCUIT_OPEN.labels(subscriber, adapter).set(0)
        return
    with contextlib.suppress(KeyError):
        CIRCUIT_OPEN.remove(subscriber, adapter)


# --- the hot path -------------------------------------------------------------------
_children: dict[tuple[object, ...], object] = {}


def _child(metric: Counter | Histogram, *labels: str) -> object:
    key = (metric._name, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def attempt(adapter: str, transport: str, lane: str, result: str, seconds: float) -> None:
    _child(ATTEMPTS, adapter, transport, lane, result).inc()  # type: ignore[attr-defined]
    _child(ATTEMPT_DURATION, transport, lane, result).observe(seconds)  # type: ignore[attr-defined]


def completed(adapter: str, transport: str, lane: str, state: str) -> None:
    _child(COMPLETED, adapter, transport, lane, state).inc()  # type: ignore[attr-defined]


def latency(adapter: str, transport: str, lane: str, seconds: float) -> None:
    _child(DELIVERY_LATENCY, adapter, transport, lane).observe(seconds)  # type: ignore[attr-defined]


def confirmed(alert: Alert | None, sub: Subscriber | None, at: float) -> None:
    """A delivery's first confirmation (by HTTP or MQTT)."""
    if sub is None:  # removed since: nothing to label it by
        return
    adapter, lane = sub.adapter.value, (alert.priority.value if alert else "routine")
    CONFIRMED.labels(adapter, transport_of(sub.endpoint), lane).inc()
    if alert is not None and alert.accepted_at is not None:
        CONFIRMATION_LATENCY.labels(adapter, lane).observe(max(0.0, at - alert.accepted_at.timestamp()))


# --- what is read at scrape time -------------------------------------------------------
class Snapshot(Collector):
    """Values the engine reads from Redis and the broker just before a scrape.

    They are the truth at that moment (how much work waits, and how old), not a
    sampler's last tick; they are never written to the multiprocess files, so a
    process that stopped cannot leave a stale backlog behind.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str], int] = {(lane, st): 0 for lane in LANES for st in PENDING_STATES}
        self.oldest: dict[str, float] = dict.fromkeys(LANES, 0.0)
        self.up: dict[str, int] = {"redis": 0, "mqtt": 0}
        self.unfinished: dict[str, float] = {}
        # Subscriber ids in Redis at the scrape (None: not read): a circuit series of a deleted
        # subscriber goes at once, whichever process's breaker still holds it.
        self.subscribers: set[str] | None = None

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "alertd_deliveries_pending",
            "Delivery jobs not yet finished, read from Redis at scrape time: new (in the lane, waiting or in "
            "flight), retry_wait (waiting for a retry after a failed attempt), parked (waiting for an open "
            "circuit to let a probe through, also while let back into the lane to be re-parked).",
            labels=["lane", "state"],
        )
        for (lane, state), n in sorted(self.pending.items()):
            pending.add_metric([lane, state], n)
        yield pending
        oldest = GaugeMetricFamily(
            "alertd_queue_oldest_age_seconds",
            "Seconds since the oldest job now in the lane entered it (waiting or in flight; retry_wait and "
            "parked jobs excluded), read from Redis at scrape time; 0 when the lane is empty.",
            labels=["lane"],
        )
        for lane, age in sorted(self.oldest.items()):
            oldest.add_metric([lane], age)
        yield oldest
        unfinished = GaugeMetricFamily(
            "alertd_oldest_unfinished_delivery_age_seconds",
            "Seconds since the alert was accepted, for the lane's oldest delivery not yet out (not delivered, "
            "failed, expired or superseded: new, retry_wait or parked alike), read from Redis at scrape "
            "time; 0 when none is unfinished. The flash lane is held to 30 s (/healthz, AlertdFlashDeliveryLate).",
            labels=["lane"],
        )
        for lane in LANES:
            unfinished.add_metric([lane], self.unfinished.get(lane, 0.0))
        yield unfinished
        up = GaugeMetricFamily(
            "alertd_dependency_up",
            "1 when the dependency answered this process at scrape time (Redis: PING; mqtt: the feed's "
            "broker connection), else 0.",
            labels=["dependency"],
        )
        for dep, value in sorted(self.up.items()):
            up.add_metric([dep], value)
        yield up


SNAPSHOT = Snapshot()
REGISTRY.register(SNAPSHOT)


class _Circuits(Collector):
    """Open circuits as they stand: per subscriber (series of closed circuits and deleted
    subscribers left out: the multiprocess files can only set a series to 0, never drop
    it), and ``alertd_circuits_open{adapter}`` counted from those, each receiver once
    however many processes have it open (a per-process gauge summed counted it once per
    process)."""

    def __init__(self, inner: Collector) -> None:
        self.inner = inner

    def collect(self) -> Iterator[Metric]:
        open_now: set[tuple[str, str]] = set()
        for metric in self.inner.collect():
            if metric.name != "alertd_circuit_open":
                yield metric
                continue
            known = SNAPSHOT.subscribers
            metric.samples = [s for s in metric.samples
                              if s.value and (known is None or s.labels.get("subscriber") in known)]  # fmt: skip
            open_now = {(s.labels["subscriber"], s.labels["adapter"]) for s in metric.samples}
            yield metric
        # Also when no process has any circuit open (then there is no file series to read).
        count = GaugeMetricFamily(
            "alertd_circuits_open",
            "Subscribers whose circuit breaker is open in at least one process (their deliveries parked), "
            "by adapter; each receiver counted once, however many processes have it open.",
            labels=["adapter"],
        )
        by_adapter = dict.fromkeys(ADAPTERS, 0)
        for _subscriber, adapter in open_now:
            by_adapter[adapter] = by_adapter.get(adapter, 0) + 1
        for adapter, n in sorted(by_adapter.items()):
            count.add_metric([adapter], n)
        yield count


class _Only(Collector):
    def __init__(self, metric: Gauge) -> None:
        self.metric = metric

    def collect(self) -> Iterator[Metric]:
        return iter(self.metric.collect())


if MULTIPROC_DIR is None:
    REGISTRY.register(_Circuits(_Only(CIRCUIT_OPEN)))
    ProcessCollector(registry=REGISTRY)
    PlatformCollector(registry=REGISTRY)
    GCCollector(registry=REGISTRY)


def scrape_registry() -> CollectorRegistry:
    """What /metrics shows: this process alone, or every process of the deployment that
    shares PROMETHEUS_MULTIPROC_DIR (their counters summed), plus the scrape-time snapshot."""
    if MULTIPROC_DIR is None:
        return REGISTRY
    global _multi
    if _multi is None:
        from prometheus_client import multiprocess

        _multi = CollectorRegistry()
        _multi.register(_Circuits(multiprocess.MultiProcessCollector(None, path=MULTIPROC_DIR)))
        _multi.register(SNAPSHOT)
        ProcessCollector(registry=_multi)
        PlatformCollector(registry=_multi)
        GCCollector(registry=_multi)  # like process_*: the scraped (desk) process's own
    return _multi


_multi: CollectorRegistry | None = None


def mark_process_dead(pid: int) -> None:
    """A child that ended: its live gauges (open circuits) no longer count."""
    if MULTIPROC_DIR is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, MULTIPROC_DIR)
