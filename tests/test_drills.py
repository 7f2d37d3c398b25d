"""Drills and the transmission test, against a real engine and a simulated receiver fleet."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alertd.drills.receivers import Fleet, ReceiverSpec
from alertd.drills.runner import DrillRunner
from alertd.drills.scenario import SCENARIOS, ScenarioError, load_scenario
from tests.conftest import ADMIN_TOKEN, MQTT_URL, RunningEngine, Sink
from tests.support import ROOT, SHARED, shared_data, until

ORDER_4 = {"municipality": "08211", "level": 4, "action": "issue", "districts": ["all"], "reason": "洪水"}


def test_every_shipped_scenario_loads() -> None:
    names = {p.stem for p in SCENARIOS.glob("*.yaml")}
    assert {"joso-flood", "nankai-earthquake", "missile-alert"} <= names
    for path in SCENARIOS.glob("*.yaml"):
        scenario = load_scenario(path)
        assert scenario.steps and scenario.receivers


def test_every_shipped_scenario_describes_itself_in_japanese_and_english() -> None:
    """The console showed jma-sequences' description in English only on its Japanese page, and
    joso-demo's with literal backticks ("the `make demo` drill")."""
    import re

    for path in SCENARIOS.glob("*.yaml"):
        texts = load_scenario(path).descriptions
        assert set(texts) == {"ja", "en"} and all(texts.values()), (path.stem, texts)
        assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", texts["ja"]), (path.stem, texts["ja"])
        assert not re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", texts["en"]), (path.stem, texts["en"])
        assert "`" not in texts["ja"] + texts["en"], (path.stem, texts)


def test_a_broken_scenario_says_where(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps:\n  - at: 0\n    order: {}\n    fault: {}\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="step 1"):
        load_scenario(bad)


async def test_joso_drill_is_delivered_confirmed_and_forced_to_exercise(
    engine: RunningEngine, tmp_path: Path
) -> None:
    scenario = load_scenario(SCENARIOS / "joso-demo.yaml")
    runner = DrillRunner(scenario, engine.url, ADMIN_TOKEN, MQTT_URL, speed=20)
    rep = await runner.run()
    assert rep["step_errors"] == []
    kinds = {a for s in rep["steps"] for a in s["by_adapter"]}
    assert kinds == {"broadcaster", "isp", "signage", "radio"}
    for totals in rep["total"].values():
        assert totals["planned"] == totals["delivered"] == totals["confirmed"] > 0
        assert totals["failed"] == 0 and totals["latency_p99_ms"] is not None
    for step in rep["steps"]:
        for alert_id in step["alert_ids"]:
            _status, alert = await engine.get(f"/api/v1/alerts/{alert_id}")
            assert alert["status"] == "Exercise"
    assert runner.fleet.signature_failures == 0


