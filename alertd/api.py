"""The HTTP API (aiohttp): desk and admin endpoints, the deliveries view, metrics.

Every error leaves as RFC 9457 ``application/problem+json`` with a ``detail``
sentence meant for the person at the desk. Writes happen only through
``Intake.accept`` — after every check — so a refused request leaves nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from adapters.radio import RadioAdapter, plain_script
from alertd import (
    accounts_api,
    board_stream,
    console_api,
    drills_api,
    logs,
    map_page,
    messages,
    metrics,
    redis_full,
    schemas,
    static_files,
)
from alertd.accounts_api import PEOPLE, Caller, authenticate, people_of, record
from alertd.appkeys import ENGINE
from alertd.atom import build_feed
from alertd.boundaries import boundaries
from alertd.contract import OPERATION, OPERATIONS, Operation, query_of
from alertd.district_shapes import check_geometry as _check_geometry
from alertd.district_shapes import geometry_inside as _geometry_inside
from alertd.drafts import WAITING, Draft, Gone
from alertd.engine import Engine, issuer_from, subscriber_from
from alertd.errors import (
    AlertdError,
    Conflict,
    DatabaseFull,
    Forbidden,
    InternalError,
    InvalidInput,
    MalformedInput,
    NotFound,
    OutsideJurisdiction,
    ServiceUnavailable,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    UnknownArea,
    UnsupportedMediaType,
)
from alertd.feed import state_message
from alertd.inforce import InForce, Standing
from alertd.intake import Hold, IntakeContext, needs_approval
from alertd.json_alert import parse_json_alert
from alertd.limits import ACK_MAX_BYTES
from alertd.metrics import ACKS, REJECTED
from alertd.models import Alert, Issuer, Origin, Subscriber, utcnow
from alertd.offload import run_blocking, run_report
from alertd.openapi import spec
from alertd.public import CachedView, PublicGate, ViewCache, respond, strong_etag
from alertd.public_map import base_areas, districts_under_order
from alertd.ratelimit import RefusalLimiter, TokenBuckets, caller_key
from alertd.store import StaleState
from alertd.validation import validate_issuer, validate_subscriber

log = logs.get("alertd.api")

PROBLEM = "application/problem+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(err: AlertdError) -> web.Response:
    REJECTED.labels(status=str(err.status)).inc()
    headers: dict[str, str] = {}
    if err.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="alertd"'
    if isinstance(err, ServiceUnavailable):
        headers["Retry-After"] = str(err.retry_after_s)
    return web.Response(
        status=err.status,
        body=json.dumps(err.problem(), ensure_ascii=False).encode("utf-8"),
        content_type=PROBLEM,
        charset="utf-8",
        headers=headers,
    )


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as problem JSON with a sentence for the desk; never a bare 500."""
    try:
        return await handler(request)
    except AlertdError as err:
        log.info("request.refused", path=request.path, status=err.status, detail=err.detail)
        return problem_response(err)
    except web.HTTPRequestEntityTooLarge:
        return problem_response(TooLarge(_too_large_detail(request)))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = {404: "There is nothing at this address.", 405: "This address does not take that method."}
        allow = exc.headers.get("Allow")
        if exc.status == 405 and allow is not None:
            detail[405] = f"This address does not take {request.method}; it takes {allow.replace(',', ', ')}."
        err = AlertdError(detail.get(exc.status, exc.reason))
        err.status, err.title = exc.status, exc.reason
        # A type per kind, as for every other problem (a 404 is not a "bad request").
        err.type_slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status, err.type_slug)
        response = problem_response(err)
        if allow is not None:
            # RFC 9110: a 405 says which methods the address does take.
            response.headers["Allow"] = allow
        return response
    except (RedisError, OSError) as exc:
        # Redis down or timing out: the request could not be written, so nothing
        # was sent (the commit is one transaction). Say when to try again.
        full = redis_full.full_kind(exc)
        if full is not None:
            # Redis answers but cannot write (disk full, memory limit): a person must act,
            # and the desk must know its alert was not accepted.
            words = redis_full.redis_words(exc)
            log.error("request.refused_database_full", path=request.path, full=full, error=words)
            return problem_response(DatabaseFull(redis_full.desk_detail(full), retry_after_s=redis_full.RETRY_AFTER_S,
                                                 database=words))  # fmt: skip
        log.error("request.unavailable", path=request.path, error=f"{type(exc).__name__}: {exc}")
        return problem_response(
            ServiceUnavailable(
                "alertd cannot reach its database right now, so nothing was sent or changed. "
                "Send it again in a few seconds; if this goes on, call the system operator."
            )
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("request.failed", path=request.path, method=request.method, error=repr(exc))
        return problem_response(
            InternalError(
                "alertd failed on this request because of an internal error (logged as request.failed). "
                "Check with 'alertd status' whether it was sent before sending it again."
            )
        )


LISTENER: web.AppKey[str] = web.AppKey("listener", str)


def route_of(request: web.Request) -> str:
    """The route template (/api/v1/alerts/{id}), never the raw path: one series per route,
    however many alert ids there are."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def counted(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer counted by listener, route and status, with its duration (outermost,
    so refusals at the door and problem answers count too)."""
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        listener, route = request.app[LISTENER], route_of(request)
        metrics.HTTP_REQUESTS.labels(listener, route, str(status)).inc()
        metrics.HTTP_DURATION.labels(listener, route).observe(time.monotonic() - started)


REFUSALS: web.AppKey[RefusalLimiter] = web.AppKey("refusals", RefusalLimiter)
READERS: web.AppKey[TokenBuckets] = web.AppKey("readers", TokenBuckets)
_UNLIMITED = frozenset({"/healthz", "/metrics", "/api/openapi.json"})


async def _known_caller(request: web.Request) -> bool:
    """The request carries the admin token or a registered issuer's (one hash lookup)."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token:
        return False
    expected = request.app[ENGINE].settings.admin_token
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return True
    try:
        return await request.app[ENGINE].store.issuer_by_token(token) is not None
    except Exception:  # Redis down: the handler will answer 503 itself
        return False


@web.middleware
async def flood_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse flooding callers at the door, before a body is read or Redis is asked
    (alertd/ratelimit.py): public reads by address, desk callers by their refusals."""
    if request.path in _UNLIMITED:
        return await handler(request)
    key = caller_key(request.headers.get("Authorization", ""), request.remote)
    if getattr(handler, "alertd_public", False):
        wait = request.app[READERS].take(f"a:{request.remote}")
        if wait > 0:
            response = problem_response(TooManyRequests(
                "You are asking faster than alertd answers anyone on its public face; slow down.",
                retry_after_s=max(1, round(wait)),
            ))  # fmt: skip
            response.force_close()
            return response
        return await handler(request)
    address = f"a:{request.remote}"
    wait = request.app[REFUSALS].retry_after(key)
    if not wait and (address_wait := request.app[REFUSALS].retry_after(address)) and not await _known_caller(request):
        # An address blocked for wrong or missing tokens (a guesser, a broken script behind the
        # same NAT or proxy as the desk) never shuts out a caller whose token is real.
        wait = address_wait
    if wait > 0:
        response = problem_response(TooManyRequests(
            "Too many of your recent requests were refused; alertd will hear you again in a few seconds. "
            "Read the 'detail' of the earlier answers and fix what they say.",
            retry_after_s=max(1, round(wait)),
        ))  # fmt: skip
        # Hang up rather than read (and throw away) whatever body it is sending.
        response.force_close()
        return response
    response = await handler(request)
    if response.status == 401:
        # A wrong token is counted against the address: guessing with a new token
        # each time must not escape the limit.
        request.app[REFUSALS].refused(address)
    elif 400 <= response.status < 500 and response.status != 429:
        request.app[REFUSALS].refused(key)
    return response


def _too_large_detail(request: web.Request) -> str:
    limit = request.app[ENGINE].settings.max_body_bytes
    return f"The message is larger than {limit // 1000} kB, the most alertd accepts. Nothing was sent."


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json_bytes(data), content_type="application/json")


