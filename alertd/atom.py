"""The pull feed for conveyors: an Atom index of alerts in force, each linking its CAP document.

This is how IPAWS and national weather services publish CAP: conveyors poll
one small index with ETag / If-None-Match (a 304 costs nearly nothing) and
fetch only the CAP documents they have not seen.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from alertd.appkeys import ENGINE
from alertd.contract import query_of
from alertd.errors import UnknownArea
from alertd.inforce import CODE_INFORMATION, Standing
from alertd.models import Action, format_cap_time
from alertd.schemas import FeedQuery

ATOM_NS = "http://www.w3.org/2005/Atom"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def build_feed(request: web.Request) -> tuple[bytes, str, str | None, dict[str, str]]:
    """The feed's bytes; alertd/api.py serves them cached, with ETag, Last-Modified and 304.

    Entries: every alert in force, and every lift, cancel and correction until it
    expires, so a conveyor polling now and then still sees that an order ended
    rather than watching it vanish. Actual alerts unless ``status=`` asks for
    Exercise or Test.
    """
    engine = request.app[ENGINE]
    query: FeedQuery = query_of(request)
    prefecture = query.prefecture or None
    municipality = query.municipality or None
    status = query.status or "Actual"
    for name, code in (("prefecture", prefecture), ("municipality", municipality)):
        if code is not None and engine.registry.find(code) is None:
            raise UnknownArea(f"alertd does not know the {name} code {code!r}.", field=name)
    now = time.time()
    standing = await engine.store.list_alerts(active=True, limit=10_000, extra=("lifted",))
    changes = await engine.store.recent_changes(now)
    entries = []
    lifted = {a.id: set(m.get("lifted") or ()) for a, m in standing}
    now_dt = datetime.fromtimestamp(now, UTC)
    # In force by the one rule every view uses (alertd.inforce.Standing); lifts and cancels
    # stay in the feed until they expire, so a reader sees an order end.
    in_force = [(a, m) for a, m in standing
                if Standing(a, frozenset(lifted[a.id])).in_force(engine.registry, now_dt)]  # fmt: skip
    for alert, _meta in [*in_force, *changes]:
        if alert.status.value != status:
            continue
        if CODE_INFORMATION in alert.codes:
            # 津波情報 and quake reports are about a warning, never one themselves (docs/jma.md):
            # a later serial is an Update, and as a "change" it showed 大津波警報 after the 解除.
            continue
        if alert.expires is not None and alert.expires.timestamp() <= now:
            continue
        if municipality and not any(
            engine.registry.covers([municipality], d) or engine.registry.covers([d], municipality)
            for d in alert.districts
        ):
            continue
        if prefecture and not any(d[:2] == prefecture[:2] for d in alert.districts if d[:2].isdigit()):
            continue
        entries.append(alert)
    entries.sort(key=lambda a: (a.accepted_at or a.sent, a.id), reverse=True)
    base = f"{request.scheme}://{request.host}"
    # When anything of this status last changed: it only ever moves forward, whatever drops
    # out of the feed, and a drill never moves the real feed's.
    changed = await engine.store.views_updated(status)
    newest = max((a.accepted_at or a.sent for a in entries), default=EPOCH)
    updated = max(newest, datetime.fromtimestamp(changed, UTC) if changed else EPOCH)
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<feed xmlns="{ATOM_NS}">',
        "<title>alertd: alerts in force, and what ended them</title>",
        f"<id>urn:alertd:feed:{escape(status)}:{escape(prefecture or '')}:{escape(municipality or '')}</id>",
        f"<updated>{format_cap_time(updated)}</updated>",
        f'<link rel="self" href="{escape(str(request.url))}"/>',
    ]
    for alert in entries:
        headline = next((i.headline for i in alert.infos if i.headline), alert.event)
        parts += [
            "<entry>",
            f"<id>urn:alertd:alert:{escape(alert.id)}</id>",
            f"<title>{escape(headline or alert.event)}</title>",
            f"<updated>{format_cap_time(alert.accepted_at or alert.sent)}</updated>",
            f"<author><name>{escape(alert.source or alert.sender)}</name></author>",
            f'<link rel="alternate" type="application/cap+xml" href="{base}/api/v1/alerts/{escape(alert.id)}.cap"/>',
            f"<summary>{escape(alert.status.value)} {escape(alert.msg_type.value)}"
            f"{' (lift)' if alert.action == Action.LIFT else ''} {escape(_where(engine.registry, alert, lifted))}</summary>",
            "</entry>",
        ]
    parts.append("</feed>")
    headers = {"Last-Modified": formatdate(updated.timestamp(), usegmt=True)}
    return "\n".join(parts).encode("utf-8"), "application/atom+xml", "utf-8", headers


def _where(registry: Any, alert: Any, lifted: dict[str, set[str]]) -> str:
    """Where an entry stands, by place name: 「若宮戸 (本石下を除く)」 after a partial lift."""

    def name(code: str) -> str:
        district = registry.find(code)
        return district.name if district is not None else code

    gone = lifted.get(alert.id, set())
    places = " ".join(name(d) for d in alert.districts if d not in gone)
    if gone:
        places += " (except " + " ".join(name(d) for d in sorted(gone)) + ")"
    return places
