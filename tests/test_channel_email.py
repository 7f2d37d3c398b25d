"""E-mail subscribers as a registered-mail list's SMTP relay receives them (a real aiosmtpd
server with STARTTLS and a login, on a loopback port)."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from adapters.mail import BATCH
from tests.conftest import RunningEngine, make_settings, start_engine, stop_engine
from tests.servers import TlsFiles
from tests.support import free_port
from tests.test_metrics import scrape, value
from tests.test_tls import make_pki

USER, PASSWORD = "joso-bousai", "s3cret-pass"
ORDER = {
    "municipality": "08211", "level": 4, "action": "issue", "districts": ["三坂町"], "reason": "洪水",
    "status": "Exercise",
}  # fmt: skip


@dataclass
class Relay:
    """What an SMTP relay took: one entry per transaction (envelope and message)."""

    port: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        # When each transaction starts: what the sender's pacing spaces out.
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        self.starts.append(time.monotonic())
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        with self.lock:
            self.received.append({"rcpt": list(envelope.rcpt_tos), "from": envelope.mail_from,
                                  "data": bytes(envelope.original_content or envelope.content),
                                  "tls": session.ssl is not None})  # fmt: skip
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == (USER, PASSWORD)
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)


@pytest_asyncio.fixture
async def relay_and_engine(tmp_path: Path) -> AsyncIterator[tuple[Relay, RunningEngine]]:
    pki: TlsFiles = make_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert, pki.key)
    relay = Relay(port=free_port())
    controller = Controller(
        relay, hostname="127.0.0.1", port=relay.port, tls_context=context, require_starttls=True,
        authenticator=relay.authenticate, auth_required=True, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    running = await start_engine(make_settings(smtp_ca_file=pki.ca))
    try:
        yield relay, running
    finally:
        await stop_engine(running)
        controller.stop()


async def test_an_order_reaches_every_recipient_by_bcc_in_batches_with_a_readable_japanese_subject(
    relay_and_engine: tuple[Relay, RunningEngine],
) -> None:
    relay, engine = relay_and_engine
    token = await engine.add_issuer("joso", ["08211"])
    recipients = [f"resident{i}@example.jp" for i in range(2 * BATCH + 7)]
    endpoint = f"smtp://{USER}:{PASSWORD}@127.0.0.1:{relay.port}?starttls=1&rate=20"
    shown = await engine.add_subscriber(id="joso-mail", adapter="email", endpoint=endpoint, districts=["08211"],
                                        recipients=recipients, sender="bousai@city.joso.example.jp")  # fmt: skip
    # The login never comes back from the API.
    assert PASSWORD not in str(shown) and USER not in str(shown)
    assert shown["recipients"] == recipients and shown["sender"] == "bousai@city.joso.example.jp"

    status, answer = await engine.post("/api/v1/evacuation-orders", token, ORDER)
    assert status == 202, answer
    rows = await engine.wait_deliveries(answer["id"], {"delivered"})
    assert rows[0]["report"] == f"{len(recipients)} of {len(recipients)} recipients accepted in 3 messages"

    # Three transactions of at most BATCH recipients, each over STARTTLS after the login.
    assert [len(r["rcpt"]) for r in relay.received] == [BATCH, BATCH, 7]
    assert all(r["tls"] for r in relay.received) and relay.logins
    assert sorted(a for r in relay.received for a in r["rcpt"]) == sorted(recipients)
    # Paced at 20 messages a second to this server: 3 messages take at least 0.1 s.
    assert len(relay.starts) == 3 and relay.starts[-1] - relay.starts[0] >= 0.08  # unpaced: a few ms

    raw = relay.received[0]["data"]
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")  # RFC 2047: the header is plain ASCII
    assert "=?utf-8?" in head.lower()
    msg = message_from_bytes(raw, policy=policy.default)
    subject = str(make_header(decode_header(msg["Subject"])))
    assert "避難指示" in subject and "訓練" in subject
    # Nobody sees another resident's address: the list's own address stands in To, no Bcc header.
    assert msg["To"] == "bousai@city.joso.example.jp" and msg["Bcc"] is None
    assert "resident" not in raw.decode("ascii")
    assert msg["Message-ID"].endswith("@alertd>") and msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_body(("plain",)).get_content()
    assert msg.get_body(("plain",)).get_content_charset() == "utf-8"
    assert "三坂町" in body and "Evacuation" in body  # Japanese first, English after

    # The list of deliveries never shows the login either.
    assert PASSWORD not in str(rows)
    # Counted as what carried it: SMTP.
    sent = value(await scrape(engine), "alertd_delivery_attempts_total", adapter="email", transport="smtp",
                 lane="routine", result="success")  # fmt: skip
    assert sent is not None and sent >= 1


async def test_a_wrong_password_fails_at_once_and_says_so_without_the_password(
    relay_and_engine: tuple[Relay, RunningEngine],
) -> None:
    relay, engine = relay_and_engine
    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="joso-mail", adapter="email", districts=["08211"],
                                endpoint=f"smtp://{USER}:wrong-pass@127.0.0.1:{relay.port}?starttls=1",
                                recipients=["a@example.jp"], sender="bousai@example.jp")  # fmt: skip
    status, answer = await engine.post("/api/v1/evacuation-orders", token, ORDER)
    assert status == 202, answer
    rows = await engine.wait_deliveries(answer["id"], {"failed"})
    assert "refused the login" in rows[0]["last_error"] and "wrong-pass" not in rows[0]["last_error"]
    assert relay.received == []


async def test_an_email_subscriber_without_recipients_is_a_422_a_desk_can_read(
    relay_and_engine: tuple[Relay, RunningEngine],
) -> None:
    _, engine = relay_and_engine
    body = {"id": "m", "adapter": "email", "endpoint": "smtp://127.0.0.1:25", "districts": ["08211"],
            "sender": "bousai@example.jp"}  # fmt: skip
    status, problem = await engine.post("/api/v1/subscribers", engine.admin["Authorization"][7:], body)
    assert status == 422 and "recipients" in problem["detail"]
    body = {**body, "recipients": ["a@example.jp"], "endpoint": "https://relay.example.jp/"}
    status, problem = await engine.post("/api/v1/subscribers", engine.admin["Authorization"][7:], body)
    assert status == 422 and "smtp://" in problem["detail"]
