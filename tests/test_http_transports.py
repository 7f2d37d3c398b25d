"""The alternative webhook transports against real HTTP(S) servers on 127.0.0.1.

HttptoolsTransport (adapters/http_httptools.py) and PyreqwestTransport
(adapters/http_pyreqwest.py) must give the answers HttpTransport gives: every test
runs against both.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from adapters.base import Payload, PermanentError, RetryableError
from adapters.http_httptools import HttptoolsTransport
from adapters.http_pyreqwest import PyreqwestTransport
from alertd.limits import RESPONSE_READ_BYTES
from tests.support import free_port
from tests.test_tls import make_pki

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PAYLOAD = Payload(b'{"id":"a1","text":"\xe9\x81\xbf\xe9\x9b\xa3"}', "application/json; charset=utf-8",
                  {"Idempotency-Key": "a1:s1:1", "X-Alertd-Signature": "t=1,v1=ab"})  # fmt: skip


class Server:
    """An aiohttp server whose routes a test sets; it records requests and the connections they came on."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.connections: set[int] = set()
        self.port = free_port()
        self.release = asyncio.Event()  # what a hanging handler waits for; set at the end

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.connections.add(id(request.transport))
        self.seen.append((request.path_qs, dict(request.headers), await request.read()))
        handler = self.routes.get(request.path)
        return await handler(request) if handler else web.Response(status=200)

    async def start(self, context: ssl.SSLContext | None = None) -> Server:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=context).start()
        return self

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def stop(self) -> None:
        self.release.set()
        await self.runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = await Server().start()
    yield s
    await s.stop()


Transport = HttptoolsTransport | PyreqwestTransport
KINDS = [HttptoolsTransport, PyreqwestTransport]


@pytest.fixture(params=KINDS, ids=["httptools", "pyreqwest"])
def kind(request: pytest.FixtureRequest) -> type[Transport]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def transport(kind: type[Transport]) -> AsyncIterator[Transport]:
    t = kind(connections=8)
    await t.start()
    yield t
    await t.close()


def status(code: int, **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=code, headers=headers)

    return handler


async def test_a_2xx_is_delivered_with_the_payloads_bytes_and_headers_over_one_kept_alive_connection(
    server: Server, transport: Transport
) -> None:
    server.routes["/created"] = status(201)
    for _ in range(3):
        await transport.send(server.url("/hook?x=1"), PAYLOAD, 5)
    await transport.send(server.url("/created"), PAYLOAD, 5)
    path, headers, body = server.seen[0]
    assert (path, body) == ("/hook?x=1", PAYLOAD.body)
    assert headers["Content-Type"] == PAYLOAD.content_type
    assert headers["Idempotency-Key"] == "a1:s1:1" and headers["X-Alertd-Signature"] == "t=1,v1=ab"
    assert headers["User-Agent"] == "alertd/0.1" and "Cookie" not in headers
    assert len(server.seen) == 4 and len(server.connections) == 1


async def test_the_payloads_own_user_agent_and_content_type_are_sent_once_in_place_of_the_defaults(
    server: Server, transport: Transport
) -> None:
    own = Payload(b"<x/>", "application/xml", {"User-Agent": "relay/2", "Content-Type": "text/xml"})
    await transport.send(server.url("/hook"), own, 5)
    _, headers, _ = server.seen[0]
    assert (headers["User-Agent"], headers["Content-Type"]) == ("relay/2", "text/xml")


async def test_a_chunked_answer_with_a_body_is_read_and_the_connection_reused(
    server: Server, transport: Transport
) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=202)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b'{"ok":')
        await resp.write(b"true}")
        await resp.write_eof()
        return resp

    server.routes["/chunked"] = chunked
    await transport.send(server.url("/chunked"), PAYLOAD, 5)
    await transport.send(server.url("/chunked"), PAYLOAD, 5)
    assert len(server.connections) == 1


