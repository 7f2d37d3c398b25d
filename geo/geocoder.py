"""Turn what an alert says about its area into the exact set of districts.

Geometry matching keeps a district only when the alert's shape covers a
real share of it (``min_overlap`` of the district's area) or a real share
of the shape lies in it (``min_overlap`` of the shape's area). The first
rule stops a polygon that grazes a border from alerting the neighbour; the
second keeps a small polygon inside a large municipality from being lost.
Shares are computed in lon/lat degrees: both areas are distorted by the
same factor locally, so the ratio is sound at municipal scale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from alertd.errors import InvalidInput, NoGeometry, UnknownArea
from alertd.models import Area

from .registry import Registry
from .shapes import (
    Edges,
    circle_polygons,
    concat_edges,
    edges_of,
    expand,
    overlap_areas,
    parse_circle,
    parse_polygon,
    parse_polygons,
)

# The names of alertd's CAP profile (docs/cap-profile.md) first, then common spellings.
_MUNICIPAL_VALUE_NAMES = {
    "JP-JISX0402", "JP-JISX0401", "JP-ALERTD-DISTRICT",
    "JIS X 0402", "JISX0402", "MUNICIPALITY", "LGCODE", "全国地方公共団体コード",
}  # fmt: skip
_JMA_VALUE_NAMES = {"JP-JMA-AREA", "JMA", "JMA_AREA", "JMA AREA"}
_TSUNAMI_VALUE_NAMES = {"JP-JMA-TSUNAMI", "TSUNAMI", "JMA_TSUNAMI", "津波予報区"}
# JMA's own area systems with no registry mapping (EEW forecast regions, seismic
# sub-areas, river reaches): kept in the CAP for the reader, not geocoded.
_INFORMATIONAL_VALUE_NAMES = {"JP-JMA-EEW-PREF", "JP-JMA-SEISMIC-AREA", "JP-JMA-RIVER"}


@dataclass(frozen=True)
class Match:
    code: str
    name: str
    matched_by: str  # code | name | geometry
    input: str
    overlap: float | None = None


class _Index:
    """Pieces of every polygon district in one STRtree, built once per geometry version."""

    def __init__(self, registry: Registry) -> None:
        store = registry.store
        assert store is not None
        layer_codes = list(registry.layer_geometries)
        layer_geoms = [registry.layer_geometries[c] for c in layer_codes]
        n_muni = len(store.codes)
        self.codes = np.asarray([*map(str, store.codes), *layer_codes], dtype=object)
        self.areas = np.concatenate(
            [store.areas, shapely.area(np.asarray(layer_geoms, dtype=object))]
            if layer_geoms
            else [store.areas]
        )
        self.pieces = (
            np.concatenate([store.pieces, np.asarray(layer_geoms, dtype=object)])
            if layer_geoms
            else store.pieces
        )
        self.owner = np.concatenate([store.piece_owner, np.arange(n_muni, n_muni + len(layer_geoms))]).astype(
            np.intp
        )
        self.piece_area = shapely.area(self.pieces) if layer_geoms else store.piece_area
        self.tree = shapely.STRtree(self.pieces)
        # Points answer with a municipality, so they query municipal pieces only.
        self.point_tree = shapely.STRtree(store.pieces) if layer_geoms else self.tree
        self.point_owner = store.piece_owner.astype(np.intp)
        self.point_codes = np.asarray([*map(str, store.codes), None], dtype=object)
        self.names = np.asarray([registry.get(str(c)).name for c in self.codes], dtype=object)
        self.version = registry.geometry_version
        self.code_list: list[str] = self.codes.tolist()
        self.name_list: list[str] = self.names.tolist()
        # Flat edge arrays and boxes of every piece, for the array-level overlap areas (shapes.overlap_areas).
        self.edges: Edges = store.piece_edges()
        if layer_geoms:
            self.edges = concat_edges(self.edges, edges_of(np.asarray(layer_geoms, dtype=object)))
        self.bounds = shapely.bounds(self.pieces)
        self.has_edges = self.edges.start[1:] > self.edges.start[:-1]


# Shapes per array pass: big enough to amortise numpy's per-call cost (~1 µs a
# call, a few hundred calls a pass), small enough that the per-pass edge-pair
# arrays (~1,000 entries a shape) stay near the CPU caches. Measured on the
# bench: 256 → 7,150/s, 512 → 7,300/s, 1,024 → 6,000/s.
_BATCH = 512


def _overlaps(index: _Index, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(query, district, area)`` for every district that each query's shape overlaps, area in degree².

    Pieces that no query edge comes near lie wholly inside the query or wholly
    outside, and one point test tells which; the others get their exact
    overlap from :func:`overlap_areas` (GEOS only for degenerate contacts).
    """
    shapely.prepare(queries)
    qe = edges_of(queries, per_ring=True)
    n = len(index.pieces)
    # Query edges near each piece: runs of edges against the piece tree, then edge by edge.
    box = qe.chunk_bounds
    chunk, piece = index.tree.query(shapely.box(box[:, 0], box[:, 1], box[:, 2], box[:, 3]))
    run, edge = expand(qe.chunk_first[chunk], qe.chunk_size[chunk])
    piece = piece[run]
    pb = index.bounds[piece]
    near = (
        (qe.xmin[edge] <= pb[:, 2]) & (qe.xmax[edge] >= pb[:, 0])
        & (qe.ymin[edge] <= pb[:, 3]) & (qe.ymax[edge] >= pb[:, 1])
    )  # fmt: skip
    edge, piece = edge[near], piece[near]
    qowner = np.searchsorted(qe.start, edge, side="right") - 1
    pair_key, rec_pair = np.unique(qowner * n + piece, return_inverse=True)
    pair_q, pair_p = pair_key // n, pair_key % n
    area, degenerate = overlap_areas(
        qe, queries, index.edges, index.pieces, index.bounds, pair_q, pair_p, edge, rec_pair
    )
    if degenerate.any():
        d = np.flatnonzero(degenerate)
        area[d] = shapely.area(shapely.intersection(queries[pair_q[d]], index.pieces[pair_p[d]]))
    # The rest of the pieces whose boxes meet the query's: inside or out, by one vertex.
    cq, cp = index.tree.query(queries)
    ckey = cq * n + cp
    pos = np.minimum(np.searchsorted(pair_key, ckey), max(len(pair_key) - 1, 0))
    clean = pair_key[pos] != ckey if len(pair_key) else np.ones(len(ckey), dtype=bool)
    clean &= index.has_edges[cp]
    cq, cp = cq[clean], cp[clean]
    v = index.edges.start[cp]
    inside = shapely.intersects_xy(queries[cq], index.edges.x0[v], index.edges.y0[v])
    all_q = np.concatenate([pair_q, cq[inside]])
    all_a = np.concatenate([area, index.piece_area[cp[inside]]])
    owner = index.owner[np.concatenate([pair_p, cp[inside]])]
    m = len(index.codes)
    key, inverse = np.unique(all_q * m + owner, return_inverse=True)
    return key // m, key % m, np.bincount(inverse, weights=all_a, minlength=len(key))


