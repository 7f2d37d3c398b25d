"""Endpoint addresses with their secrets taken out, for errors, logs and API answers.

Receivers often put credentials in the URL they give alertd
(``https://user:pass@host/hook?apikey=…``). Those must never reach a delivery's
``last_error``, a log line or an API answer, where anyone with read access
(or a log pipeline) would see them.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"


def redact_url(url: str) -> str:
    """The URL with any password or user name masked and every query value masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"  # user names say who; they go too
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}={MASK}" for k, _ in pairs) if pairs else MASK
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


# Schemes whose host part is a host name: the rest (Apprise's tgram://, slack://, line://…)
# often carry a token where the host would be, so nothing after the scheme is shown.
HOST_SCHEMES = frozenset(
    {"http", "https", "mqtt", "mqtts", "smtp", "smtps", "redis", "rediss", "json", "jsons", "xml", "xmls", "form", "forms"}
)


def redact_endpoint(url: str) -> str:
    """A subscriber endpoint as alertd shows it: ``redact_url`` for addresses whose host is a
    host; for any other scheme (an Apprise service URL) only the scheme."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme and scheme not in HOST_SCHEMES:
        return f"{scheme}://{MASK}"
    return redact_url(url)


def redact_text(text: str, url: str) -> str:
    """An error message that may quote ``url`` (or pieces of it), with those pieces masked."""
    safe = text.replace(url, redact_endpoint(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return safe
    secrets = [parts.password, parts.username, *(v for _, v in parse_qsl(parts.query)), parts.query]
    if parts.scheme.lower() not in HOST_SCHEMES:
        # An Apprise service address: its "host" and path are bot tokens and keys.
        secrets += [parts.netloc, *parts.path.split("/")]
    for secret in secrets:
        if secret and len(secret) >= 3:
            safe = safe.replace(secret, MASK)
    return safe


_ADDRESS_AFTER = re.compile(r"\s+(?:from|to|at)\s+(?:https?|mqtts?|wss?)://\S+?(?=[\s)]|$)")
_URL = re.compile(r"(?:https?|mqtts?|wss?)://\S+?(?=[\s)]|$)")
_SOCKET = re.compile(r"\('(?:\d{1,3}\.){3}\d{1,3}',\s*\d+\)|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b")


def public_error(text: str | None) -> str:
    """A delivery's last error as a published file shows it (a drill's or a transmission test's
    table): the receiver's internal address — URL, host:port — left out, the reason kept
    ("HTTP 503 from http://10.0.0.5:8080/radio" → "HTTP 503")."""
    if not text:
        return ""
    return _SOCKET.sub("the receiver", _URL.sub("the receiver", _ADDRESS_AFTER.sub("", text)))
