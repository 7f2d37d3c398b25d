"""Build the geometry cache from MLIT N03 行政区域データ (GeoJSON or Shapefile).

Run as ``alertd geo import PATH [PATH ...] [--cache DIR]`` (the CLI calls
:func:`main_import`). Several files may be given: a later file replaces the
polygons of the municipalities it contains, so a national simplified file
can be refined with a prefecture's full-resolution one.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from alertd.errors import InvalidInput

from .registry import default_cache_dir
from .store import build_store

# N03 attribute names: prefecture, 支庁, 郡/政令市, 市区町村, code.
_N03_NAME_COLUMNS = ("N03_001", "N03_002", "N03_003", "N03_004")
_N03_CODE_COLUMN = "N03_007"
# JGD2000 / JGD2011 / WGS84 geographic: all within a metre of each other, taken as lon/lat as they are.
_GEOGRAPHIC_EPSG = {4326, 4612, 6668}


@dataclass
class ImportReport:
    sources: list[str]
    municipalities: int
    pieces: int
    repaired: list[str] = field(default_factory=list)  # codes whose rings were invalid
    skipped: int = 0  # features with no code (N03's 所属未定地) or empty geometry
    coastal: int = 0
    seconds: float = 0.0
    cache_dir: str = ""

    def summary(self) -> str:
        return (
            f"Imported {self.municipalities} municipalities ({self.pieces} index pieces, {self.coastal} coastal) "
            f"from {', '.join(self.sources)} into {self.cache_dir} in {self.seconds:.1f} s; "
            f"repaired {len(self.repaired)} invalid boundaries, skipped {self.skipped} features without a code."
        )


def _read(path: Path) -> tuple[list[str], list[str], list[shapely.Geometry], int]:
    if not path.exists():
        raise InvalidInput(f"The boundary file {path} does not exist.", input=str(path))
    df = gpd.read_file(path, engine="pyogrio")
    if df.crs is not None and df.crs.to_epsg() not in _GEOGRAPHIC_EPSG:
        df = df.to_crs(6668)
    if _N03_CODE_COLUMN in df.columns:
        code_col = _N03_CODE_COLUMN
        names = (
            df[[c for c in _N03_NAME_COLUMNS if c in df.columns]].fillna("").astype(str).agg("".join, axis=1)
        )
    elif "code" in df.columns:
        code_col = "code"
        names = df["name"].fillna("").astype(str) if "name" in df.columns else df["code"].astype(str)
    else:
        raise InvalidInput(
            f"{path} has neither an N03_007 nor a code column, so its polygons cannot be matched to municipalities.",
            input=str(path),
        )
    df = df.assign(_code=df[code_col].astype("string"), _name=names)
    valid = df["_code"].notna() & df["_code"].str.fullmatch(r"\d{5}").fillna(False) & ~df.geometry.is_empty
    skipped = int((~valid).sum())
    df = df[valid]
    codes: list[str] = []
    out_names: list[str] = []
    geoms: list[shapely.Geometry] = []
    # N03 has one feature per island; a municipality is their union.
    for code, group in df.groupby("_code", sort=True):
        parts = np.asarray(group.geometry.values, dtype=object)
        codes.append(str(code))
        out_names.append(str(group["_name"].iloc[0]))
        geoms.append(parts[0] if len(parts) == 1 else shapely.union_all(parts))
    b = shapely.total_bounds(np.asarray(geoms, dtype=object))
    if not (115 <= b[0] and b[2] <= 160 and 15 <= b[1] and b[3] <= 50):
        raise InvalidInput(
            f"{path} does not look like longitude/latitude over Japan (bounds {b.round(2).tolist()}).",
            input=str(path),
        )
    return codes, out_names, geoms, skipped


def import_boundaries(
    path: str | Path | Sequence[str | Path], cache_dir: str | Path | None = None
) -> ImportReport:
    """Read N03 boundaries, repair invalid rings, subdivide, and write the cache."""
    started = time.perf_counter()
    paths = [Path(path)] if isinstance(path, str | Path) else [Path(p) for p in path]
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    merged: dict[str, tuple[str, shapely.Geometry]] = {}
    skipped = 0
    for p in paths:
        codes, names, geoms, n_skipped = _read(p)
        skipped += n_skipped
        for c, n, g in zip(codes, names, geoms, strict=True):
            merged[c] = (n, g)
    codes = sorted(merged)
    names = [merged[c][0] for c in codes]
    geoms = np.asarray([merged[c][1] for c in codes], dtype=object)
    invalid = ~shapely.is_valid(geoms)
    repaired = [codes[i] for i in np.flatnonzero(invalid)]
    if invalid.any():
        fixed = shapely.make_valid(geoms[invalid])
        # make_valid may return a collection with stray lines; keep the area only.
        geoms[invalid] = [
            shapely.union_all([p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")])
            for g in fixed
        ]
    geoms = shapely.force_2d(geoms)
    store = build_store(
        codes,
        names,
        list(geoms),
        meta={"sources": [str(p) for p in paths], "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    )
    store.save(target)
    return ImportReport(
        sources=[str(p) for p in paths],
        municipalities=len(codes),
        pieces=len(store.pieces),
        repaired=repaired,
        skipped=skipped,
        coastal=int(store.coastal.sum()),
        seconds=time.perf_counter() - started,
        cache_dir=str(target),
    )


def main_import(argv: Sequence[str] | None = None) -> int:
    """``alertd geo import PATH [PATH ...] [--cache DIR]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="alertd geo import", description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths", nargs="+", help="N03 GeoJSON or Shapefile; later files override earlier ones"
    )
    parser.add_argument(
        "--cache", default=None, help="cache directory (default $ALERTD_GEO_CACHE or ~/.cache/alertd/geo)"
    )
    args = parser.parse_args(argv)
    try:
        report = import_boundaries(args.paths, args.cache)
    except InvalidInput as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main_import())
