"""People sign in with a password and a one-time code; a removed user is out at once; guessing locks.

Over real sockets and the real Redis: the people routes are served by the
desk app exactly as ``alertd serve`` serves them (alertd.contract).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pyotp
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web

from alertd.accounts_api import PEOPLE
from alertd.api import make_app
from alertd.config import Settings
from alertd.engine import Engine
from alertd.logs import JsonFormatter
from alertd.redis_client import connect
from tests.conftest import ADMIN_TOKEN, REDIS_URL, RunningEngine, free_port, make_settings, stop_engine

PASSWORD = "correct horse battery staple"


async def start_people(settings: Settings | None = None) -> RunningEngine:
    engine = Engine(settings or make_settings(), workers=False)
    await engine.start()
    app = make_app(engine)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return RunningEngine(engine, f"http://127.0.0.1:{port}", aiohttp.ClientSession(), runner)


@pytest_asyncio.fixture
async def desk() -> AsyncIterator[RunningEngine]:
    running = await start_people()
    try:
        await running.add_issuer("joso", ["08211"])
        await running.add_issuer("tsukuba", ["08220"])
        yield running
    finally:
        await stop_engine(running)


async def call(
    e: RunningEngine, method: str, path: str, token: str | None = None, body: Any = None, **headers: str
) -> tuple[int, Any, Any]:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with e.http.request(method, f"{e.url}{path}", json=body, headers=headers) as resp:
        text = await resp.text()
        data = json.loads(text) if text and "json" in resp.content_type else text
        return resp.status, data, resp.headers


async def make_user(
    e: RunningEngine,
    username: str,
    roles: list[str],
    issuer: str = "joso",
    token: str | None = None,
    **extra: Any,
) -> pyotp.TOTP:
    body = {"username": username, "issuer": issuer, "roles": roles, "password": PASSWORD, **extra}
    status, data, _ = await call(e, "POST", "/api/v1/users", token or e.admin["Authorization"][7:], body)
    assert status == 201, data
    assert data["username"] == username and data["issuer"] == issuer and data["roles"] == roles
    assert data["totp_uri"].startswith("otpauth://totp/")
    totp = pyotp.parse_uri(data["totp_uri"])
    assert isinstance(totp, pyotp.TOTP) and totp.interval == 30 and totp.digits == 6
    return totp


async def login(
    e: RunningEngine, username: str, totp: pyotp.TOTP | None, password: str = PASSWORD
) -> tuple[int, Any, Any]:
    otp = totp.now() if totp else "000000"
    return await call(
        e, "POST", "/api/v1/sessions", body={"username": username, "password": password, "otp": otp}
    )


async def audit_entries(e: RunningEngine) -> list[dict[str, Any]]:
    return await e.runner.app[PEOPLE].audit.read(0, 10_000)


async def everything_in(r: aioredis.Redis, key: bytes) -> bytes:
    """A key's whole value as plain bytes (DUMP would compress long strings and hide them)."""
    kind = (await r.type(key)).decode()
    if kind == "string":
        return bytes(await r.get(key) or b"")
    if kind == "hash":
        return b" ".join(k + b"=" + v for k, v in (await r.hgetall(key)).items())
    if kind == "set":
        return b" ".join(await r.smembers(key))
    if kind == "list":
        return b" ".join(await r.lrange(key, 0, -1))
    if kind == "zset":
        return b" ".join(await r.zrange(key, 0, -1))
    if kind == "stream":
        return repr(await r.xrange(key)).encode()
    raise AssertionError(f"{key!r} is a {kind}")


