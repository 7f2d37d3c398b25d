"""``alertd geo layer add|remove``: a municipality's own districts (自治区, 学区 …) from a file.

    alertd geo layer add 08211 jichiku jichiku.geojson      # or a .csv
    alertd geo layer remove 08211 jichiku

The file is read here and sent to the desk API (``PUT /api/v1/layers/08211/jichiku``) with
the desk's token, so the layer goes through the same checks as anything a desk sends, and
every alertd process loads it. Files:

- GeoJSON: a FeatureCollection; each feature's ``name`` property (``--name-property``) names
  a district, ``kana`` optionally reads it, the geometry (Polygon/MultiPolygon) is optional;
- CSV (UTF-8, with a header row): ``name``, optional ``kana``, optional ``geometry`` as WKT
  (``POLYGON((lon lat, …))``) or GeoJSON text. A list of names alone is a layer too: orders
  can name those districts, and subscribers subscribe to them, without outlines.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

from alertd.httpclient import CliError
from alertd.httpclient import call as _http


def read_layer(path: Path, name_property: str = "name") -> list[dict[str, Any]]:
    """The districts of a GeoJSON or CSV file, as the API takes them."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"Cannot read {path}: {exc}.") from None
    if path.suffix.lower() == ".csv":
        return _from_csv(text, path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{path} is neither CSV (by its name) nor GeoJSON: {exc}.") from None
    features = data.get("features") if isinstance(data, dict) and data.get("type") == "FeatureCollection" else None
    if not isinstance(features, list):
        raise CliError(f"{path} is not a GeoJSON FeatureCollection.")
    out = []
    for n, feature in enumerate(features, 1):
        props = feature.get("properties") or {}
        name = props.get(name_property)
        if not name:
            raise CliError(f"Feature {n} of {path} has no {name_property!r} property to name its district.")
        district: dict[str, Any] = {"name": str(name)}
        if props.get("kana"):
            district["kana"] = str(props["kana"])
        if feature.get("geometry"):
            district["geometry"] = feature["geometry"]
        out.append(district)
    return out


def _from_csv(text: str, path: Path) -> list[dict[str, Any]]:
    import shapely

    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "name" not in reader.fieldnames:
        raise CliError(f"{path} needs a header row with a 'name' column (and optionally 'kana' and 'geometry').")
    out = []
    for n, row in enumerate(reader, 2):
        name = (row.get("name") or "").strip()
        if not name:
            raise CliError(f"Line {n} of {path} has no name.")
        district: dict[str, Any] = {"name": name}
        if (row.get("kana") or "").strip():
            district["kana"] = row["kana"].strip()
        geometry = (row.get("geometry") or "").strip()
        if geometry:
            try:
                shape = shapely.from_geojson(geometry) if geometry.startswith("{") else shapely.from_wkt(geometry)
            except Exception as exc:  # shapely's GEOSException: a sentence for the operator instead
                raise CliError(f"Line {n} of {path}: the geometry is neither WKT nor GeoJSON ({exc}).") from None
            district["geometry"] = json.loads(shapely.to_geojson(shape))
        out.append(district)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="alertd geo layer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("add", "remove"):
        p = sub.add_parser(action)
        p.add_argument("municipality", help="5-digit code, e.g. 08211")
        p.add_argument("layer", help="the layer's name: jichiku, gakku, hinanjo …")
        if action == "add":
            p.add_argument("file", type=Path, help="GeoJSON FeatureCollection or CSV")
            p.add_argument("--name-property", default="name", help="GeoJSON property naming each district")
        p.add_argument("--url", default=os.environ.get("ALERTD_URL", "http://127.0.0.1:8080"))
        p.add_argument("--token", default=os.environ.get("ALERTD_ISSUER_TOKEN"), help="the desk's token")
    args = parser.parse_args(argv)
    try:
        if not args.token:
            raise CliError("Loading a layer needs your desk's token: give --token or set ALERTD_ISSUER_TOKEN.")
        url = f"{args.url.rstrip('/')}/api/v1/layers/{args.municipality}/{args.layer}"
        if args.action == "add":
            status, data = _http("PUT", url, args.token, {"districts": read_layer(args.file, args.name_property)})
        else:
            status, data = _http("DELETE", url, args.token)
    except CliError as err:
        print(err, file=sys.stderr)
        return 2
    if status >= 400:
        print(f"refused ({status}): {(data or {}).get('detail')}", file=sys.stderr)
        return 1
    if args.action == "remove":
        print(f"removed layer {args.layer} of {args.municipality}")
        return 0
    shaped = sum(1 for d in data["districts"] if d["has_geometry"])
    print(f"loaded layer {data['layer']} of {data['municipality']}: {len(data['districts'])} districts "
          f"({shaped} with outlines)")  # fmt: skip
    for d in data["districts"]:
        print(f"  {d['code']}")
    return 0
