"""The geometry cache: municipal polygons, their subdivided pieces, and per-polygon facts.

Polygons are kept twice: whole (for previews and areas) and cut into pieces
of at most a few dozen vertices. Queries run against the pieces: a piece
wholly inside a CAP polygon counts by its precomputed area with no
intersection at all, and the few pieces on the CAP polygon's edge get their
overlap from a handful of edges (geo.shapes.overlap_areas). That is what
makes thousands of polygon look-ups a second possible against coastlines
with thousands of vertices.

The on-disk form is one ``.npz`` (WKB blobs plus offsets, no pickle) so that
loading is a single read and one vectorised ``from_wkb``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from .shapes import Edges, edges_of

CACHE_FILE = "municipalities.npz"
META_FILE = "meta.json"
FORMAT_VERSION = 1


def _pack(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    blobs = shapely.to_wkb(geoms)
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def _unpack(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    raw = data.tobytes()
    return shapely.from_wkb([raw[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)])


@dataclass
class GeometryStore:
    codes: np.ndarray  # str, one per polygon
    names: np.ndarray  # the source's name for each polygon (N03 spelling)
    geoms: np.ndarray  # shapely polygons, WGS84 / JGD2011 lon-lat
    areas: np.ndarray  # planar area in degree², the denominator of overlap shares
    coastal: np.ndarray  # bool: part of its boundary touches no other municipality
    pieces: np.ndarray  # shapely pieces
    piece_owner: np.ndarray  # index into codes
    piece_area: np.ndarray
    meta: dict = field(default_factory=dict)
    _piece_edges: Edges | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.index = {str(c): i for i, c in enumerate(self.codes)}

    def __len__(self) -> int:
        return len(self.codes)

    def piece_edges(self) -> Edges:
        """The pieces as flat edge arrays for the geocoder, computed once per store (~0.4 s).

        Kept here rather than per geocoder index so that loading a layer,
        which rebuilds the index, does not redo the municipal part.
        """
        if self._piece_edges is None:
            self._piece_edges = edges_of(self.pieces)
        return self._piece_edges

    def save(self, cache_dir: Path) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        geom_data, geom_off = _pack(self.geoms)
        piece_data, piece_off = _pack(self.pieces)
        tmp = cache_dir / (CACHE_FILE + ".tmp.npz")
        np.savez(
            tmp,
            codes=self.codes.astype(str),
            names=self.names.astype(str),
            geom_data=geom_data,
            geom_off=geom_off,
            areas=self.areas,
            coastal=self.coastal,
            piece_data=piece_data,
            piece_off=piece_off,
            piece_owner=self.piece_owner.astype(np.int32),
            piece_area=self.piece_area,
        )
        # Replace atomically so a running alertd never reads half a cache.
        tmp.replace(cache_dir / CACHE_FILE)
        (cache_dir / META_FILE).write_text(
            json.dumps({**self.meta, "format": FORMAT_VERSION}, ensure_ascii=False, indent=2),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, cache_dir: Path) -> GeometryStore | None:
        path = cache_dir / CACHE_FILE
        if not path.exists():
            return None
        meta_path = cache_dir / META_FILE
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
        with np.load(path, allow_pickle=False) as z:
            return cls(
                codes=z["codes"],
                names=z["names"],
                geoms=_unpack(z["geom_data"], z["geom_off"]),
                areas=z["areas"],
                coastal=z["coastal"],
                pieces=_unpack(z["piece_data"], z["piece_off"]),
                piece_owner=z["piece_owner"],
                piece_area=z["piece_area"],
                meta=meta,
            )


def subdivide(geom: shapely.Geometry, max_vertices: int = 48) -> list[shapely.Geometry]:
    """Cut a polygon into polygonal pieces of at most ``max_vertices`` (like PostGIS ST_Subdivide)."""
    out: list[shapely.Geometry] = []
    stack = [geom]
    while stack:
        g = stack.pop()
        if g.is_empty:
            continue
        if shapely.get_num_coordinates(g) <= max_vertices:
            out.extend(p for p in shapely.get_parts(g) if p.geom_type == "Polygon" and p.area > 0)
            continue
        parts = shapely.get_parts(g)
        if len(parts) > 1:
            stack.extend(parts)
            continue
        minx, miny, maxx, maxy = g.bounds
        if maxx - minx >= maxy - miny:
            mid = (minx + maxx) / 2
            boxes = [shapely.box(minx, miny, mid, maxy), shapely.box(mid, miny, maxx, maxy)]
        else:
            mid = (miny + maxy) / 2
            boxes = [shapely.box(minx, miny, maxx, mid), shapely.box(minx, mid, maxx, maxy)]
        for box in boxes:
            part = shapely.intersection(g, box)
            polys = [p for p in shapely.get_parts(part) if p.geom_type in ("Polygon", "MultiPolygon")]
            stack.extend(polys)
    return out


def build_store(
    codes: Sequence[str], names: Sequence[str], geoms: Sequence[shapely.Geometry], meta: dict
) -> GeometryStore:
    geoms_arr = np.asarray(geoms, dtype=object)
    pieces: list[shapely.Geometry] = []
    owners: list[int] = []
    for i, g in enumerate(geoms_arr):
        parts = subdivide(g)
        pieces.extend(parts)
        owners.extend([i] * len(parts))
    pieces_arr = np.asarray(pieces, dtype=object)
    owner_arr = np.asarray(owners, dtype=np.int32)
    coastal = _coastal(geoms_arr, pieces_arr, owner_arr)
    return GeometryStore(
        codes=np.asarray(codes, dtype=str),
        names=np.asarray(names, dtype=str),
        geoms=geoms_arr,
        areas=shapely.area(geoms_arr),
        coastal=coastal,
        pieces=pieces_arr,
        piece_owner=owner_arr,
        piece_area=shapely.area(pieces_arr),
        meta=meta,
    )


def _coastal(
    geoms: np.ndarray, pieces: np.ndarray, owners: np.ndarray, samples: int = 200, near: float = 2e-3
) -> np.ndarray:
    """Municipalities with boundary points that no other municipality is near.

    A union of all of Japan to find the coastline takes over a minute; sampling
    each boundary and asking the piece tree for a neighbour within ~30 m takes
    seconds. ``near`` (~200 m) absorbs the mismatch between a simplified
    national file and a full-resolution prefectural one.
    A municipality next to one missing from the data also looks
    coastal; that errs on the side of warning.
    """
    tree = shapely.STRtree(pieces)
    coastal = np.zeros(len(geoms), dtype=bool)
    for i, g in enumerate(geoms):
        ring = shapely.boundary(g)
        n = min(samples, max(8, int(shapely.get_num_coordinates(g))))
        pts = shapely.line_interpolate_point(ring, np.linspace(0, 1, n, endpoint=False), normalized=True)
        pts = np.asarray([p for p in np.atleast_1d(pts) if p is not None and not p.is_empty], dtype=object)
        if len(pts) == 0:
            continue
        qi, pi = tree.query(pts, predicate="dwithin", distance=near)
        other = owners[pi] != i
        neighboured = np.zeros(len(pts), dtype=bool)
        neighboured[qi[other]] = True
        lonely = (~neighboured).sum()
        coastal[i] = lonely >= max(2, 0.02 * len(pts))
    return coastal