async def test_a_user_signs_in_with_password_and_totp_and_out_again(desk: RunningEngine) -> None:
    totp = await make_user(desk, "tanaka.h", ["operator", "auditor"])
    status, data, headers = await login(desk, "tanaka.h", totp)
    assert status == 201, data
    token = data["token"]
    expires = datetime.fromisoformat(data["expires"].replace("Z", "+00:00"))
    assert timedelta(hours=11) < expires - datetime.now(UTC) <= timedelta(hours=12, seconds=5)
    cookie = headers["Set-Cookie"]
    assert "alertd_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here

    # The token and the console cookie both say who is calling: the auditor reads the trail.
    status, entries, _ = await call(desk, "GET", "/api/v1/audit", token)
    assert status == 200, entries
    assert [e["action"] for e in entries][-1] == "login" and entries[-1]["actor"] == "user:tanaka.h"
    status, _, _ = await call(desk, "GET", "/api/v1/audit", Cookie=f"alertd_session={token}")
    assert status == 200
    # An operator and auditor is no user admin.
    status, problem, _ = await call(desk, "GET", "/api/v1/users", token)
    assert status == 403 and "admin role" in problem["detail"]

    # Only the token's hash is stored, and the password only as an argon2id hash.
    r = connect(REDIS_URL, key_prefix=desk.engine.settings.key_prefix)
    root = desk.engine.keys.prefix  # {prefix} on a cluster
    try:
        stored = b""
        async for key in r.scan_iter(match=f"{root}:*"):
            stored += key + await everything_in(r, key)
        user = json.loads(await r.get(f"{root}:user:tanaka.h"))
    finally:
        await r.aclose()
    assert token.encode() not in stored and PASSWORD.encode() not in stored
    assert user["password_hash"].startswith("$argon2id$")

    status, _, headers = await call(desk, "DELETE", "/api/v1/sessions/current", token)
    assert status == 204
    assert "alertd_session=" in headers["Set-Cookie"]  # the console's cookie is cleared
    status, problem, _ = await call(desk, "GET", "/api/v1/audit", token)
    assert status == 401 and problem["detail"]
    assert [e["action"] for e in await audit_entries(desk)][-1] == "logout"


async def test_the_cookie_is_secure_behind_a_tls_proxy(desk: RunningEngine) -> None:
    totp = await make_user(desk, "mori", ["operator"])
    body = {"username": "mori", "password": PASSWORD, "otp": totp.now()}
    status, _, headers = await call(
        desk, "POST", "/api/v1/sessions", body=body, **{"X-Forwarded-Proto": "https"}
    )
    assert status == 201
    assert "Secure" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]


async def test_a_deleted_users_token_is_refused_on_the_next_call_by_every_process(
    desk: RunningEngine,
) -> None:
    # A second alertd process on the same Redis and key prefix.
    other = await start_people(
        make_settings(key_prefix=desk.engine.settings.key_prefix, consumer_name="second")
    )
    try:
        totp = await make_user(desk, "suzuki", ["auditor"])
        status, data, _ = await login(desk, "suzuki", totp)
        assert status == 201, data
        token = data["token"]
        status, _, _ = await call(other, "GET", "/api/v1/audit", token)
        assert status == 200  # the session signed in on one process works on the other

        status, _, _ = await call(desk, "DELETE", "/api/v1/users/suzuki", desk.admin["Authorization"][7:])
        assert status == 204
        for running in (other, desk):
            status, problem, _ = await call(running, "GET", "/api/v1/audit", token)
            assert status == 401, problem
            assert problem["detail"] and problem["status"] == 401
        status, _, _ = await call(other, "GET", "/api/v1/users/suzuki", other.admin["Authorization"][7:])
        assert status == 404
        assert any(
            e["action"] == "user.delete" and e["target"] == "user:suzuki" for e in await audit_entries(desk)
        )
    finally:
        await stop_engine(other, wipe_keys=False)


async def test_five_wrong_passwords_lock_the_username_even_for_the_right_one(desk: RunningEngine) -> None:
    totp = await make_user(desk, "sato", ["operator"])
    other = await make_user(desk, "ito", ["operator"])
    for _ in range(5):
        status, problem, _ = await login(desk, "sato", totp, password="not the password at all")
        assert status == 401, problem
        assert "wrong" in problem["detail"]
    status, problem, headers = await login(desk, "sato", totp)
    assert status == 429, problem
    assert 1 <= int(headers["Retry-After"]) <= 15 * 60
    assert "locked" in problem["detail"]
    # The lock is the username's, not everyone's.
    status, _, _ = await login(desk, "ito", other)
    assert status == 201
    entries = await audit_entries(desk)
    assert [e["target"] for e in entries if e["action"] == "lockout"] == ["user:sato"]
    assert sum(e["action"] == "login.failed" and e["target"] == "user:sato" for e in entries) == 5
    # Anyone who knows a username can lock it: the admin lifts the lock at once, and it is audited.
    status, _, _ = await call(desk, "DELETE", "/api/v1/users/sato/lockout", token=ADMIN_TOKEN)
    assert status == 204
    status, data, _ = await login(desk, "sato", totp)
    assert status == 201, data
    entries = await audit_entries(desk)
    assert [e["target"] for e in entries if e["action"] == "lockout.lifted"] == ["user:sato"]


