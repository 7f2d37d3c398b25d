"""The internet side of the drop folder: ``alertd jma poll --to DIR``.

In a municipality the JMA feed is reachable only from the internet segment,
and LGWAN takes data from it one way, sanitised (無害化). This is the
internet-side half: the same poller (conditional GET, each entry once, at
most once a minute against JMA) fetches each telegram, and instead of
broadcasting it, writes it into ``DIR`` — which the LGWAN side watches with
``ALERTD_JMA_SPOOL=DIR`` (spool.py) — after sanitising it:

- the bytes are parsed by the hardened parser (alertd.xmlsafe: no DTD,
  entities or external references; 5 MB at most) and must be a JMA
  ``<Report>``;
- what is written is that tree serialised again as UTF-8, with comments and
  processing instructions dropped, so nothing but JMA's elements and text
  crosses the boundary;
- the write is atomic: a dotfile ``.<name>.tmp`` is written, flushed to disk
  and renamed to ``<name>``; the watcher never opens dotfiles or ``*.tmp``,
  so it never reads half a telegram.

A telegram that fails sanitising is not written (logged, counted as
``unparsable``); the LGWAN side never sees it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from lxml import etree

from alertd import logs
from alertd.errors import AlertdError
from alertd.jma.ingest import Guard, Outcome, Telegram
from alertd.jma.metrics import ENTRY_FAILURES
from alertd.jma.parse import JMX_NAMESPACE, MAX_BYTES, NotJmaXml
from alertd.jma.poller import JmaPoller, PollerConfig
from alertd.models import Alert
from alertd.xmlsafe import parse_xml

log = logs.get("alertd.jma")

_UNSAFE = re.compile(r"[^0-9A-Za-z._-]")


def sanitise(data: bytes) -> bytes:
    """The telegram re-serialised from the hardened parse: JMA's elements and text, nothing else.

    Raises MalformedInput / HostileInput / TooLarge (alertd.xmlsafe) or NotJmaXml.
    """
    root = parse_xml(data, max_bytes=MAX_BYTES, what="JMA message")
    if root.tag != f"{{{JMX_NAMESPACE}}}Report":
        raise NotJmaXml("This XML is not a JMA disaster-prevention message: its root element is not <Report>.")
    for node in root.xpath("//comment() | //processing-instruction()"):
        parent = node.getparent()
        if parent is not None:
            # Keep the text that followed the dropped node.
            if node.tail:
                prev = node.getprevious()
                if prev is not None:
                    prev.tail = (prev.tail or "") + node.tail
                else:
                    parent.text = (parent.text or "") + node.tail
            parent.remove(node)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def file_name(url: str) -> str:
    """A safe file name for a telegram: the last path segment of its URL, other characters replaced."""
    name = PurePosixPath(urlsplit(url).path).name or "telegram.xml"
    name = _UNSAFE.sub("_", name).lstrip(".") or "telegram.xml"
    return name if name.endswith(".xml") else name + ".xml"


def write_atomic(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/name`` so that no reader ever sees part of it; a taken name gets ``.1`` …"""
    target = directory / name
    n = 0
    while target.exists():
        n += 1
        target = directory / f"{name}.{n}"
    tmp = directory / f".{target.name}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target


class Handover:
    """Takes the poller's telegrams and writes them, sanitised, into the drop folder.

    It stands where the poller's Ingest stands (``handle``), and needs the raw
    bytes, which the poller keeps for it (``keep``): the parse result alone
    would lose what the LGWAN side must parse again itself.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._raw: dict[str, bytes] = {}
        directory.mkdir(parents=True, exist_ok=True)

    def keep(self, url: str, data: bytes) -> None:
        self._raw[url] = data

    async def handle(self, telegrams: list[Telegram], guard: Guard | None = None) -> dict[int, Outcome]:
        outcomes: dict[int, Outcome] = {}
        for t in telegrams:
            if guard is not None and not await guard():
                outcomes[t.position] = Outcome(False, "not_leader")
                continue
            raw = self._raw.pop(t.name, None)
            if raw is None:  # cannot happen through the poller; never write what was not fetched
                outcomes[t.position] = Outcome(True, "ignored:no_bytes")
                continue
            try:
                clean = sanitise(raw)
            except AlertdError as exc:
                ENTRY_FAILURES.labels(source=t.source, reason="unparsable").inc()
                log.error("jma.handover_refused", url=t.name, error=exc.detail)
                outcomes[t.position] = Outcome(True, "ignored:unsanitisable")
                continue
            path = write_atomic(self.directory, file_name(t.name), clean)
            log.info("jma.handed_over", url=t.name, file=str(path), type=t.result.type_code)
            outcomes[t.position] = Outcome(True, "handed_over")
        return outcomes


def build_handover_poller(directory: Path, config: PollerConfig, redis: aioredis.Redis) -> JmaPoller:
    """The feed poller, writing into ``directory`` instead of broadcasting (``alertd jma poll --to DIR``)."""
    handover = Handover(directory)

    async def never(alert: Alert) -> None:  # the handover side broadcasts nothing
        raise AssertionError("the handover poller does not broadcast")

    # Unsupported types are skipped by title as on the LGWAN side: it would not relay them.
    return JmaPoller(config, redis, never, ingest=handover, keep_bytes=handover.keep)
