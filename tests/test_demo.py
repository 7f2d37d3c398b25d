"""What `make demo` leaves a person with (the README-only trial's findings 2, 3 and 4): a
one-time-code command that works as printed, a second person and a two-person rule to try
approval with, and receivers for the console it keeps serving after its drill."""

from __future__ import annotations

import asyncio
import re
import shlex

from alertd.demo import (
    DEMO_APPROVER,
    DEMO_ISSUER,
    DEMO_USER,
    accounts_banner,
    add_demo_desk,
    start_demo_receivers,
)
from tests.conftest import ADMIN_TOKEN, MQTT_URL, RunningEngine
from tests.test_accounts import call

ORDER = {"municipality": "08211", "level": 4, "action": "issue", "districts": ["三坂町"], "reason": "洪水"}


async def signed_in(engine: RunningEngine, username: str, password: str, command: str) -> str:
    """Sign in as the banner tells a person to: the code from the printed command, run as printed."""
    proc = await asyncio.create_subprocess_exec(*shlex.split(command), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    code = out.decode().strip()
    assert re.fullmatch(r"\d{6}", code), code
    status, session, _ = await call(engine, "POST", "/api/v1/sessions",
                                    body={"username": username, "password": password, "otp": code})  # fmt: skip
    assert status == 201, session
    return str(session["token"])


async def test_the_demo_desk_has_an_approver_and_a_two_person_rule_and_codes_that_work_as_printed(
    engine: RunningEngine,
) -> None:
    accounts = await add_demo_desk(engine.url, ADMIN_TOKEN)
    banner = accounts_banner(engine.url, accounts)
    by_name = {a.username: a for a in accounts}
    assert set(by_name) == {DEMO_USER, DEMO_APPROVER}
    tokens = {}
    for account in accounts:
        assert account.password in banner and account.secret in banner
        # The command as printed (the system python3 has no pyotp: the trial's ModuleNotFoundError).
        command = next(line.split("code with: ", 1)[1].removesuffix(")") for line in banner.splitlines()
                       if f"'{account.secret}'" in line)  # fmt: skip
        tokens[account.username] = await signed_in(engine, account.username, account.password, command)
    assert "approve it under 承認待ち" in banner

    status, issuer, _ = await call(engine, "GET", f"/api/v1/issuers/{DEMO_ISSUER}", ADMIN_TOKEN)
    assert status == 200 and issuer["approval"] == {"status": ["Actual"], "min_level": 4}, issuer
    # A level 4 Actual order waits for the second person; an Exercise one does not.
    status, held, _ = await call(engine, "POST", "/api/v1/evacuation-orders", tokens[DEMO_USER],
                                 {**ORDER, "status": "Actual"})  # fmt: skip
    assert status == 202 and held["state"] == "awaiting_approval", held
    status, problem, _ = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", tokens[DEMO_USER])
    assert status == 403, problem  # not by the person who drafted it
    status, sent, _ = await call(engine, "POST", f"/api/v1/drafts/{held['id']}/approve", tokens[DEMO_APPROVER])
    assert status == 202 and sent["status"] == "Actual", sent
    status, drill, _ = await call(engine, "POST", "/api/v1/evacuation-orders", tokens[DEMO_USER],
                                  {**ORDER, "status": "Exercise", "level": 5})  # fmt: skip
    assert status == 202 and "state" not in drill, drill


async def test_the_console_the_demo_leaves_serving_reaches_receivers_that_confirm(engine: RunningEngine) -> None:
    fleet = await start_demo_receivers(engine.url, ADMIN_TOKEN, MQTT_URL)
    try:
        desk = await engine.add_issuer("joso", ["08211"])
        status, sent = await engine.post("/api/v1/evacuation-orders", desk, {**ORDER, "status": "Exercise"})
        assert status == 202 and sent["deliveries"] == 3, sent
        rows = await engine.wait_deliveries(sent["id"], {"confirmed"}, count=3)
        assert {(r["subscriber"], r["adapter"]) for r in rows} == {
            ("demo-portal", "isp"), ("demo-signage", "signage"), ("demo-radio", "radio")}
        assert fleet.signature_failures == 0
    finally:
        await fleet.stop()