async def test_wrong_one_time_codes_and_unknown_usernames_count_too(desk: RunningEngine) -> None:
    totp = await make_user(desk, "kato", ["operator"])
    wrong = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    for _ in range(5):
        status, _, _ = await call(desk, "POST", "/api/v1/sessions",
                                  body={"username": "kato", "password": PASSWORD, "otp": wrong})  # fmt: skip
        assert status == 401
    status, _, headers = await login(desk, "kato", totp)
    assert status == 429 and int(headers["Retry-After"]) > 0
    # Someone who does not exist is locked the same way: the answers never tell who exists.
    for _ in range(5):
        status, _, _ = await login(desk, "nobody.here", None)
        assert status == 401
    status, _, _ = await login(desk, "nobody.here", None)
    assert status == 429


async def test_an_account_past_its_expiry_cannot_sign_in(desk: RunningEngine) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=3)
    totp = await make_user(desk, "yamada", ["auditor"], expires=soon.isoformat(timespec="seconds"))
    status, data, _ = await login(desk, "yamada", totp)
    assert status == 201, data
    token = data["token"]
    # The session stops working when the account expires: wait for that, with a deadline.
    deadline = time.monotonic() + 10
    while True:
        status, _, _ = await call(desk, "GET", "/api/v1/audit", token)
        if status == 401:
            break
        assert status == 200 and time.monotonic() < deadline, "the session outlived the account"
        await asyncio.sleep(0.1)
    assert datetime.now(UTC) >= soon.replace(microsecond=0)
    status, problem, _ = await login(desk, "yamada", totp)
    assert status == 403, problem
    assert "expired" in problem["detail"]

    status, problem, _ = await call(desk, "POST", "/api/v1/users", desk.admin["Authorization"][7:], {
        "username": "late", "issuer": "joso", "roles": ["operator"], "password": PASSWORD, "expires": "2020-03-31"})  # fmt: skip
    assert status == 422 and problem["field"] == "expires"


async def test_bad_user_input_is_explained(desk: RunningEngine) -> None:
    admin = desk.admin["Authorization"][7:]
    good = {"username": "kobayashi", "issuer": "joso", "roles": ["operator"], "password": PASSWORD}
    cases = [
        ({**good, "password": "short pass"}, "password"),
        ({**good, "username": "小林"}, "username"),
        ({**good, "username": "x"}, "username"),
        ({**good, "roles": ["operator", "root"]}, "roles"),
        ({**good, "roles": []}, "roles"),
        ({**good, "issuer": "nowhere"}, "issuer"),
        ({**good, "expires": "next April"}, "expires"),
        ({**good, "expires": "9999-12-31"}, "expires"),
        ({**good, "expires": "2027-03-31T17:00:00"}, "expires"),  # a time needs its offset
        ({**good, "colour": "blue"}, "colour"),
    ]
    for body, field in cases:
        status, problem, headers = await call(desk, "POST", "/api/v1/users", admin, body)
        assert status == 422, (body, problem)
        assert headers["Content-Type"].startswith("application/problem+json")
        assert problem["field"] == field and problem["detail"]
    status, _, _ = await call(desk, "POST", "/api/v1/users", admin, good)
    assert status == 201
    status, problem, _ = await call(desk, "POST", "/api/v1/users", admin, good)
    assert status == 409 and "already" in problem["detail"]
    status, problem, _ = await call(desk, "POST", "/api/v1/sessions", body={"username": "kobayashi"})
    assert status == 422 and "otp" in problem["detail"]
    async with desk.http.post(f"{desk.url}/api/v1/sessions", data=b"{broken") as resp:
        assert resp.status == 400 and (await resp.json(content_type=None))["detail"]