async def large_json_response(data: Any, status: int = 200) -> web.Response:
    """``json_response`` for answers that can be large (an alert's 3,000 deliveries: ~7 ms
    of encoding), encoded off the loop the deliveries share."""
    return web.Response(status=status, body=await run_report(json_bytes, data), content_type="application/json")


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise Unauthorized("Sign in: send 'Authorization: Bearer <your token>'.")
    return header[7:].strip()


ADMIN_CALLER = Caller("admin", "admin")


def require_admin(request: web.Request) -> None:
    engine = request.app[ENGINE]
    token = _bearer(request)
    expected = engine.settings.admin_token
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("That admin token is not valid.")


async def require_issuer(request: web.Request, *, role: str | None = "operator") -> Issuer:
    """The issuer a request acts for: its own token, or the session of one of its users
    (bearer or the console's cookie) holding ``role`` (None: any role). Who it was is kept
    on the request (``CALLER``) for the audit trail and the two-person rule."""
    issuer, request[CALLER] = await _issuer_caller(request, role)
    return issuer


CALLER: web.RequestKey[Caller] = web.RequestKey("caller", Caller)


async def _issuer_caller(request: web.Request, role: str | None) -> tuple[Issuer, Caller]:
    header = request.headers.get("Authorization", "")
    cookie = request.cookies.get(accounts_api.COOKIE)
    token = _bearer(request) if header or not cookie else cookie
    store = request.app[ENGINE].store
    issuer = await store.issuer_by_token(token)
    if issuer is not None:
        return issuer, Caller("issuer", issuer.id, issuer.id)
    session = await request.app[PEOPLE].accounts.session(token) if PEOPLE in request.app else None
    if session is None:
        raise Unauthorized("That token is neither a registered issuer's nor a current sign-in: a session "
                           "ends when it is signed out, when it expires, or when its user is removed. "
                           "Sign in again. Nothing was sent.")  # fmt: skip
    caller = Caller.of(session)
    issuer = await store.get_issuer(session.user.issuer)
    if issuer is None:
        raise Forbidden(f"Your issuer {session.user.issuer!r} is no longer registered, so you cannot act for it. "
                        "Nothing was sent.")  # fmt: skip
    if role is not None and not caller.has_role(role):
        raise Forbidden(f"This needs the {role} role; {caller.name} has {', '.join(sorted(caller.roles))}. "
                        "Nothing was sent.")  # fmt: skip
    return issuer, caller


async def read_body(request: web.Request, *, limit: int | None = None) -> bytes:
    limit = limit or request.app[ENGINE].settings.max_body_bytes
    too_large = TooLarge(f"The message is larger than {limit:,} bytes, the most alertd accepts here. Nothing was sent.")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > limit:
            raise too_large  # stop reading: the rest is never buffered
        chunks.append(chunk)
    return b"".join(chunks)


# No message alertd takes nests deeper than a handful of levels; anything far
# deeper is a mistake or an attack on the parser and on every walk of the data.
MAX_JSON_DEPTH = 32


