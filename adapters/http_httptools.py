"""HTTP(S) deliveries on a thin keep-alive client: asyncio connections and httptools' parser.

A drop-in for ``adapters.transport.HttpTransport`` (same ``start``, ``close`` and
``send``, same errors and messages). It exists because a webhook delivery needs
very little of a general HTTP client: one POST of bytes alertd already has, the
answer's status, and at most a few KB of its body. aiohttp spends about half of
alertd's per-delivery CPU on everything else (request and response objects,
multidicts, timers, cookie and redirect machinery); this client writes the
request in one ``write`` and lets httptools (llhttp, Node's parser, in C) read
the answer. On the 2,000-webhook fan-out it costs about a third of aiohttp's CPU
per delivery (``python -m simulations.bench_http_clients``, bench/http-clients.json).

What it keeps of HttpTransport's behaviour:
  - a per-request timeout covering the wait for a connection, connecting, TLS,
    sending and the answer;
  - keep-alive pooling per (scheme, host, port), with at most ``connections``
    requests in flight and at most ``connections`` idle connections kept, each
    for at most ``idle_s`` seconds;
  - no cookies, no redirects followed (a 3xx is a status like any other), no
    compression asked for;
  - at most RESPONSE_READ_BYTES of an answer read: a longer one is cut off and
    its connection dropped;
  - https with the system's CAs (SSL_CERT_FILE honoured), plus ``ca_file``;
  - the same status classification and the same redacted messages.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from urllib.parse import quote, unquote, urlsplit

import httptools

from adapters.base import DeliveryError, Payload, PermanentError, RetryableError
from adapters.transport import check_status, redact_error
from alertd.limits import RESPONSE_READ_BYTES
from alertd.redact import redact_url

USER_AGENT = "alertd/0.1"
HEADER_REFUSED = (
    "a header of this delivery holds a line break or another character HTTP forbids; it was not sent"
)
# An answer whose headers go on longer than this is not a webhook receiver's.
MAX_HEAD_BYTES = 64 * 1024
# Characters left as they are in a request target; everything else is percent-encoded
# (spaces, non-ASCII), as aiohttp's yarl does, so a target can never break the request line.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
# Parsed endpoints kept (a subscriber's endpoint is parsed once, not per alert).
_TARGETS_KEPT = 20_000

PoolKey = tuple[str, str, int]


class _Target:
    """What a request needs from an endpoint URL, worked out once per endpoint."""

    __slots__ = ("host", "key", "line_start", "newlines")

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        scheme = parts.scheme.lower()
        host = parts.hostname
        if scheme not in ("http", "https") or not host:
            raise ValueError("not an http(s) URL")
        port = parts.port or (443 if scheme == "https" else 80)  # a bad port raises ValueError
        host_ascii = host.encode("idna").decode("ascii")
        shown = f"[{host_ascii}]" if ":" in host_ascii else host_ascii
        default = port == (443 if scheme == "https" else 80)
        target = quote(parts.path or "/", safe=_PATH_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_QUERY_SAFE)
        self.key: PoolKey = (scheme, host_ascii, port)
        self.host = host_ascii
        start = f"POST {target} HTTP/1.1\r\nHost: {shown if default else f'{shown}:{port}'}\r\n"
        if parts.username is not None:
            # Credentials in the endpoint's URL are Basic auth, as aiohttp sends them.
            login = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            start += f"Authorization: Basic {base64.b64encode(login).decode('ascii')}\r\n"
        lines = start.count("\r\n")
        if start.count("\n") != lines or start.count("\r") != lines:
            raise ValueError("a line break in the URL")
        self.line_start = start
        # Line breaks of the request line, Host and Authorization: a header smuggling one in shows.
        self.newlines = start.count("\n")


class _AnswerError(Exception):
    """No status could be had from the receiver's answer."""


class ServerDisconnectedError(_AnswerError):
    """The receiver closed the connection before it answered."""


