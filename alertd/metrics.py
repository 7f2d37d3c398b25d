"""Prometheus metrics, named as operators' dashboards expect (checked with promtool).

Latency buckets are tight at the low end: the difference between 20 ms and
200 ms is what matters for a flash warning, and between 1 s and 60 s for a
retried routine delivery.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

ALERTS_RECEIVED = Counter(
    "alertd_alerts_received",
    "Alerts accepted into the durable log, by ingest source and CAP status.",
    ["source", "status"],
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "alertd_deliveries",
    "Delivery outcomes by adapter: delivered, confirmed, retry, failed, expired, superseded.",
    ["adapter", "outcome"],
    registry=REGISTRY,
)
DELIVERY_LATENCY = Histogram(
    "alertd_delivery_latency_seconds",
    "Time from an alert being accepted to the receiver's transport acknowledgement.",
    ["adapter", "priority"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "alertd_queue_depth",
    "Deliveries waiting or in flight per lane ('retry' counts those waiting for a retry).",
    ["lane"],
    registry=REGISTRY,
)
CIRCUIT_OPEN = Gauge(
    "alertd_circuit_open",
    "1 while this process's circuit breaker for the subscriber is open.",
    ["subscriber"],
    registry=REGISTRY,
)
REJECTED = Counter(
    "alertd_requests_rejected",
    "Requests refused with a 4xx, by HTTP status.",
    ["status"],
    registry=REGISTRY,
)
FEED_PUBLISHED = Counter(
    "alertd_feed_messages_published",
    "Messages published to the MQTT feed topics, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
TEST_BROADCAST = Gauge(
    "alertd_test_broadcast_subscribers",
    "Subscribers in the last transmission test, by result.",
    ["result"],
    registry=REGISTRY,
)


_children: dict[tuple[object, ...], object] = {}


def delivered(adapter: str, outcome: str) -> None:
    """DELIVERIES.labels(...).inc() without the label lookup on the hot path."""
    key = ("d", adapter, outcome)
    child = _children.get(key)
    if child is None:
        child = _children[key] = DELIVERIES.labels(adapter=adapter, outcome=outcome)
    child.inc()  # type: ignore[attr-defined]


def latency(adapter: str, priority: str, seconds: float) -> None:
    key = ("l", adapter, priority)
    child = _children.get(key)
    if child is None:
        child = _children[key] = DELIVERY_LATENCY.labels(adapter=adapter, priority=priority)
    child.observe(seconds)  # type: ignore[attr-defined]


TASK_RESTARTS = Counter(
    "alertd_task_restarts",
    "Background tasks (lane readers, reclaimer, retry mover, expiry, feed, poller) restarted after they ended.",
    ["task"],
    registry=REGISTRY,
)
TASK_STEP_FAILURES = Counter(
    "alertd_task_step_failures",
    "Steps of a background task that raised and were retried after a backoff.",
    ["task"],
    registry=REGISTRY,
)
POISON_JOBS = Counter(
    "alertd_poison_jobs",
    "Lane entries that were not delivery jobs alertd can read; acknowledged and dropped, each logged.",
    ["lane"],
    registry=REGISTRY,
)
PUBLIC_SHED = Counter(
    "alertd_public_requests_shed",
    "Public reads answered 503 because the public face was at its concurrency limit.",
    registry=REGISTRY,
)

ACKS = Counter(
    "alertd_acks",
    "Receivers' confirmations by path (http, mqtt) and outcome (confirmed, repeat, refused, malformed, too_large).",
    ["path", "outcome"],
    registry=REGISTRY,
)
STATE_PUBLISHED = Counter(
    "alertd_state_messages_published",
    "Retained per-municipality state messages published (what is in force).",
    registry=REGISTRY,
)
REPLICATION_SHORT = Counter(
    "alertd_replication_short",
    "Alerts answered 202 before the Redis replicas ALERTD_REDIS_WAIT_REPLICAS asks for confirmed them (WAIT timed out).",
    registry=REGISTRY,
)