async def test_drill_faults_show_in_the_report(engine: RunningEngine, tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(
        """
name: faults
issuers: [{id: joso, name: 常総市, jurisdiction: ["08211"]}]
receivers:
  - {id: sign-ok, adapter: signage, districts: ["08211"]}
  - {id: sign-down, adapter: signage, districts: ["08211"]}
  - {id: portal-silent, adapter: isp, districts: ["08211"]}
settle_s: 3
steps:
  - {at: 0, name: down, fault: {receiver: sign-down, kind: down}}
  - {at: 0, name: silent, fault: {receiver: portal-silent, kind: no-confirm}}
  - {at: 0.1, name: order, order: {municipality: "08211", level: 4, action: issue, districts: [all], reason: 洪水,
     status: Actual}}
""",
        encoding="utf-8",
    )
    runner = DrillRunner(load_scenario(path), engine.url, ADMIN_TOKEN, MQTT_URL, speed=1)
    rep = await runner.run()
    step = next(s for s in rep["steps"] if s["name"] == "order")
    _status, alert = await engine.get(f"/api/v1/alerts/{step['alert_ids'][0]}")
    assert alert["status"] == "Exercise"  # the file said Actual; a drill never goes out for real
    # As the drill saw them before its receivers stopped (a retry after that meets a closed port).
    rows = {r["subscriber"]: r for r in step["unconfirmed"]}
    assert "sign-ok" not in rows  # confirmed
    assert rows["portal-silent"]["state"] == "delivered"
    # Tried, still being retried when the drill ended (it does not wait for a receiver it took down),
    # then ended by the drill: it says so, and its attempts stay on file.
    assert rows["sign-down"]["state"] == "ended by the drill" and rows["sign-down"]["attempts"] >= 1
    assert rows["sign-down"]["last_error"].startswith("ended by the drill") and "503" in rows["sign-down"]["last_error"]
    # Whatever was planned and never delivered is named, and the drill did not pass.
    assert [(u["step"], u["subscriber"]) for u in rep["undelivered"]] == [("order", "sign-down")]
    assert step["by_adapter"]["signage"]["superseded"] == 1 and step["by_adapter"]["signage"]["pending"] == 0
    from alertd.drills.render import render_text

    assert "NOT DELIVERED (1)" in render_text(rep) and "sign-down" in render_text(rep)
    assert "Fault timeline:" in render_text(rep) and "sign-down down" in render_text(rep)
    assert rep["date"].endswith("+09:00")  # dated in Japan time, as the transmission test's table is


async def test_nankai_drill_sends_jma_warnings_through_the_flash_lane(engine: RunningEngine) -> None:
    shared_data("jmaxml", "37_01_02_240613_VXSE43.xml")
    scenario = load_scenario(SCENARIOS / "nankai-earthquake.yaml")
    runner = DrillRunner(scenario, engine.url, ADMIN_TOKEN, MQTT_URL, speed=10)
    rep = await runner.run()
    assert rep["step_errors"] == []
    by_name = {s["name"]: s for s in rep["steps"]}
    eew = by_name["緊急地震速報（警報）"]
    assert eew["lane"] == "flash" and set(eew["by_adapter"]) == {
        "broadcaster",
        "radio",
    }  # the policy's choice
    assert by_name["大津波警報・津波警報"]["lane"] == "flash"
    assert by_name["避難指示 (串本町 全域)"]["lane"] == "routine"
    radio = rep["total"]["radio"]
    assert (
        radio["delivered"] == radio["planned"] and radio["confirmed"] < radio["planned"]
    )  # 黒潮町 went silent


async def test_transmission_test_reports_each_subscriber(engine: RunningEngine) -> None:
    specs = [
        ReceiverSpec("radio-ok", "radio", ["08211"], transport="mqtt"),
        ReceiverSpec("tv-ok", "broadcaster", ["08"]),
        ReceiverSpec("sign-silent", "signage", ["13101"]),
        ReceiverSpec("portal-down", "isp", ["47201"]),
    ]
    fleet = Fleet(specs, engine.url, MQTT_URL)
    await fleet.start()
    try:
        for body in fleet.subscriber_bodies():
            await engine.add_subscriber(**body)
        fleet.apply_fault("sign-silent", "no-confirm")
        fleet.apply_fault("portal-down", "down")
        env = {**os.environ, "ALERTD_ADMIN_TOKEN": ADMIN_TOKEN}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alertd", "test-broadcast", "--url", engine.url, "--wait", "4", "--json",
            str(ROOT / ".run-test-broadcast.json"), "--csv", str(ROOT / ".run-test-broadcast.csv"),
            "--districts", "08", "13101", "47201", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert proc.returncode == 1, out.decode()  # someone failed
        result = json.loads((ROOT / ".run-test-broadcast.json").read_text(encoding="utf-8"))
        by = {s["subscriber"]: s for s in result["subscribers"]}
        assert by["radio-ok"]["result"] == "confirmed" and by["radio-ok"]["confirm_latency_ms"] is not None
        assert by["tv-ok"]["result"] == "confirmed"
        assert by["sign-silent"]["result"] == "unconfirmed", by["sign-silent"]
        assert by["portal-down"]["result"] == "failed" and "503" in by["portal-down"]["last_error"]
        assert "portal-down" in out.decode()
        # Every municipality in scope by name, those no receiver covers included, as published.
        towns = {t["municipality"]: t for t in result["municipalities"]}
        assert len([t for t in towns if t.startswith("08")]) == 44  # all of Ibaraki
        assert towns["08211"]["name"] == "茨城県常総市" and towns["08211"]["result"] == "confirmed"
        assert towns["13101"]["result"] == "unconfirmed"
        assert towns["47201"]["result"] == "failed" and towns["47201"]["receivers"][0]["cause"] == "HTTP 503"
        # tv-ok covers all of Ibaraki, but a prefecture-wide receiver is no town's own: the other
        # 43 towns had no receiver of their own, and the published table says so.
        assert result["summary"]["no_receiver"] == 43
        assert [r["subscriber"] for r in towns["08211"]["receivers"]] == ["radio-ok"]
        csv_text = (ROOT / ".run-test-broadcast.csv").read_text(encoding="utf-8-sig")
        assert "茨城県常総市,08211,radio-ok,confirmed," in csv_text and ",portal-down,failed,HTTP 503" in csv_text
        assert "茨城県水戸市,08201,-,no receiver," in csv_text

        # The gauge is set when the test's wait ends on the server, a moment after the CLI's.
        async def gauge_counts_the_failure() -> bool:
            _status, text = await engine.get("/metrics")
            return 'alertd_test_broadcast_subscribers{result="failed"} 1.0' in text

        await until(gauge_counts_the_failure, what="the transmission-test gauge to count one failed subscriber")

        # Final means final: retries to the dead portal stop with the test (its delivery
        # expires), and the published result never changes afterwards.
        async def portal_given_up() -> bool:
            rows = await engine.deliveries(result["alert_id"])
            return any(r["subscriber"] == "portal-down" and r["state"] in ("expired", "failed") for r in rows)

        await until(portal_given_up, what="the dead portal's test delivery to end with the test")
        attempts = next(r["attempts"] for r in await engine.deliveries(result["alert_id"])
                        if r["subscriber"] == "portal-down")  # fmt: skip
        status, later = await engine.get(f"/api/v1/test-broadcasts/{result['id']}", headers=engine.admin)
        assert status == 200 and later["final"] is True
        assert later["summary"] == result["summary"] and later["subscribers"] == result["subscribers"]
        rows = await engine.wait_deliveries(result["alert_id"], {"confirmed", "delivered", "failed", "expired"})
        assert next(r["attempts"] for r in rows if r["subscriber"] == "portal-down") == attempts
    finally:
        (ROOT / ".run-test-broadcast.json").unlink(missing_ok=True)
        (ROOT / ".run-test-broadcast.csv").unlink(missing_ok=True)
        await fleet.stop()


async def test_the_flood_day_drill_checks_every_view_after_every_step(engine: RunningEngine) -> None:
    """The ten-step 常総市 day: after each step the model, the active list, the Atom feed and
    the retained MQTT state all show the per-district levels written in the scenario."""
    scenario = load_scenario(SCENARIOS / "joso-flood-day.yaml")
    assert len(scenario.steps) == 10 and all(step.expect for step in scenario.steps)
    runner = DrillRunner(scenario, engine.url, ADMIN_TOKEN, MQTT_URL, speed=20,
                         topic_prefix=engine.engine.settings.topic_prefix)  # fmt: skip
    rep = await runner.run()
    assert rep["step_errors"] == [] and rep["view_mismatches"] == [], rep["steps"]
    assert all(s["views"] == [] for s in rep["steps"])
    from alertd.drills.render import render_markdown

    # The Markdown a drill office hands on shows what was expected beside what was seen.
    md = render_markdown(rep)
    assert "| step | expected | seen | views |" in md and "as expected, in every view" in md


async def test_a_view_that_differs_from_the_expectation_is_reported(engine: RunningEngine, tmp_path: Path) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(
        """
name: wrong-expectation
issuers: [{id: joso, name: 常総市, jurisdiction: ["08211"]}]
receivers: [{id: tv, adapter: broadcaster, districts: ["08"]}]
steps:
  - at: 0
    name: 避難指示 (三坂町)
    order: {municipality: "08211", level: 4, action: issue, districts: [三坂町], reason: 洪水}
    expect: {"08211": {三坂町: 5}}
""",
        encoding="utf-8",
    )
    runner = DrillRunner(load_scenario(path), engine.url, ADMIN_TOKEN, MQTT_URL, speed=20,
                         topic_prefix=engine.engine.settings.topic_prefix)  # fmt: skip
    runner.views_timeout = 2.0
    rep = await runner.run()
    assert rep["view_mismatches"] == ["避難指示 (三坂町)"]
    (step,) = rep["steps"]
    assert any("expected level 5" in p and "level 4" in p for p in step["views"])


async def test_a_drill_never_replaces_live_settings_and_leaves_nothing_behind(engine: RunningEngine) -> None:
    """Run against a live engine, a drill once re-pointed real broadcasters at its own port
    and gave a real desk a new token, and left both behind. Then it refused to start where the
    live ids were the scenario's own (a town set up from the example config could run none of its
    drills): now each run registers its issuers and receivers under ids of its own."""
    scenario = load_scenario(SCENARIOS / "joso-demo.yaml")
    live_desk = scenario.issuers[0]["id"]
    token = await engine.add_issuer(live_desk, ["08211"])
    # As the example config has it: a live broadcaster that does not take drills.
    live = {"id": "nhk-mito", "adapter": "broadcaster", "endpoint": "http://127.0.0.1:9/cap", "districts": ["08"],
            "drills": False}
    await engine.add_subscriber(**live)
    runner = DrillRunner(scenario, engine.url, ADMIN_TOKEN, MQTT_URL, speed=20)
    assert runner.issuer_ids[live_desk].startswith("drill-") and runner.receiver_ids["nhk-mito"] != "nhk-mito"
    rep = await runner.run()
    assert rep["step_errors"] == [] and rep["cleanup"]["errors"] == [] and not rep["undelivered"], rep
    # The report names the drill's receivers as the scenario does; the engine knew them by the run's ids.
    assert {d["subscriber"] for d in rep["deliveries"]} == {r.id for r in scenario.receivers}
    assert all(d["simulated"] for d in rep["deliveries"])  # the live broadcaster takes no drill
    assert rep["engine_ids"]["receivers"]["nhk-mito"] in rep["cleanup"]["removed_receivers"]
    status, _ = await engine.get(f"/api/v1/issuers/{live_desk}", headers=engine.admin)
    assert status == 200  # still there, and its token still works
    status, _ = await engine.post("/api/v1/evacuation-orders/preview", token, {
        "municipality": "08211", "level": 3, "action": "issue", "districts": ["all"], "reason": "洪水",
        "status": "Exercise"})  # fmt: skip
    assert status == 200
    status, subscriber = await engine.get("/api/v1/subscribers/nhk-mito", headers=engine.admin)
    assert status == 200 and subscriber["endpoint"] == live["endpoint"], subscriber
    for path, left in (("/api/v1/issuers", [live_desk]), ("/api/v1/subscribers", ["nhk-mito"])):
        status, rows = await engine.get(path, headers=engine.admin)
        assert status == 200 and [r["id"] for r in rows] == left, (path, rows)
    sent = {a for s in rep["steps"] for a in s["alert_ids"]}
    status, standing = await engine.get("/api/v1/alerts?active=true&status=Exercise")
    assert status == 200 and not sent & {a["id"] for a in standing}, standing

    # Should a live id ever be the run's own, the drill still refuses, in Japanese first, and sends nothing.
    clash = DrillRunner(scenario, engine.url, ADMIN_TOKEN, MQTT_URL, speed=20)
    await engine.add_issuer(clash.issuer_ids[live_desk], ["08211"])
    with pytest.raises(ScenarioError, match="never replaces live settings") as refused:
        await clash.run()
    assert str(refused.value).startswith("この訓練が登録する発信者・受信者のID"), refused.value
    assert clash.created_issuers == clash.created_subscribers == []


def test_a_town_no_receiver_covers_is_listed_and_causes_are_named_as_published() -> None:
    """The national test's tables list every town, those with no receiver too, and say why a
    receiver failed: refused, timeout or the HTTP status."""
    from alertd.testbroadcast import cause, municipality_results
    from geo.registry import Registry

    receivers = [{"subscriber": "radio-joso", "result": "confirmed", "cause": None}]
    towns = municipality_results(Registry.default(), ["08211", "08220"], receivers, {"radio-joso": ["08211"]})
    assert [(t["name"], t["result"]) for t in towns] == [("茨城県常総市", "confirmed"), ("茨城県つくば市", "no receiver")]
    assert cause("HTTP 503 from http://gw/radio") == "HTTP 503"
    assert cause("no answer from http://gw within 5 s") == "timeout"
    assert cause("Cannot connect to host 127.0.0.1:9 ssl:default [Connect call failed]") == "refused"
    assert cause(None) is None


def test_drill_validate_names_every_problem_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt 字, a cancel of a step that does not exist, a town outside the desk's
    jurisdiction, a duplicated step name: all said at once, with their steps, and nothing sent."""
    from alertd.drills.cli import main as drill

    path = tmp_path / "bad.yaml"
    path.write_text("""
name: bad
issuers: [{id: joso, name: 常総市, jurisdiction: ["08211"]}]
steps:
  - {at: 0, name: 避難指示, order: {municipality: "08211", level: 4, action: issue, districts: [三坂町, 存在しない町],
     reason: 洪水, status: Exercise}}
  - {at: 1, name: 避難指示, order: {municipality: "08220", level: 4, action: issue, districts: [all], reason: 洪水,
     status: Exercise}}
  - {at: 2, name: 取消, cancel: 避難所開設}
  - {at: 3, name: 避難勧告, order: {municipality: "08211", level: 2, action: issue, districts: [all], reason: 洪水,
     status: Exercise}}
  - {at: 4, name: 故障, fault: {receiver: radio-nowhere, kind: down}}
""", encoding="utf-8")
    assert drill(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "level 2 is not 3, 4 or 5" in out and "'radio-nowhere', which is not one of the scenario's receivers" in out
    assert "'存在しない町' is not a district of 茨城県常総市" in out
    assert "outside the jurisdiction of joso" in out and "used 2 times" in out
    assert "cancels '避難所開設', which is not the name of an earlier step" in out
    # 'run' refuses the same scenario before it registers or sends anything.
    assert drill(["run", str(path), "--url", "http://127.0.0.1:9", "--admin-token", "x" * 20,
                  "--mqtt-url", "mqtt://127.0.0.1:9"]) == 2  # fmt: skip
    assert "nothing was sent" in capsys.readouterr().err
    # By name, from any directory: a drill's files are found relative to the scenario file
    # ('drill run nankai-earthquake' once worked only from the project root).
    monkeypatch.chdir(tmp_path)
    for shipped in sorted(SCENARIOS.glob("*.yaml")):
        if "shared/data" in shipped.read_text(encoding="utf-8") and not SHARED.exists():
            continue  # needs ../shared beside the project
        assert drill(["validate", shipped.stem]) == 0, capsys.readouterr().out


async def test_the_prefecture_drill_shows_every_town_and_every_missed_loudspeaker(engine: RunningEngine) -> None:
    """The shipped 44-town drill: the prefecture issues and lifts for its towns, two gateways are
    down, and the closing transmission test lists all 44 municipalities by name with the two that
    failed and why; what the broken gateways missed is named, and the drill does not pass."""
    scenario = load_scenario(SCENARIOS / "ibaraki-44.yaml")
    began = time.monotonic()
    rep = await DrillRunner(scenario, engine.url, ADMIN_TOKEN, MQTT_URL, speed=20).run()
    took = time.monotonic() - began
    assert rep["step_errors"] == [], rep["step_errors"]
    # Within twice what its steps and the test's wait need: the drill no longer sits out its
    # settle_s (20 s) waiting for the gateways it took down itself.
    needs = scenario.steps[-1].at / 20 + float(scenario.steps[-1].spec["wait_s"])
    assert took < 2 * needs, (took, needs)
    test = next(s["test_broadcast"] for s in rep["steps"] if s["test_broadcast"])
    towns = {t["name"]: t for t in test["municipalities"]}
    assert len(towns) == 44 and test["summary"]["no_receiver"] == 0
    assert towns["茨城県行方市"]["result"] == towns["茨城県久慈郡大子町"]["result"] == "failed"
    assert {r["cause"] for r in towns["茨城県行方市"]["receivers"] if r["result"] == "failed"} == {"HTTP 503"}
    assert sum(t["result"] == "confirmed" for t in towns.values()) == 42
    missed = {(u["step"], u["subscriber"]) for u in rep["undelivered"]}
    assert ("高齢者等避難 (大子町)", "drill-radio-08364") in missed
    assert all(sub in ("drill-radio-08233", "drill-radio-08364") for _step, sub in missed), missed
    assert len(rep["cleanup"]["removed_receivers"]) == 45 and rep["cleanup"]["errors"] == []
    # Town by town, by name, as the office reports it; a CSV of every delivery; and a comparison
    # with an earlier drill that names the towns that changed.
    namegata = rep["by_municipality"]["茨城県行方市"]
    assert namegata["planned"] > namegata["delivered"] and rep["by_municipality"]["茨城県水戸市"]["failed"] == 0
    assert "expired" in namegata  # shown apart from the other failures
    from alertd.drills.render import render_text

    # Each last error in full ("not sent yet: the receiver failed 5 times in a row (last: HTTP 503 fro" was cut).
    shown = render_text(rep)
    assert all(u["last_error"] in shown for u in rep["undelivered"] if u["last_error"]), rep["undelivered"]
    from alertd.drills.render import compare, render_markdown, write_csv

    csv_path = ROOT / ".run-drill.csv"
    try:
        write_csv(rep, str(csv_path))
        text = csv_path.read_text(encoding="utf-8-sig")
        assert text.startswith("step,municipality,receiver,adapter,state,attempts,last_error")
        assert "高齢者等避難 (大子町),茨城県久慈郡大子町,drill-radio-08364,radio," in text
        # Published without the receivers' internal addresses; simulated receivers marked as such.
        assert "127.0.0.1" not in text and "HTTP 503" in text and text.splitlines()[1].endswith(",simulated")
        md = render_markdown(rep)
        assert "## Fault timeline" in md and "## Totals by adapter" in md and "127.0.0.1" not in md
    finally:
        csv_path.unlink(missing_ok=True)
    earlier = {**rep, "by_municipality": {**rep["by_municipality"],
                                          "茨城県行方市": {**namegata, "delivered": namegata["planned"]}}}  # fmt: skip
    said = compare(rep, earlier)
    assert "茨城県行方市" in said and "茨城県水戸市" not in said


async def test_a_drill_reaches_its_own_receivers_and_no_live_loudspeaker_that_did_not_opt_in(
    engine: RunningEngine, sink: Sink, tmp_path: Path
) -> None:
    """Run with --url, a desk-order drill once went to every live gateway of its towns: a live
    loudspeaker could speak 【訓練】 to a town that was not in the drill. One rule, whatever sent
    the drill (the drill runner, a desk, JSON): an Exercise reaches the drill's own receivers and
    receivers that opted in, never a live gateway or broadcaster that did not. The transmission test
    a drill runs as a step is part of the drill too."""
    live = {"live-radio": "radio", "live-tv": "broadcaster", "live-signage": "signage"}
    for sid, adapter in live.items():
        await engine.add_subscriber(id=sid, adapter=adapter, endpoint=f"{sink.url}/{sid}", districts=["08211"],
                                    drills=False)  # fmt: skip
    await engine.add_subscriber(id="radio-in-the-drill", adapter="radio", endpoint=f"{sink.url}/opted-in",
                                districts=["08211"], drills=True)  # fmt: skip
    path = tmp_path / "desk-drill.yaml"
    path.write_text("""
name: desk-drill
issuers: [{id: drill-joso, name: 常総市, jurisdiction: ["08211"]}]
receivers: [{id: drill-radio-joso, adapter: radio, districts: ["08211"]}]
settle_s: 1
steps:
  - {at: 0, name: 避難指示, order: {municipality: "08211", level: 4, action: issue, districts: [all], reason: 洪水}}
  - {at: 0.5, name: 解除, order: {municipality: "08211", level: 4, action: lift, districts: [all], reason: 洪水}}
  - {at: 0.6, name: 情報伝達試験, test_broadcast: {districts: ["08211"], wait_s: 1}}
""", encoding="utf-8")
    rep = await DrillRunner(load_scenario(path), engine.url, ADMIN_TOKEN, MQTT_URL, speed=1).run()
    assert rep["step_errors"] == [] and rep["undelivered"] == [], rep["undelivered"]
    sent = [a for s in rep["steps"] for a in s["alert_ids"]]
    # A desk's own Exercise order and a JSON alert take the same rule as the drill runner's.
    joso = await engine.add_issuer("joso-desk", ["08211"])
    for path_, body in (("/api/v1/evacuation-orders", {**ORDER_4, "status": "Exercise"}),
                        ("/api/v1/alerts", {"status": "Exercise", "event": "大雨警報", "districts": ["08211"]})):
        status, answer = await engine.post(path_, joso, body)
        assert status == 202, answer
        sent.append(answer["id"])
    for alert_id in sent:
        rows = await engine.wait_deliveries(alert_id, {"delivered", "confirmed", "superseded"})
        got = {r["subscriber"] for r in rows if r["adapter"] != "feed"}
        assert not got & set(live), (alert_id, got)
        assert "radio-in-the-drill" in got, (alert_id, got)
    assert not [r for r in sink.received if r["path"] != "/opted-in"], "a live receiver heard the drill"
    # The same towns' live receivers still get what is real.
    status, answer = await engine.post("/api/v1/evacuation-orders", joso, {**ORDER_4, "status": "Actual"})
    assert status == 202, answer
    rows = await engine.wait_deliveries(answer["id"], {"delivered", "confirmed"})
    assert set(live) <= {r["subscriber"] for r in rows}


async def test_the_transmission_test_says_what_it_is_and_its_table_carries_date_and_id(
    engine: RunningEngine, sink: Sink, tmp_path: Path
) -> None:
    """A gateway heard 「これは、Jアラートのテストです」 from alertd, which is not J-Alert; and the
    published CSV did not say which test, or when, its rows came from."""
    from alertd.testbroadcast import write_csv

    await engine.add_subscriber(id="radio-joso", adapter="radio", endpoint=f"{sink.url}/radio", districts=["08211"])
    status, started = await engine.post("/api/v1/test-broadcasts", ADMIN_TOKEN, {"districts": ["08211"], "wait_s": 1})
    assert status == 202, started
    await sink.wait_for(1)
    spoken = json.loads(sink.at("/radio")[0]["body"])["text"]
    assert "これは、防災情報の伝達試験です。" in spoken and "Jアラート" not in spoken, spoken

    async def final() -> dict[str, object] | None:
        status, found = await engine.get(f"/api/v1/test-broadcasts/{started['id']}", headers=engine.admin)
        return found if status == 200 and found["final"] else None

    result = await until(final, what="the transmission test's final result")
    write_csv(result, str(tmp_path / "result.csv"))
    header, row = (tmp_path / "result.csv").read_text(encoding="utf-8-sig").splitlines()
    assert header == "municipality,code,receiver,result,cause,date,test_id"  # the old five first, as before
    town, code, receiver, outcome, _cause, date, test_id = row.split(",")
    assert (town, code, receiver, outcome) == ("茨城県常総市", "08211", "radio-joso", "unconfirmed")
    assert test_id == started["id"] and date.endswith("+09:00")
    from datetime import datetime

    assert abs(datetime.fromisoformat(date).timestamp() - float(started["started"])) < 1
    # The id reads as the same moment as the date (both Japan time), not the server's zone.
    named = datetime.strptime(test_id.split("-")[0] + "+0900", "%Y%m%dT%H%M%S%z")
    assert abs(named.timestamp() - float(started["started"])) < 2, (test_id, date)


async def test_an_engine_told_to_stop_its_jma_ingest_does_not_restart_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every embedded drill watches a drop folder; at its end the engine tells the JMA ingest to
    hand its lease over before it stops the rest, and the supervisor took the ingest's return for
    a fault: 'task.restarting jma-ingest … it returned while alertd was still running' at error
    level, after a drill that went well."""
    from tests.conftest import start_engine, stop_engine

    monkeypatch.setenv("ALERTD_JMA_SPOOL", str(tmp_path))
    monkeypatch.setenv("ALERTD_JMA_SPOOL_INTERVAL_S", "0.05")
    monkeypatch.delenv("ALERTD_JMA_FEED_BASE", raising=False)
    running = await start_engine()
    try:
        engine = running.engine
        task, health = engine.supervisor._running["jma-ingest"], engine.supervisor.health("jma-ingest")
        engine._jma_stop.set()  # what Engine.stop does first
        await until(lambda: task.done() or health.restarts > 0, what="the JMA ingest to end")
        assert health.restarts == 0 and task.done()
    finally:
        await stop_engine(running)


async def test_the_test_broadcast_counts_towns_lists_prefecture_wide_receivers_apart_and_saves_the_final_result(
    engine: RunningEngine, tmp_path: Path
) -> None:
    """A drill office read 'confirmed 43 … no receiver 0' for 44 towns with 42 confirmed rows: the
    headline counted NHK's prefecture-wide receiver as a town, and the CSV and Markdown left it out.
    And --json saved "final": false when everyone confirmed early, while a later GET said true."""
    specs = [ReceiverSpec("radio-joso", "radio", ["08211"]), ReceiverSpec("tv-ibaraki", "broadcaster", ["08"])]
    fleet = Fleet(specs, engine.url, MQTT_URL)
    await fleet.start()
    try:
        for body in fleet.subscriber_bodies():
            await engine.add_subscriber(**body)
        env = {**os.environ, "ALERTD_ADMIN_TOKEN": ADMIN_TOKEN}
        saved, csv_path, md_path = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.md"
        began = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alertd", "test-broadcast", "--url", engine.url, "--wait", "20", "--districts",
            "08211", "--json", str(saved), "--csv", str(csv_path), "--markdown", str(md_path), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out_b, _ = await proc.communicate()
        out = out_b.decode()
        assert proc.returncode == 0, out
        assert time.monotonic() - began < 15  # it ended when everyone confirmed, not after its wait
        result = json.loads(saved.read_text(encoding="utf-8"))
        assert result["final"] is True
        status, later = await engine.get(f"/api/v1/test-broadcasts/{result['id']}", headers=engine.admin)
        # The saved file is the frozen result itself, with its verdict and its counts in one unit each.
        assert result.pop("verdict") == {"passed": True, "result": "PASSED", "reasons": [], "lenient": False,
                                         "final": True}  # fmt: skip
        assert result.pop("totals") == {
            "municipalities": {"confirmed": 1, "unconfirmed": 0, "failed": 0, "no_receiver": 0},
            "receivers": {"confirmed": 2, "unconfirmed": 0, "failed": 0}}
        assert status == 200 and later == result
        assert out.rstrip().splitlines()[-1].startswith("PASSED: every municipality in scope passed"), out
        # The headline counts towns (one in scope), the prefecture-wide receiver apart.
        assert ("municipalities 1: confirmed 1, delivered but not confirmed 0, failed 0, no receiver 0; "
                "receivers for more than one town 1: confirmed 1") in out, out  # fmt: skip
        assert "茨城県 (全域)" in out and "tv-ibaraki" in out
        assert [w["name"] for w in result["wide_receivers"]] == ["茨城県 (全域)"]
        csv_text = csv_path.read_text(encoding="utf-8-sig")
        assert csv_text.startswith("municipality,code,receiver,result,cause,date,test_id,verdict,lenient,final")
        assert "茨城県常総市,08211,radio-joso,confirmed," in csv_text and csv_text.rstrip().endswith(",PASSED,no,yes")
        assert "茨城県 (全域),08,tv-ibaraki,confirmed," in csv_text
        md = md_path.read_text(encoding="utf-8")
        assert "**PASSED: every municipality in scope passed (not confirming fails).** Final result: yes" in md
        assert "## Receivers for more than one town" in md and "| 茨城県 (全域) | 08 | tv-ibaraki | confirmed |" in md
    finally:
        await fleet.stop()


async def test_a_drill_test_that_a_town_did_not_confirm_fails_and_every_miss_is_named(
    engine: RunningEngine, sink: Sink, tmp_path: Path
) -> None:
    """From the README alone, a drill office found: a drill's transmission test that one town's
    gateway did not confirm exited 0; a live gateway that opted into drills showed as town '-';
    and the orders a broken gateway never got showed as 'superseded', not as missed."""
    await engine.add_subscriber(id="live-kashima", adapter="radio", endpoint=f"{sink.url}/kashima",
                                districts=["08222"], drills=True)  # fmt: skip
    previous = tmp_path / "previous.json"
    previous.write_text(json.dumps({"scenario": "miss-2025", "run_id": "earlier", "by_municipality": {
        "茨城県鉾田市": {"planned": 2, "delivered": 1, "confirmed": 1, "failed": 0, "pending": 1}}}),
        encoding="utf-8")  # fmt: skip
    path = tmp_path / "miss.yaml"
    path.write_text("""
name: miss
issuers: [{id: drill-pref, name: 茨城県, jurisdiction: ["08"]}]
receivers:
  - {id: drill-radio-joso, adapter: radio, districts: ["08211"]}
  - {id: drill-radio-tsukuba, adapter: radio, districts: ["08220"]}
  - {id: drill-radio-hokota, adapter: radio, districts: ["08234"]}
settle_s: 2
steps:
  - {at: 0, name: 無応答, fault: {receiver: drill-radio-tsukuba, kind: no-confirm}}
  - {at: 0, name: 故障, fault: {receiver: drill-radio-hokota, kind: down}}
  - {at: 0.1, name: 避難指示 (鉾田市), order: {municipality: "08234", level: 4, action: issue, districts: [all],
     reason: 洪水}}
  - {at: 0.2, name: 高齢者等避難 (鹿嶋市), order: {municipality: "08222", level: 3, action: issue, districts: [all],
     reason: 洪水}}
  - {at: 1.5, name: 解除 (鉾田市), order: {municipality: "08234", level: 4, action: lift, districts: [all],
     reason: 洪水}}
  - {at: 1.6, name: 情報伝達試験, test_broadcast: {districts: ["08211", "08220", "08234"], wait_s: 1}}
""", encoding="utf-8")
    saved = tmp_path / "rep.json"
    env = {**os.environ, "ALERTD_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd", "drill", "run", str(path), "--url", engine.url, "--mqtt-url", MQTT_URL,
        "--topic-prefix", engine.engine.settings.topic_prefix, "--json", str(saved), "--compare", str(previous), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out_b, err = await proc.communicate()
    out = out_b.decode()
    assert proc.returncode == 1, out + err.decode()
    assert "is a report of scenario 'miss-2025', not 'miss'" in err.decode()  # said, and compared all the same
    rep = json.loads(saved.read_text(encoding="utf-8"))
    assert rep["step_errors"] == [], rep["step_errors"]
    # The saved report says it is final, and its verdict with every reason.
    assert rep["final"] is True and rep["verdict"]["passed"] is False and rep["verdict"]["result"] == "FAILED"
    assert "2 town(s) failing the transmission test (2 receiver(s))" in rep["verdict"]["reasons"]
    # The test's failure is named, receiver and cause, as 'alertd test-broadcast' would fail it.
    assert [(f["municipality"], f["subscriber"], f["result"]) for f in rep["test_failures"]] == [
        ("茨城県つくば市", "drill-radio-tsukuba", "unconfirmed"), ("茨城県鉾田市", "drill-radio-hokota", "failed")]
    assert "TRANSMISSION TEST NOT PASSED (2 town(s), 2 receiver(s))" in out and "delivered, but no confirmation" in out, out
    # The live gateway that opted in is attributed to its town from its districts.
    assert "茨城県鹿嶋市" in rep["by_municipality"] and "-" not in rep["by_municipality"], rep["by_municipality"]
    kashima = [d for d in rep["deliveries"] if d["subscriber"] == "live-kashima"]
    assert {(d["municipality"], d["code"]) for d in kashima} == {("茨城県鹿嶋市", "08222")}
    assert all(d["alert_id"] and d["delivered_at"].endswith("+09:00") for d in kashima), kashima
    assert out.rstrip().splitlines()[-1].startswith("FAILED: ")
    assert "2 town(s) failing the transmission test (2 receiver(s))" in out.rstrip().splitlines()[-1]
    # The test's step row and its town read the test's frozen result (the same as its table): the
    # broken gateway failed it, however its retries went on after the test ended.
    radio = next(s for s in rep["steps"] if s["test_broadcast"])["by_adapter"]["radio"]
    assert (radio["confirmed"], radio["failed"], radio["pending"], radio["superseded"]) == (1, 1, 0, 0), radio
    test_step = next(s for s in rep["steps"] if s["test_broadcast"])
    assert {u["subscriber"]: u["state"] for u in test_step["unconfirmed"]} == {
        "drill-radio-tsukuba": "delivered", "drill-radio-hokota": "failed"}
    # The 避難指示 the broken gateway never got is missed, not hidden as superseded by the lift.
    missed = {(u["step"], u["state"]) for u in rep["undelivered"] if u["subscriber"] == "drill-radio-hokota"}
    assert ("避難指示 (鉾田市)", "superseded before delivery") in missed or (
        "避難指示 (鉾田市)", "ended by the drill") in missed, rep["undelivered"]
    assert rep["by_municipality"]["茨城県鉾田市"]["missed"] == 3  # the order, its lift, and the test
    # --compare names the change in missed deliveries, in the JSON too.
    (changed,) = [c for c in rep["compare"]["changed"] if c["municipality"] == "茨城県鉾田市"]
    assert (changed["missed_then"], changed["missed_now"]) == (1, 3)


def test_drill_validate_catches_what_would_fail_at_run_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Validate passed scenarios that then failed mid-drill: a shelter status 'packed', an order
    without 'reason', a misspelt town (鹿島市 for 鹿嶋市) or an unknown code in expect:, and a
    scenario without receivers: whose orders are for a town the default fleet does not serve."""
    from alertd.drills.cli import main as drill

    path = tmp_path / "late.yaml"
    path.write_text("""
name: late
issuers: [{id: pref, name: 茨城県, jurisdiction: ["08"]}]
steps:
  - {at: 0, name: 避難所開設, shelter: {municipality: "08211", shelters: [{name: 水海道小学校, status: packed}]}}
  - {at: 1, name: 避難指示, order: {municipality: "08222", level: 4, action: issue, districts: [all]},
     expect: {"鹿島市": {flood: 4}, "08999": {flood: 4}, "08211": {三坂町: 4, 存在しない町: 4}}}
""", encoding="utf-8")
    assert drill(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "step '避難所開設': shelter '水海道小学校': status 'packed' is not open, closed or full" in out, out
    assert "step '避難指示': order" in out and "'reason'" in out
    assert "step '避難指示': expect: '鹿島市' is not a municipality code" in out and "08222 (茨城県鹿嶋市)" in out
    assert "'08999' is not a municipality code" in out
    assert "'存在しない町' is neither a district of 茨城県常総市 nor an alert kind" in out
    assert "the default fleet works only for 茨城県常総市 (08211); it names 茨城県鹿嶋市 (08222)" in out
    assert "6 problem(s)" in out and "三坂町" not in out


def test_a_refused_step_is_shown_whole_and_does_not_widen_the_table() -> None:
    """A 422 in a step row was cut mid-sentence and stretched the adapter column for every row."""
    from alertd.drills.render import render_text

    detail = ("422: The shelter notice is not valid: 'shelters' must be a list of shelters, each with a name, "
              "status open, closed or full, and whole numbers.")  # fmt: skip
    ok = {"planned": 1, "delivered": 1, "confirmed": 1, "failed": 0, "superseded": 0, "pending": 0,
          "latency_p50_ms": 1.0, "latency_p99_ms": 1.0}  # fmt: skip
    step = {"at": 0, "kind": "order", "lane": "routine", "expect": None, "views": None, "test_broadcast": None}
    rep = {"scenario": "s", "run_id": "r", "total": {"radio": ok}, "step_errors": ["避難所開設"], "steps": [
        {**step, "name": "避難指示", "error": None, "by_adapter": {"radio": ok}},
        {**step, "at": 1, "name": "避難所開設", "kind": "shelter", "error": detail, "by_adapter": {}}]}  # fmt: skip
    text = render_text(rep)
    assert detail in text  # whole, ending with its full stop
    table = text.split("\n\n")[1].splitlines()
    assert table[0].startswith("step") and "ERROR" in table[-1]
    # The step table is as wide with the refused step as without it (111 columns, not 180).
    assert len(table[0]) < 120, table[0]
    assert text.splitlines()[-1] == "FAILED: 1 step(s) refused."
    # The Markdown file holds real tables, not the terminal's text in a code block.
    from alertd.drills.render import render_markdown

    md = render_markdown({**rep, "by_municipality": {"茨城県常総市": {"planned": 1, "delivered": 1}},
                          "step_errors": ["避難所開設"]})  # fmt: skip
    assert "```" not in md and "## Steps" in md and "| 0s 避難指示 | routine | radio | 1 |" in md, md
    assert "| 茨城県常総市 | 1 | 1 |" in md and detail in md and md.rstrip().endswith("**FAILED: 1 step(s) refused.**")


async def test_a_drill_reading_other_topics_than_the_engine_says_so(engine: RunningEngine, tmp_path: Path) -> None:
    """With --url and the engine's ALERTD_TOPIC_PREFIX not given, every step read 'the MQTT state
    says nothing' and nothing said why."""
    from alertd.drills.render import render_text

    path = tmp_path / "topics.yaml"
    path.write_text("""
name: topics
issuers: [{id: joso, name: 常総市, jurisdiction: ["08211"]}]
receivers: [{id: tv, adapter: broadcaster, districts: ["08"]}]
settle_s: 1
steps:
  - {at: 0, name: 避難指示, order: {municipality: "08211", level: 4, action: issue, districts: [all], reason: 洪水},
     expect: {"08211": {三坂町: 4}}}
""", encoding="utf-8")
    runner = DrillRunner(load_scenario(path), engine.url, ADMIN_TOKEN, MQTT_URL, speed=20,
                         topic_prefix="elsewhere/alerts/v1")  # fmt: skip
    runner.views_timeout = 1.0
    rep = await runner.run()
    assert rep["view_mismatches"] == ["避難指示"]
    assert "--topic-prefix" in (rep["hint"] or "") and "elsewhere/alerts/v1" in rep["hint"]
    assert "Hint: only the MQTT state said nothing" in render_text(rep)


SILENT_TOWN = """
name: silent-town
issuers: [{id: drill-pref, name: 茨城県, jurisdiction: ["08"]}]
receivers:
  - {id: drill-radio-joso, adapter: radio, districts: ["08211"]}
settle_s: 3
%s
steps:
  - {at: 0, name: 常総市 L4, order: {municipality: "08211", level: 4, action: issue, districts: [all], reason: 洪水}}
  - {at: 0, name: 潮来市 L4, order: {municipality: "08223", level: 4, action: issue, districts: [all], reason: 洪水}}
"""


async def test_a_town_an_order_names_that_no_receiver_covers_fails_the_drill(
    engine: RunningEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A prefecture order for 潮来市, where the drill has no receiver, once passed as 'planned 0':
    the town heard nothing, yet the drill said PASSED. Now validate warns, the town is listed as
    'no receiver', and the drill fails — unless the scenario says that town is expected to."""
    from alertd.drills.cli import main as drill
    from alertd.drills.render import passed, render_markdown, render_text

    path = tmp_path / "silent.yaml"
    path.write_text(SILENT_TOWN % "", encoding="utf-8")
    assert drill(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "no receiver covers 茨城県潮来市 (08223)" in out and "1 warning(s)" in out
    rep = await DrillRunner(load_scenario(path), engine.url, ADMIN_TOKEN, MQTT_URL, speed=20).run()
    assert rep["by_municipality"]["茨城県潮来市"].get("no_receiver") is True
    assert [u["code"] for u in rep["no_receiver"]] == ["08223"] and not passed(rep)
    shown = render_text(rep)
    assert "no receiver" in shown.split("By municipality", 1)[1] and "NO RECEIVER: 茨城県潮来市" in shown
    assert "FAILED:" in shown and "1 town(s) an order named that no receiver covers" in shown
    assert "茨城県潮来市 | no receiver" in render_markdown(rep)
    # Said to be expected: still listed, no longer a failure.
    expected = tmp_path / "expected.yaml"
    expected.write_text(SILENT_TOWN % 'no_receiver_expected: ["08223"]', encoding="utf-8")
    assert drill(["validate", str(expected)]) == 0 and "warning" not in capsys.readouterr().out
    rep = await DrillRunner(load_scenario(expected), engine.url, ADMIN_TOKEN, MQTT_URL, speed=20).run()
    assert rep["no_receiver"] == [] and rep["no_receiver_expected"][0]["code"] == "08223"
    assert rep["by_municipality"]["茨城県潮来市"].get("no_receiver") is True and passed(rep), rep["undelivered"]


async def test_a_drill_ends_every_delivery_it_left_unfinished_so_a_gateway_that_comes_back_hears_nothing(
    engine: RunningEngine, tmp_path: Path
) -> None:
    """A live gateway opted into drills had its port closed; after the drill said it cleaned up, the
    drill's 解除 stayed queued for it (attempts 4, 5…) and, when the port opened, it announced the
    lift of an order it never heard. Now the drill ends every unfinished delivery of its alerts, the
    report reads the states after that, and the gateway that comes back hears only what is real."""
    from aiohttp import web

    from tests.support import free_port

    port = free_port()
    await engine.add_subscriber(id="live-radio-closed", adapter="radio", endpoint=f"http://127.0.0.1:{port}/gw",
                                districts=["08211"], drills=True)  # fmt: skip
    path = tmp_path / "closed.yaml"
    path.write_text("""
name: closed-gateway
issuers: [{id: drill-joso, name: 常総市, jurisdiction: ["08211"]}]
receivers: [{id: drill-radio-joso, adapter: radio, districts: ["08211"]}]
settle_s: 0.5
steps:
  - {at: 0, name: 避難指示, order: {municipality: "08211", level: 4, action: issue, districts: [all], reason: 洪水}}
""", encoding="utf-8")
    rep = await DrillRunner(load_scenario(path), engine.url, ADMIN_TOKEN, MQTT_URL, speed=1).run()
    done = rep["cleanup"]
    assert rep["final"] is True and len(done["cleanup_alerts"]) == 1
    lift = done["cleanup_alerts"][0]
    ended = {(e["alert_id"], e["subscriber"]) for e in done["ended"]}
    order = rep["steps"][0]["alert_ids"][0]
    assert {(order, "live-radio-closed"), (lift, "live-radio-closed")} <= ended, ended
    # The report shows the order ended by the drill (with the error that kept it out), not "queued".
    missed = {u["subscriber"]: u for u in rep["undelivered"]}
    assert missed["live-radio-closed"]["state"] == "ended by the drill", missed
    assert "last error" in missed["live-radio-closed"]["last_error"]
    from alertd.drills.render import render_text

    assert "with 1 cleanup message(s)" in render_text(rep)
    row = next(r for r in await engine.deliveries(lift) if r["subscriber"] == "live-radio-closed")
    assert row["state"] == "superseded" and row["last_error"].startswith("ended by the drill"), row
    assert all(r["state"] not in ("queued", "sent") for r in await engine.deliveries(order))
    # The port opens: a real order gets through, and nothing of the drill ever does.
    heard: list[str] = []

    async def gateway(request: web.Request) -> web.Response:
        heard.append((await request.read()).decode(errors="replace"))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/gw", gateway)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        joso = await engine.add_issuer("joso-desk", ["08211"])
        status, answer = await engine.post("/api/v1/evacuation-orders", joso, {**ORDER_4, "status": "Actual"})
        assert status == 202, answer
        await engine.wait_deliveries(answer["id"], {"delivered", "confirmed"}, timeout=15)
        assert heard and not [h for h in heard if "訓練" in h or "Exercise" in h], heard
    finally:
        await runner.cleanup()


async def test_a_drill_cleanup_says_the_drill_is_over_and_names_the_full_shelter_notice(
    engine: RunningEngine, tmp_path: Path
) -> None:
    """The cleanup Cancels of shelter notices told residents 「…「避難所開設」は取り消します。誤って送信された
    ものです。」, even for the 満員 notice. Now they say the drill is over and name what they cancel."""
    path = tmp_path / "shelters.yaml"
    path.write_text("""
name: shelter-drill
issuers: [{id: drill-joso, name: 常総市, jurisdiction: ["08211"]}]
receivers: [{id: drill-sign-joso, adapter: signage, districts: ["08211"]}]
settle_s: 1
steps:
  - {at: 0, name: 開設, shelter: {municipality: "08211", shelters: [{name: 石下総合体育館, status: open}]}}
  - {at: 0, name: 満員, shelter: {municipality: "08211", shelters: [{name: 水海道体育館, status: full}]}}
""", encoding="utf-8")
    rep = await DrillRunner(load_scenario(path), engine.url, ADMIN_TOKEN, MQTT_URL, speed=20).run()
    cleanup = rep["cleanup"]["cleanup_alerts"]
    assert len(cleanup) == 2, rep["cleanup"]
    said = []
    for alert_id in cleanup:
        _status, alert = await engine.get(f"/api/v1/alerts/{alert_id}", headers=engine.admin)
        ja = next(i for i in alert["infos"] if i["language"].startswith("ja"))
        assert "誤って" not in ja["description"] and "訓練を終了します" in ja["description"], ja
        said.append(ja["description"])
    assert any("「避難所の満員」" in d for d in said) and any("「避難所開設」" in d for d in said), said
    from alertd.drills.render import render_text

    assert "with 2 cleanup message(s)" in render_text(rep)
    # Only an Exercise Cancel may say a drill ended.
    desk = await engine.add_issuer("joso-desk", ["08211"])
    status, answer = await engine.post("/api/v1/alerts", desk, {"status": "Actual", "msg_type": "Cancel",
                                                              "references": [cleanup[0]], "drill_end": True})  # fmt: skip
    assert status == 422 and "drill_end" in answer["detail"], answer


def test_compare_with_a_file_that_is_missing_or_no_drill_report_stops_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--compare with a mistyped path once ran the whole drill and then said it could not read it;
    a file that was no drill report compared as 'every municipality delivered as before'."""
    from alertd.drills.cli import main as drill

    scenario = str(SCENARIOS / "joso-demo.yaml")
    nothing = ["--url", "http://127.0.0.1:9", "--admin-token", "x" * 20, "--mqtt-url", "mqtt://127.0.0.1:9"]
    assert drill(["run", scenario, "--compare", str(tmp_path / "missing.json"), *nothing]) == 2
    assert "cannot read" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"id": "20261201T100005-3fa2c1", "summary": {}}), encoding="utf-8")
    assert drill(["run", scenario, "--compare", str(other), *nothing]) == 2
    err = capsys.readouterr().err
    assert "is not a drill report" in err and "nothing was sent" in err