async def test_an_issuers_admin_manages_only_its_own_users(desk: RunningEngine) -> None:
    totp = await make_user(desk, "chief.joso", ["admin"])
    await make_user(desk, "clerk.tsukuba", ["operator"], issuer="tsukuba")
    status, data, _ = await login(desk, "chief.joso", totp)
    assert status == 201
    chief = data["token"]
    await make_user(desk, "clerk.joso", ["operator", "approver"], token=chief)
    status, users, _ = await call(desk, "GET", "/api/v1/users", chief)
    assert status == 200 and sorted(u["username"] for u in users) == ["chief.joso", "clerk.joso"]
    assert all("password_hash" not in u and "totp_secret" not in u for u in users)
    status, problem, _ = await call(desk, "POST", "/api/v1/users", chief, {
        "username": "spy", "issuer": "tsukuba", "roles": ["admin"], "password": PASSWORD})  # fmt: skip
    assert status == 403 and "your own issuer" in problem["detail"]
    for method in ("GET", "DELETE"):
        status, _, _ = await call(desk, method, "/api/v1/users/clerk.tsukuba", chief)
        assert status == 404
    # An issuer's token stays a machine credential: it sends orders, it does not manage people.
    joso_token = await desk.add_issuer("joso2", ["08211"])
    status, problem, _ = await call(desk, "GET", "/api/v1/users", joso_token)
    assert status == 403 and "machine credential" in problem["detail"]
    status, _, _ = await call(desk, "GET", "/api/v1/audit", joso_token)
    assert status == 403
    status, _, _ = await call(desk, "DELETE", "/api/v1/users/clerk.joso", chief)
    assert status == 204
    entries = await audit_entries(desk)
    assert ("user:chief.joso", "user.create", "user:clerk.joso") in [
        (e["actor"], e["action"], e["target"]) for e in entries
    ]


