"""Bad input gets a clear 4xx a desk operator understands, and nothing is half-written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningEngine, Sink

ORDER = {
    "municipality": "08211",
    "level": 4,
    "action": "issue",
    "districts": ["三坂町"],
    "reason": "洪水",
    "status": "Exercise",
}

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol4;</identifier></alert>"""

BROKEN = b"""<?xml version="1.0"?><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>x</ident"""


async def assert_nothing_written(engine: RunningEngine, sink: Sink) -> None:
    status, alerts = await engine.get("/api/v1/alerts")
    assert status == 200 and alerts == []
    status, health = await engine.get("/healthz")
    # Empty lanes are the signal that nothing is on its way: a job stays in its lane,
    # in flight too, until its outcome is recorded, so there is nothing to wait for.
    assert health["queue_depth"] == {"flash": 0, "routine": 0}
    assert not any(n for states in health["pending"].values() for n in states.values())
    assert sink.received == []


def assert_problem(status: int, body: Any, expected: int, *words: str) -> None:
    assert status == expected, body
    assert isinstance(body, dict) and body["status"] == expected and body["title"]
    for word in words:
        assert word in body["detail"], body["detail"]


@pytest.fixture
async def desk(engine: RunningEngine, sink: Sink) -> str:
    await engine.add_subscriber(id="portal", adapter="isp", endpoint=f"{sink.url}/p", districts=["08"])
    return await engine.add_issuer("joso", ["08211"])


CAP_HEADERS = {"Content-Type": "application/cap+xml"}


@pytest.mark.parametrize(
    ("payload", "expected", "word"),
    [(XXE, 400, "DTD"), (LAUGHS, 400, "DTD"), (BROKEN, 400, "line")],
    ids=["xxe", "billion-laughs", "truncated"],
)
async def test_hostile_or_broken_xml_is_refused(
    engine: RunningEngine, sink: Sink, desk: str, payload: bytes, expected: int, word: str
) -> None:
    status, body = await engine.post("/api/v1/alerts", desk, payload, headers=CAP_HEADERS)
    assert_problem(status, body, expected)
    assert "root:" not in str(body)  # the file the XXE pointed at never leaks back
    await assert_nothing_written(engine, sink)


async def test_oversized_body_is_refused_with_413(engine: RunningEngine, sink: Sink, desk: str) -> None:
    big = b"<alert>" + b"x" * 2_000_000 + b"</alert>"
    status, body = await engine.post("/api/v1/alerts", desk, big, headers=CAP_HEADERS)
    assert_problem(status, body, 413, "larger")
    await assert_nothing_written(engine, sink)


async def test_wrong_token_is_401(engine: RunningEngine, sink: Sink, desk: str) -> None:
    status, body = await engine.post("/api/v1/evacuation-orders", "not-a-real-token", ORDER)
    assert_problem(status, body, 401, "token")
    await assert_nothing_written(engine, sink)


async def test_out_of_jurisdiction_names_the_districts(engine: RunningEngine, sink: Sink, desk: str) -> None:
    status, body = await engine.post(
        "/api/v1/evacuation-orders", desk, {**ORDER, "municipality": "08220", "districts": ["all"]}
    )
    assert_problem(status, body, 403, "つくば市", "08220")
    assert body["districts"] == ["08220"]
    await assert_nothing_written(engine, sink)


async def test_unknown_reference_is_409(engine: RunningEngine, sink: Sink, desk: str) -> None:
    cancel = {
        "status": "Exercise",
        "msg_type": "Cancel",
        "event": "避難指示",
        "references": ["nope-123"],
        "districts": ["08211"],
    }
    status, body = await engine.post("/api/v1/alerts", desk, cancel)
    assert_problem(status, body, 409, "nope-123")
    await assert_nothing_written(engine, sink)


async def test_lift_with_nothing_in_force_is_409(engine: RunningEngine, sink: Sink, desk: str) -> None:
    status, body = await engine.post("/api/v1/evacuation-orders", desk, {**ORDER, "action": "lift"})
    assert_problem(status, body, 409, "evacuation order in force", "to lift")
    await assert_nothing_written(engine, sink)


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"level": 2}, "避難勧告"),
        ({"status": None}, "Exercise"),
        ({"districts": ["存在しない町"]}, "存在しない町"),
        ({"municipality": "99999"}, "99999"),
        ({"action": "maybe"}, "lift"),
    ],
    ids=["abolished-level", "no-status", "unknown-district", "unknown-municipality", "bad-action"],
)
async def test_invalid_orders_are_422(
    engine: RunningEngine, sink: Sink, desk: str, change: dict[str, Any], word: str
) -> None:
    body = {k: v for k, v in {**ORDER, **change}.items() if v is not None}
    status, problem = await engine.post("/api/v1/evacuation-orders", desk, body)
    assert_problem(status, problem, 422, word)
    await assert_nothing_written(engine, sink)


