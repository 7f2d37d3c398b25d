"""The example configuration a deployment starts from must work as shipped."""

from __future__ import annotations

import json

import yaml

from tests.conftest import Sink, make_settings, start_engine, stop_engine
from tests.support import ROOT


async def test_example_config_seeds_issuers_subscribers_and_call_signs(sink: Sink, tmp_path) -> None:
    data = yaml.safe_load((ROOT / "config" / "alertd.example.yaml").read_text(encoding="utf-8"))
    # Same file, with the radio gateway pointed at our local sink so we can read what it says, and
    # every receiver taking drills (as a staging copy's would): the order below is an Exercise.
    for sub in data["subscribers"]:
        sub["endpoint"] = f"{sink.url}/{sub['id']}"
        sub["drills"] = True
    seed = tmp_path / "alertd.yaml"
    seed.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    running = await start_engine(make_settings(seed_file=str(seed)))
    try:
        async with running.http.get(f"{running.url}/api/v1/subscribers", headers=running.admin) as resp:
            assert {s["id"] for s in await resp.json()} == {s["id"] for s in data["subscribers"]}
        token = next(i["token"] for i in data["issuers"] if i["id"] == "joso-desk")
        order = {"municipality": "08211", "level": 4, "action": "issue", "districts": ["水海道橋本町"],
                 "reason": "洪水", "status": "Exercise"}  # fmt: skip
        status, answer = await running.post("/api/v1/evacuation-orders", token, order)
        assert status == 202 and answer["deliveries"] == 4
        await sink.wait_for(4)
        script = json.loads(sink.at("/radio-joso")[0]["body"])
        assert "こちらは、防災じょうそうです。" in script["text"]
    finally:
        await stop_engine(running)


async def test_alertd_timeout_s_is_the_timeout_of_a_subscriber_that_names_none(sink: Sink) -> None:
    """ALERTD_TIMEOUT_S was documented and read, but every subscriber got 5 s regardless."""
    running = await start_engine(make_settings(default_timeout_s=2.5))
    try:
        await running.add_subscriber(id="tv", adapter="broadcaster", endpoint=f"{sink.url}/tv", districts=["08"])
        await running.add_subscriber(id="own", adapter="isp", endpoint=f"{sink.url}/own", districts=["08"],
                                     timeout_s=7.0)  # fmt: skip
        async with running.http.get(f"{running.url}/api/v1/subscribers", headers=running.admin) as resp:
            timeouts = {s["id"]: s["timeout_s"] for s in await resp.json()}
        assert timeouts == {"tv": 2.5, "own": 7.0}
    finally:
        await stop_engine(running)
