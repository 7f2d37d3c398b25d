"""自治区 and other local layers: loaded from a file with `alertd geo layer add`, named in orders
like 町域, and routed to the subscribers of each 自治区."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import shapely

from alertd.drills.scenario import SCENARIOS, load_scenario
from alertd.drills.validate import problems
from alertd.layer_cli import main as layer_main
from geo.registry import Registry
from tests.conftest import RunningEngine, Sink
from tests.joso import joso_registry

EXAMPLE = SCENARIOS / "joso-jichiku.example.geojson"
HOSHI = "08211:layer:jichiku:ほしぞら自治区"
SESE = "08211:layer:jichiku:せせらぎ自治区"


def order(level: int, action: str, districts: list[str]) -> dict[str, object]:
    return {"municipality": "08211", "level": level, "action": action, "districts": districts, "reason": "洪水",
            "status": "Exercise"}  # fmt: skip


async def cli(*argv: str) -> int:
    """The command line, in a thread: it is a blocking HTTP client, like the operator's terminal."""
    return await asyncio.to_thread(layer_main, list(argv))


async def test_a_jichiku_layer_is_loaded_named_in_orders_and_routed(
    engine: RunningEngine, sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    assert await cli("add", "08211", "jichiku", str(EXAMPLE), "--url", engine.url, "--token", token) == 0
    printed = capsys.readouterr().out
    assert "5 districts (4 with outlines)" in printed and HOSHI in printed
    try:
        for sub_id, district in (("hoshizora", HOSHI), ("seseragi", SESE), ("city", "08211")):
            await engine.add_subscriber(id=sub_id, adapter="isp", endpoint=f"{sink.url}/{sub_id}",
                                        districts=[district])  # fmt: skip

        # The desk names the 自治区 as it names a 町域.
        status, answer = await engine.post("/api/v1/evacuation-orders", token, order(4, "issue", ["ほしぞら自治区"]))
        assert status == 202, answer
        assert answer["districts"] == [HOSHI]
        rows = await engine.wait_settled(answer["id"])
        assert {r["subscriber"] for r in rows} == {"hoshizora", "city"}  # not the other 自治区
        assert {r["path"] for r in sink.received} == {"/hoshizora", "/city"}
        body = json.loads(sink.at("/hoshizora")[0]["body"])
        assert "ほしぞら自治区" in body["text"]["ja"]["body"]

        # While the order stands, its layer cannot go: the lift would name districts that no longer exist.
        async with engine.http.delete(f"{engine.url}/api/v1/layers/08211/jichiku",
                                      headers={"Authorization": f"Bearer {token}"}) as resp:  # fmt: skip
            assert resp.status == 409 and "lift it" in (await resp.json())["detail"]
        status, answer = await engine.post("/api/v1/evacuation-orders", token, order(4, "lift", ["all"]))
        assert status == 202, answer
    finally:
        assert await cli("remove", "08211", "jichiku", "--url", engine.url, "--token", token) == 0
    status, problem = await engine.post("/api/v1/evacuation-orders/preview", token, order(4, "issue", ["ほしぞら自治区"]))
    assert status == 422, problem  # gone with its layer


async def test_a_csv_of_names_and_wkt_loads_and_a_name_like_a_machi_is_refused(
    engine: RunningEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    names = tmp_path / "gakku.csv"
    names.write_text("name,kana,geometry\n"
                     "ひだまり学区,ひだまりがっく,\"POLYGON((139.97 36.06, 139.98 36.06, 139.98 36.07, 139.97 36.06))\"\n"
                     "そよかぜ学区,,\n", encoding="utf-8")  # fmt: skip
    try:
        assert await cli("add", "08211", "gakku", str(names), "--url", engine.url, "--token", token) == 0
        assert "2 districts (1 with outlines)" in capsys.readouterr().out
        status, answer = await engine.post("/api/v1/evacuation-orders/preview", token,
                                           order(3, "issue", ["そよかぜ学区"]))  # fmt: skip
        assert status == 200 and answer["districts"] == ["08211:layer:gakku:そよかぜ学区"], answer
    finally:
        await cli("remove", "08211", "gakku", "--url", engine.url, "--token", token)

    clash = tmp_path / "clash.csv"
    clash.write_text("name\n三坂町\n", encoding="utf-8")
    assert await cli("add", "08211", "jichiku2", str(clash), "--url", engine.url, "--token", token) == 1
    said = capsys.readouterr().err
    assert "refused (409)" in said and "三坂町" in said and "could not tell the two apart" in said
    # Another town's desk cannot load layers for Joso.
    other = await engine.add_issuer("tsukuba", ["08220"])
    assert await cli("add", "08211", "jichiku3", str(names), "--url", engine.url, "--token", other) == 1
    assert "refused (403)" in capsys.readouterr().err


def test_the_drill_example_is_made_up_inside_the_city_and_the_drill_validates(tmp_path: Path) -> None:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert "MADE UP" in data["note"] and "架空" in data["note"]
    city = joso_registry(tmp_path).geometry_of("08211")
    shapes = [shapely.geometry.shape(f["geometry"]) for f in data["features"] if f["geometry"]]
    assert shapes and all(s.within(city) for s in shapes)
    scenario = load_scenario(SCENARIOS / "joso-flood.yaml")
    assert scenario.layers and problems(scenario, Registry.default()) == []
