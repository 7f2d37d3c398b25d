"""The OpenAPI document describes every route the app really serves, and what it really answers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from alertd.api import REFUSALS, make_app
from alertd.openapi import PROBLEM_REF, PROBLEM_TYPE
from tests.conftest import RunningEngine

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PATH_PARAM = re.compile(r"{([^{}:]+)(?::[^{}]*)?}")

ORDER = {
    "municipality": "08211",
    "level": 4,
    "action": "issue",
    "districts": ["三坂町"],
    "reason": "洪水",
    "status": "Exercise",
}


@pytest.fixture
async def document(engine: RunningEngine) -> dict[str, Any]:
    status, doc = await engine.get("/api/openapi.json")
    assert status == 200, doc
    assert isinstance(doc, dict)
    return doc


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any], list[dict[str, Any]]]]:
    """(path, method, operation, parameters including the path item's)."""
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                op = item[method]
                yield path, method, op, [*item.get("parameters", []), *op.get("parameters", [])]


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def app_routes(engine: RunningEngine) -> set[tuple[str, str]]:
    out = set()
    for route in engine.runner.app.router.routes():
        if route.method == "HEAD":
            continue
        canonical = route.resource.canonical if route.resource is not None else ""
        out.add((canonical, route.method.lower()))
    return out


async def test_is_openapi_3_1(document: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    assert document["info"]["title"] and document["info"]["version"]
    schemes = document["components"]["securitySchemes"]
    for name in ("adminToken", "issuerToken"):
        assert schemes[name] == {**schemes[name], "type": "http", "scheme": "bearer"}
    schemas = document["components"]["schemas"]
    for name in (
        "EvacuationOrder", "ShelterNotice", "JsonAlert", "Issuer", "Subscriber",
        "Accepted", "Alert", "Delivery", "Problem",
    ):  # fmt: skip
        assert name in schemas, name
    assert set(schemas["Accepted"]["required"]) == {
        "id", "districts", "deliveries", "priority", "status", "msg_type",
    }  # fmt: skip
    assert set(schemas["Problem"]["required"]) >= {"type", "title", "status", "detail"}


async def test_every_route_is_documented(engine: RunningEngine, document: dict[str, Any]) -> None:
    served = app_routes(engine)
    documented = {(path, method) for path, method, _op, _params in operations(document)}
    assert len(served) >= 20, served  # the full app: desk and public routes
    missing = served - documented
    assert not missing, f"routes served but not in the OpenAPI document: {sorted(missing)}"
    extra = documented - served
    assert not extra, f"operations documented but not served: {sorted(extra)}"


def test_desk_only_and_public_only_apps_are_covered(engine: RunningEngine, document: dict[str, Any]) -> None:
    """The split listeners serve subsets of the full app; each subset is documented too."""
    documented = {(path, method) for path, method, _op, _params in operations(document)}
    for kw in ({"desk": True, "public": False}, {"desk": False, "public": True}):
        app = make_app(engine.engine, **kw)
        served = {
            (r.resource.canonical, r.method.lower())
            for r in app.router.routes()
            if r.method != "HEAD" and r.resource is not None
        }
        assert served <= documented, (kw, sorted(served - documented))


async def test_path_parameters_match(document: dict[str, Any]) -> None:
    for path, method, _op, params in operations(document):
        in_path = {p["name"] for p in params if p.get("in") == "path"}
        templated = set(PATH_PARAM.findall(path))
        assert in_path == templated, (path, method, in_path, templated)
        for p in params:
            if p.get("in") == "path":
                assert p["required"] is True, (path, p)


async def test_every_operation_answers_and_errors_are_problems(document: dict[str, Any]) -> None:
    seen_ids: set[str] = set()
    for path, method, op, _params in operations(document):
        where = f"{method.upper()} {path}"
        assert op.get("operationId") and op["operationId"] not in seen_ids, where
        seen_ids.add(op["operationId"])
        responses = op.get("responses") or {}
        assert responses, f"{where} documents no response"
        assert any(code.startswith("2") for code in responses), f"{where} documents no success"
        for code, response in responses.items():
            assert response.get("description"), (where, code)
            if not code.isdigit() or not 400 <= int(code) < 500:
                continue
            content = response.get("content") or {}
            assert list(content) == [PROBLEM_TYPE], (where, code, list(content))
            assert content[PROBLEM_TYPE]["schema"] == {"$ref": PROBLEM_REF}, (where, code)


async def test_security_matches_the_handlers(document: dict[str, Any]) -> None:
    for path, method, op, _params in operations(document):
        where = f"{method.upper()} {path}"
        assert "security" in op, f"{where} does not say how to sign in"
        names = {name for requirement in op["security"] for name in requirement}
        user = {"userSession", "sessionCookie"}  # a person's session: bearer or the console's cookie
        if path.startswith(("/api/v1/issuers", "/api/v1/subscribers")) or (
            path == "/api/v1/alerts/{id}/deliveries/end"  # a drill's cleanup: the deployment's operator
        ):
            expected = {"adminToken"}
        elif path.startswith(("/api/v1/test-broadcasts", "/api/v1/drills")):
            # The admin token anywhere; an operator (or the issuer's token) inside its jurisdiction.
            expected = {"adminToken", "issuerToken", *user}
        elif path.startswith(("/api/v1/users", "/api/v1/audit")):
            expected = {"adminToken", *user}  # the role (admin, auditor) is the handler's to check
        elif path == "/api/v1/drafts" and method == "get":
            expected = {"adminToken", *user}  # the deployment's operator sees what waits
        elif path.startswith("/api/v1/drafts") or path == "/api/v1/sessions/current":
            expected = user
        elif path in ("/api/v1/orders", "/api/v1/history"):
            expected = {"issuerToken", *user}  # what stands in the desk's own jurisdiction
        elif method == "post" and path in (
            "/api/v1/evacuation-orders", "/api/v1/evacuation-orders/preview",
            "/api/v1/shelters", "/api/v1/alerts",
        ):  # fmt: skip
            expected = {"issuerToken", *user}  # a user with the operator role acts as its issuer
        elif path.startswith(("/api/v1/districts", "/api/v1/layers")):
            expected = {"issuerToken", *user}
        elif path in ("/api/v1/alerts/{id}/deliveries", "/api/v1/alerts/{id}/deliveries/events"):
            expected = {"adminToken", "issuerToken", *user}  # who got what is not public
        else:
            expected = set()
        assert names == expected, (where, names)
        if expected:
            assert "401" in op["responses"], f"{where} needs a token but documents no 401"


async def test_post_alert_takes_cap_and_json(document: dict[str, Any]) -> None:
    op = document["paths"]["/api/v1/alerts"]["post"]
    assert {"application/cap+xml", "application/xml", "application/json"} <= set(op["requestBody"]["content"])
    assert {"400", "401", "403", "409", "413", "415", "422"} <= set(op["responses"])
    listing = document["paths"]["/api/v1/alerts"]["get"]
    assert {"active", "district"} <= {p["name"] for p in listing["parameters"] if p["in"] == "query"}
    feed = document["paths"]["/feeds/alerts.atom"]["get"]
    assert {"prefecture", "municipality"} <= {p["name"] for p in feed["parameters"] if p["in"] == "query"}
    assert "304" in feed["responses"] and "ETag" in feed["responses"]["200"]["headers"]


async def test_what_a_desk_must_know_is_written_down(document: dict[str, Any]) -> None:
    order = document["components"]["schemas"]["EvacuationOrder"]["properties"]
    assert order["level"]["enum"] == [3, 4, 5] and "避難勧告" in order["level"]["description"]
    assert order["status"]["enum"] == ["Actual", "Exercise", "Test"]
    text = str(document)
    for words in ("X-Alertd-Signature", "Idempotency-Key", "HMAC-SHA256", "t=<ms>,v1="):
        assert words in text, words
    # The signature the document describes is the one alertd sends (a receiver built from the
    # document once refused every delivery: it described another scheme).
    import re

    from adapters.signing import sign

    header = sign("0123456789abcdef-secret", 1767225600000, "a3f1c2d4e5b60718293a4b5c6d7e8f90",
                  "019a0b1c2d3e4f5a6b7c8d", b"{}")  # fmt: skip
    webhook = document["webhooks"]["alertDelivery"]["post"]
    declared = next(p for p in webhook["parameters"] if p["name"] == "X-Alertd-Signature")
    assert re.match(declared["schema"]["pattern"], header), (declared, header)
    assert "X-Alertd-Timestamp" not in text  # a header alertd never sends


async def test_every_ref_resolves(document: dict[str, Any]) -> None:
    for ref in set(refs(document)):
        resolve(document, ref)
    used = {r.rsplit("/", 1)[1] for r in refs(document) if r.startswith("#/components/schemas/")}
    unused = set(document["components"]["schemas"]) - used
    assert not unused, f"schemas nothing refers to: {sorted(unused)}"


async def test_valid_openapi_document(document: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)


def schema_validator(document: dict[str, Any], name: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(root)


async def test_real_answers_match_the_schemas(engine: RunningEngine, document: dict[str, Any]) -> None:
    """What the running app says fits what the document promises: 202, alert, deliveries, problems."""
    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(
        id="portal", adapter="isp", endpoint="http://127.0.0.1:9/p", districts=["08"], secret="s" * 16
    )

    status, accepted = await engine.post("/api/v1/evacuation-orders", token, {**ORDER, "identifier": "oa-1"})
    assert status == 202, accepted
    schema_validator(document, "Accepted").validate(accepted)
    again_status, again = await engine.post(
        "/api/v1/evacuation-orders", token, {**ORDER, "identifier": "oa-1"}
    )
    assert (again_status, again) == (202, accepted)  # the same identifier twice, the same answer

    status, alert = await engine.get(f"/api/v1/alerts/{accepted['id']}")
    assert status == 200, alert
    schema_validator(document, "Alert").validate(alert)
    status, listing = await engine.get("/api/v1/alerts?active=true&status=all&district=08211")
    assert status == 200 and listing
    for item in listing:
        schema_validator(document, "Alert").validate(item)
    status, deliveries = await engine.get(f"/api/v1/alerts/{accepted['id']}/deliveries", headers=engine.admin)
    assert status == 200, deliveries
    schema_validator(document, "Deliveries").validate(deliveries)

    status, preview = await engine.post("/api/v1/evacuation-orders/preview", token, ORDER)
    assert status == 200, preview
    schema_validator(document, "Preview").validate(preview)

    async with engine.http.get(f"{engine.url}/api/v1/issuers", headers=engine.admin) as resp:
        assert resp.status == 200
        issuers = await resp.json()
    for issuer in issuers:
        # The token is write-only: required when registering, never shown back.
        errors = [
            e
            for e in schema_validator(document, "IssuerView").iter_errors(issuer)
            if not (e.validator == "required" and "'token'" in e.message)
        ]
        assert not errors, errors
        assert "token" not in issuer and "token_hash" not in issuer
    async with engine.http.get(f"{engine.url}/api/v1/subscribers", headers=engine.admin) as resp:
        assert resp.status == 200
        for sub in await resp.json():
            schema_validator(document, "SubscriberView").validate(sub)

    async with engine.http.post(
        f"{engine.url}/api/v1/test-broadcasts", json={"districts": ["08"], "wait_s": 60}, headers=engine.admin
    ) as resp:
        assert resp.status == 202, await resp.text()
        started = await resp.json()
    schema_validator(document, "TestBroadcast").validate(started)
    async with engine.http.get(
        f"{engine.url}/api/v1/test-broadcasts/{started['id']}", headers=engine.admin
    ) as resp:
        assert resp.status == 200, await resp.text()
        schema_validator(document, "TestBroadcastResult").validate(await resp.json())

    json_ct = {"Content-Type": "application/json"}
    refusals = [
        ("post", "/api/v1/evacuation-orders", 422, await engine.post(
            "/api/v1/evacuation-orders", token, {**ORDER, "level": 2})),
        ("post", "/api/v1/evacuation-orders", 422, await engine.post(
            "/api/v1/evacuation-orders", token, {**ORDER, "status": None})),
        ("post", "/api/v1/evacuation-orders", 401, await engine.post(
            "/api/v1/evacuation-orders", "not-a-token", ORDER)),
        ("post", "/api/v1/evacuation-orders", 403, await engine.post(
            "/api/v1/evacuation-orders", token, {**ORDER, "municipality": "08220", "districts": ["all"]})),
        ("post", "/api/v1/evacuation-orders", 409, await engine.post(
            "/api/v1/evacuation-orders", token, {**ORDER, "action": "lift", "status": "Test"})),
        ("post", "/api/v1/alerts", 415, await engine.post(
            "/api/v1/alerts", token, "x", headers={"Content-Type": "text/plain"})),
        ("post", "/api/v1/alerts", 400, await engine.post(
            "/api/v1/alerts", token, b"{not json", headers=json_ct)),
        ("post", "/api/v1/alerts/{id}/ack", 403, await engine.post(
            f"/api/v1/alerts/{accepted['id']}/ack", token, {"subscriber": "portal", "idempotency_key": "x"})),
        ("get", "/api/v1/alerts/{id}", 404, await engine.get("/api/v1/alerts/no-such-alert")),
        ("get", "/api/v1/alerts", 422, await engine.get("/api/v1/alerts?district=99999")),
    ]  # fmt: skip
    problem = schema_validator(document, "Problem")
    for method, path, expected, (status, body) in refusals:
        assert status == expected, (method, path, body)
        problem.validate(body)
        assert body["status"] == status
        assert str(status) in document["paths"][path][method]["responses"], (method, path, status)


def exactly(model: type[BaseModel], answer: Any) -> None:
    """The answer is its model, no more and no less: every value of the type the model says
    (strict: nothing coerced) and no key the model does not declare (it would vanish on the
    way through), so an answer that changes shape fails here before a receiver sees it."""
    parsed = model.model_validate(answer, strict=True)
    assert parsed.model_dump(mode="json", exclude_unset=True, by_alias=True) == answer, model.__name__


async def test_real_answers_are_exactly_their_models(engine: RunningEngine) -> None:
    """The models the document is generated from say what alertd really answers, key for key."""
    from adapters.isp import alert_json
    from alertd import schemas

    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="portal", adapter="isp", endpoint="http://127.0.0.1:9/p", districts=["08"])
    order = {**ORDER, "districts": ["三坂町", "新石下"], "identifier": "exact-1",
             "shelters": [{"name": "水海道小学校", "capacity": 300}]}  # fmt: skip
    status, accepted = await engine.post("/api/v1/evacuation-orders", token, order)
    assert status == 202, accepted
    status, alert = await engine.get(f"/api/v1/alerts/{accepted['id']}")
    assert status == 200 and alert["shelters"] and alert["infos"][0]["areas"], alert
    exactly(schemas.Alert, alert)
    status, listing = await engine.get("/api/v1/alerts?status=all")
    assert status == 200 and listing, listing
    for item in listing:
        exactly(schemas.Alert, item)

    status, standing = await engine.get("/api/v1/in-force?municipality=08211&status=Exercise")
    assert status == 200 and standing["districts"] and standing["alerts"], standing
    exactly(schemas.InForceView, standing)
    status, quiet = await engine.get("/api/v1/in-force?municipality=08211")
    assert status == 200 and not quiet["in_force"], quiet
    exactly(schemas.InForceView, quiet)

    # A lift of one of the two districts: it ends nothing, takes a district out, changes levels.
    lift = {**ORDER, "action": "lift", "districts": ["三坂町"]}
    status, preview = await engine.post("/api/v1/evacuation-orders/preview", token, lift)
    assert status == 200 and preview["lifts_from"] and preview["levels"], preview
    exactly(schemas.Preview, preview)
    status, preview = await engine.post("/api/v1/evacuation-orders/preview", token, ORDER)
    assert status == 200, preview
    exactly(schemas.Preview, preview)

    stored = await engine.engine.store.get_alert(accepted["id"])
    assert stored is not None
    exactly(schemas.WebhookAlert, json.loads(json.dumps(alert_json(stored, ["ja", "en"]))))

    async with engine.http.get(f"{engine.url}/healthz") as resp:
        assert resp.status == 200, await resp.text()
        exactly(schemas.Health, await resp.json())

    async with engine.http.post(
        f"{engine.url}/api/v1/test-broadcasts", json={"districts": ["08"], "wait_s": 60}, headers=engine.admin
    ) as resp:
        assert resp.status == 202, await resp.text()
        started = await resp.json()
    exactly(schemas.TestBroadcast, started)
    async with engine.http.get(f"{engine.url}/api/v1/test-broadcasts/{started['id']}", headers=engine.admin) as resp:
        assert resp.status == 200, await resp.text()
        result = await resp.json()
    assert result["subscribers"], result
    exactly(schemas.TestBroadcastResult, result)

    # Held under the two-person rule: an evacuation order and a JSON alert, each with its preview.
    ruled = await engine.add_issuer("joso-ruled", ["08211"], approval={"status": ["Actual"], "min_level": 4})
    status, held = await engine.post("/api/v1/evacuation-orders", ruled, {**ORDER, "status": "Actual"})
    assert status == 202 and held["state"] == "awaiting_approval", held
    json_alert = {"status": "Actual", "event": "大雨特別警報", "level": 5, "districts": ["08211"]}
    status, held = await engine.post("/api/v1/alerts", ruled, json_alert)
    assert status == 202 and held["state"] == "awaiting_approval", held
    async with engine.http.get(f"{engine.url}/api/v1/drafts", headers=engine.admin) as resp:
        assert resp.status == 200, await resp.text()
        drafts = await resp.json()
    assert {d["kind"] for d in drafts} == {"evacuation", "alert-json"}, drafts
    for draft in drafts:
        exactly(schemas.DraftView, draft)

    for status, problem in (
        await engine.get("/api/v1/alerts/no-such-alert"),
        await engine.get("/api/v1/alerts?district=99999"),
        await engine.post("/api/v1/evacuation-orders", token, {**ORDER, "municipality": "08220", "districts": ["all"]}),
        await engine.post("/api/v1/evacuation-orders", token, {**ORDER, "level": 2}),
    ):  # fmt: skip
        assert status >= 400, problem
        exactly(schemas.Problem, problem)


async def test_an_undeclared_method_is_405_naming_the_methods_taken(
    engine: RunningEngine, document: dict[str, Any]
) -> None:
    """RFC 9110: a 405 carries Allow, and it lists exactly what the document declares."""
    # More than 20 addresses are asked in a row, each refused: the flood guard would step in.
    engine.runner.app[REFUSALS].threshold = 10**9
    for path, item in document["paths"].items():
        declared = {m.upper() for m in item if m in METHODS}
        url = engine.url + PATH_PARAM.sub("x", path)
        async with engine.http.request("TRACE", url) as resp:
            assert resp.status == 405, path
            assert resp.content_type == PROBLEM_TYPE, path
            allowed = {m.strip() for m in resp.headers["Allow"].split(",")} - {"HEAD"}
            assert allowed == declared, (path, allowed, declared)
            assert "TRACE" in (await resp.json())["detail"], path


async def test_what_the_schema_forbids_is_refused_naming_the_field(engine: RunningEngine) -> None:
    """Found by the fuzzer before the models: these were accepted (and one answered with it)."""
    sub = {"id": "s", "adapter": "isp", "endpoint": "http://127.0.0.1:9/x", "districts": ["08"], "name": {}}
    async with engine.http.post(f"{engine.url}/api/v1/subscribers", json=sub, headers=engine.admin) as resp:
        problem = await resp.json()
        assert resp.status == 422 and problem["field"] == "name", problem
    status, problem = await engine.get("/api/v1/alerts?active=AAA")
    assert status == 422 and problem["field"] == "active" and "true or false" in problem["detail"], problem
    issuer = {"id": "x", "name": "x", "token": "a-token-of-sixteen-chars", "national": False, "jurisdiction": []}
    async with engine.http.post(f"{engine.url}/api/v1/issuers", json=issuer, headers=engine.admin) as resp:
        problem = await resp.json()
        assert resp.status == 422 and problem["field"] == "jurisdiction", problem


def test_every_field_a_request_can_get_wrong_has_a_sentence_for_the_desk() -> None:
    """A refusal's 'detail' is written for the desk officer, never the validator's own words."""
    from alertd.contract import OPERATIONS

    for operation in OPERATIONS:
        for model in (operation.body, operation.query):
            if model is None:
                continue
            missing = [name for name in model.model_fields if name not in model.refusals]
            assert not missing, (operation.operation_id, model.__name__, missing)
