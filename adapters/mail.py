"""Registered e-mail lists (登録制メール): one alert, one message, sent by SMTP to many.

Cities mail their loudspeaker texts to residents who registered for them. What
matters, and how this module keeps it:

- *Japanese that every mail client shows.* The message is built with the standard
  library's ``email`` package under the SMTP policy: the subject goes out as RFC 2047
  encoded words (``=?utf-8?b?…?=``), the body as UTF-8 text, so neither depends on
  the relay being 8BITMIME or SMTPUTF8 capable.
- *No recipient sees another's address.* Recipients travel only in the envelope
  (``RCPT TO``, the Bcc way); the header's To is the list's own From address.
- *Batches.* At most ``BATCH`` recipients per transaction: many providers refuse a
  message with more (Gmail and Microsoft 365 allow 100 and 500 RCPT per message;
  RFC 5321 §4.5.3.1.8 asks servers to take at least 100), so 50 is safe everywhere.
- *Rate per server.* Relays throttle or blacklist bursts; every message to one
  ``host:port`` waits its turn (``RATE_PER_S``, or ``?rate=`` in the endpoint).
- *A retry repeats nobody.* Batches a server took are remembered per delivery
  (idempotency key), so a retry after a failed batch sends only what is left.

aiosmtplib speaks SMTP on the event loop: STARTTLS (``?starttls=1``) or TLS from the
start (``smtps://``), with the server's certificate verified against the system's
CAs plus ``ALERTD_SMTP_CA_FILE``, and AUTH with the endpoint's user and password.
"""

from __future__ import annotations

import asyncio
import email.policy
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.utils import format_datetime
from typing import ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from adapters.base import DirectAdapter, Payload, PermanentError, RetryableError
from alertd import messages
from alertd.models import AdapterKind, Alert, Subscriber
from alertd.redact import redact_url

BATCH = 50
RATE_PER_S = 2.0  # messages per second to one server unless the endpoint says ?rate=
DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
ALWAYS = ("ja", "en")  # residents and visitors, whatever the subscription lists
_REMEMBERED = 4096  # deliveries whose sent batches are kept for retries


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: bool
    rate_per_s: float

    @classmethod
    def parse(cls, endpoint: str) -> SmtpTarget:
        where = redact_url(endpoint)
        try:
            parts = urlsplit(endpoint)
            port = parts.port
        except ValueError:
            raise PermanentError(f"the endpoint {where!r} is not an smtp://host:port address") from None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise PermanentError(f"the endpoint {where!r} is not an smtp://host:port address")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            rate = float(query.get("rate", RATE_PER_S))
        except ValueError:
            rate = RATE_PER_S
        return cls(
            host=parts.hostname,
            port=port or DEFAULT_PORTS[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=parts.scheme == "smtps",
            starttls=query.get("starttls", "0").lower() in ("1", "true", "yes"),
            rate_per_s=rate if rate > 0 else RATE_PER_S,
        )


class ServerPace:
    """Spaces messages to one server at least 1/rate seconds apart, across all its subscribers."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._next = 0.0

    async def turn(self, rate_per_s: float) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)  # the pace itself, not a wait for something
            self._next = max(now, self._next) + 1.0 / rate_per_s


def compose(alert: Alert, subscriber: Subscriber) -> EmailMessage:
    """The message every recipient gets: Japanese first, then English and the subscriber's others."""
    langs = messages.ordered_languages(ALWAYS, subscriber.languages)
    texts = [messages.message(alert, lang) for lang in langs]
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = texts[0].headline
    msg["From"] = subscriber.sender or ""
    # Recipients go in the envelope only (Bcc); the list's own address stands in To.
    msg["To"] = subscriber.sender or ""
    msg["Date"] = format_datetime(alert.sent)
    # RFC 3834: an automatic message; vacation responders and list robots leave it alone.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Alertd-Alert-Id"] = alert.id
    msg["Content-Language"] = ", ".join(langs)
    sections = [f"{t.headline}\n\n{t.body}" for t in texts]
    msg.set_content("\n\n----------\n\n".join(sections) + "\n", charset="utf-8", cte="base64")
    return msg


def _tls(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class EmailAdapter(DirectAdapter):
    kind: ClassVar[AdapterKind] = AdapterKind.EMAIL

    def __init__(self, ca_file: str | None = None) -> None:
        self._tls = _tls(ca_file)
        self._paces: dict[tuple[str, int], ServerPace] = {}
        self._sent: OrderedDict[str, set[int]] = OrderedDict()

    def render(self, alert: Alert, subscriber: Subscriber) -> Payload:
        return Payload(compose(alert, subscriber).as_bytes(), "message/rfc822")

    def render_key(self, alert: Alert, subscriber: Subscriber) -> tuple[object, ...]:
        return (self.kind, tuple(subscriber.languages), subscriber.sender)

    async def deliver(self, payload: Payload, subscriber: Subscriber, timeout_s: float) -> str | None:
        target = SmtpTarget.parse(subscriber.endpoint)
        where = f"the SMTP server {target.host}:{target.port}"
        msg = message_from_bytes(payload.body, policy=email.policy.SMTP)
        key = payload.headers.get("Idempotency-Key", "")
        # The same Message-ID on every try: a mail system that sees it twice can drop the copy.
        msg["Message-ID"] = f"<{key}@alertd>"
        batches = [subscriber.recipients[i : i + BATCH] for i in range(0, len(subscriber.recipients), BATCH)]
        done = self._sent.setdefault(key, set())
        self._sent.move_to_end(key)
        while len(self._sent) > _REMEMBERED:
            self._sent.popitem(last=False)
        pace = self._paces.setdefault((target.host, target.port), ServerPace())
        refused: dict[str, str] = {}
        client = aiosmtplib.SMTP(
            hostname=target.host, port=target.port, use_tls=target.implicit_tls, start_tls=target.starttls,
            tls_context=self._tls, username=target.username, password=target.password, timeout=timeout_s,
        )  # fmt: skip
        try:
            async with client:
                for n, batch in enumerate(batches):
                    if n in done:
                        continue
                    await pace.turn(target.rate_per_s)
                    try:
                        errors, _ = await client.send_message(msg, sender=subscriber.sender, recipients=batch)
                    except aiosmtplib.SMTPRecipientsRefused as exc:
                        errors = {r.recipient: (r.code, r.message) for r in exc.recipients}
                    refused.update({r: f"{code} {text}" for r, (code, text) in errors.items()})
                    done.add(n)
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"{where} refused the login ({exc.code} {exc.message})") from exc
        except aiosmtplib.SMTPResponseException as exc:
            error = RetryableError if 400 <= exc.code < 500 else PermanentError
            raise error(f"{where} answered {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise RetryableError(f"{type(exc).__name__} talking to {where}: {exc}") from exc
        self._sent.pop(key, None)
        total = len(subscriber.recipients)
        if refused and len(refused) == total:
            raise PermanentError(f"{where} refused every recipient (first: {next(iter(refused.values()))})")
        report = f"{total - len(refused)} of {total} recipients accepted in {len(batches)} messages"
        if refused:
            shown = ", ".join(f"{r} ({why})" for r, why in list(refused.items())[:5])
            report += f"; refused {len(refused)}: {shown}"
        return report
