"""The bench's national and scale-out phases (issue 12): who they register, how they are
chosen, and that their rows reach the table. The measuring itself is `make bench`'s."""

from __future__ import annotations

import pytest

from alertd.validation import validate_subscriber
from geo.registry import Registry
from simulations.bench import Options, build_rows, render
from simulations.bench_national import national_rows, plan
from simulations.bench_scaleout import cpu_split, scaleout_rows


def test_national_population_is_every_municipality_and_the_conveyors() -> None:
    pop = plan(Registry.default(), "http://127.0.0.1:9", "t" * 32, 1400)
    assert len(pop.prefectures) == 47
    # 1,718 市町村 and 23 特別区; the six Northern Territories villages have no office.
    assert len(pop.municipalities) == 1741
    assert "01695" not in pop.municipalities and "13101" in pop.municipalities
    assert pop.webhooks == 3141
    assert pop.feed_topics == 1747  # the engine publishes to the Northern Territories' topics too
    subs = pop.seed["subscribers"]
    assert len({s["endpoint"] for s in subs}) == 3141
    assert {s["adapter"] for s in subs} == {"radio", "broadcaster", "isp"}
    assert sum(1 for s in subs if len(s["districts"]) == 47) == 140
    for sub in subs[:3] + subs[-3:]:
        validate_subscriber(sub)  # what the engine checks when it reads the seed


def test_phases_are_chosen_by_name_or_left_out() -> None:
    assert Options.parse([]).phases == ("flash", "storm", "national", "scaleout")
    assert Options.parse(["--phases", "scaleout,national"]).phases == ("national", "scaleout")
    assert Options.parse(["--no-national", "--no-scaleout"]).phases == ("flash", "storm")
    quick = Options.parse(["--quick"])
    assert (quick.scaleout_deliveries, quick.scaleout_runs, quick.scaleout_placements) == (
        4000,
        2,
        ("pinned",),
    )
    assert Options.parse([]).scaleout_placements == ("pinned", "shared")
    with pytest.raises(SystemExit):
        Options.parse(["--phases", "flash,nationwide"])


def test_cores_are_split_between_engine_and_clients() -> None:
    split = cpu_split()
    if split is None:
        pytest.skip("one core: nothing to split")
    engine, clients = split
    assert engine and clients and not engine & clients


def test_rows_of_the_new_phases_reach_the_table() -> None:
    national = {
        "webhooks": 3141, "feed_topics": 1747, "first_p99_ms": 40.0, "last_p50_ms": 800.0, "last_p99_ms": 1200.0,
        "per_s_p50": 3000.0, "engine_p99_ms_max": 1100.0, "feed_received_min": 1747, "feed_last_p99_ms": 500.0,
        "note": "national: …",
    }  # fmt: skip
    point = {"workers": 1, "per_s_best": 2000.0, "speedup_vs_1": 1.0, "engine_cpu_us_per_delivery_p50": 450.0}
    scaleout = {"deliveries": 4000, "note": "scale-out: …",
                "series": [{"label": "engine on CPU 0", "points": [point, {**point, "workers": 2, "speedup_vs_1": 0.9}]}]}  # fmt: skip
    res = {
        "national": national,
        "scaleout": scaleout,
        "meta": {"phases": ["national", "scaleout"], "runs": 3},
    }
    rows = build_rows(res)
    assert rows == national_rows(res) + scaleout_rows(res)
    last = next(r for r in rows if r["measure"].startswith("national: last of 3,141 webhooks p99"))
    assert last["met"] is False and "J-Alert" in last["target"]
    assert any("×0.9 of 1" in r["measure"] for r in rows)
    assert "national: …" in render(rows, res)


def test_the_feed_target_stays_against_raw_mqtt_alone_and_like_for_like_is_information() -> None:
    """The like-for-like ceiling (raw_flash: the 2,000 POSTs and the feed at once) is shown
    beside the feed's target, never instead of it."""
    flash = {
        "first_p50_ms": 10.0, "first_p99_ms": 12.0, "last_p50_ms": 300.0, "last_p99_ms": 320.0, "per_s_p50": 6600.0,
        "per_delivery_p99_ms": 290.0, "engine_http_p99_ms_max": 300.0, "accepted_ms_p50": 20.0,
        "accepted_ms_p99": 25.0, "feed_messages": 62, "feed_last_p50_ms": 25.0, "feed_per_s_p50": 2500.0,
        "feed_window_per_s_p50": 8000.0,
    }  # fmt: skip
    res = {
        "alertd_flash": flash,
        "raw_http": {"first_p50_ms": 7.0, "first_p99_ms": 8.0, "last_p50_ms": 150.0, "last_p99_ms": 180.0,
                     "per_s_p50": 12000.0},
        "raw_mqtt": {"last_p50_ms": 10.0, "per_s_p50": 6000.0, "window_per_s_p50": 12000.0},
        "raw_flash": {"per_s_p50": 11000.0, "feed_window_per_s_p50": 6000.0},
        "alertmanager": {"status": "alertmanager 0.25", "interleaved": True, "last_p50_ms": 250.0,
                         "last_p99_ms": 330.0, "per_s_p50": 8000.0, "first_p50_ms": 4.0, "first_p99_ms": 6.0},
        "meta": {"phases": ["flash"], "runs": 5, "subscribers": 2000},
    }
    rows = {r["measure"]: r for r in build_rows(res)}
    target = rows["feed beside the webhooks: publishes/s first → last, vs raw alone (p50)"]
    assert target["raw"] == 12000.0 and target["met"] is False  # 8,000 / 12,000 alone: 0.67
    like = rows["like for like: feed publishes/s beside the webhooks, first → last (p50)"]
    assert like["raw"] == 6000.0 and like["ratio"] is not None and like["ratio"] > 1 and like["target"] == ""
    http = rows["like for like: HTTP deliveries/s beside the feed (p50)"]
    assert http["raw"] == 11000.0 and http["met"] is None
    # Against Alertmanager's interleaved runs: behind on the end and the rate, ahead on the p99.
    assert rows["flash: HTTP deliveries/s (p50)"]["met"] is False
    assert rows["flash: last of 2000 p99 (ms)"]["met"] is True

    # The feed alone, turn about with raw aiomqtt on the same topics: its own target row,
    # beside the flash feed's (which keeps its own verdict against the raw client alone).
    res["feed_alone"] = {"messages": 62, "alertd_window_ms": [7.0], "raw_window_ms": [6.5],
                         "alertd_per_s_p50": 8700.0, "raw_per_s_p50": 9400.0}  # fmt: skip
    rows = {r["measure"]: r for r in build_rows(res)}
    alone = rows["feed alone: 62 topics, no webhooks, publishes/s first → last (p50)"]
    assert alone["raw"] == 9400.0 and alone["met"] is True  # 0.93
    assert rows["feed beside the webhooks: publishes/s first → last, vs raw alone (p50)"]["met"] is False
    res["feed_alone"]["alertd_per_s_p50"] = 8000.0  # 0.85
    assert {r["measure"]: r for r in build_rows(res)}[alone["measure"]]["met"] is False