class BadAnswerError(_AnswerError):
    """The answer was not HTTP, or its headers never ended."""


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.lost = False
        self.reusable = False
        self.got_bytes = False
        self.in_head = True
        self.head_bytes = 0
        self.body_bytes = 0
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.framed = False  # the answer says where its body ends (Content-Length or chunked)

    # --- asyncio.Protocol --------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.in_head and self.waiter is not None and not self.waiter.done():
            if not self.framed:
                # An answer whose body ends with the connection (no Content-Length, not
                # chunked) is complete, and only the status counts.
                self._resolve(self.parser.get_status_code(), reusable=False)
            else:
                # Cut short of its own Content-Length or last chunk: a broken answer, tried
                # again, as aiohttp's payload error was (the receiver may not have kept it).
                self._fail(ServerDisconnectedError("the receiver closed the connection in the middle of its answer"))
        self._fail(ServerDisconnectedError("the receiver closed the connection before answering"))

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BadAnswerError("the receiver switched protocols instead of answering"))
            return
        except httptools.HttpParserError as exc:
            self._fail(BadAnswerError(f"the answer was not valid HTTP: {exc}"))
            return
        # Counted after parsing: one read often holds the headers and the start of a body,
        # and only headers that never end are the receiver's fault.
        if self.in_head:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._fail(BadAnswerError(f"the answer's headers ran past {MAX_HEAD_BYTES} bytes"))

    # --- httptools callbacks -----------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.in_head = False

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > RESPONSE_READ_BYTES:
            # Too long to be an acknowledgement: the status is all that counts, and the
            # rest is not read (a hostile receiver could send gigabytes).
            self._resolve(self.parser.get_status_code(), reusable=False)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            # 100 Continue and other interim answers: the real one follows.
            self.in_head, self.head_bytes, self.body_bytes, self.framed = True, 0, 0, False
            return
        self._resolve(status, reusable=self.parser.should_keep_alive())

    # --- one exchange ---------------------------------------------------------------------
    def _expire(self) -> None:
        self.timer = None
        self._fail(TimeoutError())

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _resolve(self, status: int, *, reusable: bool) -> None:
        self._stop_timer()
        self.reusable = reusable
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)
        if not reusable and self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        self._stop_timer()
        self.reusable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def request(self, data: bytes, deadline: float) -> asyncio.Future[int]:
        """Send one request; the future is the answer's status, or TimeoutError at ``deadline``
        (loop time). One timer per request rather than ``asyncio.timeout``, whose task
        bookkeeping cost a tenth of a fan-out's CPU."""
        assert self.transport is not None
        self.reusable = self.got_bytes = False
        self.in_head, self.head_bytes, self.body_bytes = True, 0, 0
        self.framed = False
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.timer = loop.call_at(deadline, self._expire)
        self.transport.write(data)
        return self.waiter

    def drop(self) -> None:
        self._stop_timer()
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()