class Geocoder:
    def __init__(self, registry: Registry, min_overlap: float = 0.01, exact: bool = False) -> None:
        # Kept for callers: every overlap is now exact (shapes.overlap_areas, GEOS
        # for degenerate contacts), so there is no estimate left to switch off.
        self.exact = exact
        if not 0 <= min_overlap < 1:
            raise ValueError("min_overlap is a share between 0 and 1")
        self.registry = registry
        self.min_overlap = min_overlap
        self._index: _Index | None = _Index(registry) if registry.has_geometry else None

    # ------------------------------------------------------------------ codes and names
    def codes(self, codes: Iterable[str]) -> list[Match]:
        out: list[Match] = []
        unknown: list[str] = []
        for code in codes:
            try:
                d = (
                    self.registry.tsunami_region(code)
                    if str(code).lower().startswith("tsunami:")
                    else self.registry.get(code)
                )
            except UnknownArea as exc:
                unknown.append(str(code))
                last = exc
                continue
            out.append(Match(d.code, d.name, "code", str(code)))
        if unknown:
            if len(unknown) == 1:
                raise last
            raise UnknownArea(
                f"These area codes are not known to alertd: {', '.join(unknown)}. Please check them.",
                input=unknown,
            )
        return out

    def names(self, municipality: str, names: Iterable[str]) -> list[Match]:
        out: list[Match] = []
        for name in names:
            d = self.registry.resolve_name(municipality, name)
            out.append(Match(d.code, d.name, "name", name))
        return out

    # ------------------------------------------------------------------ geometry
    def _require_index(self, what: str) -> _Index:
        if self._index is None:
            raise NoGeometry(
                f"alertd cannot place this {what} because no municipal boundaries are loaded. "
                "Name the area by code or district name, or ask the operator to run 'alertd geo import'.",
                input=what,
            )
        if self._index.version != self.registry.geometry_version:
            self._index = _Index(self.registry)
        return self._index

    def shape(self, geom: shapely.Geometry, label: str) -> list[Match]:
        """Districts a lon/lat shape covers, with the share of each district it covers.

        The overlap is exact (to ~1e-13 of the district) for every match. One
        shape costs ~0.9 ms, mostly numpy's per-call overhead; many shapes
        at once should go through :meth:`shapes`, at ~0.15 ms each.
        """
        return self._match([geom], [label])[0]

    def polygon(self, cap_polygon: str) -> list[Match]:
        geom = parse_polygon(cap_polygon)  # the input's own faults first, boundaries or not
        self._require_index("polygon")
        return self.shape(geom, "polygon")

    def circle(self, cap_circle: str) -> list[Match]:
        return self._polygons_and_circles([], [cap_circle])[0]

    def shapes(self, cap_shapes: Sequence[str]) -> list[list[Match]]:
        """Many CAP ``<polygon>`` and ``<circle>`` texts at once: one match list each, in order.

        The same answers as :meth:`polygon` and :meth:`circle`, computed for
        the whole batch with a few array operations, which costs a fraction of
        answering them one by one. A circle is told from a polygon by its
        syntax ("lat,lon radius": two tokens, the second a bare number; a
        polygon needs at least three "lat,lon" pairs). An invalid shape raises
        :class:`InvalidInput` for the batch, as it would alone.
        """
        is_circle = [len(tokens := t.split()) == 2 and "," not in tokens[1] for t in cap_shapes]
        polygons = [t for t, c in zip(cap_shapes, is_circle, strict=True) if not c]
        found = self._polygons_and_circles(
            polygons, [t for t, c in zip(cap_shapes, is_circle, strict=True) if c]
        )
        from_polygons, from_circles = iter(found[: len(polygons)]), iter(found[len(polygons) :])
        return [next(from_circles) if c else next(from_polygons) for c in is_circle]

    def _polygons_and_circles(self, polygons: Sequence[str], circles: Sequence[str]) -> list[list[Match]]:
        """Match lists for the polygons, then for the circles."""
        geoms = parse_polygons(polygons)  # the input's own faults first, boundaries or not
        index = self._require_index("polygon" if polygons else "circle")
        out: list[list[Match]] = [[] for _ in range(len(polygons) + len(circles))]
        poly_at = list(range(len(polygons)))
        circle_at: list[int] = []
        parsed: list[tuple[float, float, float]] = []
        dot_at: list[int] = []
        dots: list[tuple[float, float, float]] = []
        for i, text in enumerate(circles, start=len(polygons)):
            circle = parse_circle(text)
            if circle[2] == 0:
                dot_at.append(i)  # CAP allows a zero radius for a point
                dots.append(circle)
            else:
                circle_at.append(i)
                parsed.append(circle)
        if parsed:
            lon, lat, radius = np.asarray(parsed).T
            geoms += list(circle_polygons(lon, lat, radius))
        labels = ["polygon"] * len(poly_at) + ["circle"] * len(circle_at)
        for i, matches in zip(poly_at + circle_at, self._match(geoms, labels), strict=True):
            out[i] = matches
        if dots:
            lon, lat, _ = np.asarray(dots).T
            for i, code in zip(dot_at, self.points(lon, lat), strict=True):
                if code is not None:
                    out[i] = [Match(code, index.names[index.codes == code][0], "geometry", "circle")]
        return out

    def _match(self, geoms: Sequence[shapely.Geometry], labels: Sequence[str]) -> list[list[Match]]:
        index = self._require_index(labels[0] if labels else "shape")
        out: list[list[Match]] = [[] for _ in geoms]
        codes, names = (
            index.code_list,
            index.name_list,
        )  # list indexing is 3x cheaper than numpy object arrays
        for lo in range(0, len(geoms), _BATCH):
            queries = np.asarray(geoms[lo : lo + _BATCH], dtype=object)
            q, owner, overlap = _overlaps(index, queries)
            area_d = index.areas[owner]
            threshold = self.min_overlap * np.minimum(area_d, shapely.area(queries)[q])
            keep = (overlap >= threshold) & (overlap > 0)
            share = np.minimum(overlap / area_d, 1.0)
            for qi, o, sh in zip(q[keep].tolist(), owner[keep].tolist(), share[keep].tolist(), strict=True):
                out[lo + qi].append(Match(codes[o], names[o], "geometry", labels[lo + qi], sh))
        return out

    def points(self, lons: Any, lats: Any) -> list[str | None]:
        index = self._require_index("point")
        pts = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        q, p = index.point_tree.query(pts, predicate="intersects")
        result = np.full(len(pts), len(index.point_codes) - 1, dtype=np.intp)
        result[q] = index.point_owner[p]
        return index.point_codes[result].tolist()

    # ------------------------------------------------------------------ CAP areas
    def area(self, area: Area) -> list[Match]:
        found: dict[str, Match] = {}

        def add(matches: Iterable[Match]) -> None:
            for m in matches:
                found.setdefault(m.code, m)

        unknown_names: list[str] = []
        geocodes = list(area.geocodes)
        districts = [v for n, v in geocodes if n.strip().upper() == "JP-ALERTD-DISTRICT"]
        if districts:
            # alertd's own CAP names a district order's municipality beside its districts
            # (for receivers that know only JIS codes); the districts are what is meant.
            parents = {d.split(":", 1)[0] for d in districts}
            geocodes = [(n, v) for n, v in geocodes
                        if not (n.strip().upper() == "JP-JISX0402" and v.strip()[:5] in parents)]  # fmt: skip
        for value_name, value in geocodes:
            vn = value_name.strip().upper()
            if vn in _MUNICIPAL_VALUE_NAMES:
                add(self.codes([value]))
            elif vn in _JMA_VALUE_NAMES:
                add(Match(c, self.registry.get(c).name, "code", value) for c in self.registry.jma_area(value))
            elif vn in _TSUNAMI_VALUE_NAMES:
                region = self.registry.tsunami_region(value)
                add([Match(region.code, region.name, "code", value)])
                add(
                    Match(c, self.registry.get(c).name, "code", value)
                    for c in self.registry.tsunami_municipalities(value)
                )
            elif vn not in _INFORMATIONAL_VALUE_NAMES:
                unknown_names.append(value_name)
        shapes = bool(area.polygons or area.circles)
        if unknown_names and not shapes:
            raise InvalidInput(
                f"The area {area.desc!r} uses geocode types alertd does not understand ({', '.join(unknown_names)}); "
                "use 'JIS X 0402', 'JMA' or 'tsunami' codes, or a polygon or circle.",
                input=unknown_names,
            )
        # Codes already say exactly where; shapes beside them only add, and must not fail for lack of boundaries.
        if shapes and (self._index is not None or not found):
            # One array pass for all of the area's shapes.
            for matches in self._polygons_and_circles(area.polygons, area.circles):
                add(matches)
        return list(found.values())

    def expand(self, codes: Iterable[str]) -> set[str]:
        """The codes and every ancestor of each: what subscriber matching looks up."""
        out: set[str] = set()
        for code in codes:
            out.update(self.registry.ancestors(code))
        return out

    # ------------------------------------------------------------------ preview
    def geojson(self, codes: Iterable[str]) -> dict[str, Any]:
        """A FeatureCollection of the districts, for the desk's map preview.

        A 町域 has no boundary of its own in alertd's data, so it is drawn with
        its municipality's outline and marked ``approximate``.
        """
        features: list[dict[str, Any]] = []
        for code in codes:
            d = self.registry.get(code)
            geom = self.registry.geometry_of(d.code)
            approximate = False
            if geom is None and d.level == "town" and d.parent:
                geom = self.registry.geometry_of(d.parent)
                approximate = geom is not None
            features.append(
                {
                    "type": "Feature",
                    "id": d.code,
                    "properties": {
                        "code": d.code,
                        "name": d.name,
                        "full_name": d.full_name,
                        "level": d.level,
                        "kana": d.kana,
                        "approximate": approximate,
                    },
                    "geometry": None if geom is None else shapely.geometry.mapping(geom),
                }
            )
        return {"type": "FeatureCollection", "features": features}