def test_drill_validate_warns_of_an_expected_town_in_another_prefecture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """鹿島市 (Saga, 41207) in expect: for an Ibaraki drill was accepted; the drill only 'agreed' that
    nothing stood in a town it never spoke to. 鹿嶋市 (08222) was meant."""
    from alertd.drills.cli import main as drill

    path = tmp_path / "kashima.yaml"
    path.write_text("""
name: kashima
issuers: [{id: drill-pref, name: 茨城県, jurisdiction: ["08"]}]
receivers: [{id: drill-radio-kashima, adapter: radio, districts: ["08222"]}]
steps:
  - {at: 0, name: 避難指示, order: {municipality: "08222", level: 4, action: issue, districts: [all], reason: 洪水},
     expect: {"41207": {鹿島市: 4}}}
""", encoding="utf-8")
    drill(["validate", str(path)])
    out = capsys.readouterr().out
    assert "expect names 佐賀県鹿島市 (41207), which is not in the scenario's prefecture(s)" in out, out
    assert "did you mean 08222 (茨城県鹿嶋市)?" in out, out


async def test_a_drill_stopped_with_sigterm_also_ends_what_it_left_unfinished(
    engine: RunningEngine, tmp_path: Path
) -> None:
    """SIGTERM (a service manager stopping the drill) ends it like its normal end: a live gateway
    whose port is closed keeps no delivery of the drill queued."""
    import signal

    from tests.support import free_port

    await engine.add_subscriber(id="live-radio-down", adapter="radio", endpoint=f"http://127.0.0.1:{free_port()}/gw",
                                districts=["08211"], drills=True)  # fmt: skip
    path = tmp_path / "long.yaml"
    path.write_text("""
name: long
issuers: [{id: drill-joso, name: 常総市, jurisdiction: ["08211"]}]
receivers: [{id: drill-radio-joso, adapter: radio, districts: ["08211"]}]
steps:
  - {at: 0, name: 避難指示, order: {municipality: "08211", level: 4, action: issue, districts: [all], reason: 洪水}}
  - {at: 600, name: 解除, order: {municipality: "08211", level: 4, action: lift, districts: [all], reason: 洪水}}
""", encoding="utf-8")
    env = {**os.environ, "ALERTD_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd", "drill", "run", str(path), "--url", engine.url, "--mqtt-url", MQTT_URL,
        "--topic-prefix", engine.engine.settings.topic_prefix, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip

    async def tried() -> str | None:
        status, alerts = await engine.get("/api/v1/alerts?status=Exercise&limit=10", headers=engine.admin)
        for alert in alerts if status == 200 else []:
            rows = {r["subscriber"]: r for r in await engine.deliveries(alert["id"])}
            if rows.get("live-radio-down", {}).get("attempts", 0) >= 1:
                return str(alert["id"])
        return None

    order = await until(tried, what="the drill's order to be tried at the closed gateway")
    proc.send_signal(signal.SIGTERM)
    _out, err = await proc.communicate()
    assert proc.returncode == 130, err.decode()
    row = next(r for r in await engine.deliveries(order) if r["subscriber"] == "live-radio-down")
    assert row["state"] == "superseded" and row["last_error"].startswith("ended by the drill"), row


async def test_stopping_a_listener_whose_disconnect_is_never_answered_does_not_wait_for_ever() -> None:
    """A drill hung after "settling" until pytest's 300 s timeout on a loaded machine: its
    report waited on stopping its MQTT listeners, and aiomqtt's exit waits for the broker to
    close the connection with no time limit. Stopping now ends such a wait by cancelling again."""
    from alertd.broker import stop_client_task

    leaving = asyncio.Event()

    async def listener() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            leaving.set()
            await asyncio.Event().wait()  # as aiomqtt's __aexit__ waits for the disconnect

    task = asyncio.create_task(listener())
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await stop_client_task(task, seconds=0.05)
    assert leaving.is_set() and task.cancelled()