async def read_json(request: web.Request, *, limit: int | None = None) -> dict[str, Any]:
    body = await read_body(request, limit=limit)
    try:
        data = json.loads(body.decode("utf-8"))
    except RecursionError as exc:
        raise MalformedInput(f"The JSON is nested more than {MAX_JSON_DEPTH} levels deep.") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedInput(f"The body is not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise MalformedInput("The body must be a JSON object.")
    if json_depth(data) > MAX_JSON_DEPTH:
        raise MalformedInput(f"The JSON is nested more than {MAX_JSON_DEPTH} levels deep.")
    return data


def json_depth(value: Any) -> int:
    """Nesting depth, walked without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


async def body_of(request: web.Request, *, limit: int | None = None) -> Any:
    """The JSON body, checked against the model the contract declares for this operation."""
    operation = request[OPERATION]
    assert operation.body is not None, operation.operation_id
    return schemas.parse(operation.body, await read_json(request, limit=limit))


def _identifier(request: web.Request, body: dict[str, Any]) -> str:
    given = body.get("identifier") or request.headers.get("Idempotency-Key")
    if given is not None and (not isinstance(given, str) or not 0 < len(given) <= 200 or "," in given):
        raise InvalidInput(
            "'identifier' must be text of up to 200 characters without commas.", field="identifier"
        )
    return given or uuid.uuid4().hex


# --- admin -------------------------------------------------------------------
async def post_issuer(request: web.Request) -> web.Response:
    require_admin(request)
    engine = request.app[ENGINE]
    item = (await body_of(request)).model_dump(exclude_unset=True, exclude_none=True)
    validate_issuer(item, engine.registry)
    issuer = issuer_from(item)
    await engine.store.put_issuer(issuer)
    log.info("issuer.saved", issuer_id=issuer.id)
    await record(request, ADMIN_CALLER, "issuer.save", f"issuer:{issuer.id}", {
        "jurisdiction": issuer.jurisdiction, "national": issuer.national, "approval": issuer.approval})  # fmt: skip
    return json_response(issuer.public(), status=201)


async def list_issuers(request: web.Request) -> web.Response:
    require_admin(request)
    return json_response([i.public() for i in await request.app[ENGINE].store.list_issuers()])


async def get_issuer(request: web.Request) -> web.Response:
    require_admin(request)
    issuer = await request.app[ENGINE].store.get_issuer(request.match_info["id"])
    if issuer is None:
        raise NotFound(f"There is no issuer {request.match_info['id']!r}.")
    return json_response(issuer.public())


async def delete_issuer(request: web.Request) -> web.Response:
    require_admin(request)
    if not await request.app[ENGINE].store.delete_issuer(request.match_info["id"]):
        raise NotFound(f"There is no issuer {request.match_info['id']!r}.")
    await record(request, ADMIN_CALLER, "issuer.delete", f"issuer:{request.match_info['id']}")
    return web.Response(status=204)


async def post_subscriber(request: web.Request) -> web.Response:
    require_admin(request)
    engine = request.app[ENGINE]
    # null is the same as absent: the default (no secret, 5 s, …).
    item = (await body_of(request)).model_dump(exclude_unset=True, exclude_none=True)
    validate_subscriber(item, engine.registry)
    sub = subscriber_from(item, default_timeout_s=engine.settings.default_timeout_s)
    await engine.store.put_subscriber(sub)
    log.info("subscriber.saved", subscriber_id=sub.id, adapter=sub.adapter.value)
    await record(request, ADMIN_CALLER, "subscriber.save", f"subscriber:{sub.id}",
                 {"adapter": sub.adapter.value, "districts": sub.districts})  # fmt: skip
    return json_response(sub.public(), status=201)


async def list_subscribers(request: web.Request) -> web.Response:
    require_admin(request)
    return json_response([s.public() for s in await request.app[ENGINE].store.list_subscribers()])


async def get_subscriber(request: web.Request) -> web.Response:
    require_admin(request)
    sub = await request.app[ENGINE].store.get_subscriber(request.match_info["id"])
    if sub is None:
        raise NotFound(f"There is no subscriber {request.match_info['id']!r}.")
    return json_response(sub.public())


async def patch_subscriber(request: web.Request) -> web.Response:
    """Change some fields of a subscriber — rotate its secret, move its endpoint. The next
    attempt of every delivery already uses the new values: an old secret stops at once."""
    require_admin(request)
    engine = request.app[ENGINE]
    sub_id = request.match_info["id"]
    current = await engine.store.get_subscriber(sub_id)
    if current is None:
        raise NotFound(f"There is no subscriber {sub_id!r}.")
    changes = (await body_of(request)).model_dump(exclude_unset=True)
    if changes.get("id", sub_id) != sub_id:
        raise InvalidInput("A subscriber's id cannot change; register a new one instead.", field="id")
    # A field sent as null goes back to its default; "secret": null removes the secret
    # (deliveries go unsigned).
    item = {k: v for k, v in {**subscriber_item(current), **changes, "id": sub_id}.items() if v is not None}
    validate_subscriber(item, engine.registry)
    sub = subscriber_from(item, default_timeout_s=engine.settings.default_timeout_s)
    await engine.store.put_subscriber(sub)
    log.info("subscriber.changed", subscriber_id=sub.id, fields=sorted(changes))
    # The names of the fields changed, never their values (a new secret is one).
    await record(request, ADMIN_CALLER, "subscriber.change", f"subscriber:{sub.id}", {"fields": sorted(changes)})
    return json_response(sub.public())


def subscriber_item(sub: Subscriber) -> dict[str, Any]:
    """A stored subscriber as the admin API takes it (secret in clear: for merging only)."""
    from dataclasses import asdict

    item = asdict(sub)
    item["adapter"] = sub.adapter.value
    return {k: v for k, v in item.items() if v is not None}


async def delete_subscriber(request: web.Request) -> web.Response:
    require_admin(request)
    if not await request.app[ENGINE].store.delete_subscriber(request.match_info["id"]):
        raise NotFound(f"There is no subscriber {request.match_info['id']!r}.")
    await record(request, ADMIN_CALLER, "subscriber.delete", f"subscriber:{request.match_info['id']}")
    return web.Response(status=204)


# --- districts a municipality adds ----------------------------------------------
async def post_district(request: web.Request) -> web.Response:
    """A 字 or 地区 the postal data does not list (上三坂), added by the town's own desk."""
    from alertd.engine import DESK_LAYER

    issuer = await require_issuer(request)
    engine = request.app[ENGINE]
    body: schemas.DistrictAddition = await body_of(request)
    muni = engine.orders.municipality_of({"municipality": body.municipality}, issuer)
    name = body.name.strip()
    try:
        existing = engine.registry.resolve_name(muni, name, suggest=False)
    except AlertdError:
        existing = None
    if existing is not None and existing.code != muni:
        raise Conflict(f"{existing.full_name} is already a district ({existing.code}); use that name.",
                       existing=existing.code)  # fmt: skip
    geometry, kana = body.geometry, body.kana
    if geometry is not None:
        geometry = _geometry_inside(_check_geometry(geometry), engine, muni)
    feature = {"type": "Feature", "properties": {"name": name, "kana": kana}, "geometry": geometry}
    await engine.store.put_district(muni, name, feature)
    await engine.sync_districts()
    code = f"{muni}:layer:{DESK_LAYER}:{name}"
    log.info("district.added", municipality=muni, name=name, issuer_id=issuer.id)
    return json_response({"code": code, "name": name, "municipality": muni,
                          "full_name": engine.registry.get(code).full_name}, status=201)  # fmt: skip


async def list_districts(request: web.Request) -> web.Response:
    issuer = await require_issuer(request, role=None)  # reading: any user of the issuer
    engine = request.app[ENGINE]
    query: schemas.DistrictListQuery = query_of(request)
    muni = engine.orders.municipality_of({"municipality": query.municipality}, issuer)
    _, by_muni = await engine.store.added_districts()
    return json_response([
        {"code": f"{muni}:layer:desk:{f['properties']['name']}", "name": f["properties"]["name"],
         "kana": f["properties"].get("kana"), "has_geometry": f.get("geometry") is not None}
        for f in by_muni.get(muni, [])
    ])  # fmt: skip


async def delete_district(request: web.Request) -> web.Response:
    issuer = await require_issuer(request)
    engine = request.app[ENGINE]
    code = request.match_info["code"]
    muni, _, rest = code.partition(":layer:desk:")
    if not rest:
        raise NotFound(f"{code!r} is not a district a desk added.")
    engine.orders.municipality_of({"municipality": muni}, issuer)
    for status in ("Actual", "Exercise", "Test"):
        standing = await engine.store.in_force(muni, status, engine.registry, orders_only=True)
        if any(code in s.alert.districts or code in s.lifted for s in standing):
            raise Conflict(f"An order in force ({status}) names {rest}: lift it before removing the district.",
                           in_force=[s.alert.id for s in standing if code in s.alert.districts])  # fmt: skip
    if not await engine.store.delete_district(muni, rest):
        raise NotFound(f"There is no added district {code!r}.")
    await engine.sync_districts()
    return web.Response(status=204)


async def put_layer(request: web.Request) -> web.Response:
    """A municipality's own layer of districts (自治区, 学区 …), loaded whole (alertd/layers.py)."""
    from alertd import layers

    issuer = await require_issuer(request)
    engine = request.app[ENGINE]
    layer = layers.checked_name(request.match_info["layer"])
    muni = engine.orders.municipality_of({"municipality": request.match_info["municipality"]}, issuer)
    upload: schemas.LayerUpload = await body_of(request)
    features = await run_blocking(layers.features, engine, muni, layer, upload)
    await engine.store.put_layer(muni, layer, features)
    await engine.sync_districts()
    log.info("layer.loaded", municipality=muni, layer=layer, districts=len(features), issuer_id=issuer.id)
    return json_response({"municipality": muni, "layer": layer, "districts": layers.rows(muni, layer, features)})


async def delete_layer(request: web.Request) -> web.Response:
    from alertd import layers

    issuer = await require_issuer(request)
    engine = request.app[ENGINE]
    layer = layers.checked_name(request.match_info["layer"])
    muni = engine.orders.municipality_of({"municipality": request.match_info["municipality"]}, issuer)
    standing = await layers.in_force_naming(engine, muni, layer)
    if standing:
        raise Conflict(f"An order in force names a district of the layer {layer!r}: lift it before removing "
                       "the layer. Nothing was removed.", in_force=standing)  # fmt: skip
    if not await engine.store.delete_layer(muni, layer):
        raise NotFound(f"{engine.registry.get(muni).full_name} has no layer {layer!r}.")
    await engine.sync_districts()
    log.info("layer.removed", municipality=muni, layer=layer, issuer_id=issuer.id)
    return web.Response(status=204)


# --- desk --------------------------------------------------------------------
def fingerprint(body: dict[str, Any]) -> str:
    """The content of a desk message, whatever its identifier: reusing an identifier for
    different content is refused rather than silently answered with the old alert."""
    content = {k: v for k, v in body.items() if k != "identifier"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


async def _desk_message(request: web.Request, kind: str) -> web.Response:
    """A desk order or shelter notice: the same identifier again gives the first answer."""
    issuer = await require_issuer(request)
    body = await read_json(request)
    message = _shaped(request, body)
    identifier = _identifier(request, body)
    hold = DraftHold(request, request[CALLER], kind, message, identifier)
    answer, created = await send_desk(request.app[ENGINE], issuer, kind, message, identifier, fingerprint(body), hold)
    if created:
        action = "lift" if message.get("action") == "lift" else "send"
        await _record_sent(request, request[CALLER], action, answer, kind=kind, level=message.get("level"),
                           order=message.get("action"))  # fmt: skip
    return json_response(answer, status=202)


async def send_desk(
    engine: Engine, issuer: Issuer, kind: str, message: dict[str, Any], identifier: str, content: str,
    hold: Hold,
) -> tuple[dict[str, Any], bool]:  # fmt: skip
    build = engine.orders.evacuation if kind == "evacuation" else engine.orders.shelters
    for attempt in range(3):
        built = await build(message, issuer)
        built.alert.identifier = identifier
        try:
            return await engine.intake.accept(
                built.alert, issuer, changes=built.changes, fingerprint=content,
                extra={"levels": built.effect} if built.effect else None, hold=hold,
            )  # fmt: skip
        except StaleState:
            # An order this one changes was changed meanwhile (two lifts at once): plan again.
            log.info("order.replanned", attempt=attempt + 1, issuer_id=issuer.id)
    raise ServiceUnavailable("The orders in force kept changing while this one was planned; send it again.",
                             retry_after_s=1)  # fmt: skip


async def _record_sent(
    request: web.Request, caller: Caller, action: str, answer: dict[str, Any], **what: Any
) -> None:
    detail = {"status": answer.get("status"), "msg_type": answer.get("msg_type"),
              "districts": len(answer.get("districts") or []), "deliveries": answer.get("deliveries")}  # fmt: skip
    # What was done, as the desk would say it: the level and, for an order, issue or lift.
    detail.update({k: v for k, v in what.items() if v is not None})
    await record(request, caller, action, f"alert:{answer['id']}", detail)


def _shaped(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    """The body checked against its model and written as the model reads it (4.0 is 4);
    alertd.orders then checks what it means."""
    return schemas.parse(request[OPERATION].body, body).model_dump(exclude_unset=True)


async def post_evacuation_order(request: web.Request) -> web.Response:
    return await _desk_message(request, "evacuation")


async def post_shelters(request: web.Request) -> web.Response:
    return await _desk_message(request, "shelter")


async def preview_order(request: web.Request) -> web.Response:
    """What an order would do, before it is sent: the mis-send guard's preview.

    The same code as sending it, stopped before the commit: the same lift plan,
    the same checks, the same routing (including who got what a lift ends)."""
    issuer = await require_issuer(request)
    engine = request.app[ENGINE]
    body = _shaped(request, await read_json(request))
    body.setdefault("identifier", "preview")
    built = await engine.orders.evacuation(body, issuer)
    answer, _ = await engine.intake.accept(built.alert, issuer, changes=built.changes, dry_run=True)
    preview = preview_of(engine, built.alert, answer["deliveries"], built.changes, built.effect)
    preview.update(await console_api.reach(engine, built.alert, answer["subscribers"]))
    # Said before it is sent: under the issuer's two-person rule this order will wait for an approver.
    preview["needs_approval"] = needs_approval(built.alert, issuer)
    return json_response(preview)


def preview_of(
    engine: Engine, alert: Alert, deliveries: int, changes: dict[str, Any], levels: Any
) -> dict[str, Any]:
    """What an order would do: the preview route's answer, and what an approver reads in a draft."""
    names = [engine.registry.get(d).full_name for d in alert.districts]
    texts = {i.language: {"headline": i.headline, "description": i.description, "instruction": i.instruction}
             for i in alert.infos}  # fmt: skip
    # As the loudspeakers would read it: the desk hears its own words before anyone else does.
    script = plain_script({"ja": messages.spoken(alert, "ja")},
                          RadioAdapter(engine.settings.call_signs).call_sign_for(alert))  # fmt: skip
    return {
        "districts": alert.districts,
        "district_names": names,
        "headline": {i.language: i.headline for i in alert.infos},
        "deliveries": deliveries,
        "lifts": list(changes),
        "ends": [i for i, c in changes.items() if c.state is not None],
        "lifts_from": {i: c.lift for i, c in changes.items() if c.lift},
        "levels": levels,
        "still_in_force": alert.remaining,
        "geojson": _geojson(engine, alert.districts),
        "texts": texts,
        "radio_script": script,
    }


def _geojson(engine: Engine, codes: list[str]) -> dict[str, Any] | None:
    try:
        return engine.geocoder.geojson(codes)
    except AlertdError:
        return None


async def post_alert(request: web.Request) -> web.Response:
    issuer = await require_issuer(request)
    ctype = request.content_type
    if ctype in ("application/cap+xml", "application/xml", "text/xml"):
        kind, payload, identifier = "alert-cap", await read_body(request), ""
        if issuer.cap_certificate:
            # Proven before anything is read from it, drafted or written: 401 unsigned, 422 forged.
            from alertd.cap_signature import verify

            await run_blocking(verify, payload, issuer.cap_certificate)
    elif ctype == "application/json":
        payload = await read_json(request)
        kind, identifier = "alert-json", _identifier(request, payload)
    else:
        raise UnsupportedMediaType(
            f"Send CAP 1.2 as application/cap+xml (or application/xml), or JSON as application/json, not {ctype!r}."
        )
    hold = DraftHold(request, request[CALLER], kind, payload, identifier)
    answer, created = await send_alert(request.app[ENGINE], issuer, kind, payload, identifier, hold)
    if created:
        await _record_sent(request, request[CALLER], "cancel" if answer.get("msg_type") == "Cancel" else "send", answer)
    return json_response(answer, status=202)


async def send_alert(
    engine: Engine, issuer: Issuer, kind: str, payload: Any, identifier: str, hold: Hold
) -> tuple[dict[str, Any], bool]:
    if kind == "alert-cap":
        from alertd.cap import parse_cap

        body = payload if isinstance(payload, bytes) else str(payload).encode("utf-8")
        # A big document is read off the event loop: reading it element by element
        # is Python work that would otherwise hold up flash deliveries.
        alert = await run_blocking(parse_cap, body) if len(body) > 64_000 else parse_cap(body)
        alert.origin = Origin.CAP
        alert.issuer_id = issuer.id
        content = fingerprint(alert.to_dict())  # the same document in other bytes (CRLF) is the same
    else:
        alert = parse_json_alert(payload, f"{issuer.id}@alertd")
        alert.identifier = identifier
        alert.issuer_id = issuer.id
        content = fingerprint(payload)
    return await engine.intake.accept(alert, issuer, fingerprint=content, hold=hold)


# --- two-person approval ------------------------------------------------------------
class DraftHold:
    """How the intake chain's approval stage keeps an order as a draft (alertd.drafts):
    with what was sent, to send it again on approval, and the preview an approver reads."""

    def __init__(self, request: web.Request, caller: Caller, kind: str, payload: Any, identifier: str,
                 *, approved: bool = False) -> None:  # fmt: skip
        self.request, self.caller, self.kind = request, caller, kind
        # CAP is kept as its text: JSON cannot hold bytes.
        self.payload = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        self.identifier = identifier
        self.approved = approved

    async def draft(self, ctx: IntakeContext) -> dict[str, Any]:
        engine, people = self.request.app[ENGINE], self.request.app[PEOPLE]
        alert = ctx.alert
        assert ctx.issuer is not None and ctx.answer is not None
        levels = (ctx.extra or {}).get("levels")
        texts = {i.language: {"headline": i.headline, "description": i.description, "instruction": i.instruction}
                 for i in alert.infos}  # fmt: skip
        preview = {
            **preview_of(engine, alert, ctx.answer["deliveries"], ctx.changes, levels), "texts": texts,
            **await console_api.reach(engine, alert, [p.subscriber_id for p in ctx.plan if p.adapter != "feed"]),
            "level": alert.level, "status": alert.status.value, "msg_type": alert.msg_type.value,
            "action": alert.action, "priority": alert.priority.value,
        }  # fmt: skip
        draft, new = await people.drafts.hold(
            issuer_id=ctx.issuer.id, kind=self.kind, payload=self.payload, identifier=self.identifier or alert.identifier,
            fingerprint=ctx.fingerprint, drafted_by=self.caller.actor, preview=preview,
        )  # fmt: skip
        if new:
            await record(self.request, self.caller, "draft", f"draft:{draft.id}", {
                "level": alert.level, "status": alert.status.value, "msg_type": alert.msg_type.value,
                "districts": len(alert.districts), "deliveries": ctx.answer["deliveries"],
            })  # fmt: skip
            log.info("draft.held", draft_id=draft.id, issuer_id=ctx.issuer.id, drafted_by=self.caller.actor)
        return {"id": draft.id, "state": WAITING, "deliveries": 0}


async def _draft_of(request: web.Request, role: str | None) -> tuple[Caller, Draft]:
    """A person of the draft's issuer, and the draft; another issuer's drafts are not there."""
    caller = await authenticate(request)
    if caller.kind != "user":
        raise Forbidden("Drafts are for people: sign in as a user of the issuer (an approver approves). "
                        "Tokens cannot approve.")  # fmt: skip
    if role is not None and not caller.has_role(role):
        raise Forbidden(f"This needs the {role} role; {caller.name} has {', '.join(sorted(caller.roles))}.")
    draft_id = request.match_info["id"]
    draft = await request.app[PEOPLE].drafts.get(draft_id)
    if draft is None or draft.issuer_id != caller.issuer_id:
        raise NotFound(f"There is no draft {draft_id!r}.")
    if draft.state != WAITING:
        raise Conflict(f"Draft {draft.id} was already {draft.state} by {draft.decided_by}; nothing more can be done "
                       "with it.", state=draft.state)  # fmt: skip
    if draft.expired():
        raise Gone(f"Draft {draft.id} expired: it waited more than {request.app[PEOPLE].drafts.ttl_s // 60} "
                   "minutes without approval, so it was not sent. Send the order again if it is still needed.")
    return caller, draft


async def list_drafts(request: web.Request) -> web.Response:
    caller = await authenticate(request)
    people = request.app[PEOPLE]
    if caller.kind == "admin":
        # The deployment's view: everything that waits for an approver, every issuer's.
        issuers = await request.app[ENGINE].store.list_issuers()
        waiting = [d for i in issuers for d in await people.drafts.waiting(i.id)]
        return json_response([d.view() for d in sorted(waiting, key=lambda d: d.created)])
    if caller.kind != "user" or caller.issuer_id is None:
        raise Forbidden("Drafts are listed for people: sign in as a user of the issuer (or use the admin token).")
    drafts = await people.drafts.waiting(caller.issuer_id)
    return json_response([d.view() for d in drafts])


async def approve_draft(request: web.Request) -> web.Response:
    """A second person sends the draft: the whole chain runs again, as the order were sent now."""
    caller, draft = await _draft_of(request, None)
    people, engine = request.app[PEOPLE], request.app[ENGINE]
    # Said first: whatever roles they hold, the person who drafted it is not the second person.
    if draft.drafted_by == caller.actor:
        raise Forbidden("The person who drafted an order cannot approve it: another approver of this issuer must. "
                        "Nothing was sent.")  # fmt: skip
    if not caller.has_role("approver"):
        raise Forbidden(f"Approving needs the approver role; {caller.name} has {', '.join(sorted(caller.roles))}.")
    issuer = await engine.store.get_issuer(draft.issuer_id)
    if issuer is None:
        raise Conflict(f"The issuer {draft.issuer_id!r} of this draft is no longer registered; nothing was sent.")
    if not await people.drafts.claim(draft.id):
        raise Conflict(f"Draft {draft.id} is being decided by someone else right now.")
    hold = DraftHold(request, caller, draft.kind, draft.payload, draft.identifier, approved=True)
    try:
        if draft.kind == "alert-cap" or draft.kind == "alert-json":
            answer, _ = await send_alert(engine, issuer, draft.kind, draft.payload, draft.identifier, hold)
        else:
            answer, _ = await send_desk(engine, issuer, draft.kind, draft.payload, draft.identifier,
                                        draft.fingerprint, hold)  # fmt: skip
    except BaseException:
        await people.drafts.release(draft.id)  # refused now: it can still be approved or rejected
        raise
    await people.drafts.decide(draft, "approved", caller.actor, alert_id=answer["id"])
    await record(request, caller, "approve", f"draft:{draft.id}", {
        "alert": answer["id"], "drafted_by": draft.drafted_by, "deliveries": answer.get("deliveries"),
    })  # fmt: skip
    log.info("draft.approved", draft_id=draft.id, alert_id=answer["id"], approved_by=caller.actor)
    return json_response(answer, status=202)


async def reject_draft(request: web.Request) -> web.Response:
    """An approver (or the person who drafted it) ends a draft: nothing is sent."""
    caller, draft = await _draft_of(request, None)
    if not (caller.has_role("approver") or draft.drafted_by == caller.actor):
        raise Forbidden("Rejecting a draft needs the approver role, or to be the person who drafted it.")
    body: schemas.Rejection = await body_of(request, limit=16_384)
    people = request.app[PEOPLE]
    if not await people.drafts.claim(draft.id):
        raise Conflict(f"Draft {draft.id} is being decided by someone else right now.")
    draft = await people.drafts.decide(draft, "rejected", caller.actor, reason=body.reason)
    await record(request, caller, "reject", f"draft:{draft.id}", {"reason": body.reason, "drafted_by": draft.drafted_by})
    return json_response(draft.view())


# --- reading -----------------------------------------------------------------
def alert_view(alert: Alert, meta: dict[str, str]) -> dict[str, Any]:
    data = alert.to_dict()
    data["state"] = meta.get("state")
    data["superseded_by"] = meta.get("superseded_by")
    data["planned_deliveries"] = int(meta.get("planned", 0))
    # Districts a lift took out of this alert, which otherwise stands.
    data["lifted_districts"] = list(meta.get("lifted") or [])
    return data


class AlertJson:
    """Each alert's JSON, serialised once per state it is seen in: a page of 200
    alerts is then a join of cached bytes, not 200 dataclass walks."""

    # 2.7 KiB an entry, one per alert and state seen: 4,096 is ~11 MB (20,000 was ~54 MB).
    def __init__(self, size: int = 4096) -> None:
        self._cache: OrderedDict[tuple[str, ...], bytes] = OrderedDict()
        self._size = size

    def one(self, alert: Alert, meta: dict[str, str]) -> bytes:
        key = (alert.id, meta.get("state", ""), meta.get("superseded_by", ""), meta.get("planned", ""),
               *(meta.get("lifted") or ()))  # fmt: skip
        raw = self._cache.get(key)
        if raw is None:
            raw = self._cache[key] = json.dumps(alert_view(alert, meta), ensure_ascii=False).encode("utf-8")
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return raw

    def many(self, rows: list[tuple[Alert, dict[str, str]]]) -> bytes:
        return b"[" + b",".join(self.one(a, m) for a, m in rows) + b"]"


View = tuple[bytes, str, str | None, dict[str, str]]  # body, content type, charset, extra headers
PUBLIC_GATE: web.AppKey[PublicGate] = web.AppKey("public_gate", PublicGate)
VIEWS: web.AppKey[ViewCache] = web.AppKey("views", ViewCache)
ALERT_JSON: web.AppKey[AlertJson] = web.AppKey("alert_json", AlertJson)
# A district filter looks through at most this many alerts per page asked for.
MAX_SCAN = 2_000


def gated(handler: Handler) -> Handler:
    """A public route under the app's concurrency gate (a route both listeners serve has it only
    where the public reads are: the desk-only listener has no gate)."""

    async def run(request: web.Request) -> web.StreamResponse:
        gate = request.app.get(PUBLIC_GATE)
        return await (gate.run(lambda: handler(request)) if gate is not None else handler(request))

    run.alertd_public = True  # type: ignore[attr-defined]  # flood_guard limits it per address
    return run


async def _views_version(request: web.Request) -> int:
    return await request.app[ENGINE].store.views_version()


def public_view(
    build: Callable[[web.Request], Awaitable[View]],
    version_of: Callable[[web.Request], Awaitable[int]] = _views_version,
) -> Handler:
    """A public read, gated and cached (with a strong ETag) until any alert changes
    (or, with ``version_of``, until what that counts changes)."""

    async def work(request: web.Request) -> web.StreamResponse:
        version = await version_of(request)
        key = request.path_qs
        view = request.app[VIEWS].get(key, version)
        if view is None:
            body, content_type, charset, headers = await build(request)
            view = CachedView(version, strong_etag(body), body, content_type, charset, tuple(headers.items()))
            request.app[VIEWS].put(key, view)
        return respond(request, view)

    return gated(work)


_STATUSES = {"actual": "Actual", "exercise": "Exercise", "test": "Test", "all": None}


async def build_alert_list(request: web.Request) -> View:
    """Alerts newest first; ``active=true`` gives those in force now, Actual ones unless
    ``status=`` asks for Exercise, Test or all (a drill never shows among real alerts)."""
    engine = request.app[ENGINE]
    query: schemas.AlertListQuery = query_of(request)
    active = query.active.lower() in ("1", "true", "yes")
    status = _STATUSES[(query.status or ("Actual" if active else "all")).lower()]
    district = query.district or None
    limit = query.limit
    before = query.before or None
    if district is not None and engine.registry.find(district) is None:
        raise UnknownArea(f"alertd does not know the district code {district!r}.", field="district")
    rows: list[tuple[Alert, dict[str, Any]]] = []
    cursor, scanned = before, 0
    now = utcnow()
    while len(rows) < limit and scanned < MAX_SCAN:
        batch = await engine.store.list_alerts(
            active=active, limit=10_000 if active else 200, before=cursor, extra=("lifted",)
        )
        if not batch:
            break
        scanned += len(batch)
        cursor = batch[-1][0].id
        if status is not None:
            batch = [(a, m) for a, m in batch if a.status.value == status]
        if active:
            batch = [(a, m) for a, m in batch if _standing(a, m).in_force(engine.registry, now)]
        if district:
            batch = [(a, m) for a, m in batch if _concerns(engine, district, _standing(a, m))]
        rows.extend(batch)
        if active:
            break  # the in-force set is read whole
    rows = rows[:limit]
    headers = {}
    if len(rows) == limit or (district and scanned >= MAX_SCAN):
        query = {k: v for k, v in request.query.items() if k != "before"}
        query["before"] = rows[-1][0].id if rows else (cursor or "")
        headers["Link"] = f'<{request.path}?{urlencode(query)}>; rel="next"'
    return request.app[ALERT_JSON].many(rows), "application/json", None, headers


def _standing(alert: Alert, meta: dict[str, Any]) -> Standing:
    return Standing(alert, frozenset(meta.get("lifted") or ()))


def _concerns(engine: Engine, district: str, standing: Standing) -> bool:
    """The alert covers the district (and was not lifted there), or lies inside it."""
    registry = engine.registry
    return standing.covers(registry, district) or any(
        registry.covers([district], d) for d in standing.remaining(registry)
    )


async def build_in_force(request: web.Request) -> View:
    """The model itself for one municipality: per district, the level and the alerts
    standing there, and every alert in force with the districts it still covers."""
    engine = request.app[ENGINE]
    query: schemas.InForceQuery = query_of(request)
    district = engine.registry.find(engine.registry.normalize_code(query.municipality))
    if district is None:
        raise UnknownArea(f"alertd does not know the municipality code {query.municipality!r}.",
                          field="municipality")  # fmt: skip
    if district.level not in ("municipality", "ward"):
        raise InvalidInput("'municipality' must be a municipality code such as 08211.", field="municipality")
    status = _STATUSES[query.status.lower()]
    assert status is not None
    model = InForce(engine.registry, district.code, await engine.store.in_force(district.code, status, engine.registry))
    # Exactly what the retained MQTT state says: one model, one shape.
    body = state_message(engine.registry, district.code, status, model)
    return json.dumps(body, ensure_ascii=False).encode(), "application/json", None, {}


async def build_order_map(request: web.Request) -> View:
    query: schemas.MapQuery = query_of(request)
    collection = await districts_under_order(request.app[ENGINE], query.status)
    return json.dumps(collection, ensure_ascii=False).encode(), "application/json", None, {}


async def build_map_page(request: web.Request) -> View:
    """The public map, rendered with the districts under an order in it (it works without scripts)."""
    engine = request.app[ENGINE]
    query: schemas.MapPageQuery = query_of(request)
    collection = await districts_under_order(engine, query.status)
    areas = await base_areas(engine, collection)
    # Only alertd's own files: the browser refuses anything from another host.
    csp = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
           "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")  # fmt: skip
    return map_page.render(collection, query.lang, query.status, areas), "text/html", "utf-8", {
        "Content-Security-Policy": csp}  # fmt: skip


async def _geometry_version(request: web.Request) -> int:
    return request.app[ENGINE].registry.geometry_version


async def build_boundaries(request: web.Request) -> View:
    query: schemas.BoundaryQuery = query_of(request)
    collection = await run_blocking(boundaries, request.app[ENGINE].registry, query.area)
    # Boundaries change only when a desk draws a district, but then a reload must show it at
    # once (a max-age kept new districts off the console for 5 minutes): browsers revalidate
    # every time, and the ETag (of the body) makes an unchanged map a 304 with no body.
    return (json.dumps(collection, ensure_ascii=False, separators=(",", ":")).encode(), "application/json", None,
            {"Cache-Control": "public, no-cache"})  # fmt: skip


async def _alert_or_404(request: web.Request) -> Alert:
    alert_id = request.match_info["id"]
    alert = await request.app[ENGINE].store.get_alert(alert_id)
    if alert is None:
        raise NotFound(f"There is no alert {alert_id!r}.")
    return alert


async def build_alert(request: web.Request) -> View:
    alert = await _alert_or_404(request)
    meta = await request.app[ENGINE].store.alert_meta(alert.id)
    return request.app[ALERT_JSON].one(alert, meta), "application/json", None, {}


async def build_alert_cap(request: web.Request) -> View:
    from alertd.engine import cap_document

    alert = await _alert_or_404(request)
    # A CAP document never changes once accepted: its Last-Modified is its acceptance.
    accepted = (alert.accepted_at or alert.sent).timestamp()
    # Signed like every CAP alertd emits, when a signing key is configured (the view cache keeps it).
    return cap_document(request.app[ENGINE], alert), "application/cap+xml", "utf-8", {"Last-Modified": formatdate(accepted, usegmt=True)}


async def require_reader_of(request: web.Request, alert: Alert) -> None:
    """Who got an alert, and their errors, is for the admin, the issuer that sent it,
    and issuers whose jurisdiction covers it — nobody else."""
    engine = request.app[ENGINE]
    expected = engine.settings.admin_token
    header = request.headers.get("Authorization", "")
    if header or accounts_api.COOKIE not in request.cookies:
        token = _bearer(request)
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return
    try:
        issuer = await require_issuer(request, role=None)  # its token, or any user of it
    except Unauthorized:
        raise Unauthorized("That token does not belong to any registered issuer or the administrator.") from None
    if alert.issuer_id == issuer.id or engine.jurisdiction.may_change(issuer, alert):
        return
    raise Forbidden(f"{issuer.name} may not see the deliveries of alert {alert.id}: it is outside your jurisdiction.")


async def get_deliveries(request: web.Request) -> web.Response:
    alert = await _alert_or_404(request)
    await require_reader_of(request, alert)
    return await large_json_response({"alert_id": alert.id, "deliveries": await _delivery_rows(request, alert)})


async def post_end_deliveries(request: web.Request) -> web.Response:
    """End every delivery of an alert not yet final (superseded, with the reason): a drill's
    cleanup, so a retry still parked for a gateway never speaks after the drill ended."""
    require_admin(request)
    alert = await _alert_or_404(request)
    body: schemas.EndDeliveries = await body_of(request)
    ended = await request.app[ENGINE].store.end_deliveries(alert.id, body.reason)
    await record(request, ADMIN_CALLER, "deliveries.end", f"alert:{alert.id}", {"ended": len(ended)})
    return json_response({"alert_id": alert.id, "ended": ended, "deliveries": await _delivery_rows(request, alert)})


async def _delivery_rows(request: web.Request, alert: Alert) -> list[dict[str, Any]]:
    store = request.app[ENGINE].store
    return await _rows_from(store, await store.delivery_inputs(alert.id))


# The last records a live board was built from, and its rows (one board per request).
_BOARD_MEMO: web.RequestKey[tuple[Any, list[dict[str, Any]]]] = web.RequestKey("board_memo", tuple)


async def _board_rows(request: web.Request, alert: Alert) -> list[dict[str, Any]]:
    """``_delivery_rows`` for the live board, which asks twice a second: the same list again,
    not decoded, when the alert's plan and records are as they were last time (a fan-out
    that has gone out and waits for confirmations changes seldom; 3,000 rows are ~25 ms of
    a thread's work, for every open board)."""
    store = request.app[ENGINE].store
    inputs = await store.delivery_inputs(alert.id)
    memo = request.get(_BOARD_MEMO)
    if memo is not None and memo[0] == inputs:
        return memo[1]
    rows = await _rows_from(store, inputs)
    request[_BOARD_MEMO] = (inputs, rows)
    return rows


async def _rows_from(store: Any, inputs: tuple[list[tuple[str, str]], dict[bytes, bytes]]) -> list[dict[str, Any]]:
    """The rows as the API shows them, decoded and dated off the loop (3,000 rows: ~15 ms of
    decoding and 6,000 times formatted)."""
    return await run_report(_rows_with_iso_times, store.ledger, *inputs)


def _rows_with_iso_times(ledger: Any, plan: list[tuple[str, str]], records: dict[bytes, bytes]) -> list[dict[str, Any]]:
    rows = ledger.rows(records, plan)
    for row in rows:
        if row["confirmed_at"]:
            row["confirmed_at"] = _iso(float(row["confirmed_at"]))
        if row["delivered_at"]:
            row["delivered_at"] = _iso(float(row["delivered_at"]))
    return rows


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


async def post_ack(request: web.Request) -> web.Response:
    """A receiver's confirmation; the idempotency key it was sent is its proof of receipt."""
    engine = request.app[ENGINE]
    alert = await _alert_or_404(request)
    ack: schemas.Ack = await body_of(request, limit=ACK_MAX_BYTES)  # an ack is a few dozen bytes
    sub_id, key = ack.subscriber, ack.idempotency_key
    now = time.time()
    confirmed = await engine.store.confirm(alert.id, sub_id, key, f"{now:.3f}")
    if confirmed is None:
        ACKS.labels(path="http", outcome="refused").inc()
        log.warning("ack.refused", alert_id=alert.id, subscriber_id=sub_id, via="http")
        raise Forbidden("That subscriber and key do not match a delivery of this alert.")
    if confirmed:
        sub = await engine.store.get_subscriber(sub_id)
        metrics.confirmed(alert, sub, now)
        ACKS.labels(path="http", outcome="confirmed").inc()
        log.info("delivery.confirmed", alert_id=alert.id, subscriber_id=sub_id, via="http")
    else:
        ACKS.labels(path="http", outcome="repeat").inc()
    return json_response({"alert_id": alert.id, "subscriber": sub_id, "state": "confirmed"})


async def post_test_broadcast(request: web.Request) -> web.Response:
    """The admin token anywhere; an operator (or the issuer's token) inside its jurisdiction,
    all of it by default (alertd/drills_api.py)."""
    caller, issuer = await drills_api.caller_and_issuer(request)
    engine = request.app[ENGINE]
    test: schemas.TestBroadcastRequest = await body_of(request)
    districts = await drills_api.check_test_scope(request, issuer, test.districts)
    started = await engine.test_broadcasts.start(
        {**test.model_dump(exclude_none=True), "districts": districts}
    )
    await drills_api.record_test(request, caller, started, len(test.districts or []) or "all")
    return json_response(started, status=202)


async def get_test_broadcast(request: web.Request) -> web.Response:
    _, issuer = await drills_api.caller_and_issuer(request, role=None)
    result = await request.app[ENGINE].test_broadcasts.result(request.match_info["id"])
    if issuer is not None and not issuer.national:
        try:
            request.app[ENGINE].jurisdiction.check(issuer, list(result.get("scope") or result["districts"]))
        except OutsideJurisdiction:
            raise Forbidden(f"Transmission test {result['id']} covers districts outside {issuer.name}'s "
                            "jurisdiction.") from None  # fmt: skip
    return json_response(result)


async def get_metrics(request: web.Request) -> web.Response:
    # The backlog and the dependencies as they are now, not as a sampler last saw them.
    await request.app[ENGINE].scrape()
    resp = web.Response(body=generate_latest(metrics.scrape_registry()))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def healthz(request: web.Request) -> web.Response:
    """200 only when this process can take and deliver alerts; 503 names every cause."""
    report = await request.app[ENGINE].health()
    if report["status"] != "ok":
        log.warning("health.unhealthy", causes=report["causes"])
        return json_response(report, status=503)
    return json_response(report)


async def openapi(request: web.Request) -> web.Response:
    return json_response(spec())


def make_app(engine: Engine, *, desk: bool = True, public: bool = True) -> web.Application:
    """``desk`` routes (admin, issuing) and ``public`` routes (reading, feeds, acks)
    can be served on different listeners, so a deployment can keep the desk on
    LGWAN and the public outputs on the internet segment. The routes are the
    contract's operations (alertd/contract.py), the same ones the OpenAPI document lists."""
    app = web.Application(middlewares=[counted, flood_guard, problems],
                          client_max_size=engine.settings.max_body_bytes)  # fmt: skip
    app[ENGINE] = engine
    # One port serving both sides is the desk's (it is the one the desk uses).
    app[LISTENER] = "desk" if desk else "public"
    s = engine.settings
    app[REFUSALS] = RefusalLimiter(s.refusal_limit, s.refusal_window_s, s.refusal_cooldown_s)
    app[READERS] = TokenBuckets(engine.settings.public_rate_per_s, engine.settings.public_burst)
    if desk:
        # People (users, sessions, the audit trail, drafts) are served on the desk side only.
        app[PEOPLE] = people_of(engine)
    app[VIEWS] = ViewCache()  # the boundaries are cached on both listeners
    board_stream.install(app)
    if desk:
        drills_api.install(app, make_app)  # drills started from the console run on this engine
    if public:
        app[PUBLIC_GATE] = PublicGate(engine.settings.public_concurrency, engine.settings.public_backlog)
        app[ALERT_JSON] = AlertJson()
    serves = {"desk": desk, "public": public, "always": True}
    for operation in OPERATIONS:
        if serves[operation.side]:
            handler = _declared(operation, HANDLERS[operation.operation_id])
            if operation.method == "GET":
                app.router.add_get(operation.path, handler)  # and HEAD, as before
            else:
                app.router.add_route(operation.method, operation.path, handler)
    metrics.precreate_routes(app[LISTENER], sorted({r.canonical for r in app.router.resources()}))
    if desk:
        metrics.precreate_test_broadcast()  # the desk runs the transmission test: its result series
    return app


def _declared(operation: Operation, handler: Handler) -> Handler:
    """The handler, told which operation it serves (for its body and query models)."""

    async def run(request: web.Request) -> web.StreamResponse:
        request[OPERATION] = operation
        return await handler(request)

    run.alertd_public = getattr(handler, "alertd_public", False)  # type: ignore[attr-defined]
    return run


HANDLERS: dict[str, Handler] = {
    "putIssuer": post_issuer,
    "listIssuers": list_issuers,
    "getIssuer": get_issuer,
    "deleteIssuer": delete_issuer,
    "putSubscriber": post_subscriber,
    "listSubscribers": list_subscribers,
    "getSubscriber": get_subscriber,
    "patchSubscriber": patch_subscriber,
    "deleteSubscriber": delete_subscriber,
    "postEvacuationOrder": post_evacuation_order,
    "previewEvacuationOrder": preview_order,
    "postShelterNotice": post_shelters,
    "addDistrict": post_district,
    "listDistricts": list_districts,
    "deleteDistrict": delete_district,
    "putLayer": put_layer,
    "deleteLayer": delete_layer,
    "postAlert": post_alert,
    "getDeliveries": get_deliveries,
    "endDeliveries": post_end_deliveries,
    "streamDeliveries": board_stream.handler(_alert_or_404, require_reader_of, _board_rows),
    "startTestBroadcast": post_test_broadcast,
    "getTestBroadcast": get_test_broadcast,
    "listDrills": drills_api.list_drills,
    "startDrill": drills_api.start_drill,
    "getDrill": drills_api.get_drill,
    "listAlerts": public_view(build_alert_list),
    "getAlertCap": public_view(build_alert_cap),
    "getAlert": public_view(build_alert),
    "getInForce": public_view(build_in_force),
    "ackAlert": gated(post_ack),
    "alertsFeed": public_view(build_feed),
    "createUser": accounts_api.post_user,
    "listUsers": accounts_api.list_users,
    "getUser": accounts_api.get_user,
    "deleteUser": accounts_api.delete_user,
    "unlockUser": accounts_api.delete_lockout,
    "signIn": accounts_api.post_session,
    "signOut": accounts_api.delete_current_session,
    "readAudit": accounts_api.get_audit,
    "listDrafts": list_drafts,
    "approveDraft": approve_draft,
    "rejectDraft": reject_draft,
    "mapPage": public_view(build_map_page),
    "getOrderMap": public_view(build_order_map),
    "getBoundaries": public_view(build_boundaries, _geometry_version),
    "consolePage": console_api.console_page,
    "getCurrentSession": console_api.get_me,
    "listDeskOrders": console_api.get_orders,
    "getHistory": console_api.get_history,
    "getWebFile": static_files.get_static,
    "getVendorFile": static_files.get_vendor,
    "metrics": get_metrics,
    "healthz": healthz,
    "openapi": openapi,
}
