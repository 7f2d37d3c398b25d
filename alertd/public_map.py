"""What the public map shows: every district under an evacuation order now, with its level.

Drawn from the one model of what is in force (``alertd.inforce``), town by town, as the
in-force view and the retained MQTT state are: the map cannot disagree with them. A
district is under an order when an order of the desk stands there (its highest level wins,
as everywhere). A 町域 has no boundary of its own in alertd's data: it is listed with
``has_boundary: false`` and the map outlines its municipality instead of pretending to know
where it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from alertd.boundaries import outline
from alertd.inforce import InForce
from alertd.messages import level_style, reason_text
from alertd.models import Action, AlertKind, utcnow
from alertd.romaji import hiragana, romanise

# The languages of the public map and its legend.
LANGUAGES = ("ja", "en", "zh", "ko", "ja-easy")

if TYPE_CHECKING:
    from alertd.engine import Engine


async def municipalities_with_orders(engine: Engine, status: str) -> list[str]:
    """Municipalities where an order of this status may stand now (the model decides which do)."""
    registry, now = engine.registry, utcnow()
    out: set[str] = set()
    for alert, _meta in await engine.store.list_alerts(active=True, limit=10_000):
        if alert.status.value != status or alert.kind != AlertKind.EVACUATION or alert.action != Action.ISSUE:
            continue
        if alert.expires is not None and alert.expires <= now:
            continue
        for code in alert.districts:
            muni = alert.municipality or registry.municipality_of(code)
            if muni:
                out.add(muni)
    return sorted(out)


async def districts_under_order(
    engine: Engine, status: str, *, within: Callable[[str], bool] | None = None, with_alerts: bool = False
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection: one feature per district under an order of ``status``
    (``within``: only in the municipalities it accepts — a desk's jurisdiction). ``with_alerts``
    adds each order in force with the districts it still covers, as the desk console lists them."""
    registry = engine.registry
    features: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    updated: datetime = utcnow()
    munis = [m for m in await municipalities_with_orders(engine, status) if within is None or within(m)]
    standing = await engine.store.in_force_many(munis, status, registry) if munis else {}
    for muni in munis:
        model = InForce(registry, muni, standing.get(muni, []))
        orders = {s.alert.id: s for s in model.orders()}
        for s in orders.values():
            remaining = s.remaining(registry)
            alerts.append({
                "alert_id": s.alert.id, "municipality": muni, "municipality_name": registry.get(muni).name,
                "level": s.level, "reason": s.alert.reason, "status": status, "districts": remaining,
                "district_names": [registry.get(d).name for d in remaining],
                "sent": s.alert.sent.isoformat(timespec="seconds"),
                "expires": s.alert.expires.isoformat(timespec="seconds") if s.alert.expires else None,
            })  # fmt: skip
        for row in model.per_district():
            if row["level"] is None:
                continue
            district = registry.get(row["district"])
            top = [orders[i] for i in row["alerts"] if i in orders and orders[i].level == row["level"]]
            reason = next((s.alert.reason for s in top if s.alert.reason), None)
            geometry = outline(registry, district.code)
            town = registry.get(muni)
            features.append({
                "type": "Feature",
                "id": district.code,
                "properties": {
                    "code": district.code,
                    "name": district.name,
                    "full_name": district.full_name,
                    "municipality": muni,
                    "municipality_name": town.name,
                    # For a visitor who cannot read kanji (en, ko) and for やさしい日本語 (kana).
                    "name_romaji": romanise(district.name, district.kana),
                    "name_kana": hiragana(district.kana),
                    "municipality_romaji": romanise(town.name, town.kana),
                    "municipality_kana": hiragana(town.kana),
                    "prefecture": muni[:2],
                    "level": row["level"],
                    "colour": level_style(row["level"]).colour_hex,
                    "reason": reason,
                    "reason_text": {lang: reason_text(reason, lang) for lang in LANGUAGES},
                    "alerts": row["alerts"],
                    "whole_municipality": district.code == muni,
                    "has_boundary": geometry is not None,
                },
                "geometry": geometry,
            })  # fmt: skip
    features.sort(key=lambda f: (-f["properties"]["level"], f["properties"]["code"]))
    collection = {
        "type": "FeatureCollection",
        "status": status,
        "updated": updated.isoformat(timespec="seconds"),
        "features": features,
    }
    if with_alerts:
        collection["alerts"] = sorted(alerts, key=lambda a: (-(a["level"] or 0), a["alert_id"]))
    return collection


async def base_areas(engine: Engine, collection: dict[str, Any], most: int = 3) -> list[str]:
    """The prefectures the base map shows: those with an order now, else those the registered
    desks serve (a quiet day still shows the visitor their own area)."""
    areas = sorted({f["properties"]["prefecture"] for f in collection["features"]})
    if not areas:
        served = {code[:2] for issuer in await engine.store.list_issuers() if not issuer.national
                  for code in issuer.jurisdiction}  # fmt: skip
        areas = sorted(served)
    return areas[:most]