async def test_malformed_json_is_400(engine: RunningEngine, sink: Sink, desk: str) -> None:
    status, body = await engine.post(
        "/api/v1/evacuation-orders",
        desk,
        b'{"municipality": "08211",',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(status, body, 400, "JSON")
    await assert_nothing_written(engine, sink)


async def test_admin_endpoints_need_the_admin_token(engine: RunningEngine, desk: str) -> None:
    async with engine.http.get(
        f"{engine.url}/api/v1/subscribers", headers={"Authorization": f"Bearer {desk}"}
    ) as resp:
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"


async def test_an_issuer_cannot_cancel_another_municipalitys_alert(engine: RunningEngine, sink: Sink) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    tsukuba = await engine.add_issuer("tsukuba", ["08220"])
    status, order = await engine.post("/api/v1/evacuation-orders", joso, ORDER)
    assert status == 202
    cancel = {"status": "Exercise", "msg_type": "Cancel", "event": "取消", "references": [order["id"]]}
    status, body = await engine.post("/api/v1/alerts", tsukuba, cancel)
    assert_problem(status, body, 403, order["id"])
    status, alert = await engine.get(f"/api/v1/alerts/{order['id']}")
    assert alert["state"] == "active"
    # The prefecture may (代行), and so may the desk that issued it.
    pref = await engine.add_issuer("ibaraki", ["08"])
    status, body = await engine.post("/api/v1/alerts", pref, {**cancel, "identifier": "pref-cancel"})
    assert status == 202, body


async def test_admin_input_is_checked(engine: RunningEngine) -> None:
    base = {"id": "x", "name": "x", "token": "a-token-of-sixteen-chars"}
    async with engine.http.post(
        f"{engine.url}/api/v1/issuers", json={**base, "national": "false"}, headers=engine.admin
    ) as resp:
        assert resp.status == 422 and "true or false" in (await resp.json())["detail"]
    await engine.add_issuer("first", ["08211"], token="shared-token-0123456789")
    async with engine.http.post(
        f"{engine.url}/api/v1/issuers",
        json={"id": "second", "name": "s", "token": "shared-token-0123456789", "jurisdiction": ["08"]},
        headers=engine.admin,
    ) as resp:
        assert resp.status == 409  # the first issuer's token must not start signing in as the second
    sub = {
        "id": "s",
        "adapter": "isp",
        "endpoint": "http://127.0.0.1:9/x",
        "districts": ["08"],
        "timeout_s": "abc",
    }
    async with engine.http.post(f"{engine.url}/api/v1/subscribers", json=sub, headers=engine.admin) as resp:
        assert resp.status == 422 and "timeout_s" in (await resp.json())["detail"]


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ({"status": "Draft", "event": "x", "districts": ["08211"]}, "Actual, Exercise or Test"),
        ({"status": "Exercise", "event": "x", "districts": ["08211"], "expires": "tomorrow"}, "expires"),
        ({"status": "Exercise", "event": "x", "areas": [{"desc": "a", "geocodes": ["08211"]}]}, "geocodes"),
        (
            {
                "status": "Exercise",
                "event": "x",
                "districts": ["08211"],
                "expires": "2020-01-01T00:00:00+09:00",
            },
            "expired",
        ),
    ],
    ids=["draft-status", "bad-expires", "bad-geocodes", "already-expired"],
)
async def test_bad_json_alerts_are_422(
    engine: RunningEngine, sink: Sink, desk: str, body: dict[str, Any], word: str
) -> None:
    status, problem = await engine.post("/api/v1/alerts", desk, body)
    assert_problem(status, problem, 422, word)
    await assert_nothing_written(engine, sink)


async def test_bad_list_limit_is_422(engine: RunningEngine) -> None:
    status, problem = await engine.get("/api/v1/alerts?limit=abc")
    assert_problem(status, problem, 422, "limit")


async def test_another_issuer_reusing_a_sender_and_identifier_cannot_suppress_an_alert(
    engine: RunningEngine, sink: Sink
) -> None:
    joso = await engine.add_issuer("joso", ["08211"])
    tsukuba = await engine.add_issuer("tsukuba", ["08220"])
    await engine.add_subscriber(id="portal", adapter="isp", endpoint=f"{sink.url}/p", districts=["08"])
    same = {"identifier": "joso-2026-0042", "status": "Exercise", "event": "避難指示"}
    # The JSON sender is the issuer's own; over CAP a peer could claim any <sender>, so
    # alertd keys duplicates by issuer as well.
    status, first = await engine.post("/api/v1/alerts", tsukuba, {**same, "districts": ["08220"]})
    assert status == 202
    status, second = await engine.post("/api/v1/alerts", joso, {**same, "districts": ["08211"]})
    assert status == 202 and second["id"] != first["id"]
    await sink.wait_for(2)
    cancel = {"status": "Exercise", "msg_type": "Cancel", "event": "取消", "references": [second["id"]]}
    status, body = await engine.post("/api/v1/alerts", joso, cancel)
    assert status == 202, body
