"""The array-level overlap areas and the batch API, checked against GEOS on Ibaraki's real boundaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertd.errors import InvalidInput
from geo.geocoder import Geocoder, Match
from geo.importer import import_boundaries
from geo.registry import Registry
from geo.shapes import circle_polygon, parse_circle, parse_polygon, parse_polygons
from tests.support import GEO

IBARAKI = GEO / "ibaraki-municipalities.geojson"
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    if not IBARAKI.exists():
        pytest.skip(f"boundary data absent from {GEO}")
    path = tmp_path_factory.mktemp("geo-batch-cache")
    import_boundaries([IBARAKI], path)
    return Registry.load(path)


@pytest.fixture(scope="module")
def geocoder(registry: Registry) -> Geocoder:
    return Geocoder(registry)


def _cap(geom: shapely.Polygon) -> str:
    return " ".join(f"{y!r},{x!r}" for x, y in geom.exterior.coords)


def _star(rng: np.random.Generator, lon: float, lat: float, radius_km: float) -> str:
    k = int(rng.integers(5, 13))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    r = radius_km * rng.uniform(0.3, 1.0, k)
    dlat = r / 110.574 * np.sin(angles)
    dlon = r / (111.32 * math.cos(math.radians(lat))) * np.cos(angles)
    pts = [f"{lat + a:.6f},{lon + b:.6f}" for a, b in zip(dlat, dlon, strict=True)]
    return " ".join([*pts, pts[0]])


def _reference(geocoder: Geocoder, registry: Registry, geom: shapely.Geometry) -> dict[str, float]:
    """Overlap in degree² with every municipality, by GEOS on the whole (unsubdivided) boundaries."""
    store = registry.store
    assert store is not None
    hit = shapely.STRtree(store.geoms).query(geom)
    areas = shapely.area(shapely.intersection(geom, store.geoms[hit]))
    return {str(store.codes[i]): float(a) for i, a in zip(hit, areas, strict=True) if a > 0}


def _check_against_geos(
    geocoder: Geocoder, registry: Registry, geom: shapely.Geometry, got: list[Match]
) -> None:
    store = registry.store
    assert store is not None
    ref = _reference(geocoder, registry, geom)
    area_of = {str(c): float(a) for c, a in zip(store.codes, store.areas, strict=True)}
    found = {m.code: m.overlap for m in got}
    for code, overlap in ref.items():
        area_d = area_of[code]
        threshold = geocoder.min_overlap * min(area_d, geom.area)
        # Subdividing moves boundaries by float rounding only; skip knife-edge cases.
        if abs(overlap - threshold) <= 1e-9 * area_d:
            continue
        if overlap >= threshold:
            assert code in found, (code, overlap / area_d)
            assert found[code] == pytest.approx(min(overlap / area_d, 1.0), abs=1e-9)
        else:
            assert code not in found, (code, overlap / area_d)
    assert set(found) <= set(ref)


@pytest.fixture(scope="module")
def centres(registry: Registry) -> np.ndarray:
    store = registry.store
    assert store is not None
    return shapely.get_coordinates(shapely.point_on_surface(store.geoms))


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(1, 40))
def test_batch_gives_exactly_what_one_call_each_gives(
    geocoder: Geocoder, centres: np.ndarray, seed: int, n: int
) -> None:
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    for _ in range(n):
        lon, lat = centres[rng.integers(len(centres))] + rng.normal(0, 0.05, 2)
        radius = float(rng.choice([0.0, rng.uniform(0.2, 25)]))
        if rng.random() < 0.5:
            texts.append(f"{lat:.5f},{lon:.5f} {radius:.3f}")
        else:
            texts.append(_star(rng, lon, lat, max(radius, 0.5)))
    one_each = [geocoder.circle(t) if len(t.split()) == 2 else geocoder.polygon(t) for t in texts]
    assert geocoder.shapes(texts) == one_each  # bit-identical overlaps, whatever the batch


@SETTINGS
@given(seed=st.integers(0, 2**31))
def test_overlaps_and_decisions_match_geos(
    geocoder: Geocoder, registry: Registry, centres: np.ndarray, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    lon, lat = centres[rng.integers(len(centres))] + rng.normal(0, 0.05, 2)
    radius = rng.uniform(0.3, 30)
    star = _star(rng, lon, lat, radius)
    circle = f"{lat},{lon} {radius}"
    for geom, got in (
        (parse_polygon(star), geocoder.polygon(star)),
        (circle_polygon(*parse_circle(circle)), geocoder.circle(circle)),
    ):
        _check_against_geos(geocoder, registry, geom, got)


@SETTINGS
@given(seed=st.integers(0, 2**31))
def test_shapes_with_holes_and_several_parts_match_geos(
    geocoder: Geocoder, registry: Registry, centres: np.ndarray, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    c = centres[rng.integers(len(centres))]
    ring = (
        shapely.Point(c)
        .buffer(rng.uniform(0.02, 0.2), 16)
        .difference(shapely.Point(c).buffer(rng.uniform(0.002, 0.015), 8))
    )
    pair = shapely.MultiPolygon(
        [
            shapely.Point(c + 0.04).buffer(0.02, 8),
            shapely.Point(c - 0.04).buffer(0.03, 8).exterior.convex_hull,
        ]
    )
    speck = shapely.Point(c).buffer(1e-4, 8)  # inside a single piece: the query lies in the piece
    for geom in (ring, pair, speck):
        _check_against_geos(geocoder, registry, geom, geocoder.shape(geom, "polygon"))


def test_polygon_sharing_every_edge_with_a_municipality_goes_exact(
    geocoder: Geocoder, registry: Registry
) -> None:
    # Shared edges and vertices are the degenerate case the array formula hands to GEOS.
    store = registry.store
    assert store is not None
    for i in range(0, len(store.codes), 7):
        outline = max(shapely.get_parts(store.geoms[i]), key=lambda g: g.area)
        shell = shapely.Polygon(outline.exterior)
        got = geocoder.shape(shell, "polygon")
        assert str(store.codes[i]) in {m.code for m in got}
        _check_against_geos(geocoder, registry, shell, got)


def test_zero_radius_circle_is_a_point(geocoder: Geocoder, registry: Registry) -> None:
    store = registry.store
    assert store is not None
    p = store.geoms[0].point_on_surface()
    (match,) = geocoder.shapes([f"{p.y},{p.x} 0"])[0]
    assert match.code == str(store.codes[0]) and match.overlap is None
    assert geocoder.shapes([f"{p.y},{p.x} 0"]) == [geocoder.circle(f"{p.y},{p.x} 0")]
    assert geocoder.shapes(["20.0,150.0 0", "20.0,150.0 1"]) == [[], []]  # at sea


def test_batch_rejects_bad_shapes_like_single_calls(geocoder: Geocoder) -> None:
    assert geocoder.shapes([]) == []
    for bad in (
        "36.0 139.9, 36.1 139.9",
        "36.0,139.9 36.1,139.9",
        "95,139.9 36.1,139.9 36.1,140.0",
        "36,140 -1",
    ):
        with pytest.raises(InvalidInput):
            geocoder.shapes(["36.02,139.98 1", bad])


@SETTINGS
@given(
    points=st.lists(
        st.tuples(st.floats(35.5, 36.5), st.floats(139.5, 140.5)), min_size=3, max_size=12, unique=True
    ),
    close=st.booleans(),
)
def test_parse_polygons_agrees_with_parse_polygon(points: list[tuple[float, float]], close: bool) -> None:
    text = " ".join(f"{lat},{lon}" for lat, lon in [*points, *(points[:1] if close else [])])
    try:
        expected = parse_polygon(text)
    except InvalidInput:
        with pytest.raises(InvalidInput):
            parse_polygons([text])
        return
    (got,) = parse_polygons([text])
    assert got.equals_exact(expected, tolerance=0)


def test_layer_districts_with_holes_match_geos(registry: Registry) -> None:
    zone = shapely.box(139.95, 35.99, 140.01, 36.05).difference(shapely.box(139.97, 36.01, 139.99, 36.03))
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "外周区域"},
                "geometry": shapely.geometry.mapping(zone),
            }
        ],
    }
    (district,) = registry.load_layer("08211", "batchtest", fc)
    geocoder = Geocoder(registry)
    inner = geocoder.circle("36.02,139.98 0.5")  # wholly in the hole
    assert district.code not in {m.code for m in inner}
    (edge,) = [m for m in geocoder.circle("36.02,139.96 1.5") if m.code == district.code]
    q = circle_polygon(*parse_circle("36.02,139.96 1.5"))
    assert edge.overlap == pytest.approx(shapely.intersection(q, zone).area / zone.area, abs=1e-9)
