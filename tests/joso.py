"""常総市's real boundary alone, as a registry: tests that need one city's polygon import just
that feature of the shared Ibaraki file (under a second, instead of two for all 44 towns)."""

from __future__ import annotations

import json
from pathlib import Path

from geo.importer import import_boundaries
from geo.registry import Registry
from tests.support import shared_data

JOSO = "08211"


def joso_registry(where: Path) -> Registry:
    source = shared_data("geo", "ibaraki-municipalities.geojson")
    data = json.loads(source.read_text(encoding="utf-8"))
    features = [f for f in data["features"] if str(f["properties"].get("code")) == JOSO]
    one = where / "joso.geojson"
    one.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    import_boundaries([one], where / "cache")
    return Registry.load(where / "cache")