@pytest.mark.parametrize("code", [500, 502, 503, 408, 425, 429])
async def test_5xx_408_425_and_429_are_worth_another_try(
    server: Server, transport: Transport, code: int
) -> None:
    server.routes["/busy"] = status(code)
    with pytest.raises(RetryableError) as caught:
        await transport.send(server.url("/busy"), PAYLOAD, 5)
    assert caught.value.message == f"HTTP {code} from {server.url('/busy')}"


@pytest.mark.parametrize("code", [400, 401, 404, 410, 422])
async def test_other_4xx_are_final(server: Server, transport: Transport, code: int) -> None:
    server.routes["/no"] = status(code)
    with pytest.raises(PermanentError, match=f"^HTTP {code} from "):
        await transport.send(server.url("/no"), PAYLOAD, 5)


async def test_409_is_delivered_on_a_retry_and_final_on_a_first_attempt(
    server: Server, transport: Transport
) -> None:
    server.routes["/dup"] = status(409)
    await transport.send(server.url("/dup"), PAYLOAD, 5, attempt=2)
    with pytest.raises(PermanentError, match=r"^HTTP 409 from "):
        await transport.send(server.url("/dup"), PAYLOAD, 5, attempt=1)


async def test_a_receiver_that_does_not_answer_in_time_is_retryable_naming_the_timeout(
    server: Server, transport: Transport
) -> None:
    async def hang(request: web.Request) -> web.Response:
        await server.release.wait()
        return web.Response()

    server.routes["/slow"] = hang
    with pytest.raises(RetryableError) as caught:
        await transport.send(server.url("/slow"), PAYLOAD, 0.3)
    assert caught.value.message == f"no answer from {server.url('/slow')} within 0.3 s"


async def test_a_refused_connection_is_retryable(transport: Transport) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(RetryableError) as caught:
        await transport.send(url, PAYLOAD, 5)
    assert re.match(rf"^\w+ talking to {re.escape(url)}: ", caught.value.message)


async def test_a_redirect_is_a_final_answer_and_is_not_followed(server: Server, transport: Transport) -> None:
    server.routes["/moved"] = status(302, Location="/elsewhere")
    with pytest.raises(PermanentError, match=r"^HTTP 302 from "):
        await transport.send(server.url("/moved"), PAYLOAD, 5)
    assert [path for path, _, _ in server.seen] == ["/moved"]


async def test_a_huge_answer_is_cut_off_after_a_few_kb_and_its_connection_dropped(
    server: Server, transport: Transport
) -> None:
    async def flood(request: web.Request) -> web.StreamResponse:
        # Says a gigabyte is coming, sends a little of it, then waits: a client that read
        # the answer to its end would wait for the rest until its timeout.
        resp = web.StreamResponse(status=200, headers={"Content-Length": str(1 << 30)})
        await resp.prepare(request)
        await resp.write(b"x" * (RESPONSE_READ_BYTES * 4))
        await server.release.wait()
        return resp

    server.routes["/flood"] = flood
    await transport.send(server.url("/flood"), PAYLOAD, 5)
    await transport.send(server.url("/after"), PAYLOAD, 5)
    assert len(server.connections) == 2  # the flooded connection was not put back in the pool


async def test_a_pooled_connection_the_receiver_dropped_is_replaced_by_a_fresh_one() -> None:
    """A keep-alive receiver that closes an idle connection just as it is reused: the request
    goes again on a new connection instead of failing (the thin client's own rule: aiohttp
    and hyper report that as a failure, and the delivery's retry sends it again)."""
    requests = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        first = True
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(ln.split(b":")[1])
                for ln in head.split(b"\r\n")
                if ln.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            requests += 1
            if not first:  # the second request on a connection: drop it unanswered
                writer.close()
                return
            first = False
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/hook"
    transport = HttptoolsTransport()
    try:
        await transport.send(url, PAYLOAD, 5)
        await transport.send(url, PAYLOAD, 5)
        assert requests == 3  # first, the dropped repeat, and the repeat on a fresh connection
    finally:
        await transport.close()
        srv.close()


