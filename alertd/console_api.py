"""The desk console's page and the two reads it needs beyond the existing API.

The console (``/console/`` on the desk listener) is plain JavaScript modules in
``alertd/static`` talking to the JSON API a desk already uses: sessions, preview, orders,
drafts, deliveries. It needs to know who signed in (``GET /api/v1/sessions/current``) and
what stands in the desk's own jurisdiction (``GET /api/v1/orders``: the public reads may
live on another listener, and a desk sees drills and tests too). Nothing here imports
``alertd.api``: the API imports this module.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from aiohttp import web

from alertd import messages, schemas
from alertd.accounts_api import authenticate
from alertd.appkeys import ENGINE
from alertd.contract import query_of
from alertd.errors import Forbidden, InvalidInput, Unauthorized
from alertd.history import as_cap_zip, as_csv, as_geojson, history
from alertd.models import Alert, Issuer
from alertd.public_map import districts_under_order

if TYPE_CHECKING:
    from alertd.engine import Engine

# The page is the same for everyone: what it shows comes from the API after sign-in.
_PAGE = (files("alertd") / "static" / "console.html").read_bytes()
_PAGE_ETAG = '"' + hashlib.sha256(_PAGE).hexdigest()[:32] + '"'
# Only alertd's own files, and no framing (a desk page must not be clickjacked into a send).
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")  # fmt: skip


def _json(data: object) -> web.Response:
    return web.Response(body=json.dumps(data, ensure_ascii=False).encode(), content_type="application/json")


async def console_page(request: web.Request) -> web.Response:
    headers = {"ETag": _PAGE_ETAG, "Cache-Control": "no-cache", "Content-Security-Policy": CSP,
               "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}  # fmt: skip
    if _PAGE_ETAG in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=_PAGE, content_type="text/html", charset="utf-8", headers=headers)


async def _issuer_of(request: web.Request) -> Issuer:
    """The issuer a token or a person's session acts for (any role may read)."""
    caller = await authenticate(request)
    if caller.issuer_id is None:
        raise Forbidden("The admin token has no jurisdiction of its own: sign in as a person of an issuer.")
    issuer = await request.app[ENGINE].store.get_issuer(caller.issuer_id)
    if issuer is None:
        raise Forbidden(f"Your issuer {caller.issuer_id!r} is no longer registered.")
    return issuer


def _municipalities(request: web.Request, issuer: Issuer) -> list[dict[str, str]]:
    registry = request.app[ENGINE].registry
    if issuer.national:
        return []
    codes: dict[str, None] = {}
    for code in issuer.jurisdiction:
        district = registry.find(code)
        if district is None:
            continue
        if district.level == "prefecture":
            codes.update(dict.fromkeys(sorted(d.code for d in registry.municipalities() if d.parent == district.code)))
        elif district.level in ("municipality", "ward"):
            codes[district.code] = None
    return [{"code": c, "name": registry.get(c).name} for c in codes]


async def get_me(request: web.Request) -> web.Response:
    query: schemas.SessionQuery = query_of(request)
    try:
        caller = await authenticate(request)
    except Unauthorized:
        if query.probe:  # the console's first look: nobody signed in is no error
            return _json({"signed_in": False})
        raise
    if caller.session is None:
        raise Unauthorized("Sign in as a person first (POST /api/v1/sessions): tokens have no console.")
    issuer = await _issuer_of(request)
    registry = request.app[ENGINE].registry
    jurisdiction = [{"code": c, "name": registry.get(c).full_name} for c in issuer.jurisdiction if registry.find(c)]
    expires = datetime.fromtimestamp(caller.session.expires, UTC).isoformat(timespec="seconds")
    return _json({
        "username": caller.name, "issuer": issuer.id, "issuer_name": issuer.name, "roles": sorted(caller.roles),
        "jurisdiction": jurisdiction, "municipalities": _municipalities(request, issuer),
        "approval": issuer.approval, "expires": expires,
    })  # fmt: skip


