"""``alertd demo``: the whole path on one machine, with nothing installed but alertd.

Starts an embedded Redis and MQTT broker, the engine, and simulated receivers
of all four kinds (broadcasters, portals, signage, radio gateways), replays a
short Joso (08211) flood drill with status Exercise — level 3, level 4 for
named districts, a shelter opening, a lift — and ends with the delivery report.

Before the drill it prints where to watch it: the public map (the drill's orders are
Exercise, so ``/map/?status=Exercise``) and the desk console, with a demo account — its
password and TOTP secret — to sign in with. In a terminal it then keeps serving until
Ctrl-C, so the console and the map can be explored; with no terminal (CI) it exits after
the report, as it always did.
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
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from alertd import loop
from alertd.drills.render import render_text
from alertd.drills.runner import run_embedded
from alertd.drills.scenario import SCENARIOS, load_scenario

DEMO_ISSUER = "demo-desk"
DEMO_USER = "demo"


def interactive() -> bool:
    """A person is watching: keep serving after the report until Ctrl-C."""
    return sys.stdin.isatty() and sys.stdout.isatty()


async def add_demo_account(url: str, admin_token: str) -> None:
    """A desk of 常総市 and a person of it (operator and approver), to sign in to the console with."""
    password = secrets.token_urlsafe(12)
    auth = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession() as http:
        issuer = {"id": DEMO_ISSUER, "name": "常総市 (demo)", "token": secrets.token_hex(16), "jurisdiction": ["08211"]}
        async with http.post(f"{url}/api/v1/issuers", json=issuer, headers=auth) as resp:
            resp.raise_for_status()
        user = {"username": DEMO_USER, "issuer": DEMO_ISSUER, "roles": ["operator", "approver"], "password": password}
        async with http.post(f"{url}/api/v1/users", json=user, headers=auth) as resp:
            resp.raise_for_status()
            totp_uri = (await resp.json())["totp_uri"]
    secret = parse_qs(urlsplit(totp_uri).query)["secret"][0]
    print(f"""
  public map:  {url}/map/?status=Exercise   (the drill's orders appear and clear as it runs)
  console:     {url}/console/
    username:  {DEMO_USER}
    password:  {password}
    TOTP:      secret {secret} (30 s, 6 digits; add it to an authenticator app,
               or: python -c "import pyotp; print(pyotp.TOTP('{secret}').now())")
""", file=sys.stderr, flush=True)
    await wait_for_enter()


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

    async def on_report(rep: dict[str, Any]) -> None:
        reports.append(rep)
        print(render_text(rep), flush=True)  # per step, then the totals by adapter (once)
        if interactive():
            print("the drill is over; still serving the console and the map — Ctrl-C to stop", file=sys.stderr)
            await asyncio.Event().wait()

    try:
        loop.run(run_embedded(scenario, args.speed, on_ready=add_demo_account, on_report=on_report))
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
