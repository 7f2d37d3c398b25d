"""``alertd demo``: the whole path on one machine, with nothing installed but alertd.

Starts an embedded Redis and MQTT broker, the engine, and simulated receivers
of all four kinds (broadcasters, portals, signage, radio gateways), replays a
short Joso (08211) flood drill with status Exercise — level 3, level 4 for
named districts, a shelter opening, a lift — and ends with the delivery report.

Before the drill it prints where to watch it: the public map (the drill's orders are
Exercise, so ``/map/?status=Exercise``) and the desk console, with two demo accounts — an
operator and a second person who approves — each with its password and TOTP secret (and the
command that prints the current code, with this Python). The demo desk has a two-person rule:
Actual orders of level 4 and above wait for the approver. In a terminal it then keeps serving
until Ctrl-C, so the console and the map can be explored — with a few demo receivers of its own
registered for that (a portal and a sign over webhooks, a loudspeaker gateway over MQTT, all
confirming), since the drill removes its receivers when it ends; with no terminal (CI) it exits
after the report, as it always did.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from alertd import loop
from alertd.drills.embedded import run_embedded
from alertd.drills.receivers import Fleet, ReceiverSpec
from alertd.drills.render import render_text
from alertd.drills.scenario import SCENARIOS, load_scenario

DEMO_ISSUER = "demo-desk"
DEMO_USER = "demo"
DEMO_APPROVER = "demo-approver"
DEMO_TOWN = "08211"
# The demo desk's two-person rule: an Actual order of level 4 or 5 waits for a second person.
DEMO_APPROVAL = {"status": ["Actual"], "min_level": 4}
# Receivers of the demo itself for the console after the drill (the drill removes its own): they
# take everything for 常総市, drills too, and confirm each delivery, as a real portal would.
DEMO_RECEIVERS = (
    ReceiverSpec("demo-portal", "isp", [DEMO_TOWN], languages=["ja", "en", "zh", "ko", "ja-easy"]),
    ReceiverSpec("demo-signage", "signage", [DEMO_TOWN], languages=["ja", "en"]),
    ReceiverSpec("demo-radio", "radio", [DEMO_TOWN], transport="mqtt", languages=["ja"]),
)


@dataclass(frozen=True)
class Account:
    username: str
    roles: tuple[str, ...]
    password: str
    secret: str  # TOTP, base32

    def code_command(self) -> str:
        """A command that prints the current one-time code, with the Python alertd runs on (the
        system's may not have pyotp)."""
        return f"{sys.executable} -c \"import pyotp; print(pyotp.TOTP('{self.secret}').now())\""


def interactive() -> bool:
    """A person is watching: keep serving after the report until Ctrl-C."""
    return sys.stdin.isatty() and sys.stdout.isatty()


async def add_demo_desk(url: str, admin_token: str) -> list[Account]:
    """A desk of 常総市 with a two-person rule for Actual orders of level 4 and above, and two
    people of it: one who sends (and approves others'), and a second who approves."""
    auth = {"Authorization": f"Bearer {admin_token}"}
    accounts = []
    async with aiohttp.ClientSession() as http:
        issuer = {"id": DEMO_ISSUER, "name": "常総市 (demo)", "token": secrets.token_hex(16),
                  "jurisdiction": [DEMO_TOWN], "approval": DEMO_APPROVAL}  # fmt: skip
        async with http.post(f"{url}/api/v1/issuers", json=issuer, headers=auth) as resp:
            resp.raise_for_status()
        for username, roles in ((DEMO_USER, ("operator", "approver")), (DEMO_APPROVER, ("approver",))):
            password = secrets.token_urlsafe(12)
            user = {"username": username, "issuer": DEMO_ISSUER, "roles": list(roles), "password": password}
            async with http.post(f"{url}/api/v1/users", json=user, headers=auth) as resp:
                resp.raise_for_status()
                totp_uri = (await resp.json())["totp_uri"]
            secret = parse_qs(urlsplit(totp_uri).query)["secret"][0]
            accounts.append(Account(username, roles, password, secret))
    return accounts


def accounts_banner(url: str, accounts: list[Account]) -> str:
    lines = [
        "",
        f"  public map:  {url}/map/?status=Exercise   (the drill's orders appear and clear as it runs)",
        f"  console:     {url}/console/",
    ]
    for a in accounts:
        lines += [
            f"    username:  {a.username}   ({', '.join(a.roles)})",
            f"    password:  {a.password}",
            f"    TOTP:      secret {a.secret} (30 s, 6 digits; add it to an authenticator app, or print the",
            f"               current code with: {a.code_command()})",
        ]
    lines += [
        f"  two-person approval: the demo desk holds Actual orders of level {DEMO_APPROVAL['min_level']} and above for a",
        f"    second person — send one as {DEMO_USER}, then sign in as {DEMO_APPROVER} (another browser or a",
        "    private window) and approve it under 承認待ち (Awaiting approval); Exercise orders and drills are not held.",
        "",
    ]
    return "\n".join(lines)


async def add_demo_account(url: str, admin_token: str, mqtt_url: str = "") -> None:
    """The demo desk and its people, printed for the person at the terminal."""
    accounts = await add_demo_desk(url, admin_token)
    print(accounts_banner(url, accounts), file=sys.stderr, flush=True)
    await wait_for_enter()


async def start_demo_receivers(url: str, admin_token: str, mqtt_url: str) -> Fleet:
    """The demo's own receivers, listening and registered with the engine: what the console the
    demo leaves serving reaches (the drill's own receivers are gone with the drill)."""
    fleet = Fleet(list(DEMO_RECEIVERS), url, mqtt_url)
    await fleet.start()
    try:
        async with aiohttp.ClientSession() as http:
            for body in fleet.subscriber_bodies():
                async with http.post(f"{url}/api/v1/subscribers", json=body,
                                     headers={"Authorization": f"Bearer {admin_token}"}) as resp:  # fmt: skip
                    resp.raise_for_status()
    except BaseException:
        await fleet.stop()
        raise
    return fleet


RECEIVERS_BANNER = (
    "the drill is over and removed its receivers; still serving the console and the map — Ctrl-C to stop.\n"
    "  the console now reaches the demo's own receivers for 常総市, which confirm every delivery (the delivery\n"
    "  board shows delivered, then confirmed): demo-portal (portal, webhook), demo-signage (signage, webhook),\n"
    "  demo-radio (loudspeaker gateway, MQTT). They take drills and transmission tests too."
)


# Ibaraki's boundaries, where the project's shared reference data sits beside it (../shared).
SHARED_BOUNDARIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "geo" / "ibaraki-municipalities.geojson"


def demo_boundaries() -> None:
    """Give the map something to draw: with no boundaries imported (`alertd geo import`) but
    Ibaraki's beside the project, import those into a cache of the demo's own (a few seconds;
    the user's own cache is never written)."""
    from geo.registry import default_cache_dir
    from geo.store import CACHE_FILE

    if (default_cache_dir() / CACHE_FILE).exists() or not SHARED_BOUNDARIES.exists():
        return
    from geo.importer import import_boundaries

    cache = Path(tempfile.mkdtemp(prefix="alertd-demo-geo-"))
    atexit.register(shutil.rmtree, cache, True)
    print("importing Ibaraki's boundaries for the map (a few seconds)…", file=sys.stderr)
    import_boundaries([SHARED_BOUNDARIES], cache)
    os.environ["ALERTD_GEO_CACHE"] = str(cache)


async def wait_for_enter() -> None:
    """In a terminal, the drill starts when the person has had time to open the map."""
    if interactive():
        print("open the map, then press Enter to start the drill…", file=sys.stderr, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def main(args: argparse.Namespace) -> int:
    scenario = load_scenario(SCENARIOS / "joso-demo.yaml")
    print(f"alertd demo: {scenario.description}", file=sys.stderr)
    demo_boundaries()
    print("starting embedded Redis, MQTT broker (amqtt), engine and demo receivers…", file=sys.stderr)
    reports: list[dict[str, Any]] = []

    engine: dict[str, str] = {}

    async def on_ready(url: str, admin_token: str, mqtt_url: str) -> None:
        engine.update(url=url, admin_token=admin_token, mqtt_url=mqtt_url)
        await add_demo_account(url, admin_token, mqtt_url)

    async def on_report(rep: dict[str, Any]) -> None:
        reports.append(rep)
        print(render_text(rep), flush=True)  # per step, then the totals by adapter (once)
        if interactive():
            fleet = await start_demo_receivers(engine["url"], engine["admin_token"], engine["mqtt_url"])
            print(RECEIVERS_BANNER, file=sys.stderr, flush=True)
            try:
                await asyncio.Event().wait()
            finally:
                await fleet.stop()

    try:
        loop.run(run_embedded(scenario, args.speed, on_ready=on_ready, on_report=on_report))
    except KeyboardInterrupt:
        if not reports:
            return 130
    rep = reports[0]
    total = rep["total"]
    if args.json:
        Path(args.json).write_text(json.dumps(rep, ensure_ascii=False, indent=2), encoding="utf-8")
    failed = sum(t["failed"] + t["pending"] for t in total.values())
    if rep["step_errors"] or failed:
        print(
            f"demo finished with problems: steps {rep['step_errors']}, undelivered {failed}", file=sys.stderr
        )
        return 1
    return 0
