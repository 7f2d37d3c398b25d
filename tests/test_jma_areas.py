"""The JMA forecast-area table (../shared/data/jma-areas): 6-digit areas and renumbered towns resolve to municipalities."""

from __future__ import annotations

import pytest

from alertd.errors import UnknownArea
from geo.jma_areas import load_forecast_areas, table_path

pytestmark = pytest.mark.skipif(not table_path().is_file(), reason="JMA area table not found in ../shared/data")


@pytest.fixture(scope="module")
def registry():
    from geo.registry import Registry

    return Registry.default()


def test_a_split_hokkaido_forecast_region_is_its_own_towns(registry) -> None:
    towns = registry.jma_area("013000")  # 網走・北見・紋別地方
    assert {"01208", "01211", "01219"} <= set(towns)  # 北見市, 網走市, 紋別市
    assert "01100" not in towns and not any(t.startswith("011") for t in towns)  # not 札幌市
    # 一次細分区域 and 市町村等をまとめた地域 of the same region are subsets of it.
    assert set(registry.jma_area("013010")) < set(towns)
    assert "01208" in registry.jma_area("013011")  # 網走西部 holds 北見市常呂, so 北見市


def test_kagoshima_and_okinawa_regions_do_not_spill_into_each_other(registry) -> None:
    amami = registry.jma_area("460040")
    assert "46222" in amami and "46201" not in amami  # 奄美市, not 鹿児島市
    okinawa_main = registry.jma_area("471000")
    assert "47201" in okinawa_main and "47207" not in okinawa_main  # 那覇市, not 石垣市


def test_a_first_subdivision_of_a_prefecture_is_its_towns(registry) -> None:
    south = registry.jma_area("080020")  # 茨城県南部
    assert "08211" in south and "08202" not in south  # 常総市, not 日立市


def test_naka_gawa_under_its_old_code_is_the_city(registry) -> None:
    assert registry.jma_area("4030500") == ["40231"]


def test_an_unknown_area_is_still_an_unknown_area(registry) -> None:
    with pytest.raises(UnknownArea):
        registry.jma_area("999990")


def test_the_table_is_read_whole() -> None:
    members, names = load_forecast_areas()
    assert names["網走・北見・紋別地方"] == "013000" and names["埼玉県"] == "110000"
    assert sum(1 for c in members if c.endswith("0000")) >= 44