async def test_an_answer_whose_body_ends_with_the_connection_counts_by_its_status(
    transport: Transport,
) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy, come back later")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/hook"
    try:
        with pytest.raises(RetryableError, match=r"^HTTP 503 from "):
            await transport.send(url, PAYLOAD, 5)
    finally:
        srv.close()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart",  # short of its Content-Length
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npart\r\n",  # no last chunk
], ids=["content-length", "chunked"])  # fmt: skip
async def test_an_answer_cut_off_in_the_middle_is_retryable_not_delivered(transport: Transport, answer: bytes) -> None:
    """A receiver that dies mid-answer may not have kept the alert: tried again (as aiohttp's
    payload error was), never counted delivered on its status line alone."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/hook"
    try:
        with pytest.raises(RetryableError, match=r"talking to http://127\.0\.0\.1:\d+/hook"):
            await transport.send(url, PAYLOAD, 5)
    finally:
        srv.close()


async def test_an_answer_that_is_not_http_is_retryable(transport: Transport) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/hook"
    try:
        with pytest.raises(RetryableError, match=r"^\w+ talking to http://127\.0\.0\.1:\d+/hook: "):
            await transport.send(url, PAYLOAD, 5)
    finally:
        srv.close()


async def test_https_to_a_receiver_whose_certificate_is_signed_by_the_given_ca(
    tmp_path: Path, kind: type[Transport]
) -> None:
    pki = make_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert, pki.key)
    server = await Server().start(context)
    trusting = kind(ca_file=pki.ca)
    stranger = kind()
    try:
        await trusting.send(server.url("/tls", "https"), PAYLOAD, 5)
        assert server.seen[0][2] == PAYLOAD.body
        with pytest.raises(
            RetryableError, match=r"^\w+ talking to https://127\.0\.0\.1:\d+/tls: .*certificate"
        ):
            await stranger.send(server.url("/tls", "https"), PAYLOAD, 5)
    finally:
        await trusting.close()
        await stranger.close()
        await server.stop()


async def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown_in_errors(
    server: Server, transport: Transport
) -> None:
    server.routes["/down"] = status(503)
    url = server.url("/down?token=sekrit-token").replace("://", "://hookuser:hookpass@")
    with pytest.raises(RetryableError) as caught:
        await transport.send(url, PAYLOAD, 5)
    assert server.seen[0][1]["Authorization"] == "Basic aG9va3VzZXI6aG9va3Bhc3M="
    message = caught.value.message
    assert "sekrit" not in message and "hookpass" not in message and "hookuser" not in message
    assert message == f"HTTP 503 from http://***@127.0.0.1:{server.port}/down?token=***"
    refused = f"http://u:p4ssw0rd@127.0.0.1:{free_port()}/h?key=s3cr3t"
    with pytest.raises(RetryableError) as caught:
        await transport.send(refused, PAYLOAD, 5)
    assert "p4ssw0rd" not in caught.value.message and "s3cr3t" not in caught.value.message


@pytest.mark.parametrize(
    "endpoint", ["notaurl", "ftp://127.0.0.1/x", "http:///nohost", "http://127.0.0.1:99999/x"]
)
async def test_an_endpoint_that_is_not_an_http_url_is_final(transport: Transport, endpoint: str) -> None:
    with pytest.raises(PermanentError, match="is not a valid URL"):
        await transport.send(endpoint, PAYLOAD, 5)


async def test_a_header_with_a_line_break_is_refused_not_sent(server: Server, transport: Transport) -> None:
    smuggling = Payload(b"{}", "application/json", {"X-Alertd-Subscriber-Id": "s1\r\nX-Evil: 1"})
    with pytest.raises(PermanentError, match="line break"):
        await transport.send(server.url("/hook"), smuggling, 5)
    assert server.seen == []