class HttptoolsTransport:
    def __init__(self, connections: int = 512, ca_file: str | None = None, idle_s: float = 15.0) -> None:
        self._connections = connections
        self._ca_file = ca_file
        self._idle_s = idle_s
        self._tls: ssl.SSLContext | None = None
        self._slots: asyncio.Semaphore | None = None
        self._idle: dict[PoolKey, list[_Connection]] = {}
        self._idle_count = 0
        self._busy: set[_Connection] = set()
        self._targets: dict[str, _Target] = {}
        self._last_sweep = 0.0

    async def start(self) -> None:
        if self._slots is not None:
            return
        # Built once: loading the CAs for every connection would be wasted work.
        context = ssl.create_default_context()
        if self._ca_file:
            context.load_verify_locations(cafile=self._ca_file)
        context.set_alpn_protocols(["http/1.1"])
        self._tls = context
        self._slots = asyncio.Semaphore(self._connections)

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.drop()
        for conn in self._busy:
            conn.drop()
        self._idle.clear()
        self._idle_count = 0
        self._busy.clear()
        self._slots = None

    async def send(self, endpoint: str, payload: Payload, timeout_s: float, attempt: int = 1) -> None:
        """POST the payload; only the status counts. Errors name the endpoint without its secrets."""
        try:
            await self._post(endpoint, payload, timeout_s, attempt)
        except DeliveryError as exc:
            redact_error(exc, endpoint)
            raise

    async def _post(self, endpoint: str, payload: Payload, timeout_s: float, attempt: int) -> None:
        if self._slots is None:
            await self.start()
        target = self._target(endpoint)
        request = self._request(target, payload)
        try:
            status = await self._exchange(target, request, timeout_s)
        except TimeoutError as exc:
            raise RetryableError(f"no answer from {redact_url(endpoint)} within {timeout_s:g} s") from exc
        except (_AnswerError, OSError) as exc:
            raise RetryableError(f"{type(exc).__name__} talking to {redact_url(endpoint)}: {exc}") from exc
        check_status(status, endpoint, attempt)

    def _target(self, endpoint: str) -> _Target:
        target = self._targets.get(endpoint)
        if target is None:
            try:
                target = _Target(endpoint)
            except (ValueError, UnicodeError):
                raise PermanentError(f"the endpoint {redact_url(endpoint)!r} is not a valid URL") from None
            if len(self._targets) >= _TARGETS_KEPT:
                self._targets.clear()
            self._targets[endpoint] = target
        return target

    @staticmethod
    def _request(target: _Target, payload: Payload) -> bytes:
        headers = payload.headers
        lines = [target.line_start]
        # The payload's own User-Agent or Content-Type wins, as in HttpTransport.
        if "User-Agent" not in headers:
            lines.append(f"User-Agent: {USER_AGENT}\r\n")
        if "Content-Type" not in headers:
            lines.append(f"Content-Type: {payload.content_type}\r\n")
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {len(payload.body)}\r\n\r\n")
        head = "".join(lines)
        # Header names and values are alertd's own (ids, signatures), but a line break in
        # one would let it write a second header or request: refuse rather than send that.
        breaks = head.count("\n")
        if breaks != target.newlines + len(lines) or head.count("\r") != breaks:
            raise PermanentError(HEADER_REFUSED)
        return head.encode("utf-8") + payload.body

    async def _exchange(self, target: _Target, request: bytes, timeout_s: float) -> int:
        """One request within ``timeout_s`` in all: waiting for a slot, connecting, the answer."""
        slots = self._slots
        assert slots is not None
        deadline = asyncio.get_running_loop().time() + timeout_s
        if slots.locked():  # every slot taken: the wait counts against the timeout
            async with asyncio.timeout_at(deadline):
                await slots.acquire()
        else:
            await slots.acquire()  # free: taken without suspending
        try:
            # A pooled connection the receiver closed meanwhile fails before any answer
            # byte arrives: then (only then) the request goes again on a fresh connection.
            while (conn := self._pooled(target.key)) is not None:
                try:
                    return await self._once(target, conn, request, deadline)
                except ServerDisconnectedError:
                    if conn.got_bytes:
                        raise
            async with asyncio.timeout_at(deadline):
                conn = await self._connect(target)
            return await self._once(target, conn, request, deadline)
        finally:
            slots.release()

    async def _once(self, target: _Target, conn: _Connection, request: bytes, deadline: float) -> int:
        self._busy.add(conn)
        try:
            status = await conn.request(request, deadline)
        except BaseException:
            conn.drop()  # cancelled or timed out mid-answer: its state is unknown
            raise
        finally:
            self._busy.discard(conn)
        if conn.reusable and not conn.lost and self._idle_count < self._connections:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(target.key, []).append(conn)
            self._idle_count += 1
            self._sweep(conn.idle_since)
        else:
            conn.drop()
        return status

    def _pooled(self, key: PoolKey) -> _Connection | None:
        conns = self._idle.get(key)
        now = time.monotonic()
        while conns:
            conn = conns.pop()  # the most recently used: the oldest ones age out
            self._idle_count -= 1
            if not conn.lost and now - conn.idle_since < self._idle_s:
                return conn
            conn.drop()
        return None

    def _sweep(self, now: float) -> None:
        """Close connections idle longer than ``idle_s`` (every ``idle_s`` at most)."""
        if now - self._last_sweep < self._idle_s:
            return
        self._last_sweep = now
        for key in list(self._idle):
            conns = self._idle[key]
            keep = [c for c in conns if not c.lost and now - c.idle_since < self._idle_s]
            for conn in conns:
                if conn not in keep:
                    conn.drop()
            self._idle_count -= len(conns) - len(keep)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    async def _connect(self, target: _Target) -> _Connection:
        scheme, host, port = target.key
        tls = self._tls if scheme == "https" else None
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            _Connection, host, port, ssl=tls, server_hostname=host if tls else None
        )
        return conn
