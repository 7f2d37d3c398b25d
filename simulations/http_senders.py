"""One POST sender per candidate HTTP client, for the bench's client comparison.

Each sender does what alertd's HttpTransport has to do for one delivery and no
more: POST fixed bytes with fixed headers to a URL, with a per-request timeout,
no redirects, no cookies, no decompression, read at most RESPONSE_READ_BYTES of
the answer, and return the status. They share one shape so that
``bench_clients.raw_http`` runs the same fan-out through each of them:

    sender = SENDERS[name](body, headers, connections, timeout_s)
    await sender.start(); status = await sender.post(url); await sender.close()

A failure (timeout, refused, reset) raises; the caller counts it. Each client
is imported only when its sender is built, so a missing optional package costs
only its own row.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from alertd.limits import RESPONSE_READ_BYTES


class Sender(Protocol):
    async def start(self) -> None: ...
    async def post(self, url: str) -> int: ...
    async def close(self) -> None: ...


class _Base:
    def __init__(self, body: bytes, headers: dict[str, str], connections: int, timeout_s: float) -> None:
        self.body = body
        self.headers = headers
        self.connections = connections
        self.timeout_s = timeout_s

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class AlertdSender(_Base):
    """alertd's own HttpTransport, unchanged: what the engine pays per delivery today."""

    async def start(self) -> None:
        from adapters.base import Payload
        from adapters.transport import HttpTransport

        headers = dict(self.headers)
        ctype = headers.pop("Content-Type", "application/json")
        self.payload = Payload(self.body, ctype, headers)
        self.transport = HttpTransport(self.connections)
        await self.transport.start()

    async def post(self, url: str) -> int:
        await self.transport.send(url, self.payload, self.timeout_s)
        return 200  # send() raises for anything that is not a success

    async def close(self) -> None:
        await self.transport.close()


class AlertdHttptoolsSender(AlertdSender):
    """adapters.http_httptools.HttptoolsTransport: the candidate transport, as the engine would call it."""

    async def start(self) -> None:
        await super().start()
        from adapters.http_httptools import HttptoolsTransport

        await self.transport.close()
        self.transport = HttptoolsTransport(self.connections)  # type: ignore[assignment]
        await self.transport.start()


class AlertdPyreqwestSender(AlertdSender):
    """adapters.http_pyreqwest.PyreqwestTransport, as the engine would call it."""

    async def start(self) -> None:
        await super().start()
        from adapters.http_pyreqwest import PyreqwestTransport

        await self.transport.close()
        self.transport = PyreqwestTransport(self.connections)  # type: ignore[assignment]
        await self.transport.start()


class AiohttpTunedSender(_Base):
    """aiohttp with everything alertd does not need turned off, and the cheapest call path."""

    async def start(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=self.connections, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=False
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("Accept", "Accept-Encoding"),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            raise_for_status=False,
        )

    async def post(self, url: str) -> int:
        from adapters.transport import _discard_body

        async with self.session.post(
            url, data=self.body, headers=self.headers, allow_redirects=False
        ) as resp:
            await _discard_body(resp)
            return resp.status

    async def close(self) -> None:
        await self.session.close()


class PyreqwestSender(_Base):
    """pyreqwest: Rust reqwest/hyper on a tokio runtime; connection I/O and parsing run outside the GIL."""

    streamed = True

    async def start(self) -> None:
        from pyreqwest.client import ClientBuilder

        self.client = (
            ClientBuilder()
            .follow_redirects(False)
            .default_cookie_store(False)
            .referer(False)
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .pool_max_idle_per_host(self.connections)
            .timeout(timedelta(seconds=self.timeout_s))
            .build()
        )
        self.timeout = timedelta(seconds=self.timeout_s)

    async def post(self, url: str) -> int:
        builder = self.client.post(url).headers(self.headers).body_bytes(self.body).timeout(self.timeout)
        builder = builder.streamed_read_buffer_limit(RESPONSE_READ_BYTES + 1)
        if not self.streamed:
            return (await builder.build().send()).status
        async with builder.build_streamed() as resp:
            # Capped read, as alertd's _discard_body: a small answer read to the end
            # (connection reused), a large one cut off when the response is closed.
            length = resp.get_header("content-length")
            if length is not None and length.isdigit() and int(length) <= RESPONSE_READ_BYTES:
                if length != "0":
                    await resp.bytes()
                return resp.status
            reader = resp.body_reader
            seen = 0
            while seen <= RESPONSE_READ_BYTES:
                chunk = await reader.read(RESPONSE_READ_BYTES + 1 - seen)
                if not chunk:
                    break
                seen += len(chunk)
            return resp.status

    async def close(self) -> None:
        await self.client.close()


