"""Prometheus counters for the JMA feed poller, on alertd's shared registry.

prometheus_client appends ``_total`` to counter names, so these are
exported as alertd_jma_polls_total, alertd_jma_entries_total and
alertd_jma_failures_total.
"""

from __future__ import annotations

from prometheus_client import Counter

from alertd.metrics import REGISTRY

POLLS = Counter(
    "alertd_jma_polls",
    "Polls of a JMA Atom feed, by outcome: updated (200), not_modified (304) or error.",
    ["feed", "outcome"],
    registry=REGISTRY,
)
ENTRIES = Counter(
    "alertd_jma_entries",
    "Feed entries seen for the first time (each is fetched at most once, or skipped by title).",
    ["feed"],
    registry=REGISTRY,
)
FAILURES = Counter(
    "alertd_jma_failures",
    "Failed feed polls and entry fetches or parses (network errors, HTTP errors, unreadable XML).",
    ["feed"],
    registry=REGISTRY,
)
ALERTS = Counter(
    "alertd_jma_alerts",
    "Alerts made from JMA messages, by kind and whether the policy broadcast them.",
    ["kind", "decision"],
    registry=REGISTRY,
)
