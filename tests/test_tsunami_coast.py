"""Tsunami regions reach coastal municipalities from the table alertd ships, not from loaded boundaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from geo.registry import Registry, tsunami_coast_table
from geo.tables import TSUNAMI_REGIONS


@pytest.fixture(scope="module")
def bare_registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A registry with no boundary cache at all, as on a machine where `alertd geo import` never ran."""
    registry = Registry.load(tmp_path_factory.mktemp("empty-geo-cache"))
    assert registry.store is None
    return registry


@pytest.fixture(scope="module")
def ibaraki_only_registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The finding's setup: only prefecture 08's boundaries imported."""
    from geo.importer import import_boundaries
    from tests.support import shared_data

    source = shared_data("geo", "ibaraki-municipalities.geojson")
    cache = tmp_path_factory.mktemp("ibaraki-geo-cache")
    import_boundaries([source], cache)
    registry = Registry.load(cache)
    assert registry.store is not None and len(registry.store) == 44
    return registry


def test_ibaraki_coast_spot_checks(bare_registry: Registry) -> None:
    ibaraki = bare_registry.tsunami_municipalities("300")
    for coastal in ("08202", "08215", "08222", "08232"):  # 日立市 北茨城市 鹿嶋市 神栖市
        assert coastal in ibaraki
    for inland in ("08204", "08207", "08211", "08203"):  # 古河市 結城市 常総市 土浦市 (霞ヶ浦 is a lake)
        assert inland not in ibaraki


def test_routing_does_not_depend_on_the_loaded_boundaries(
    bare_registry: Registry, ibaraki_only_registry: Registry
) -> None:
    # Region 310 (千葉県九十九里・外房) mapped to nothing when only prefecture 08 was loaded.
    for registry in (bare_registry, ibaraki_only_registry):
        chiba = registry.tsunami_municipalities("310")
        assert "12202" in chiba and "12218" in chiba  # 銚子市 勝浦市
        assert registry.tsunami_municipalities("300") == bare_registry.tsunami_municipalities("300")
    # With 08 alone, 古河市 and 結城市 sit on the edge of the loaded data and looked coastal.
    assert "08204" not in ibaraki_only_registry.tsunami_municipalities("300")
    assert "08207" not in ibaraki_only_registry.tsunami_municipalities("300")


def test_coastal_towns_missing_from_the_boundary_file_are_on_it(bare_registry: Registry) -> None:
    # The 2011 Sanriku towns are not in the shared boundary file; geometry alone would drop them.
    assert {"04202", "04205", "04606"} <= set(bare_registry.tsunami_municipalities("220"))
    assert {"03202", "03203", "03211"} <= set(bare_registry.tsunami_municipalities("210"))
    # ...and their inland neighbours, which the gap made look coastal, are not.
    assert "03201" not in bare_registry.tsunami_municipalities("210")  # 盛岡市
    assert "04212" not in bare_registry.tsunami_municipalities("220")  # 登米市


def test_island_regions_are_not_part_of_the_mainland_ones(bare_registry: Registry) -> None:
    tokyo_bay = bare_registry.tsunami_municipalities("312")
    assert "13108" in tokyo_bay and "13361" not in tokyo_bay  # 江東区 yes, 大島町 no
    assert bare_registry.tsunami_municipalities("341") == ["15224"]  # 佐渡
    assert "15224" not in bare_registry.tsunami_municipalities("340")


def test_every_region_has_known_municipalities(bare_registry: Registry) -> None:
    table = tsunami_coast_table()
    assert set(table) == set(TSUNAMI_REGIONS)
    for region, codes in table.items():
        assert codes, region
        unknown = [c for c in codes if bare_registry.find(c) is None]
        assert not unknown, (region, unknown)
    # A summary region (関東地方) is the union of its members.
    kanto = set(bare_registry.tsunami_municipalities("491"))
    assert set(bare_registry.tsunami_municipalities("300")) <= kanto


def test_the_table_is_package_data() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "data/*.csv" in pyproject["tool"]["setuptools"]["package-data"]["geo"]