async def get_orders(request: web.Request) -> web.Response:
    issuer = await _issuer_of(request)
    engine = request.app[ENGINE]
    query: schemas.MapQuery = query_of(request)
    registry = engine.registry

    def within(muni: str) -> bool:
        return issuer.national or registry.covers(issuer.jurisdiction, muni)

    return _json(await districts_under_order(engine, query.status, within=within, with_alerts=True))



async def reach(engine: Engine, alert: Alert, subscriber_ids: list[str]) -> dict[str, Any]:
    """Who an order would reach, by name, and what it would say in every language they take.

    The preview's ``texts`` are the CAP blocks (ja-JP, en-US); receivers also get zh, ko or
    やさしい日本語 when they ask for them, rendered per language by alertd.messages as the
    adapters do. The desk checks every one before sending, not only the two in the CAP."""
    receivers = []
    langs = ["ja", "en"]  # every receiver gets at least these (adapters put them first)
    known_subs = engine.router.by_id()  # as the plan just routed: no Redis read per receiver
    for sub_id in subscriber_ids:
        sub = known_subs.get(sub_id) or await engine.store.get_subscriber(sub_id)
        if sub is None:  # removed between routing and now: it will not be sent to either
            continue
        mine = messages.ordered_languages((), sub.languages)
        receivers.append({"id": sub.id, "name": sub.name or sub.id, "adapter": sub.adapter.value, "languages": mine})
        langs = messages.ordered_languages(tuple(langs), mine)
    known = messages.supported_languages()
    texts = {}
    for lang in sorted((lang for lang in langs if lang in known), key=known.index):
        said = messages.message(alert, lang)
        texts[lang] = {"headline": said.headline, "body": said.body}
    return {"receivers": receivers, "texts_by_language": texts}


JST = timezone(timedelta(hours=9))


def _day(text: str | None, field: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        raise InvalidInput(f"'{field}' must be a real day such as 2026-12-01; {text!r} is not.", field=field) from None


async def get_history(request: web.Request) -> web.Response:
    """Past issuances of the caller's jurisdiction by municipality and date (Japan time), with
    their delivery outcome; ``format=csv`` or ``geojson`` downloads the same rows."""
    issuer = await _issuer_of(request)
    engine = request.app[ENGINE]
    registry = engine.registry
    query: schemas.HistoryQuery = query_of(request)
    until = _day(query.until, "until") or datetime.now(JST).date()
    try:
        since = _day(query.since, "since") or until - timedelta(days=7)
        start = datetime.combine(since, time(0), JST)
        end = datetime.combine(until + timedelta(days=1), time(0), JST)
    except OverflowError:
        raise InvalidInput("The dates must be between the years 1 and 9999.", field="since") from None
    if since > until:
        raise InvalidInput("'since' is after 'until': give the earlier day first.", field="since")
    muni = query.municipality or None
    if muni is not None and (registry.find(muni) is None or not (issuer.national or registry.covers(issuer.jurisdiction, muni))):
        raise Forbidden(f"{muni} is not a municipality of {issuer.name}'s jurisdiction.")

    def within(code: str) -> bool:
        mine = issuer.national or registry.covers(issuer.jurisdiction, code)
        return mine and (muni is None or code == muni)

    rows = await history(engine, within, start=start, end=end, status=query.status or None)
    name = f"alertd-history-{since:%Y%m%d}-{until:%Y%m%d}"
    if query.format == "csv":
        return web.Response(text=as_csv(rows), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})  # fmt: skip
    if query.format == "geojson":
        body = json.dumps(as_geojson(engine, rows), ensure_ascii=False).encode()
        return web.Response(body=body, content_type="application/geo+json",
                            headers={"Content-Disposition": f'attachment; filename="{name}.geojson"'})  # fmt: skip
    if query.format == "cap":
        return web.Response(body=await as_cap_zip(engine, rows), content_type="application/zip",
                            headers={"Content-Disposition": f'attachment; filename="{name}-cap.zip"'})  # fmt: skip
    return _json(rows)