class PyreqwestFullSender(PyreqwestSender):
    """pyreqwest reading the whole answer in Rust (no cap): the cheapest call it offers."""

    streamed = False


class AiosonicSender(_Base):
    async def start(self) -> None:
        import aiosonic
        from aiosonic.connectors import TCPConnector
        from aiosonic.pools import PoolConfig
        from aiosonic.timeout import Timeouts

        self.timeouts = Timeouts(sock_connect=self.timeout_s, sock_read=self.timeout_s,
                                 request_timeout=self.timeout_s)  # fmt: skip
        connector = TCPConnector(pool_configs={":default": PoolConfig(size=self.connections, max_conn_requests=None)},
                                 timeouts=self.timeouts)  # fmt: skip
        self.client = aiosonic.HTTPClient(connector=connector, handle_cookies=False, follow=False)

    async def post(self, url: str) -> int:
        resp = await self.client.post(url, data=self.body, headers=self.headers, timeouts=self.timeouts)
        await resp.content()
        return int(resp.status_code)

    async def close(self) -> None:
        await self.client.connector.cleanup()


class CurlCffiSender(_Base):
    """libcurl's multi interface, driven from the asyncio loop by curl_cffi."""

    async def start(self) -> None:
        from curl_cffi.requests import AsyncSession

        self.session = AsyncSession(max_clients=self.connections, allow_redirects=False)

    async def post(self, url: str) -> int:
        resp = await self.session.post(
            url, data=self.body, headers=self.headers, timeout=self.timeout_s, allow_redirects=False,
            default_headers=False,
        )  # fmt: skip
        return int(resp.status_code)

    async def close(self) -> None:
        await self.session.close()


class PycurlSender(_Base):
    """libcurl's multi interface through pycurl, driven from the asyncio loop by ``CurlMultiLoop``."""

    async def start(self) -> None:
        self.multi = CurlMultiLoop(self.connections)
        self.header_lines = [f"{k}: {v}" for k, v in self.headers.items()] + ["Expect:", "Accept:"]

    async def post(self, url: str) -> int:
        return await self.multi.post(url, self.body, self.header_lines, self.timeout_s)

    async def close(self) -> None:
        self.multi.close()


