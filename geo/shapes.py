"""CAP 1.2 <polygon> and <circle> text to shapely geometry (lon/lat order).

CAP writes "lat,lon" pairs — the opposite of GeoJSON and shapely — and a
circle as "lat,lon radius" in kilometres; both are turned round here once.
"""

from __future__ import annotations

import math

import numpy as np
import shapely

from alertd.errors import InvalidInput

_KM_PER_DEG_LAT = 110.574
_KM_PER_DEG_LON_EQUATOR = 111.320
CIRCLE_VERTICES = 64


def _pair(token: str, what: str) -> tuple[float, float]:
    try:
        lat_s, lon_s = token.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise InvalidInput(
            f"The {what} {token!r} is not a 'latitude,longitude' pair (CAP puts latitude first).", input=token
        ) from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or math.isnan(lat) or math.isnan(lon):
        raise InvalidInput(f"The {what} {token!r} is outside the range of latitude/longitude.", input=token)
    return lat, lon


def parse_polygon(text: str) -> shapely.Polygon:
    tokens = text.split()
    coords = [_pair(t, "polygon point") for t in tokens]
    if coords and coords[0] != coords[-1]:
        coords.append(coords[0])  # CAP requires a closed ring; be lenient about a missing last point
    if len(coords) < 4:
        raise InvalidInput(
            f"The CAP polygon {text[:80]!r} needs at least 3 distinct points (CAP asks for 4, the first repeated last).",  # noqa: E501
            input=text,
        )
    ring = np.asarray(coords, dtype=float)[:, ::-1]
    geom = shapely.polygons(ring)
    if not geom.is_valid:
        # A bow-tie drawn by hand on a map still means the area it encloses.
        geom = shapely.make_valid(geom)
        parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon"]
        geom = shapely.multipolygons(parts) if len(parts) > 1 else (parts[0] if parts else geom)
    if geom.is_empty or geom.area == 0:
        raise InvalidInput(f"The CAP polygon {text[:80]!r} encloses no area.", input=text)
    return geom


def parse_circle(text: str) -> tuple[float, float, float]:
    """(lon, lat, radius_km)."""
    parts = text.split()
    if len(parts) != 2:
        raise InvalidInput(f"The CAP circle {text!r} must be 'latitude,longitude radius_km'.", input=text)
    lat, lon = _pair(parts[0], "circle centre")
    try:
        radius = float(parts[1])
    except ValueError:
        raise InvalidInput(
            f"The radius in the CAP circle {text!r} is not a number of kilometres.", input=text
        ) from None
    if radius < 0 or math.isnan(radius) or radius > 2000:
        raise InvalidInput(
            f"The radius in the CAP circle {text!r} must be between 0 and 2000 km.", input=text
        )
    return lon, lat, radius


def circle_polygon(
    lon: float, lat: float, radius_km: float, vertices: int = CIRCLE_VERTICES
) -> shapely.Polygon:
    """The circle as a lon/lat ellipse (local equirectangular; error well under 1% below ~100 km)."""
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    dlat = radius_km / _KM_PER_DEG_LAT
    dlon = radius_km / (_KM_PER_DEG_LON_EQUATOR * max(math.cos(math.radians(lat)), 1e-6))
    ring = np.column_stack([lon + dlon * np.cos(angles), lat + dlat * np.sin(angles)])
    return shapely.polygons(np.vstack([ring, ring[:1]]))
