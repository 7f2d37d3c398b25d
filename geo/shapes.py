"""CAP 1.2 <polygon> and <circle> text to shapely geometry (lon/lat order).

CAP writes "lat,lon" pairs — the opposite of GeoJSON and shapely — and a
circle as "lat,lon radius" in kilometres; both are turned round here once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely

from alertd.errors import InvalidInput

_KM_PER_DEG_LAT = 110.574
_KM_PER_DEG_LON_EQUATOR = 111.320
CIRCLE_VERTICES = 64
# Repairing a polygon that crosses itself costs time that grows far faster than its size: a
# 1,000-point star took 19 s with make_valid, a 5,000-point one 11 s even with the faster
# "structure" method, and four of them held intake for minutes. Outlines drawn by hand (a
# bow-tie) are small; a machine-made polygon that crosses itself is refused instead.
MAX_REPAIR_VERTICES = 256


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
            f"The CAP polygon {text[:80]!r} needs at least 3 distinct points (CAP asks for 4, the first repeated last).",
            input=text,
        )
    ring = np.asarray(coords, dtype=float)[:, ::-1]
    geom = shapely.polygons(ring)
    return _checked(repaired(geom, text) if not geom.is_valid else geom, text)


def repaired(geom: shapely.Geometry, what: str) -> shapely.Geometry:
    """An invalid polygon made valid, as the area its outline encloses — or a clear 422.

    A bow-tie drawn by hand on a map still means the area it encloses: the "structure"
    repair takes the union of the rings' areas, so no part of what was drawn is dropped.
    """
    points = int(shapely.get_num_coordinates(geom))
    if points > MAX_REPAIR_VERTICES:
        raise InvalidInput(
            f"The polygon {what[:60]!r}… crosses itself (or is otherwise not a simple outline) and has "
            f"{points} points; alertd repairs such outlines only up to {MAX_REPAIR_VERTICES} points, as "
            "drawn by hand. Send it as a polygon whose edges do not cross (or as several polygons).",
            limit=MAX_REPAIR_VERTICES, input=what[:200],
        )  # fmt: skip
    geom = shapely.make_valid(geom, method="structure", keep_collapsed=False)
    parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon"]
    return shapely.multipolygons(parts) if len(parts) > 1 else (parts[0] if parts else geom)


def clip_to(shape: shapely.Geometry, boundary: shapely.Geometry) -> tuple[shapely.Geometry | None, float]:
    """``shape`` cut to ``boundary`` (polygons only, None if nothing is left), and the share of
    its area that lay outside."""
    inside = shapely.intersection(shape, boundary)
    outside = 1 - (inside.area / shape.area if shape.area else 0.0)
    parts = [p for p in shapely.get_parts(inside) if p.geom_type == "Polygon"]
    if not parts:
        return None, 1.0
    return (shapely.multipolygons(parts) if len(parts) > 1 else parts[0]), max(0.0, outside)


def _checked(geom: shapely.Geometry, text: str) -> shapely.Geometry:
    if geom.is_empty or geom.area == 0:
        raise InvalidInput(f"The CAP polygon {text[:80]!r} encloses no area.", input=text)
    return geom


def parse_polygons(texts: Sequence[str]) -> list[shapely.Geometry]:
    """Many CAP polygons: the same geometries and errors as :func:`parse_polygon`, about 4x faster.

    Well-formed text is read with one float() per number and the rings built
    in one shapely call; any text the fast path doubts goes through
    :func:`parse_polygon`, which raises the precise error.
    """
    out: list[shapely.Geometry | None] = [None] * len(texts)
    flat: list[float] = []
    owner: list[int] = []
    for i, text in enumerate(texts):
        tokens = text.split()
        try:
            values = [float(v) for v in text.replace(",", " ").split()]
        except ValueError:
            values = []
        if text.count(",") != len(tokens) or len(values) != 2 * len(tokens) or len(tokens) < 3:
            out[i] = parse_polygon(text)
            continue
        if values[:2] != values[-2:]:
            values += values[:2]
        if len(values) < 8:
            out[i] = parse_polygon(text)  # raises: too few points
            continue
        flat += values
        owner += [i] * (len(values) // 2)
    if not flat:
        return [g for g in out if g is not None]
    latlon = np.asarray(flat).reshape(-1, 2)
    which = np.asarray(owner)
    ok = (np.abs(latlon[:, 0]) <= 90) & (np.abs(latlon[:, 1]) <= 180)  # NaN fails too
    for i in np.unique(which[~ok]).tolist():
        out[i] = parse_polygon(texts[i])  # raises, naming the point
    ids, which = np.unique(which, return_inverse=True)
    geoms = shapely.polygons(shapely.linearrings(latlon[:, ::-1], indices=which))
    valid = shapely.is_valid(geoms)
    area = shapely.area(geoms)
    for k, i in enumerate(ids.tolist()):
        geom = geoms[k] if valid[k] and area[k] > 0 else _checked(repaired(geoms[k], texts[i]), texts[i])
        out[i] = geom
    return [g for g in out if g is not None]


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
    return circle_polygons(np.array([lon]), np.array([lat]), np.array([radius_km]), vertices)[0]


def circle_polygons(
    lon: np.ndarray, lat: np.ndarray, radius_km: np.ndarray, vertices: int = CIRCLE_VERTICES
) -> np.ndarray:
    """:func:`circle_polygon` for arrays of circles, built in one shapely call."""
    angles = np.linspace(0, 2 * np.pi, vertices + 1)
    angles[-1] = 0.0  # the closing vertex is the first one, exactly
    dlat = radius_km / _KM_PER_DEG_LAT
    dlon = radius_km / (_KM_PER_DEG_LON_EQUATOR * np.maximum(np.cos(np.radians(lat)), 1e-6))
    x = lon[:, None] + dlon[:, None] * np.cos(angles)
    y = lat[:, None] + dlat[:, None] * np.sin(angles)
    return shapely.polygons(np.stack([x, y], axis=-1))


# ---------------------------------------------------------------------- exact overlap areas
# GEOS computes one intersection in ~30 µs whatever the sizes (overlay set-up
# dominates), and a CAP shape meets ~15 municipal pieces on its edge, so GEOS
# overlay alone cannot reach thousands of shapes a second. The overlap's *area*
# needs no overlay: by Green's theorem area(P ∩ Q) = ∮ x dy around P ∩ Q,
# whose boundary is the part of ∂P inside Q plus the part of ∂Q inside P.
# Along an edge a→b (a + t·u), ∫ x dy from 0 to t is G(t) = u_y·t·(a_x + u_x·t/2).
# Going round a ring, inside/outside flips only where it crosses the other
# polygon, so the ring's part inside is a set of runs between crossings: each
# run is a partial crossing edge (a G term) plus whole edges whose shoelace
# terms G(1) come from a prefix sum. The cost is one array pass over the
# candidate edge pairs plus work per crossing, never per vertex, and it is
# done for every (shape, piece) pair of a batch at once.

# Crossing parameters closer than this to a segment's end, and overlapping
# parallel segments, are "degenerate" (a vertex on the other's edge, shared
# edges): whether the ring goes in or out there is ambiguous, so such pairs go
# to GEOS. Random shapes essentially never hit it; a CAP polygon traced from a
# municipal boundary does, and GEOS gets those right.
_EPS = 1e-9
CHUNK = 8  # consecutive edges per bounding box in the two-level edge filter


@dataclass(frozen=True)
class Edges:
    """Every ring edge of a list of polygons, interior on the left, as flat arrays.

    Geometry ``i`` owns edges ``start[i]:start[i+1]``, rings
    ``geom_rings[i]:geom_rings[i+1]`` and edge chunks ``geom_chunks[i]:geom_chunks[i+1]``;
    ring ``r`` owns edges ``ring_start[r]:ring_start[r+1]``.
    """

    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    xmin: np.ndarray
    xmax: np.ndarray
    ymin: np.ndarray
    ymax: np.ndarray
    start: np.ndarray
    ring: np.ndarray  # ring of each edge
    ring_start: np.ndarray
    ring_x: np.ndarray  # x origin of each ring's shoelace terms (its first vertex)
    ring_bounds: np.ndarray  # (rings, 4)
    ring_total: np.ndarray  # signed ring area: + exterior, - hole
    before: np.ndarray  # Σ shoelace terms of the ring's edges before this one
    geom_rings: np.ndarray
    chunk_first: np.ndarray
    chunk_size: np.ndarray
    chunk_bounds: np.ndarray  # (chunks, 4): xmin, ymin, xmax, ymax
    geom_chunks: np.ndarray


def _reduce(fn: np.ufunc, values: np.ndarray, first: np.ndarray) -> np.ndarray:
    return fn.reduceat(values, first) if len(first) else np.empty(0)


def edges_of(geoms: np.ndarray, per_ring: bool = False) -> Edges:
    """``per_ring`` sums each ring separately (for query batches; a Python loop, so not for 100,000 pieces)."""
    n = len(geoms)
    if (shapely.get_type_id(geoms) == 3).all():
        parts, part_of = geoms, np.arange(n)  # get_parts would copy every polygon
    else:
        parts, part_of = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    # Exteriors counter-clockwise and holes clockwise put every polygon's
    # interior on the left of its edges, whatever order the source drew.
    # Reversing the wrong ones in the coordinate array is 5x cheaper than
    # shapely.orient_polygons, which builds new geometries.
    ring_first = np.searchsorted(ring_of, np.arange(len(rings) + 1))
    exterior = np.ones(len(rings), dtype=bool)
    exterior[1:] = ring_part[1:] != ring_part[:-1]  # get_rings lists the shell, then the holes
    x = coords[:, 0] - coords[ring_first[:-1], 0][ring_of]
    twice = _reduce(np.add, x[:-1] * coords[1:, 1] - x[1:] * coords[:-1, 1], ring_first[:-1])
    flip = np.flatnonzero(
        exterior != (twice > 0)
    )  # the last term of each sum spans two rings but is 0·y - 0·y
    if len(flip):
        k, pos = expand(ring_first[flip], ring_first[flip + 1] - ring_first[flip])
        k = flip[k]
        coords = coords.copy()
        coords[pos] = coords[ring_first[k] + ring_first[k + 1] - 1 - pos]
    same = ring_of[1:] == ring_of[:-1]  # consecutive coordinates of one (closed) ring form an edge
    ring = ring_of[:-1][same]
    ring_geom = part_of[ring_part]
    x0 = np.ascontiguousarray(coords[:-1, 0][same])
    y0 = np.ascontiguousarray(coords[:-1, 1][same])
    x1 = np.ascontiguousarray(coords[1:, 0][same])
    y1 = np.ascontiguousarray(coords[1:, 1][same])
    ring_start = np.searchsorted(ring, np.arange(len(rings) + 1))
    start = ring_start[np.searchsorted(ring_geom, np.arange(n + 1))]
    first = ring_start[:-1]
    ring_x = x0[first]
    rx = ring_x[ring]
    term = (y1 - y0) * ((x0 - rx) + (x1 - rx)) * 0.5
    if per_ring:
        # Each ring summed on its own (one row each of a zero-padded matrix,
        # cumsum being a plain left-to-right accumulate): a shape's prefix sums,
        # hence its overlap figures, come out bit-identical whatever else is in its batch.
        length = ring_start[1:] - first
        width = int(length.max()) if len(length) else 0
        col = np.arange(len(term)) - first[ring]
        grid = np.zeros((len(first), width + 1))
        grid[ring, col + 1] = term
        grid = np.cumsum(grid, axis=1)
        before = grid[ring, col]
        ring_total = grid[np.arange(len(first)), length]
    else:
        # One pass over 100,000 rings; extended precision keeps a small piece's
        # sums exact to ~1e-16 of itself rather than of all Japan's.
        cum = np.concatenate([[0], np.cumsum(term.astype(np.longdouble))])
        before = (cum[:-1] - cum[ring_start[ring]]).astype(float)
        ring_total = (cum[ring_start[1:]] - cum[first]).astype(float)
    xmin, xmax = np.minimum(x0, x1), np.maximum(x0, x1)
    ymin, ymax = np.minimum(y0, y1), np.maximum(y0, y1)
    ring_bounds = np.column_stack(
        [_reduce(np.minimum, xmin, first), _reduce(np.minimum, ymin, first),
         _reduce(np.maximum, xmax, first), _reduce(np.maximum, ymax, first)]
    )  # fmt: skip
    counts = np.diff(start)
    geom_of_chunk, k = expand(np.zeros_like(counts), -(-counts // CHUNK))
    chunk_first = start[geom_of_chunk] + k * CHUNK
    chunk_size = np.minimum(CHUNK, start[geom_of_chunk + 1] - chunk_first)
    chunk_bounds = np.column_stack(
        [_reduce(np.minimum, xmin, chunk_first), _reduce(np.minimum, ymin, chunk_first),
         _reduce(np.maximum, xmax, chunk_first), _reduce(np.maximum, ymax, chunk_first)]
    )  # fmt: skip
    return Edges(
        x0, y0, x1, y1, xmin, xmax, ymin, ymax,
        start=start, ring=ring, ring_start=ring_start, ring_x=ring_x, ring_bounds=ring_bounds,
        ring_total=ring_total, before=before,
        geom_rings=np.searchsorted(ring_geom, np.arange(n + 1)),
        chunk_first=chunk_first, chunk_size=chunk_size, chunk_bounds=chunk_bounds,
        geom_chunks=np.searchsorted(geom_of_chunk, np.arange(n + 1)),
    )  # fmt: skip


def concat_edges(a: Edges, b: Edges) -> Edges:
    """``a``'s geometries followed by ``b``'s (municipal pieces, then a few layer districts)."""
    ne, nr, nc = len(a.x0), len(a.ring_x), len(a.chunk_first)

    def cat(x: np.ndarray, y: np.ndarray, shift: int = 0) -> np.ndarray:
        return np.concatenate([x, y + shift])

    return Edges(
        *(cat(getattr(a, k), getattr(b, k)) for k in ("x0", "y0", "x1", "y1", "xmin", "xmax", "ymin", "ymax")),
        start=cat(a.start[:-1], b.start, ne), ring=cat(a.ring, b.ring, nr),
        ring_start=cat(a.ring_start[:-1], b.ring_start, ne), ring_x=cat(a.ring_x, b.ring_x),
        ring_bounds=np.concatenate([a.ring_bounds, b.ring_bounds]), ring_total=cat(a.ring_total, b.ring_total),
        before=cat(a.before, b.before), geom_rings=cat(a.geom_rings[:-1], b.geom_rings, nr),
        chunk_first=cat(a.chunk_first, b.chunk_first, ne), chunk_size=cat(a.chunk_size, b.chunk_size),
        chunk_bounds=np.concatenate([a.chunk_bounds, b.chunk_bounds]),
        geom_chunks=cat(a.geom_chunks[:-1], b.geom_chunks, nc),
    )  # fmt: skip


def expand(start: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For runs ``start[i]:start[i]+count[i]``: the run of every element and the element indices."""
    run = np.repeat(np.arange(len(count)), count)
    offset = np.cumsum(count) - count
    return run, np.arange(run.size) + (start - offset)[run]


