"""alertd's own district boundaries as GeoJSON: the base map of the console and the public map.

There is no external base map (LGWAN has no internet, and no tile server is ours to
rely on during a disaster), so the map *is* the districts: a prefecture's municipalities,
or one municipality with the districts its desk drew. Outlines are simplified (about
50 m at the scale a town is shown; 200 m for a whole prefecture) and coordinates rounded
to about a metre: a prefecture's map is then a few hundred kB instead of several MB, and
nobody reads an evacuation boundary off a web map more finely than that.
"""

from __future__ import annotations

from typing import Any

import shapely
import shapely.geometry

from alertd.errors import InvalidInput, UnknownArea
from geo.registry import Registry

# Degrees; 0.0005° is about 50 m in Japan.
TOLERANCE_MUNICIPALITY = 0.0005
TOLERANCE_PREFECTURE = 0.002
DIGITS = 5


def _rounded(coords: Any) -> Any:
    if isinstance(coords, list | tuple) and coords and isinstance(coords[0], int | float):
        return [round(float(c), DIGITS) for c in coords]
    return [_rounded(c) for c in coords]


def outline(registry: Registry, code: str, tolerance: float = TOLERANCE_MUNICIPALITY) -> dict[str, Any] | None:
    """A district's boundary, simplified and rounded, as a GeoJSON geometry; None when alertd has none."""
    geom = registry.geometry_of(code)
    if geom is None or geom.is_empty:
        return None
    mapped = shapely.geometry.mapping(shapely.simplify(geom, tolerance, preserve_topology=True))
    return {"type": mapped["type"], "coordinates": _rounded(mapped["coordinates"])}


def _feature(registry: Registry, code: str, tolerance: float) -> dict[str, Any]:
    district = registry.get(code)
    geometry = outline(registry, code, tolerance)
    return {
        "type": "Feature",
        "id": district.code,
        "properties": {
            "code": district.code,
            "name": district.name,
            "full_name": district.full_name,
            "kana": district.kana,
            "level": district.level,
            "parent": district.parent,
        },
        "geometry": geometry,
    }


def boundaries(registry: Registry, area: str) -> dict[str, Any]:
    """A prefecture (two digits): its municipalities. A municipality: its outline, then every
    district inside it that has a boundary of its own (those its desk drew). A district alertd
    knows no boundary for has a null geometry: it is still listed, the map just cannot draw it."""
    district = registry.find(registry.normalize_code(area)) if area.isdigit() else None
    if district is None:
        raise UnknownArea(f"alertd does not know the area code {area!r}: give a prefecture (08) or a "
                          "municipality (08211).", field="area")  # fmt: skip
    if district.level == "prefecture":
        codes = sorted(d.code for d in registry.municipalities() if d.parent == district.code)
        tolerance = TOLERANCE_PREFECTURE
    elif district.level in ("municipality", "ward"):
        drawn = [code for code in registry.layer_geometries if code.startswith(district.code + ":")]
        codes = [district.code, *sorted(drawn)]
        tolerance = TOLERANCE_MUNICIPALITY
    else:
        raise InvalidInput(f"{area!r} is a district inside a municipality; give its prefecture or "
                           "municipality code.", field="area")  # fmt: skip
    return {
        "type": "FeatureCollection",
        "area": district.code,
        "name": district.full_name,
        "has_geometry": registry.has_geometry,
        "features": [_feature(registry, code, tolerance) for code in codes],
    }