class CurlMultiLoop:
    """A minimal asyncio driver for a pycurl CurlMulti (socket_action + loop readers/writers)."""

    def __init__(self, connections: int, ca_file: str | None = None) -> None:
        import pycurl

        self.pycurl = pycurl
        self.loop = asyncio.get_running_loop()
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self.multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self.multi.setopt(pycurl.M_MAXCONNECTS, connections)
        self.ca_file = ca_file
        self.idle: list[Any] = []
        self.waiting: dict[Any, asyncio.Future[int]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.watched: dict[int, int] = {}

    def _on_socket(self, what: int, fd: int, multi: Any, data: Any) -> None:
        pc, loop = self.pycurl, self.loop
        old = self.watched.get(fd, 0)
        if what == pc.POLL_REMOVE:
            if old & 1:
                loop.remove_reader(fd)
            if old & 2:
                loop.remove_writer(fd)
            self.watched.pop(fd, None)
            return
        want = {pc.POLL_IN: 1, pc.POLL_OUT: 2, pc.POLL_INOUT: 3}.get(what, 0)
        if want & 1 and not old & 1:
            loop.add_reader(fd, self._act, fd, pc.CSELECT_IN)
        elif old & 1 and not want & 1:
            loop.remove_reader(fd)
        if want & 2 and not old & 2:
            loop.add_writer(fd, self._act, fd, pc.CSELECT_OUT)
        elif old & 2 and not want & 2:
            loop.remove_writer(fd)
        self.watched[fd] = want

    def _on_timer(self, ms: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if ms >= 0:
            self.timer = self.loop.call_later(ms / 1000, self._act, self.pycurl.SOCKET_TIMEOUT, 0)

    def _act(self, fd: int, event: int) -> None:
        while True:
            ret, _ = self.multi.socket_action(fd, event)
            if ret != self.pycurl.E_CALL_MULTI_PERFORM:
                break
        self._collect()

    def _collect(self) -> None:
        while True:
            left, done, failed = self.multi.info_read()
            for c in done:
                self._finish(c, None)
            for c, errno, msg in failed:
                self._finish(c, (errno, msg))
            if not left:
                break

    def _finish(self, c: Any, error: tuple[int, str] | None) -> None:
        self.multi.remove_handle(c)
        fut = self.waiting.pop(c, None)
        status = c.getinfo(self.pycurl.RESPONSE_CODE)
        if fut is None or fut.done():
            return
        # A write error is our own cut-off of a large answer: the status is still good.
        if error is None or (error[0] == self.pycurl.E_WRITE_ERROR and status):
            fut.set_result(status)
        elif error[0] == self.pycurl.E_OPERATION_TIMEDOUT:
            fut.set_exception(TimeoutError(error[1]))
        else:
            fut.set_exception(ConnectionError(f"curl error {error[0]}: {error[1]}"))

    def _handle(self) -> Any:
        pc = self.pycurl
        if self.idle:
            return self.idle.pop()
        c = pc.Curl()
        c.setopt(pc.NOSIGNAL, 1)
        c.setopt(pc.FOLLOWLOCATION, 0)
        c.setopt(pc.ACCEPT_ENCODING, None)
        if self.ca_file:
            c.setopt(pc.CAINFO, self.ca_file)
        return c

    async def post(self, url: str, body: bytes, header_lines: list[str], timeout_s: float) -> int:
        pc = self.pycurl
        c = self._handle()
        seen = 0

        def write(chunk: bytes) -> int | None:
            nonlocal seen
            seen += len(chunk)
            return None if seen <= RESPONSE_READ_BYTES else 0  # 0: abort, the answer is too big

        c.setopt(pc.URL, url)
        c.setopt(pc.POSTFIELDS, body)
        c.setopt(pc.HTTPHEADER, header_lines)
        c.setopt(pc.TIMEOUT_MS, int(timeout_s * 1000))
        c.setopt(pc.WRITEFUNCTION, write)
        fut: asyncio.Future[int] = self.loop.create_future()
        self.waiting[c] = fut
        self.multi.add_handle(c)
        try:
            return await fut
        finally:
            if self.waiting.pop(c, None) is not None:  # cancelled: take it out of the multi
                self.multi.remove_handle(c)
            # Back to the pool only now: handed out earlier, a finished handle could be
            # reused by another request before this one had read its result.
            self.idle.append(c)

    def close(self) -> None:
        for fd, want in list(self.watched.items()):
            if want & 1:
                self.loop.remove_reader(fd)
            if want & 2:
                self.loop.remove_writer(fd)
        self.watched.clear()
        if self.timer is not None:
            self.timer.cancel()
        self.multi.close()


class HttptoolsSender(_Base):
    """A thin keep-alive HTTP/1.1 client: asyncio protocols and httptools' C parser (llhttp)."""

    async def start(self) -> None:
        self.pool = KeepAlivePool()
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())

    async def post(self, url: str) -> int:
        return await self.pool.post(url, self.body, self.extra, self.timeout_s)

    async def close(self) -> None:
        self.pool.close()


class _Http1(asyncio.Protocol):
    """One keep-alive connection: one request at a time, the answer parsed by httptools."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.seen = 0
        self.reusable = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("the connection closed before the answer"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # httptools.HttpParserError and kin: a broken answer
            self._fail(ConnectionError(f"bad HTTP answer: {exc}"))

    def on_body(self, body: bytes) -> None:
        self.seen += len(body)
        if self.seen > RESPONSE_READ_BYTES and self.waiter is not None and not self.waiter.done():
            # Too big: take the status, drop the connection, read no more.
            self.waiter.set_result(self.parser.get_status_code())
            self.reusable = False
            assert self.transport is not None
            self.transport.abort()

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def request(self, data: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.seen = 0
        self.reusable = False
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter


class KeepAlivePool:
    """Idle connections per (scheme, host, port); one request per connection at a time."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.idle: dict[tuple[str, str, int], list[_Http1]] = {}
        self.ssl_context = ssl_context
        self.factory: Callable[[], _Http1] = _Http1

    async def _connect(self, key: tuple[str, str, int]) -> _Http1:
        scheme, host, port = key
        tls = (self.ssl_context or ssl.create_default_context()) if scheme == "https" else None
        _, proto = await asyncio.get_running_loop().create_connection(self.factory, host, port, ssl=tls)
        return proto

    async def post(self, url: str, body: bytes, extra_headers: str, timeout_s: float) -> int:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname or "", port)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        head = (f"POST {target} HTTP/1.1\r\nHost: {parts.netloc.rpartition('@')[2]}\r\n"
                f"Content-Length: {len(body)}\r\n{extra_headers}\r\n")  # fmt: skip
        data = head.encode("latin-1") + body
        async with asyncio.timeout(timeout_s):
            idle = self.idle.get(key)
            while idle:
                conn = idle.pop()
                if conn.lost:
                    continue
                try:
                    return await self._exchange(key, conn, data)
                except ConnectionResetError:
                    continue  # the server closed an idle connection as we reused it: try a fresh one
            return await self._exchange(key, await self._connect(key), data)

    async def _exchange(self, key: tuple[str, str, int], conn: _Http1, data: bytes) -> int:
        try:
            status = await conn.request(data)
        except BaseException:
            if conn.transport is not None:
                conn.transport.abort()
            raise
        if conn.reusable and not conn.lost:
            self.idle.setdefault(key, []).append(conn)
        elif conn.transport is not None:
            conn.transport.close()
        return status

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                if conn.transport is not None:
                    conn.transport.close()
        self.idle.clear()


