"""JMA disaster-prevention XML (気象庁防災情報XML): PULL-feed poller, parsers and broadcast policy.

See docs/jma.md for the level mapping, identifiers and how the core plugs the poller in.
"""

from __future__ import annotations

from alertd.jma.parse import NotJmaXml, ParseResult, parse_message
from alertd.jma.policy import Decision, Policy, PolicyError
from alertd.jma.poller import JmaPoller, PollerConfig, PollerConfigError, build_poller

__all__ = [
    "Decision",
    "JmaPoller",
    "NotJmaXml",
    "ParseResult",
    "Policy",
    "PolicyError",
    "PollerConfig",
    "PollerConfigError",
    "build_poller",
    "parse_message",
]
