"""Which HTTP client carries webhooks: ALERTD_HTTP_CLIENT picks one of the transports that
give the same answers (adapters/transport.py's HttpTransport on aiohttp,
adapters/http_httptools.py, adapters/http_pyreqwest.py). Its own module so that the
transports, which share transport.py's status rules, never import one another.
"""

from __future__ import annotations

from typing import Protocol

from adapters.base import Payload
from adapters.transport import HttpTransport


class WebhookTransport(Protocol):
    """What the worker needs of an HTTP client: HttpTransport, HttptoolsTransport and
    PyreqwestTransport give the same answers, errors and redaction (tests/test_http_transports.py)."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def send(self, endpoint: str, payload: Payload, timeout_s: float, attempt: int = 1) -> None: ...


HTTP_CLIENTS = ("httptools", "aiohttp", "pyreqwest")


def http_transport(client: str, connections: int) -> WebhookTransport:
    """The webhook transport ALERTD_HTTP_CLIENT names. The thin httptools client is the
    default: it spent a third of aiohttp's CPU per delivery on the 2,000-webhook fan-out
    (README, "Which HTTP client carries the webhooks"); aiohttp stays as the fallback."""
    if client == "httptools":
        from adapters.http_httptools import HttptoolsTransport

        return HttptoolsTransport(connections)
    if client == "aiohttp":
        return HttpTransport(connections)
    if client == "pyreqwest":
        from adapters.http_pyreqwest import PyreqwestTransport  # loads Rust's runtime only when chosen

        return PyreqwestTransport(connections)
    raise ValueError(f"ALERTD_HTTP_CLIENT must be one of {', '.join(HTTP_CLIENTS)}, not {client!r}.")
