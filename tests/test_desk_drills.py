"""The console's two last pieces, through the API: the history as CAP, and drills and the
transmission test started by a town's desk.

- ``GET /api/v1/history?format=cap`` is a zip of the listed issuances' CAP 1.2 documents, each
  valid against the OASIS schema and byte for byte the alert's own ``.cap``; same filters and
  jurisdiction as the other exports.
- An ``operator`` of 常総市 starts a shipped drill of 常総市 and a transmission test of 常総市;
  anything beyond the town (ibaraki-44, another town, a national scenario) is a 403 problem, as
  are people without the operator role; the audit trail names who started what.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from lxml import etree

from alertd.xmlsafe import load_schema
from tests.conftest import ADMIN_TOKEN, RunningEngine, start_engine, stop_engine
from tests.support import CAP_XSD, shared_data, until
from tests.test_accounts import audit_entries, call, login, make_user

PROBLEM = "application/problem+json"


@pytest_asyncio.fixture
async def desk() -> AsyncIterator[RunningEngine]:
    running = await start_engine()
    try:
        await running.add_issuer("joso", ["08211"])
        await running.add_issuer("tsukuba", ["08220"])
        yield running
    finally:
        await stop_engine(running)


async def person(e: RunningEngine, username: str, roles: list[str], issuer: str = "joso") -> str:
    totp = await make_user(e, username, roles, issuer=issuer)
    status, session, _ = await login(e, username, totp)
    assert status == 201, session
    return str(session["token"])


def assert_problem(status: int, data: Any, headers: Any, expected: int, slug: str | None = None) -> None:
    assert status == expected, data
    assert headers["Content-Type"].startswith(PROBLEM), headers
    if slug is not None:
        assert data["type"].endswith("/" + slug), data


async def test_history_exports_the_cap_documents_of_what_it_lists(desk: RunningEngine) -> None:
    schema = load_schema(shared_data("cap", CAP_XSD.name))
    tanaka = await person(desk, "tanaka", ["operator"])
    order = {"municipality": "08211", "level": 3, "action": "issue", "districts": ["三坂町"], "reason": "洪水",
             "status": "Exercise", "identifier": "cap-export-1"}  # fmt: skip
    status, sent, _ = await call(desk, "POST", "/api/v1/evacuation-orders", tanaka, order)
    assert status == 202, sent
    lift = {**order, "action": "lift", "identifier": "cap-export-2"}
    status, lifted, _ = await call(desk, "POST", "/api/v1/evacuation-orders", tanaka, lift)
    assert status == 202, lifted

    status, rows, _ = await call(desk, "GET", "/api/v1/history?municipality=08211", tanaka)
    assert status == 200 and {r["alert_id"] for r in rows} == {sent["id"], lifted["id"]}, rows
    status, body, headers = await _raw(desk, "/api/v1/history?municipality=08211&format=cap", tanaka)
    assert status == 200 and headers["Content-Type"] == "application/zip", body[:200]
    assert 'filename="alertd-history-' in headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
        assert len(names) == 2 and all(n.endswith(".xml") for n in names)
        for name in names:
            document = archive.read(name)
            assert schema.validate(etree.fromstring(document)), schema.error_log
            alert_id = name.removesuffix(".xml").split("_", 1)[1]
            status, own, _ = await _raw(desk, f"/api/v1/alerts/{alert_id}.cap", None)
            assert status == 200 and own == document  # what receivers got, byte for byte
            assert b"<status>Exercise</status>" in document
    # The same filters: a day with nothing is an empty zip, not an error.
    status, body, _ = await _raw(desk, "/api/v1/history?since=2020-01-01&until=2020-01-02&format=cap", tanaka)
    assert status == 200 and zipfile.ZipFile(io.BytesIO(body)).namelist() == []
    # The same jurisdiction: つくば市's desk cannot export 常総市's, nor can the admin token (no jurisdiction).
    tsukuba = await person(desk, "sato", ["operator"], issuer="tsukuba")
    assert_problem(*await call(desk, "GET", "/api/v1/history?municipality=08211&format=cap", tsukuba), 403)
    assert_problem(*await call(desk, "GET", "/api/v1/history?format=cap", ADMIN_TOKEN), 403)
    status, mine, _ = await call(desk, "GET", "/api/v1/history", tsukuba)
    assert status == 200 and mine == []
    status, problem, headers = await call(desk, "GET", "/api/v1/history?format=xml", tanaka)
    assert_problem(status, problem, headers, 422)
    assert problem["field"] == "format" and "cap" in problem["detail"]


async def _raw(e: RunningEngine, path: str, token: str | None) -> tuple[int, bytes, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with e.http.get(f"{e.url}{path}", headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers


async def test_a_town_desk_runs_its_own_transmission_test(desk: RunningEngine, sink: Any) -> None:
    # A live portal that does not take drills: the transmission test (Test) reaches it all the same.
    await desk.add_subscriber(id="portal", adapter="isp", endpoint=f"{sink.url}/portal", districts=["08211"],
                              drills=False)  # fmt: skip
    tanaka = await person(desk, "tanaka", ["operator"])
    status, started, _ = await call(desk, "POST", "/api/v1/test-broadcasts", tanaka, {"wait_s": 2})
    assert status == 202, started
    assert started["scope"] == ["08211"]  # its own town, by default
    rows = await desk.wait_deliveries(started["alert_id"], {"delivered", "confirmed"})
    assert [r["subscriber"] for r in rows] == ["portal"]

    async def final() -> dict[str, Any] | None:
        status, result, _ = await call(desk, "GET", f"/api/v1/test-broadcasts/{started['id']}", tanaka)
        assert status == 200, result
        return result if result["final"] else None

    result = await until(final, what="the test's result to be final", timeout=15)
    assert [t["municipality"] for t in result["municipalities"]] == ["08211"]

    # Beyond the town, without the role, or another town reading it: refused, as problems.
    status, problem, headers = await call(
        desk, "POST", "/api/v1/test-broadcasts", tanaka, {"districts": ["08"]}
    )
    assert_problem(status, problem, headers, 403, "outside-jurisdiction")
    auditor = await person(desk, "kato", ["approver", "auditor"])
    status, problem, headers = await call(desk, "POST", "/api/v1/test-broadcasts", auditor, {"wait_s": 2})
    assert_problem(status, problem, headers, 403, "forbidden")
    assert "operator" in problem["detail"]
    sato = await person(desk, "sato", ["operator"], issuer="tsukuba")
    assert_problem(
        *await call(desk, "GET", f"/api/v1/test-broadcasts/{started['id']}", sato), 403, "forbidden"
    )
    # The admin token keeps its whole scope.
    status, anywhere, _ = await call(desk, "POST", "/api/v1/test-broadcasts", ADMIN_TOKEN,
                                     {"districts": ["08"], "wait_s": 1})  # fmt: skip
    assert status == 202 and anywhere["scope"] == ["08"], anywhere
    done = [(e["actor"], e["action"], e["target"]) for e in await audit_entries(desk)]
    assert ("user:tanaka", "test-broadcast", f"test-broadcast:{started['id']}") in done
    assert ("admin", "test-broadcast", f"test-broadcast:{anywhere['id']}") in done
    assert not any(a == "user:kato" and act == "test-broadcast" for a, act, _ in done)


async def test_a_town_desk_runs_a_shipped_drill_of_its_own_town_only(desk: RunningEngine) -> None:
    tanaka = await person(desk, "tanaka", ["operator"])
    status, listing, _ = await call(desk, "GET", "/api/v1/drills", tanaka)
    assert status == 200, listing
    allowed = {s["id"]: s["allowed"] for s in listing["scenarios"]}
    assert allowed["joso-demo"] and allowed["joso-flood-day"]
    # What each is, in the console's two languages (descriptions.ja / .en); description is the Japanese.
    jma = next(s for s in listing["scenarios"] if s["id"] == "jma-sequences")
    assert jma["descriptions"]["ja"].startswith("気象庁の電文") and jma["descriptions"]["en"].startswith("JMA")
    assert jma["description"] == jma["descriptions"]["ja"]
    assert not allowed["ibaraki-44"] and not allowed["missile-alert"] and not allowed["nankai-earthquake"]
    assert listing["running"] is None and listing["test_broadcast_scope"] == [
        {"code": "08211", "name": "茨城県常総市"}
    ]

    # Another town's drill, the whole prefecture's, a national one: 403 problems, nothing started.
    sato = await person(desk, "sato", ["operator"], issuer="tsukuba")
    # A national one says why: what it sends, not where (the desk read 管轄外 for a missile drill).
    for token, scenario, kind in ((sato, "joso-demo", "outside-jurisdiction"), (tanaka, "ibaraki-44", "outside-jurisdiction"),
                                  (tanaka, "missile-alert", "national-only")):  # fmt: skip
        status, problem, headers = await call(desk, "POST", "/api/v1/drills", token, {"scenario": scenario})
        assert_problem(status, problem, headers, 403, kind)
        assert "Nothing was started" in problem["detail"]
    assert_problem(*await call(desk, "POST", "/api/v1/drills", tanaka, {"scenario": "no-such-drill"}), 404)
    status, problem, headers = await call(
        desk, "POST", "/api/v1/drills", tanaka, {"scenario": "joso-demo", "speed": 500}
    )
    assert_problem(status, problem, headers, 422)
    assert problem["field"] == "speed"
    approver = await person(desk, "kato", ["approver"])
    assert_problem(
        *await call(desk, "POST", "/api/v1/drills", approver, {"scenario": "joso-demo"}), 403, "forbidden"
    )

    status, run, _ = await call(
        desk, "POST", "/api/v1/drills", tanaka, {"scenario": "joso-demo", "speed": 10}
    )
    assert status == 202, run
    assert run["started_by"] == "user:tanaka" and run["status"] == "Exercise"
    # One drill at a time on the deployment; another town is told which scenario, not whose.
    assert_problem(
        *await call(desk, "POST", "/api/v1/drills", tanaka, {"scenario": "joso-demo"}), 409, "conflict"
    )
    status, listing, _ = await call(desk, "GET", "/api/v1/drills", sato)
    assert status == 200 and listing["running"] is None  # not つくば市's drill to follow

    async def ended() -> dict[str, Any] | None:
        status, found, _ = await call(desk, "GET", f"/api/v1/drills/{run['id']}", tanaka)
        assert status == 200, found
        return found if found["state"] in ("passed", "failed", "error") else None

    found = await until(ended, what="the drill to end", timeout=60)
    assert found["state"] == "passed", found
    assert [s["name"] for s in found["steps"]][:2] == ["高齢者等避難 (市内全域)", "避難指示 (三坂町・若宮戸)"]
    first = found["steps"][0]["alert_ids"][0]
    # The town's desk reads the drill's boards (its alerts lie in 常総市), another town does not.
    status, board, _ = await call(desk, "GET", f"/api/v1/alerts/{first}/deliveries", tanaka)
    assert status == 200 and board["deliveries"], board
    assert {r["state"] for r in board["deliveries"] if r["adapter"] != "feed"} <= {"delivered", "confirmed"}
    assert any(r["state"] == "confirmed" for r in board["deliveries"])
    assert_problem(*await call(desk, "GET", f"/api/v1/alerts/{first}/deliveries", sato), 403)
    assert_problem(*await call(desk, "GET", f"/api/v1/drills/{run['id']}", sato), 403)
    # Nothing left behind, and the next drill may start.
    status, issuers, _ = await call(desk, "GET", "/api/v1/issuers", ADMIN_TOKEN)
    assert sorted(i["id"] for i in issuers) == ["joso", "tsukuba"]
    status, listing, _ = await call(desk, "GET", "/api/v1/drills", tanaka)
    assert listing["running"] is None
    done = [(e["actor"], e["action"], e["target"], e["detail"]) for e in await audit_entries(desk)]
    assert ("user:tanaka", "drill", f"drill:{run['id']}", {"scenario": "joso-demo", "speed": "10.0"}) in done
    assert [d for d in done if d[1] == "drill"] == [
        d for d in done if d[0] == "user:tanaka" and d[1] == "drill"
    ]


async def test_a_town_set_up_from_the_example_config_runs_its_shipped_drills(sink: Any, tmp_path: Any) -> None:
    """The trial's town, configured from config/alertd.example.yaml, could run none of its drills:
    the scenarios' joso-desk, nhk-mito, radio-joso were the config's live ids and the runner refused
    — while the console showed 訓練を開始しました. Now a drill's issuers and receivers have ids of
    their run; the console's start answers only once the drill has started, and `alertd drill run
    --url` runs too. The live receivers (which do not take drills) hear nothing."""
    import asyncio
    import sys

    import yaml

    from tests.conftest import MQTT_URL, make_settings
    from tests.support import ROOT

    data = yaml.safe_load((ROOT / "config" / "alertd.example.yaml").read_text(encoding="utf-8"))
    for sub in data["subscribers"]:  # the ids as shipped; the endpoints here, to see nothing arrives
        sub["endpoint"] = f"{sink.url}/{sub['id']}" if sub["adapter"] != "radio" else f"{MQTT_URL}/live/{sub['id']}"
    seed = tmp_path / "alertd.yaml"
    seed.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    town = await start_engine(make_settings(seed_file=str(seed)))
    try:
        live = {s["id"] for s in data["subscribers"]}
        token = next(i["token"] for i in data["issuers"] if i["id"] == "joso-desk")  # the town desk's own token
        status, run, _ = await call(town, "POST", "/api/v1/drills", token, {"scenario": "joso-flood-day", "speed": 20})
        assert status == 202, run
        assert run["state"] == "running" and run["error"] is None, run  # started: what the console may say

        async def ended() -> dict[str, Any] | None:
            status, found, _ = await call(town, "GET", f"/api/v1/drills/{run['id']}", token)
            assert status == 200, found
            return found if found["state"] in ("passed", "failed", "error") else None

        found = await until(ended, what="joso-flood-day to end", timeout=90)
        assert found["state"] == "passed", found
        first = found["steps"][0]["alert_ids"][0]
        status, board, _ = await call(town, "GET", f"/api/v1/alerts/{first}/deliveries", token)
        subscribers = {r["subscriber"] for r in board["deliveries"] if r["adapter"] != "feed"}
        assert subscribers and all(s.startswith(f"drill-{run['id'].rsplit('-', 1)[1]}-") for s in subscribers)
        assert subscribers <= set(found["engine_ids"]["receivers"].values()), found["engine_ids"]
        assert found["engine_ids"]["receivers"]["nhk-mito"] != "nhk-mito"

        # The command line against the same engine, as the README runs it.
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ALERTD_LOG_LEVEL": "WARNING"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alertd", "drill", "run", "joso-demo", "--speed", "20", "--url", town.url,
            "--admin-token", ADMIN_TOKEN, "--mqtt-url", MQTT_URL, "--topic-prefix", town.engine.settings.topic_prefix,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, (out.decode()[-2000:], err.decode()[-2000:])

        # Live settings untouched, nothing of the drills left, no live receiver heard a drill.
        status, subs, _ = await call(town, "GET", "/api/v1/subscribers", ADMIN_TOKEN)
        assert {s["id"] for s in subs} == live
        status, issuers, _ = await call(town, "GET", "/api/v1/issuers", ADMIN_TOKEN)
        assert {i["id"] for i in issuers} == {i["id"] for i in data["issuers"]}
        assert sink.received == []
    finally:
        await stop_engine(town)


async def test_a_drill_that_cannot_start_is_a_problem_not_a_start(desk: RunningEngine, monkeypatch: Any) -> None:
    """The console showed 訓練を開始しました beside the drill's failure: the start answered 202
    before the drill had tried to register anything. A drill that cannot start is now a 409
    problem saying why, Japanese first, and the next start is not blocked."""
    from alertd.drills import runner as drill_runner

    tanaka = await person(desk, "tanaka", ["operator"])
    real = drill_runner.engine_ids
    taken = "drill-taken-joso-desk"
    await desk.add_issuer(taken, ["08211"])
    # A live id the run's own would be (in life a 1 in 16 million chance): the refusal still holds.
    monkeypatch.setattr(drill_runner, "engine_ids",
                        lambda names, tag: {n: taken if n == "joso-desk" else real([n], tag)[n] for n in names})  # fmt: skip
    status, problem, headers = await call(desk, "POST", "/api/v1/drills", tanaka, {"scenario": "joso-demo"})
    assert_problem(status, problem, headers, 409, "conflict")
    assert problem["detail"].startswith("訓練 joso-demo を開始できませんでした"), problem
    assert "すでに本番の設定にあります" in problem["detail"] and "never replaces live settings" in problem["detail"]
    status, listing, _ = await call(desk, "GET", "/api/v1/drills", tanaka)
    assert listing["running"] is None
    status, issuers, _ = await call(desk, "GET", "/api/v1/issuers", ADMIN_TOKEN)
    assert sorted(i["id"] for i in issuers) == sorted(["joso", "tsukuba", taken])
