"""JMA disaster-prevention XML (気象庁防災情報XML): feed poller, drop folder, parsers, sequencing and policy.

See docs/jma.md for the level mapping, identifiers, the per-EventID and
per-region rules, and how the engine starts ingest (``build_jma``).
"""

from __future__ import annotations

from alertd.jma.parse import NotJmaXml, ParseResult, parse_message
from alertd.jma.policy import Decision, Policy, PolicyError
from alertd.jma.poller import JmaPoller, PollerConfig, PollerConfigError, build_poller
from alertd.jma.service import JmaService, build_jma
from alertd.jma.spool import SpoolConfig, SpoolWatcher, build_spool

__all__ = [
    "Decision",
    "JmaPoller",
    "JmaService",
    "NotJmaXml",
    "ParseResult",
    "Policy",
    "PolicyError",
    "PollerConfig",
    "PollerConfigError",
    "SpoolConfig",
    "SpoolWatcher",
    "build_jma",
    "build_poller",
    "build_spool",
    "parse_message",
]
