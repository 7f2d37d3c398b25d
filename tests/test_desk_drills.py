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
