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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from alertd.errors import InvalidInput, NoGeometry, UnknownArea
from alertd.models import Area

from .registry import Registry
from .shapes import circle_polygon, parse_circle, parse_polygon

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
        self.point_tree = shapely.STRtree(store.pieces)
        self.point_owner = store.piece_owner.astype(np.intp)
        self.point_codes = np.asarray([*map(str, store.codes), None], dtype=object)
        self.names = np.asarray([registry.get(str(c)).name for c in self.codes], dtype=object)
        self.version = registry.geometry_version


class Geocoder:
    def __init__(self, registry: Registry, min_overlap: float = 0.01, exact: bool = False) -> None:
        self.exact = exact  # compute every edge overlap with GEOS (slower; for audits)
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

        Pieces wholly inside the shape count by their stored area. For pieces on
        its edge the covered share is first estimated from the fraction of the
        piece's vertices inside the shape; an exact GEOS intersection (tens of
        microseconds a piece) is computed only for districts whose keep-or-drop
        decision the estimate's bounds leave open, or for all with ``exact``.
        """
        index = self._require_index(label)
        shapely.prepare(geom)
        hit = index.tree.query(geom)
        if len(hit) == 0:
            return []
        cand = index.pieces[hit]
        inside = shapely.contains(geom, cand)
        edge = np.flatnonzero(~inside)
        piece_area = index.piece_area[hit]
        owners, inverse = np.unique(index.owner[hit], return_inverse=True)
        lower = np.bincount(inverse, weights=np.where(inside, piece_area, 0.0), minlength=len(owners))
        upper = lower + np.bincount(inverse[edge], weights=piece_area[edge], minlength=len(owners))
        estimate = lower.copy()
        if len(edge):
            coords, which = shapely.get_coordinates(cand[edge], return_index=True)
            in_vertex = shapely.intersects_xy(geom, coords[:, 0], coords[:, 1])
            frac = np.bincount(which, weights=in_vertex, minlength=len(edge)) / np.bincount(
                which, minlength=len(edge)
            )
            estimate += np.bincount(inverse[edge], weights=piece_area[edge] * frac, minlength=len(owners))
        area_d = index.areas[owners]
        threshold = np.minimum(self.min_overlap * area_d, self.min_overlap * geom.area)
        open_ = (lower < threshold) & (upper >= threshold) if not self.exact else upper > lower
        if open_.any():
            need = edge[open_[inverse[edge]]]
            exact_area = shapely.area(shapely.intersection(geom, cand[need]))
            fixed = np.bincount(inverse[need], weights=exact_area, minlength=len(owners))
            estimate[open_] = lower[open_] + fixed[open_]
        keep = (estimate >= threshold) & (estimate > 0)
        share = np.minimum(estimate / area_d, 1.0)
        return [
            Match(index.codes[o], index.names[o], "geometry", label, float(s))
            for o, s in zip(owners[keep], share[keep], strict=True)
        ]

    def polygon(self, cap_polygon: str) -> list[Match]:
        self._require_index("polygon")
        return self.shape(parse_polygon(cap_polygon), "polygon")

    def circle(self, cap_circle: str) -> list[Match]:
        index = self._require_index("circle")
        lon, lat, radius = parse_circle(cap_circle)
        if radius == 0:
            # CAP allows a zero radius for a point.
            code = self.points(np.array([lon]), np.array([lat]))[0]
            return (
                []
                if code is None
                else [Match(code, index.names[index.codes == code][0], "geometry", "circle")]
            )
        return self.shape(circle_polygon(lon, lat, radius), "circle")

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
        for value_name, value in area.geocodes:
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
                f"The area {area.desc!r} uses geocode types alertd does not understand ({', '.join(unknown_names)}); "  # noqa: E501
                "use 'JIS X 0402', 'JMA' or 'tsunami' codes, or a polygon or circle.",
                input=unknown_names,
            )
        # Codes already say exactly where; shapes beside them only add, and must not fail for lack of boundaries.  # noqa: E501
        if shapes and (self._index is not None or not found):
            for poly in area.polygons:
                add(self.polygon(poly))
            for circle in area.circles:
                add(self.circle(circle))
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
