"""Cell broadcast: a level 5 order reaches a CBC's CAP interface (a local HTTP sink) as CAP 1.2
that the OASIS schema accepts, with the ETWS/WEA text limits and the polygon vertex limit kept."""

from __future__ import annotations

import pytest
import shapely
from lxml import etree

from adapters.cbc import LIMITS, MAX_VERTICES, PARAM_LONG, PARAM_SHORT, short_text
from alertd import places
from alertd.cap import CAP_NAMESPACE
from geo.registry import Registry
from tests.conftest import RunningEngine, Sink
from tests.joso import joso_registry
from tests.test_cap import _schema_or_none, assert_valid

NS = {"c": CAP_NAMESPACE}
LEVEL_5 = {"municipality": "08211", "level": 5, "action": "issue", "districts": ["all"], "reason": "洪水",
           "status": "Exercise"}  # fmt: skip


@pytest.fixture(scope="module")
def joso_boundaries(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return joso_registry(tmp_path_factory.mktemp("joso"))


async def test_a_level_5_order_reaches_the_cbc_as_valid_cap_within_its_limits(
    engine: RunningEngine, sink: Sink, joso_boundaries: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = _schema_or_none()
    if schema is None:
        pytest.skip("the OASIS CAP schema is absent (../shared/data)")
    # The city's real boundary (2,820 points), as a deployment that imported N03 has it.
    monkeypatch.setattr(places, "_geometry", joso_boundaries.geometry_of)
    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="docomo-cbc", adapter="cbc", endpoint=f"{sink.url}/cbc", districts=["08211"])
    status, answer = await engine.post("/api/v1/evacuation-orders", token, LEVEL_5)
    assert status == 202, answer

    await sink.wait_for(1)
    hit = sink.at("/cbc")[0]
    assert hit["headers"]["Content-Type"].startswith("application/cap+xml")
    assert_valid(schema, hit["body"])
    root = etree.fromstring(hit["body"])
    assert root.findtext("c:status", namespaces=NS) == "Exercise"
    infos = root.findall("c:info", NS)
    assert [i.findtext("c:language", namespaces=NS) for i in infos] == ["ja-JP", "en-US"]
    for info, (short_max, long_max) in zip(infos, LIMITS.values(), strict=True):
        names = [p.findtext("c:valueName", namespaces=NS) for p in info.findall("c:parameter", NS)]
        assert names[:2] == [PARAM_SHORT, PARAM_LONG]  # the short text first, then the longer
        short, long = (info.findall("c:parameter", NS)[i].findtext("c:value", namespaces=NS) for i in (0, 1))
        assert 0 < len(short) <= short_max and 0 < len(long) <= long_max, (short, long)
        assert info.findtext("c:headline", namespaces=NS) == short
        assert info.findtext("c:severity", namespaces=NS) == "Extreme"
    ja_short = infos[0].findall("c:parameter", NS)[0].findtext("c:value", namespaces=NS)
    assert "訓練" in ja_short and "5" in ja_short and "緊急安全確保" in ja_short  # squeezed, not cut
    assert "Exercise" in infos[1].findtext("c:headline", namespaces=NS) or "DRILL" in infos[1].findtext(
        "c:headline", namespaces=NS
    )

    # The polygon: within the vertex limit, closed, and still the city (not a different place).
    texts = [p.text for p in infos[0].iterfind("c:area/c:polygon", NS)]
    assert texts
    city = joso_boundaries.geometry_of("08211")
    drawn = []
    for text in texts:
        points = [tuple(map(float, pair.split(","))) for pair in text.split()]
        assert 4 <= len(points) <= MAX_VERTICES and points[0] == points[-1]
        drawn.append(shapely.Polygon([(lon, lat) for lat, lon in points]))
    shape = shapely.union_all(drawn)
    # Simplified outward: all of the city is inside (to the 5 decimals CAP carries), little else.
    assert city.difference(shape).area / city.area < 0.001 and shape.area / city.area < 1.15
    geocodes = [g.findtext("c:value", namespaces=NS) for g in infos[0].iterfind("c:area/c:geocode", NS)]
    assert "08211" in geocodes


def test_headlines_are_squeezed_before_they_are_cut() -> None:
    # The hazard first, the markers after it, short: a drill is still said, an update dropped if need be.
    assert short_text("【訓練】警戒レベル5 緊急安全確保（洪水）", 15) == "レベル5 緊急安全確保(訓練)"
    assert short_text("【訓練】【更新】南海トラフ地震臨時情報（巨大地震警戒）", 15) == "南海トラフ巨大地震警戒(訓練)"
    assert short_text("【取消】噴火速報 御嶽山", 15) == "噴火速報 御嶽山(取消)"
    assert short_text("警戒レベル4 避難指示", 15) == "警戒レベル4 避難指示"  # fits: untouched
    assert len(short_text("Alert Level 5: " + "x" * 200, 90)) <= 90
    assert len(short_text("[DRILL] [UPDATE] Alert Level 5: " + "x" * 200, 90)) <= 90


def test_english_cell_broadcast_text_is_gsm7_with_romanised_names() -> None:
    from adapters.cbc import _GSM7, gsm7

    text = gsm7("The earlier “Eruption: Ontakesan (御嶽山)” has been cancelled. Areas: 長野県木曽郡王滝村, Misaka-machi (三坂町).")
    # The unromanised name is counted, not silently dropped: 王滝村 still hears it is included.
    assert text == 'The earlier "Eruption: Ontakesan" has been cancelled. Areas: Misaka-machi and 1 more area.'
    assert set(text) <= _GSM7


def test_english_cell_broadcast_areas_with_no_romanisation_are_counted_never_an_empty_list() -> None:
    from adapters.cbc import gsm7

    # What a receiver author got for a 津波警報: "Areas: and 36 more areas."
    assert gsm7("Tsunami warning. Areas: 千葉市, 横浜市 and 36 more areas. Evacuate.") == (
        "Tsunami warning. In 38 areas. Evacuate."
    )
    assert gsm7("Tsunami warning. Areas: and 36 more areas.") == "Tsunami warning. In 36 areas."
    assert gsm7("Areas: Chiba-shi, 横浜市 and 3 more areas.") == "Areas: Chiba-shi and 4 more areas."