class HttpxSender(_Base):
    async def start(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
        self.client = httpx.AsyncClient(limits=limits, timeout=self.timeout_s, follow_redirects=False)

    async def post(self, url: str) -> int:
        resp = await self.client.post(url, content=self.body, headers=self.headers)
        return resp.status_code

    async def close(self) -> None:
        await self.client.aclose()


class NiquestsSender(_Base):
    async def start(self) -> None:
        import niquests

        self.session = niquests.AsyncSession(pool_connections=10, pool_maxsize=self.connections, disable_http2=True,
                                             disable_http3=True)  # fmt: skip

    async def post(self, url: str) -> int:
        resp = await self.session.post(url, data=self.body, headers=self.headers, timeout=self.timeout_s,
                                       allow_redirects=False)  # fmt: skip
        return int(resp.status_code or 0)

    async def close(self) -> None:
        await self.session.close()


SENDERS: dict[str, type[_Base]] = {
    "alertd": AlertdSender,
    "alertd_httptools": AlertdHttptoolsSender,
    "alertd_pyreqwest": AlertdPyreqwestSender,
    "aiohttp_tuned": AiohttpTunedSender,
    "pyreqwest": PyreqwestSender,
    "pyreqwest_full": PyreqwestFullSender,
    "aiosonic": AiosonicSender,
    "curl_cffi": CurlCffiSender,
    "pycurl": PycurlSender,
    "httptools": HttptoolsSender,
    "httpx": HttpxSender,
    "niquests": NiquestsSender,
}
