"""Past issuances of a desk's jurisdiction: what was sent, when, where, and how it was delivered.

The L-Alert work asks for a view of past issuances; a desk also has to answer afterwards "did
the loudspeakers get the 18:05 order?". This reads the alerts alertd keeps (newest first, the
same store every view reads), keeps those of the desk's municipalities in a date range, and
counts each one's deliveries by state. It writes the same rows as CSV (for the municipality's
records), GeoJSON (each issuance with the outline of its districts, for a GIS) and CAP (the
CAP 1.2 document of each issuance, as receivers got it, in a zip).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from alertd.boundaries import outline
from alertd.models import Alert, AlertKind

if TYPE_CHECKING:
    from alertd.engine import Engine

# A page of history is at most this many issuances; each costs one read of its deliveries.
MOST = 200
# How far back one request looks through the store, whatever it finds.
SCAN = 5_000
_KINDS = {AlertKind.EVACUATION, AlertKind.SHELTER}
# Read by people in a spreadsheet: Japan time, and counts that cannot be misread. A confirmed
# delivery was delivered too, so "delivered_total" counts both (a column "delivered" of 0 beside
# "confirmed" 2 read as "nothing arrived").
CSV_FIELDS = ("sent_jst", "alert_id", "municipality", "municipality_name", "kind", "msg_type", "action", "level",
              "reason", "status", "district_names", "deliveries_planned", "delivered_total", "of_which_confirmed",
              "failed", "not_finished")  # fmt: skip
JST = timezone(timedelta(hours=9))
# Excel opens a CSV as UTF-8 only when it starts with a byte-order mark; without it 常総市 is mojibake.
BOM = "\ufeff"


def _municipality(engine: Engine, alert: Alert) -> str | None:
    if alert.municipality:
        return alert.municipality
    for code in alert.districts:
        muni = engine.registry.municipality_of(code)
        if muni:
            return muni
    return None


async def history(
    engine: Engine, within: Callable[[str], bool], *, start: datetime, end: datetime, status: str | None
) -> list[dict[str, Any]]:
    """The desk's issuances sent in [start, end), newest first, with their delivery outcome."""
    registry = engine.registry
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    scanned = 0
    while len(rows) < MOST and scanned < SCAN:
        batch = await engine.store.list_alerts(limit=200, before=cursor)
        if not batch:
            break
        scanned += len(batch)
        cursor = batch[-1][0].id
        for alert, _meta in batch:
            if not start <= alert.sent < end or alert.kind not in _KINDS or (status and alert.status.value != status):
                continue
            muni = _municipality(engine, alert)
            if muni is None or not within(muni):
                continue
            counts = Counter(r["state"] for r in await engine.store.deliveries(alert.id) if r.get("adapter") != "feed")
            rows.append({
                "alert_id": alert.id, "sent": alert.sent.isoformat(timespec="seconds"), "municipality": muni,
                "municipality_name": registry.get(muni).name, "kind": str(alert.kind), "msg_type": alert.msg_type.value,
                "action": alert.action, "level": alert.level, "reason": alert.reason, "status": alert.status.value,
                "districts": alert.districts, "district_names": [registry.get(d).name for d in alert.districts if registry.find(d)],
                "deliveries": {"planned": sum(counts.values()), "delivered": counts["delivered"],
                               "confirmed": counts["confirmed"], "failed": counts["failed"] + counts["expired"],
                               "other": sum(counts.values()) - counts["delivered"] - counts["confirmed"]
                               - counts["failed"] - counts["expired"]},
            })  # fmt: skip
        if batch[-1][0].sent < start:
            break  # everything further back is older still
    return rows[:MOST]


def as_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for r in rows:
        d = r["deliveries"]
        sent = f"{datetime.fromisoformat(r['sent']).astimezone(JST):%Y-%m-%d %H:%M:%S}"
        writer.writerow([sent, r["alert_id"], r["municipality"], r["municipality_name"], r["kind"], r["msg_type"],
                         r["action"] or "", r["level"] or "", r["reason"] or "", r["status"],
                         "、".join(r["district_names"]), d["planned"], d["delivered"] + d["confirmed"], d["confirmed"],
                         d["failed"], d["other"]])  # fmt: skip
    return out.getvalue()


def as_geojson(engine: Engine, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One feature per issuance; its geometry is a collection of its districts' outlines (null
    where alertd knows none: a 町域 is listed by name only)."""
    features = []
    registry = engine.registry
    for r in rows:
        known = [d for d in r["districts"] if registry.find(d)]
        drawn = {d: g for d in known if (g := outline(registry, d))}
        shapes = list(drawn.values())
        geometry = {"type": "GeometryCollection", "geometries": shapes} if shapes else None
        # Which districts the geometry leaves out, by name: a GIS user must not read the shapes as all of it.
        missing = [registry.get(d).name for d in known if d not in drawn]
        # The town's clock, as the CSV: the same instant with its +09:00 offset, and sent_jst as in the CSV
        # (a GIS user read the UTC time as JST, 9 hours off).
        sent = datetime.fromisoformat(r["sent"]).astimezone(JST)
        features.append({"type": "Feature", "id": r["alert_id"], "geometry": geometry,
                         "properties": {k: v for k, v in r.items() if k != "districts"}
                         | {"sent": sent.isoformat(timespec="seconds"), "sent_jst": f"{sent:%Y-%m-%d %H:%M:%S}",
                            "districts": r["districts"], "districts_without_boundary": missing}})  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


async def as_cap_zip(engine: Engine, rows: list[dict[str, Any]]) -> bytes:
    """The CAP 1.2 document of every listed issuance, one ``.xml`` file each, in a zip.

    Why a zip of documents and not one XML or an Atom feed: a CAP document is a whole XML
    document of its own (the OASIS schema has no element that holds several), and the tools that
    read CAP — validators, archives, a prefecture's L-Alert check, GIS importers — open one
    document per file. Each file is byte for byte what ``GET /api/v1/alerts/{id}.cap`` serves,
    signed when alertd signs CAP (an enveloped signature must not be re-wrapped: inside a feed its
    bytes would be re-serialised and a strict verifier could refuse it). Atom stays the live feed
    (``/feeds/alerts.atom``); this is the record. Names sort by time: ``<JST sent>_<alert id>.xml``.
    """
    from alertd.engine import cap_document

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for r in rows:
            alert = await engine.store.get_alert(r["alert_id"])
            if alert is None:
                continue  # removed by retention between the listing and now: nothing left to export
            sent = datetime.fromisoformat(r["sent"]).astimezone(JST)
            info = zipfile.ZipInfo(f"{sent:%Y%m%dT%H%M%S}_{alert.id}.xml", date_time=sent.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, cap_document(engine, alert))
    return out.getvalue()
