"""HTTP handlers for drills and the transmission test started from the desk (the console's 訓練 view).

Who may start them, within the account model of ``alertd.accounts``:

- the admin token: everything, as before (any scenario; a transmission test anywhere);
- a person with the ``operator`` role — the role that sends — or the issuer's own token: a shipped
  scenario that lies inside the issuer's jurisdiction (``alertd.drills.desk``), and a
  transmission test of districts inside it (default: all of it). Anything outside is a 403
  that names it. ``approver``, ``auditor`` and ``admin`` alone do not start drills: starting one
  makes receivers speak, which is sending.

Neither waits for a second person: a drill is Exercise and a test is Test — never an order
anyone acts on — and the two-person rule holds the orders an issuer's rule names (Actual, by
level). Every start is in the audit trail under the person's name (``drill``, ``test-broadcast``).

Reading a run or a test's result takes any role of an issuer whose jurisdiction covers it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web

from alertd import schemas
from alertd.accounts_api import PEOPLE, Caller, authenticate, body_of, record
from alertd.appkeys import ENGINE
from alertd.drills.desk import DeskDrills, ShippedScenario, find, scenarios
from alertd.drills.scenario import DESCRIPTION_LANGUAGES
from alertd.engine import Engine
from alertd.errors import Forbidden, NationalOnly, OutsideJurisdiction
from alertd.models import Issuer

DESK_DRILLS: web.AppKey[DeskDrills] = web.AppKey("desk_drills", DeskDrills)


def install(app: web.Application, make_app: Callable[[Engine], web.Application]) -> None:
    app[DESK_DRILLS] = DeskDrills(app[ENGINE], make_app)

    async def stop(app: web.Application) -> None:
        await app[DESK_DRILLS].stop()

    app.on_shutdown.append(stop)


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(data, ensure_ascii=False).encode(),
                        content_type="application/json")  # fmt: skip


async def caller_and_issuer(
    request: web.Request, *, role: str | None = "operator"
) -> tuple[Caller, Issuer | None]:
    """The admin token (no issuer: full scope), or a person or token of an issuer. A person needs
    ``role`` (None: any role of the issuer)."""
    caller = await authenticate(request)
    if caller.kind == "admin":
        return caller, None
    if role is not None and caller.kind == "user" and not caller.has_role(role):
        raise Forbidden(f"Starting a drill or a transmission test needs the {role} role; {caller.name} has "
                        f"{', '.join(sorted(caller.roles))}. Nothing was started.")  # fmt: skip
    assert caller.issuer_id is not None
    issuer = await request.app[ENGINE].store.get_issuer(caller.issuer_id)
    if issuer is None:
        raise Forbidden(f"Your issuer {caller.issuer_id!r} is no longer registered. Nothing was started.")
    return caller, issuer


def _outside(request: web.Request, issuer: Issuer | None, codes: list[str] | tuple[str, ...]) -> list[str]:
    if issuer is None or issuer.national:
        return []
    jurisdiction = request.app[ENGINE].jurisdiction
    return [c for c in codes if not jurisdiction.covers(issuer, c)]


def _names(request: web.Request, codes: list[str] | tuple[str, ...]) -> list[dict[str, str]]:
    registry = request.app[ENGINE].registry
    return [{"code": c, "name": registry.get(c).full_name if registry.find(c) else c} for c in codes]


def may_start(request: web.Request, issuer: Issuer | None, found: ShippedScenario) -> str | None:
    """Why this caller may not start the scenario, or None."""
    if issuer is None or issuer.national:
        return None
    if found.national:
        return (f"{found.id} sends national warnings (JMA, J-ALERT, CAP files): only a national issuer or the "
                "deployment's administrator may start it.")  # fmt: skip
    outside = _outside(request, issuer, found.scope)
    if outside:
        names = "、".join(n["name"] for n in _names(request, outside))
        return f"{found.id} covers {names}, outside {issuer.name}'s jurisdiction."
    return None


def descriptions(found: ShippedScenario) -> dict[str, object]:
    """What the scenario is, per console language (descriptions.ja, descriptions.en); description
    alone is the Japanese, as the console showed it before it chose by language."""
    texts = found.scenario.descriptions
    both = {lang: texts.get(lang) or found.scenario.description for lang in DESCRIPTION_LANGUAGES}
    return {"description": both["ja"], "descriptions": both}


async def list_drills(request: web.Request) -> web.Response:
    _, issuer = await caller_and_issuer(request, role=None)
    running = await request.app[DESK_DRILLS].running()
    shipped = await scenarios()
    if running is not None and issuer is not None:
        # Another town's drill is not this desk's to follow (its start answers 409 naming the scenario only).
        found = next((s for s in shipped if s.id == running["scenario"]), None)
        if found is not None and may_start(request, issuer, found) is not None:
            running = None
    return _json({
        "scenarios": [{
            "id": s.id, "title": s.scenario.name, **descriptions(s),
            "steps": len(s.scenario.steps), "duration_s": s.duration_s, "national": s.national,
            "scope": _names(request, s.scope), "allowed": may_start(request, issuer, s) is None,
            "why_not": may_start(request, issuer, s),
        } for s in shipped],
        "running": running,
        # What a transmission test started here covers when no districts are given.
        "test_broadcast_scope": _names(request, issuer.jurisdiction) if issuer and not issuer.national else [],
    })  # fmt: skip


async def start_drill(request: web.Request) -> web.Response:
    caller, issuer = await caller_and_issuer(request)
    body: schemas.DrillStart = await body_of(request)
    found = await find(body.scenario)
    why = may_start(request, issuer, found)
    if why is not None and found.national:
        raise NationalOnly(f"{why} Nothing was started.", districts=list(found.scope))
    if why is not None:
        raise OutsideJurisdiction(f"{why} Nothing was started.", districts=list(found.scope))
    started = await request.app[DESK_DRILLS].start(found, body.speed, caller.actor)
    await request.app[PEOPLE].audit.append(caller.actor, "drill", f"drill:{started['id']}",
                                           {"scenario": found.id, "speed": str(body.speed)})  # fmt: skip
    return _json(started, status=202)


async def get_drill(request: web.Request) -> web.Response:
    _, issuer = await caller_and_issuer(request, role=None)
    run = await request.app[DESK_DRILLS].get(request.match_info["id"])
    found = next((s for s in await scenarios() if s.id == run["scenario"]), None)
    if issuer is not None and found is not None and may_start(request, issuer, found) is not None:
        raise Forbidden(f"Drill {run['id']} ({found.id}) is outside {issuer.name}'s jurisdiction.")
    return _json(run)


async def check_test_scope(
    request: web.Request, issuer: Issuer | None, districts: list[str] | None
) -> list[str] | None:
    """A transmission test's districts for this caller: the admin's as given (default: everywhere);
    an issuer's inside its jurisdiction (default: all of it), else a 403 naming what is outside."""
    if issuer is None or issuer.national:
        return districts
    if not districts:
        return list(issuer.jurisdiction)
    request.app[ENGINE].jurisdiction.check(issuer, districts)
    return districts


async def record_test(
    request: web.Request, caller: Caller, started: dict[str, object], districts: int | str
) -> None:
    await record(
        request, caller, "test-broadcast", f"test-broadcast:{started.get('id')}", {"districts": districts}
    )
