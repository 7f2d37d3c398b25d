"""How much one message may ask of alertd, checked before any expensive work.

A single request must never hold the event loop that also delivers flash
warnings. Every size here is far above what a real message needs (a
prefecture-wide order, a national CAP naming every municipality, a detailed
coastline polygon) and far below what stalls the loop.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from alertd.errors import InvalidInput, TooLarge
from alertd.models import Alert, utcnow

# A desk order names districts (町丁目, 字, 学区); a whole town is "all".
MAX_DISTRICT_NAMES = 300
# Unknown names beyond this many are listed without "did you mean" suggestions,
# which cost a fuzzy search of the town's every district each.
MAX_SUGGESTED_NAMES = 10
MAX_INFOS = 10
# Counted over the alert's distinct areas: the same area in the ja-JP and the
# en-US info block is one area.
MAX_AREAS = 250
MAX_SHAPES = 100  # polygons and circles
MAX_VERTICES_PER_POLYGON = 5_000
MAX_VERTICES = 20_000
MAX_GEOCODES = 2_000  # every municipality of Japan is about 1,900: a national alert
MAX_GEOCODES_LOCAL = 500  # a prefecture has at most ~180 municipalities
# An alert in force for longer than this is a mistake (year 9999), not an order.
MAX_EXPIRY_DAYS = 31
# What a receiver may send back to a delivery, and what an ack may weigh.
RESPONSE_READ_BYTES = 4_096
ACK_MAX_BYTES = 4_096


def _too_many(what: str, count: int, limit: int, field: str, hint: str) -> TooLarge:
    return TooLarge(
        f"This message has {count:,} {what}; alertd takes at most {limit:,} in one message. {hint} "
        "Nothing was sent.",
        field=field,
        limit=limit,
        count=count,
    )


def check_district_names(names: list[object]) -> None:
    if len(names) > MAX_DISTRICT_NAMES:
        raise _too_many("district names", len(names), MAX_DISTRICT_NAMES, "districts",
                        'Use ["all"] for the whole municipality, or send several orders.')  # fmt: skip


def check_expiry(expires: datetime | None) -> None:
    if expires is not None and expires > utcnow() + timedelta(days=MAX_EXPIRY_DAYS):
        raise InvalidInput(
            f"'expires' is {expires.isoformat()}, more than {MAX_EXPIRY_DAYS} days away. An alert stays in force "
            "until it is lifted; give an expiry within a month, and lift or renew it.",
            field="expires",
        )


def check_element_counts(
    *, infos: int, areas_per_info: int, shapes_per_info: int, geocodes_per_info: int = 0
) -> None:
    """The same limits, counted on a document before it is read element by element."""
    if infos > MAX_INFOS:
        raise _too_many("info blocks", infos, MAX_INFOS, "info", "Send one info block per language.")
    if areas_per_info > MAX_AREAS:
        raise _too_many("areas", areas_per_info, MAX_AREAS, "area", "Merge areas or send several messages.")
    if shapes_per_info > MAX_SHAPES:
        raise _too_many("polygons and circles", shapes_per_info, MAX_SHAPES, "polygon",
                        "Name the area by municipality codes, or merge the shapes.")  # fmt: skip
    if geocodes_per_info > MAX_GEOCODES:
        raise _too_many("area codes", geocodes_per_info, MAX_GEOCODES, "geocode",
                        "Name prefectures instead of every town in them.")  # fmt: skip


def check_alert(alert: Alert, *, national: bool = True) -> None:
    """Refuse an alert whose areas would cost more to geocode and render than any real one."""
    if len(alert.infos) > MAX_INFOS:
        raise _too_many("info blocks", len(alert.infos), MAX_INFOS, "info", "Send one info block per language.")
    areas = {
        (a.desc, tuple(a.polygons), tuple(a.circles), tuple(a.geocodes)): a for i in alert.infos for a in i.areas
    }
    if len(areas) > MAX_AREAS:
        raise _too_many("areas", len(areas), MAX_AREAS, "area", "Merge areas or send several messages.")
    shapes = {s for a in areas.values() for s in (*a.polygons, *a.circles)}
    if len(shapes) > MAX_SHAPES:
        raise _too_many("polygons and circles", len(shapes), MAX_SHAPES, "polygon",
                        "Name the area by municipality codes, or merge the shapes.")  # fmt: skip
    vertices = 0
    for polygon in {p for a in areas.values() for p in a.polygons}:
        n = polygon.count(" ") + 1
        if n > MAX_VERTICES_PER_POLYGON:
            raise _too_many("points in one polygon", n, MAX_VERTICES_PER_POLYGON, "polygon",
                            "Simplify the polygon (a few hundred points describe any town).")  # fmt: skip
        vertices += n
    if vertices > MAX_VERTICES:
        raise _too_many("polygon points in all", vertices, MAX_VERTICES, "polygon", "Simplify the polygons.")
    # Counted as written, repeats included: each one is read, resolved and written out again.
    geocodes = sum(len(a.geocodes) for a in areas.values()) + len(alert.districts)
    limit = MAX_GEOCODES if national else MAX_GEOCODES_LOCAL
    if geocodes > limit:
        raise _too_many("area codes", geocodes, limit, "geocode",
                        "Name prefectures instead of every town in them." if national
                        else "An issuer for a town or prefecture never needs more.")  # fmt: skip
    check_expiry(alert.expires)

# A page of a public list: at most MAX_PAGE entries, DEFAULT_PAGE unless asked (alertd/public.py).
MAX_PAGE = 200
DEFAULT_PAGE = 100