async def test_no_password_token_or_code_reaches_the_audit_trail_or_the_log(
    desk: RunningEngine, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    totp = await make_user(desk, "watanabe", ["auditor", "admin"])
    wrong_password = "an entirely wrong password"
    status, _, _ = await login(desk, "watanabe", totp, password=wrong_password)
    assert status == 401
    code = totp.now()
    status, data, _ = await call(desk, "POST", "/api/v1/sessions",
                                 body={"username": "watanabe", "password": PASSWORD, "otp": code})  # fmt: skip
    assert status == 201
    token = data["token"]
    status, _, _ = await call(desk, "GET", "/api/v1/audit", token)
    assert status == 200
    status, _, _ = await call(desk, "DELETE", "/api/v1/sessions/current", token)
    assert status == 204
    entries = await audit_entries(desk)
    assert {"user.create", "login.failed", "login", "logout"} <= {e["action"] for e in entries}
    # hash and prev are hex digests; a six-digit code could turn up in one by chance.
    trail = json.dumps([{k: v for k, v in e.items() if k not in ("hash", "prev")} for e in entries])
    log_text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "login.failed" in log_text and "user.created" in log_text
    for secret in (PASSWORD, wrong_password, token, totp.secret, code):
        assert secret not in trail
        assert secret not in log_text


async def test_an_operators_session_acts_as_its_issuer_and_nothing_more(desk: RunningEngine) -> None:
    order = {"municipality": "08211", "level": 3, "action": "issue", "districts": ["三坂町"], "reason": "洪水",
             "status": "Exercise"}  # fmt: skip
    totp = await make_user(desk, "operator.joso", ["operator"])
    status, data, _ = await login(desk, "operator.joso", totp)
    assert status == 201
    session = data["token"]
    status, preview, _ = await call(desk, "POST", "/api/v1/evacuation-orders/preview", session, order)
    assert status == 200 and preview["districts"] == ["08211:三坂町"], preview
    # The console's cookie works as the bearer token does.
    status, sent, _ = await call(desk, "POST", "/api/v1/evacuation-orders", body=order,
                                 Cookie=f"alertd_session={session}")  # fmt: skip
    assert status == 202 and sent["districts"] == ["08211:三坂町"], sent
    status, rows, _ = await call(desk, "GET", f"/api/v1/alerts/{sent['id']}/deliveries", session)
    assert status == 200 and rows["alert_id"] == sent["id"]
    status, _, _ = await call(desk, "GET", "/api/v1/districts?municipality=08211", session)
    assert status == 200
    # Its issuer's jurisdiction, not more: つくば is another desk's.
    status, problem, _ = await call(desk, "POST", "/api/v1/evacuation-orders", session,
                                    {**order, "municipality": "08220", "districts": ["08220"]})  # fmt: skip
    assert status == 403, problem
    # A session is no admin token.
    status, _, _ = await call(desk, "GET", "/api/v1/issuers", session)
    assert status == 401
    entries = await audit_entries(desk)
    assert ("user:operator.joso", "send", f"alert:{sent['id']}") in [
        (e["actor"], e["action"], e["target"]) for e in entries
    ]


async def test_admin_and_desk_actions_are_audited_without_their_secrets(desk: RunningEngine) -> None:
    admin = desk.admin["Authorization"][7:]
    secret = "subscriber-secret-0123456789"
    token = await desk.add_issuer("bando", ["08211"], token="bando-token-0123456789abcdef")
    await desk.add_subscriber(id="portal", adapter="isp", endpoint="http://127.0.0.1:9/p", districts=["08"],
                              secret=secret)  # fmt: skip
    status, _, _ = await call(desk, "PATCH", "/api/v1/subscribers/portal", admin, {"secret": secret + "-new"})
    assert status == 200
    order = {"municipality": "08211", "level": 3, "action": "issue", "districts": ["三坂町"], "reason": "洪水",
             "status": "Exercise"}  # fmt: skip
    status, sent, _ = await call(desk, "POST", "/api/v1/evacuation-orders", token, order)
    assert status == 202, sent
    status, lifted, _ = await call(desk, "POST", "/api/v1/evacuation-orders", token, {**order, "action": "lift"})
    assert status == 202, lifted
    status, other, _ = await call(desk, "POST", "/api/v1/alerts", token, {
        "status": "Exercise", "event": "大雨警報", "districts": ["08211"], "identifier": "rain-1"})  # fmt: skip
    assert status == 202, other
    status, cancel, _ = await call(desk, "POST", "/api/v1/alerts", token, {
        "status": "Exercise", "msg_type": "Cancel", "references": [other["id"]], "identifier": "rain-1-x"})  # fmt: skip
    assert status == 202, cancel
    status, test, _ = await call(desk, "POST", "/api/v1/test-broadcasts", admin, {"districts": ["08"], "wait_s": 1})
    assert status == 202, test
    for path in ("/api/v1/subscribers/portal", "/api/v1/issuers/bando"):
        status, _, _ = await call(desk, "DELETE", path, admin)
        assert status == 204
    entries = await audit_entries(desk)
    done = [(e["actor"], e["action"], e["target"]) for e in entries]
    for expected in [
        ("admin", "issuer.save", "issuer:bando"),
        ("admin", "subscriber.save", "subscriber:portal"),
        ("admin", "subscriber.change", "subscriber:portal"),
        ("issuer:bando", "send", f"alert:{sent['id']}"),
        ("issuer:bando", "lift", f"alert:{lifted['id']}"),
        ("issuer:bando", "send", f"alert:{other['id']}"),
        ("issuer:bando", "cancel", f"alert:{cancel['id']}"),
        ("admin", "test-broadcast", f"test-broadcast:{test['id']}"),
        ("admin", "subscriber.delete", "subscriber:portal"),
        ("admin", "issuer.delete", "issuer:bando"),
    ]:
        assert expected in done, expected
    trail = json.dumps(entries, ensure_ascii=False)
    for secret_text in (secret, token, admin):
        assert secret_text not in trail
