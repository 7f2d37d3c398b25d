"""Prometheus metrics for JMA ingest (feed poller and drop folder), on alertd's shared registry.

prometheus_client appends ``_total`` to counter names. Failures are split by
where they happen, because they call for different people: a poll failure
(``alertd_jma_poll_failures_total``) is the link to JMA or the relay; an
entry failure (``alertd_jma_entry_failures_total``) is one telegram that
could not be fetched, read or handed to the core; an ignored telegram
(``alertd_jma_ignored_total``) was read and deliberately not broadcast.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from alertd.metrics import REGISTRY

POLLS = Counter(
    "alertd_jma_polls",
    "Polls of a JMA Atom feed, by outcome: updated (200), not_modified (304) or error.",
    ["feed", "outcome"],
    registry=REGISTRY,
)
ENTRIES = Counter(
    "alertd_jma_entries",
    "Feed entries handled for the first time (each is fetched at most once, or skipped by title).",
    ["feed"],
    registry=REGISTRY,
)
POLL_FAILURES = Counter(
    "alertd_jma_poll_failures",
    "Feed polls that failed: unreachable, HTTP error, unreadable Atom.",
    ["feed"],
    registry=REGISTRY,
)
ENTRY_FAILURES = Counter(
    "alertd_jma_entry_failures",
    "Telegrams that failed: fetch (network or HTTP), unparsable (hostile, malformed, not JMA), "
    "core (the core could not take it; retried), given_up (fetch failed too often).",
    ["source", "reason"],
    registry=REGISTRY,
)
IGNORED = Counter(
    "alertd_jma_ignored",
    "Telegrams read and not broadcast, by reason: unsupported type, test (試験), duplicate (same JMA "
    "identity), stale (an older serial or report than one already processed), after_cancel.",
    ["source", "type", "reason"],
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "alertd_jma_last_success_timestamp_seconds",
    "Unix time of the last successful poll of each feed (200 or 304); alert when it falls behind.",
    ["feed"],
    registry=REGISTRY,
    multiprocess_mode="max",
)
ALERTS = Counter(
    "alertd_jma_alerts",
    "Alerts made from JMA messages, by kind and what became of them: broadcast, dropped (policy), "
    "unreferenced (a correction of nothing alertd sent), no_districts, refused (by the core).",
    ["kind", "decision"],
    registry=REGISTRY,
)


def precreate(feeds: tuple[str, ...]) -> None:
    """The configured feeds' series at zero before the first poll (a poller that never
    succeeds must show as 0 polls and no success time, not as no series at all)."""
    for feed in feeds:
        for outcome in ("updated", "not_modified", "error"):
            POLLS.labels(feed=feed, outcome=outcome)
        POLL_FAILURES.labels(feed=feed)
        ENTRIES.labels(feed=feed)
        LAST_SUCCESS.labels(feed=feed)


SPOOL_FILES = Counter(
    "alertd_jma_spool_files",
    "Files taken from the JMA drop folder, by outcome: done or rejected.",
    ["outcome"],
    registry=REGISTRY,
)
