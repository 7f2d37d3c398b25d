"""HTTP(S) deliveries through pyreqwest: Rust's reqwest/hyper, its I/O on threads of its own.

A drop-in for ``adapters.transport.HttpTransport`` (same ``start``, ``close`` and
``send``, same errors and messages). Connections, TLS and HTTP parsing run on a
tokio runtime outside the GIL, so of a delivery's cost the event loop's thread
pays only the call and its answer: on the 2,000-webhook fan-out about a fifth of
aiohttp's loop-thread CPU per delivery, and under half of the process's CPU
(``python -m simulations.bench_http_clients``). That pays when a core is free
beside the engine's; on a machine whose cores are all busy the whole-process
CPU is what counts, and there adapters/http_httptools.py costs a little less.

What it keeps of HttpTransport's behaviour: a per-request timeout; pooled
keep-alive connections per host; no cookies, no redirects followed, no
compression asked for; at most RESPONSE_READ_BYTES of an answer read (a longer
one is cut off and its connection dropped); https with the system's CAs plus
``ca_file``; credentials in the URL sent as Basic auth; the same status
classification and redacted messages.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError

from adapters.base import DeliveryError, Payload, PermanentError, RetryableError
from adapters.http_httptools import HEADER_REFUSED
from adapters.transport import check_status, redact_error
from alertd.limits import RESPONSE_READ_BYTES
from alertd.redact import redact_url

USER_AGENT = "alertd/0.1"
# Endpoints already found to be http(s) URLs (a subscriber's is checked once, not per alert).
_CHECKED_KEPT = 20_000


class PyreqwestTransport:
    def __init__(self, connections: int = 512, ca_file: str | None = None, idle_s: float = 15.0) -> None:
        self._connections = connections
        self._ca_file = ca_file
        self._idle_s = idle_s
        self._client: Client | None = None
        self._timeouts: dict[float, timedelta] = {}
        self._checked: set[str] = set()

    async def start(self) -> None:
        if self._client is None:
            self._client = self._build()

    def _build(self) -> Client:
        builder = (
            ClientBuilder()
            .user_agent(USER_AGENT)
            .follow_redirects(False)
            .default_cookie_store(False)
            .referer(False)
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .pool_max_idle_per_host(self._connections)
            .pool_idle_timeout(timedelta(seconds=self._idle_s))
        )
        if self._ca_file:
            try:
                builder = builder.add_root_certificate_pem(Path(self._ca_file).read_bytes())
            except (OSError, ValueError) as exc:
                raise ValueError(f"the CA file {self._ca_file} cannot be used: {exc}") from None
        return builder.build()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def send(self, endpoint: str, payload: Payload, timeout_s: float, attempt: int = 1) -> None:
        """POST the payload; only the status counts. Errors name the endpoint without its secrets."""
        try:
            await self._post(endpoint, payload, timeout_s, attempt)
        except DeliveryError as exc:
            redact_error(exc, endpoint)
            raise

    def _timeout(self, seconds: float) -> timedelta:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = timedelta(seconds=seconds)
        return timeout

    def _check(self, endpoint: str) -> None:
        if endpoint in self._checked:
            return
        try:
            parts = urlsplit(endpoint)
            valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 - a port out of range raises here
        except ValueError:
            valid = False
        if not valid:
            raise PermanentError(f"the endpoint {redact_url(endpoint)!r} is not a valid URL")
        if len(self._checked) >= _CHECKED_KEPT:
            self._checked.clear()
        self._checked.add(endpoint)

    async def _post(self, endpoint: str, payload: Payload, timeout_s: float, attempt: int) -> None:
        if self._client is None:
            await self.start()
        assert self._client is not None
        self._check(endpoint)
        headers = {"Content-Type": payload.content_type, **payload.headers}
        try:
            builder = self._client.post(endpoint)
        except ValueError as exc:  # pyreqwest's BuilderError
            raise PermanentError(f"the endpoint {redact_url(endpoint)!r} is not a valid URL") from exc
        try:
            builder = builder.headers(headers)
        except ValueError as exc:
            raise PermanentError(HEADER_REFUSED) from exc
        request = (
            builder.body_bytes(payload.body)
            .timeout(self._timeout(timeout_s))
            # The default buffers 64 KB of the answer before the status is handed over, and
            # waits for them: a receiver that sends a little of a large answer would hang us.
            .streamed_read_buffer_limit(RESPONSE_READ_BYTES + 1)
            .build_streamed()
        )
        try:
            async with request as resp:
                status = resp.status
                await _discard_body(resp)
        except TimeoutError as exc:
            raise RetryableError(f"no answer from {redact_url(endpoint)} within {timeout_s:g} s") from exc
        except (PyreqwestError, OSError) as exc:
            raise RetryableError(f"{type(exc).__name__} talking to {redact_url(endpoint)}: {exc}") from exc
        check_status(status, endpoint, attempt)


async def _discard_body(resp: object) -> None:
    """Read at most a few KB of the answer, as adapters.transport._discard_body does.

    A small answer is read to its end so the connection goes back to the pool; a
    large one is left unread, and leaving the ``async with`` drops its connection.
    """
    length = resp.get_header("content-length")  # type: ignore[attr-defined]
    if length is not None and length.isdigit() and int(length) <= RESPONSE_READ_BYTES:
        if length != "0":
            await resp.bytes()  # type: ignore[attr-defined]
        return
    reader = resp.body_reader  # type: ignore[attr-defined]
    seen = 0
    while seen <= RESPONSE_READ_BYTES:
        chunk = await reader.read(RESPONSE_READ_BYTES + 1 - seen)
        if not chunk:
            return
        seen += len(chunk)
