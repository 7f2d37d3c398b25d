"""A district's outline as a desk sends it, checked and kept inside its own municipality.

Desks add 字 one at a time (POST /api/v1/districts) and load whole layers of 自治区 or 学区
(PUT /api/v1/layers/…); both draw by hand or export from a GIS, so both go through the
same checks: a readable Polygon or MultiPolygon, repaired when it crosses itself, and cut
to the town's boundary when it strays a little over it.
"""

from __future__ import annotations

import json
from typing import Any

from alertd.engine import Engine
from alertd.errors import InvalidInput


class NotAGeometry(InvalidInput):
    """A well-formed object that is no polygon: what only reading it can tell."""

    type_slug = "invalid-geometry"


def check_geometry(geometry: Any) -> Any:
    import shapely

    from geo.shapes import repaired

    try:
        shape = shapely.from_geojson(json.dumps(geometry))
    except Exception as exc:  # shapely raises GEOSException for anything unreadable
        raise NotAGeometry(f"'geometry' is not a GeoJSON geometry ({exc}).", field="geometry") from exc
    if shape.geom_type not in ("Polygon", "MultiPolygon") or shape.is_empty:
        raise NotAGeometry("'geometry' must be a GeoJSON Polygon or MultiPolygon.", field="geometry")
    if shape.is_valid:
        return shape
    try:
        return repaired(shape, "geometry")
    except InvalidInput as exc:  # too big to repair: the same sentence, as a geometry problem
        raise NotAGeometry(exc.detail, field="geometry") from exc


# A desk draws its 字 by hand: an edge may stray a little over the town's boundary, and is
# clipped to it; a district mostly outside the town is refused.
DISTRICT_OUTSIDE_TOLERANCE = 0.05


def geometry_inside(shape: Any, engine: Engine, muni: str) -> dict[str, Any]:
    """The district's GeoJSON, inside its own municipality: a town's district must never cover
    another town (polygon alerts there would be refused for that town's own desk, and reach
    this town's receivers)."""
    import shapely

    from geo.shapes import clip_to

    boundary = engine.registry.geometry_of(muni)
    if boundary is None:  # no boundaries loaded: polygon alerts cannot be placed at all
        return dict(json.loads(shapely.to_geojson(shape)))
    clipped, outside_share = clip_to(shape, boundary)
    if clipped is None or outside_share > DISTRICT_OUTSIDE_TOLERANCE:
        raise NotAGeometry(
            f"The geometry lies {outside_share:.0%} outside {engine.registry.get(muni).full_name}: a district "
            "must be inside its own municipality. Draw it within the town's boundary.",
            field="geometry",
        )
    return dict(json.loads(shapely.to_geojson(clipped)))
