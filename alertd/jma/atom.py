"""Reading JMA's Atom PULL feeds: just the entries (id, title, link, updated)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin

from alertd.xmlsafe import parse_xml

ATOM = "{http://www.w3.org/2005/Atom}"
MAX_FEED_BYTES = 10_000_000  # the long feeds (…_l.xml) list several days of entries


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    url: str
    updated: str


def parse_feed(data: bytes, base_url: str) -> list[Entry]:
    """Entries in feed order. Entries without an id or a link are skipped: they cannot be fetched once."""
    root = parse_xml(data, max_bytes=MAX_FEED_BYTES, what="JMA Atom feed")
    entries: list[Entry] = []
    for el in root.iter(f"{ATOM}entry"):
        entry_id = (el.findtext(f"{ATOM}id") or "").strip()
        link = None
        for candidate in el.findall(f"{ATOM}link"):
            if candidate.get("rel", "alternate") in ("alternate", "related") and candidate.get("href"):
                link = candidate.get("href")
                break
        if not entry_id or not link:
            continue
        entries.append(
            Entry(
                id=entry_id,
                title=(el.findtext(f"{ATOM}title") or "").strip(),
                url=urljoin(base_url, link.strip()),
                updated=(el.findtext(f"{ATOM}updated") or "").strip(),
            )
        )
    return entries