def _inside_runs(
    pair: np.ndarray, edge: np.ndarray, param: np.ndarray, inside: np.ndarray, e: Edges, origin: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-edge part of ∮ x dy along one polygon's rings inside the other, per crossing.

    ``inside`` says whether the ring is inside the other polygon after each
    crossing; it stays so up to (not including) the next crossing's edge,
    wrapping round the ring after the last. Returns each crossing's pair, its
    run's integral (x from the pair's ``origin``) and the crossed rings' keys.
    """
    order = np.lexsort((param, edge, pair))
    pair, edge, inside = pair[order], edge[order], inside[order]
    ring = e.ring[edge]
    new = np.ones(len(pair), dtype=bool)
    new[1:] = (pair[1:] != pair[:-1]) | (ring[1:] != ring[:-1])
    group_first = np.flatnonzero(new)
    last = np.ones(len(pair), dtype=bool)
    last[:-1] = new[1:]
    nxt = np.empty_like(edge)
    nxt[:-1] = edge[1:]
    nxt[last] = edge[group_first]  # the last crossing's run wraps round to the first's edge
    run = np.where(last, e.ring_total[ring] - e.before[edge] + e.before[nxt], e.before[nxt] - e.before[edge])
    # Shoelace terms are stored from the ring's own origin; Σ u_y over the run moves them to the pair's.
    run -= (origin[pair] - e.ring_x[ring]) * (e.y0[nxt] - e.y0[edge])
    return pair[inside], run[inside], pair[group_first].astype(np.int64) * len(e.ring_x) + ring[group_first]


def _uncrossed(
    e: Edges,
    geom: np.ndarray,
    other: np.ndarray,
    other_bounds: np.ndarray,
    crossed: np.ndarray,
    xy_in: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Rings of ``e``'s geometry that meet none of the other polygon's edges: wholly inside it or wholly out.

    Returns (pair, signed ring area) for the rings inside, decided by one
    vertex each; a ring whose box is not within the other's box is out.
    """
    pair, ring = expand(e.geom_rings[geom], e.geom_rings[geom + 1] - e.geom_rings[geom])
    key = pair.astype(np.int64) * len(e.ring_x) + ring
    crossed = np.sort(crossed)
    pos = np.minimum(np.searchsorted(crossed, key), max(len(crossed) - 1, 0))
    rb, ob = e.ring_bounds[ring], other_bounds[pair]
    maybe = (
        (crossed[pos] != key if len(crossed) else True)
        & (rb[:, 0] >= ob[:, 0]) & (rb[:, 1] >= ob[:, 1]) & (rb[:, 2] <= ob[:, 2]) & (rb[:, 3] <= ob[:, 3])
    )  # fmt: skip
    pair, ring = pair[maybe], ring[maybe]
    v = e.ring_start[ring]
    inside = xy_in(other[pair], e.x0[v], e.y0[v])
    return pair[inside], e.ring_total[ring[inside]]


