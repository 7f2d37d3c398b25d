"""Social and chat relays (X, LINE, Slack, Teams, …) through Apprise, one URL per subscriber.

Apprise already speaks each service's API, so alertd only decides *what* to say:

- the text fits the service. Apprise knows each service's limits (``body_maxlen``,
  ``title_maxlen``; a title of 0 means the service has none and the headline goes in
  the body); X counts every CJK character as two of its 280 (its "weighted length",
  docs.x.com counting-characters), so for X a Japanese text gets 140. Japanese comes
  first; English follows when both fit, else Japanese alone, cut at a sentence end;
- what Apprise said is kept. Apprise answers only True/False, and says why in its log:
  the lines it logged at INFO and above *in this delivery's thread* become the
  delivery's ``report`` (or its error).

Apprise is synchronous (requests underneath), so each notification runs in a worker
thread, with the subscriber's timeout as Apprise's socket timeouts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import unicodedata
from typing import Any, ClassVar

from adapters.base import DirectAdapter, Payload, PermanentError, RetryableError
from alertd import messages
from alertd.models import AdapterKind, Alert, Subscriber
from alertd.redact import redact_endpoint, redact_text

ALWAYS = ("ja", "en")
# Services whose limit Apprise gives in weighted characters, where CJK counts double.
WEIGHTED = frozenset({"NotifyTwitter"})
SEPARATOR = "\n\n"


def weight(text: str, service: str) -> int:
    if service not in WEIGHTED:
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def fit(title: str, sections: list[str], *, body_max: int, title_max: int, service: str) -> tuple[str, str]:
    """Title and body within the service's limits: every language if they fit, else Japanese alone,
    shortened at a sentence end. A service without titles gets the headline as the body's first line."""
    if title_max <= 0:
        sections = [f"{title}\n{sections[0]}", *sections[1:]]
        title = ""
    else:
        title = messages.shorten(title, title_max)
    for n in range(len(sections), 0, -1):
        body = SEPARATOR.join(sections[:n])
        if weight(body, service) <= body_max:
            return title, body
    # Weighted services: a CJK character takes two, so a character budget of half is safe.
    budget = body_max // 2 if service in WEIGHTED else body_max
    return title, messages.shorten(sections[0], budget)


class _ThreadLog(logging.Handler):
    """Apprise's log lines of one thread: the words behind its True/False."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(record.getMessage())


class AppriseAdapter(DirectAdapter):
    kind: ClassVar[AdapterKind] = AdapterKind.APPRISE

    def __init__(self) -> None:
        # Apprise loads its hundred service modules on first use (~0.4 s): here, while the
        # engine starts, rather than on the event loop when a desk registers a relay.
        import apprise

        apprise.Apprise.instantiate("json://localhost")

    def render(self, alert: Alert, subscriber: Subscriber) -> Payload:
        langs = messages.ordered_languages(ALWAYS, subscriber.languages)
        texts = [messages.message(alert, lang) for lang in langs]
        doc = {
            "title": texts[0].headline,
            # Japanese stands alone (its headline is the title); the others carry their own.
            "sections": [texts[0].body, *(f"{t.headline}\n{t.body}" for t in texts[1:])],
        }
        return Payload(json.dumps(doc, ensure_ascii=False).encode("utf-8"), "application/json")

    async def deliver(self, payload: Payload, subscriber: Subscriber, timeout_s: float) -> str | None:
        doc = json.loads(payload.body)
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self._notify, subscriber.endpoint, doc, timeout_s), timeout_s * 2 + 1
            )
        except TimeoutError:
            raise RetryableError(f"Apprise got no answer from {redact_endpoint(subscriber.endpoint)} "
                                 f"within {timeout_s:g} s") from None  # fmt: skip

    def _notify(self, url: str, doc: dict[str, Any], timeout_s: float) -> str:
        import apprise

        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            raise PermanentError(f"Apprise does not take the address {redact_endpoint(url)}")
        service = type(plugin).__name__
        plugin.socket_connect_timeout = plugin.socket_read_timeout = timeout_s
        title, body = fit(doc["title"], list(doc["sections"]), body_max=plugin.body_maxlen,
                          title_max=plugin.title_maxlen, service=service)  # fmt: skip
        logger = logging.getLogger("apprise")
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        capture = _ThreadLog()
        logger.addHandler(capture)
        try:
            ok = plugin.notify(body=body, title=title)
        except Exception as exc:  # a plugin's own bug must not end the delivery coroutine
            raise RetryableError(f"Apprise ({plugin.service_name}) failed: {type(exc).__name__}") from exc
        finally:
            logger.removeHandler(capture)
        said = redact_text(" ".join(capture.lines), url) or ("sent" if ok else "no reason given")
        report = f"Apprise {plugin.service_name}: {said}"
        if not ok:
            raise RetryableError(report)
        return report
