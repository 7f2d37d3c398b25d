"""A municipality's own layers of districts: 自治区, 学区, 避難所の圏域.

Residents are organised by 自治区 (neighbourhood associations) as well as by 町域, and a
desk wants to say "本石下自治区" in an order the way it says "三坂町". A layer is loaded
whole, by name (``PUT /api/v1/layers/08211/jichiku``, or ``alertd geo layer add``), kept in
Redis so every process loads it, and becomes registry districts under the municipality:
``08211:layer:jichiku:本石下自治区``. From then on orders name them, subscribers subscribe to
them, routing reaches them up and down the hierarchy, and cell broadcast draws their
outlines.

A layer's name must not make an order ambiguous: a district named like a 町域 of the
same town is refused (409), so "三坂町" always means the one place it meant before.
"""

from __future__ import annotations

import re
from typing import Any

from alertd import schemas
from alertd.district_shapes import check_geometry, geometry_inside
from alertd.engine import DESK_LAYER, Engine
from alertd.errors import AlertdError, Conflict, InvalidInput

LAYER_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def checked_name(layer: str) -> str:
    if not LAYER_RE.match(layer) or layer == DESK_LAYER:
        raise InvalidInput(
            f"The layer name {layer!r} is not usable: use 1–32 lower-case letters, digits, '_' or '-', "
            f"starting with a letter (e.g. jichiku, gakku, hinanjo), and not {DESK_LAYER!r}.",
            field="layer",
        )
    return layer


def prefix(municipality: str, layer: str) -> str:
    return f"{municipality}:layer:{layer}:"


def features(engine: Engine, municipality: str, layer: str, upload: schemas.LayerUpload) -> list[dict[str, Any]]:
    """The layer's GeoJSON features as stored: names unique and unambiguous, outlines checked
    and cut to the municipality. Raises before anything is written."""
    own = prefix(municipality, layer)
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for district in upload.districts:
        name = district.name.strip()
        if name in seen:
            raise InvalidInput(f"「{name}」 is in the layer twice; each district needs a name of its own.",
                               field="districts")  # fmt: skip
        seen.add(name)
        try:
            existing = engine.registry.resolve_name(municipality, name, suggest=False)
        except AlertdError:
            existing = None
        if existing is not None and existing.code != municipality and not existing.code.startswith(own):
            raise Conflict(
                f"「{name}」 is already a district of the town ({existing.full_name}, {existing.code}): an order "
                f"naming it could not tell the two apart. Give the {layer} district a name of its own, "
                f"e.g. 「{name}{_suffix(layer)}」. Nothing was loaded.",
                existing=existing.code,
            )
        geometry = None
        if district.geometry is not None:
            geometry = geometry_inside(check_geometry(district.geometry), engine, municipality)
        out.append({"type": "Feature", "properties": {"name": name, "kana": district.kana}, "geometry": geometry})
    return out


def _suffix(layer: str) -> str:
    return {"jichiku": "自治区", "gakku": "学区"}.get(layer, "地区")


def rows(municipality: str, layer: str, stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"code": prefix(municipality, layer) + f["properties"]["name"], "name": f["properties"]["name"],
         "kana": f["properties"].get("kana"), "has_geometry": f.get("geometry") is not None}
        for f in stored
    ]  # fmt: skip


async def in_force_naming(engine: Engine, municipality: str, layer: str) -> list[str]:
    """Ids of orders in force that name a district of the layer: it cannot go while they stand."""
    own = prefix(municipality, layer)
    ids: list[str] = []
    for status in ("Actual", "Exercise", "Test"):
        standing = await engine.store.in_force(municipality, status, engine.registry, orders_only=True)
        ids += [s.alert.id for s in standing if any(d.startswith(own) for d in s.alert.districts)]
    return ids