def overlap_areas(
    q: Edges,
    queries: np.ndarray,
    p: Edges,
    pieces: np.ndarray,
    piece_bounds: np.ndarray,
    pair_q: np.ndarray,
    pair_p: np.ndarray,
    rec_edge: np.ndarray,
    rec_pair: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Area of ``queries[pair_q[b]] ∩ pieces[pair_p[b]]`` for every pair ``b``, and which pairs are degenerate.

    ``(rec_edge, rec_pair)`` lists every query edge whose box meets the
    pair's piece's: no other query edge can cross the piece or lie in it.
    ``queries`` should be prepared (a point-in-polygon test may run on them).
    """
    n = len(pair_q)
    area = np.zeros(n)
    degenerate = np.zeros(n, dtype=bool)
    if n == 0:
        return area, degenerate
    origin = q.x0[q.start[pair_q]]  # x is measured from here so that products stay small
    # Candidate edge pairs: each active query edge against the piece's edge chunks, then the chunks' edges.
    rp = pair_p[rec_pair]
    run, ch = expand(p.geom_chunks[rp], p.geom_chunks[rp + 1] - p.geom_chunks[rp])
    f = rec_edge[run]
    cb = p.chunk_bounds[ch]
    near = (
        (q.xmin[f] <= cb[:, 2]) & (q.xmax[f] >= cb[:, 0]) & (q.ymin[f] <= cb[:, 3]) & (q.ymax[f] >= cb[:, 1])
    )
    run, ch = run[near], ch[near]
    sub, e = expand(p.chunk_first[ch], p.chunk_size[ch])
    rec = run[sub]
    f, b = rec_edge[rec], rec_pair[rec]
    ox = origin[b]
    ax, ay = p.x0[e] - ox, p.y0[e]
    ux, uy = p.x1[e] - p.x0[e], p.y1[e] - ay
    cx, cy = q.x0[f] - ox, q.y0[f]
    vx, vy = q.x1[f] - q.x0[f], q.y1[f] - cy
    den = ux * vy - uy * vx
    wx, wy = cx - ax, cy - ay
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (wx * vy - wy * vx) / den
        s = (wx * uy - wy * ux) / den
    # den = 0 gives inf/nan parameters, which fail every comparison.
    hit = (t >= -_EPS) & (t <= 1 + _EPS) & (s >= -_EPS) & (s <= 1 + _EPS)
    bad = hit & ((t <= _EPS) | (t >= 1 - _EPS) | (s <= _EPS) | (s >= 1 - _EPS))
    # (Near-)parallel pairs are checked only among the few hits and the near-zero
    # determinants (1e-18 deg² is parallel to 1e-10 for 10 m edges), not all candidates.
    i = np.flatnonzero(hit | (np.abs(den) <= 1e-18))
    parallel = np.abs(den[i]) <= _EPS * (np.abs(ux[i]) + np.abs(uy[i])) * (np.abs(vx[i]) + np.abs(vy[i]))
    i = i[parallel]
    hit[i] = False
    # Parallel edges matter only when collinear and overlapping; boxes meeting is a safe superset.
    bad[i] = (
        (p.xmin[e[i]] <= q.xmax[f[i]]) & (q.xmin[f[i]] <= p.xmax[e[i]])
        & (p.ymin[e[i]] <= q.ymax[f[i]]) & (q.ymin[f[i]] <= p.ymax[e[i]])
    )  # fmt: skip
    degenerate[b[bad]] = True
    h = np.flatnonzero(hit & ~bad)
    bh, eh, fh, th, sh, dh = b[h], e[h], f[h], t[h], s[h], den[h]
    # At a crossing the piece edge enters Q exactly when the query edge leaves P
    # (den < 0), so the two partial-edge terms share one sign.
    g = uy[h] * th * (ax[h] + ux[h] * th * 0.5) - vy[h] * sh * (cx[h] + vx[h] * sh * 0.5)
    area += np.bincount(bh, weights=np.sign(dh) * g, minlength=n)
    pb, prun, p_crossed = _inside_runs(bh, eh, th, dh < 0, p, origin)
    qb, qrun, q_crossed = _inside_runs(bh, fh, sh, dh > 0, q, origin)
    area += np.bincount(pb, weights=prun, minlength=n) + np.bincount(qb, weights=qrun, minlength=n)
    # Rings no edge of the other crosses are wholly in or out.
    ib, ia = _uncrossed(
        p, pair_p, queries[pair_q], shapely.bounds(queries)[pair_q], p_crossed, shapely.intersects_xy
    )
    area += np.bincount(ib, weights=ia, minlength=n)
    ib, ia = _uncrossed(q, pair_q, pieces[pair_p], piece_bounds[pair_p], q_crossed, shapely.contains_xy)
    area += np.bincount(ib, weights=ia, minlength=n)
    return area, degenerate
