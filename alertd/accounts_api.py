"""HTTP handlers for people: users, sign-in sessions, and reading the audit trail.

``alertd.contract`` declares their routes (desk side) and ``alertd.api.make_app``
serves them, setting ``app[PEOPLE]`` from the started engine. ``authenticate(request)``
says who is calling — the admin token, an issuer's token (machine credentials
of systems that push orders), or a person's session (bearer token or the
console's cookie) — so any route can ask it; ``record`` writes the audit trail.

This module reaches the engine through its own app key and imports nothing from
``alertd.api``: the API can import it without a cycle.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import web

from alertd import logs, schemas
from alertd.accounts import Accounts, Session, User, session_ttl_from_env
from alertd.audit import AuditLog
from alertd.contract import OPERATION, query_of
from alertd.drafts import Drafts, draft_ttl_from_env
from alertd.errors import Forbidden, InvalidInput, MalformedInput, NotFound, TooLarge, Unauthorized
from alertd.store import Store

log = logs.get("alertd.accounts_api")

COOKIE = "alertd_session"
# Every body these routes take is a few hundred bytes.
MAX_BODY = 16_384


@dataclass
class People:
    """What the routes need of the engine: the accounts, the trail, issuers, the admin token,
    and the drafts waiting for a second person."""

    accounts: Accounts
    audit: AuditLog
    store: Store
    admin_token: str | None
    drafts: Drafts


PEOPLE: web.AppKey[People] = web.AppKey("people", People)


def people_of(engine: Any) -> People:
    """Built from a started ``Engine`` (its Redis, key prefix, store and admin token)."""
    if engine.redis is None:
        raise RuntimeError("start the engine before serving the people routes")
    prefix = engine.keys.prefix  # hash-tagged on a Redis Cluster, like every alertd key
    audit = AuditLog(engine.redis, prefix)
    accounts = Accounts(engine.redis, prefix, audit, session_ttl_s=session_ttl_from_env())
    drafts = Drafts(engine.redis, prefix, ttl_s=draft_ttl_from_env())
    return People(accounts, audit, engine.store, engine.settings.admin_token, drafts)


# --- who is calling -------------------------------------------------------------
@dataclass(frozen=True)
class Caller:
    kind: Literal["admin", "issuer", "user"]
    name: str  # "admin", the issuer's id, or the username
    issuer_id: str | None = None
    roles: frozenset[str] = frozenset()
    session: Session | None = None

    @property
    def actor(self) -> str:
        """How the audit trail names this caller."""
        return "admin" if self.kind == "admin" else f"{self.kind}:{self.name}"

    def has_role(self, role: str) -> bool:
        return self.kind == "user" and role in self.roles

    @classmethod
    def of(cls, session: Session) -> Caller:
        user = session.user
        return cls("user", user.username, user.issuer, frozenset(user.roles), session)


async def authenticate(request: web.Request) -> Caller:
    """The caller, by bearer token (admin, person or issuer) or else the console's session cookie.

    Sessions are read from Redis on every call, so a deleted user or a signed-out
    session is refused on the very next request, by every alertd process."""
    people = request.app[PEOPLE]
    header = request.headers.get("Authorization", "")
    if header:
        token = header[7:].strip() if header.startswith("Bearer ") else ""
        if not token:
            raise Unauthorized("Sign in: send 'Authorization: Bearer <your token>'.")
        if people.admin_token and hmac.compare_digest(token.encode(), people.admin_token.encode()):
            return Caller("admin", "admin")
        session = await people.accounts.session(token)
        if session is not None:
            return Caller.of(session)
        issuer = await people.store.issuer_by_token(token)
        if issuer is not None:
            return Caller("issuer", issuer.id, issuer.id)
        raise Unauthorized("That token is not valid: it was signed out, it expired, or its user was removed. "
                           "Sign in again.")  # fmt: skip
    cookie = request.cookies.get(COOKIE)
    if cookie:
        session = await people.accounts.session(cookie)
        if session is not None:
            return Caller.of(session)
        raise Unauthorized(
            "Your session has ended (signed out, expired, or the account was removed); sign in again."
        )
    raise Unauthorized("Sign in first: send 'Authorization: Bearer <your token>'.")


async def record(
    request: web.Request, caller: Caller, action: str, target: str, detail: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Append an action of ``caller`` to the audit trail (``alertd.audit.ACTIONS`` names them)."""
    return await request.app[PEOPLE].audit.append(caller.actor, action, target, detail)


def _may_manage(caller: Caller, issuer_id: str) -> bool:
    return caller.kind == "admin" or (caller.has_role("admin") and caller.issuer_id == issuer_id)


def _require_user_manager(caller: Caller) -> None:
    if caller.kind == "issuer":
        raise Forbidden("An issuer's token is a machine credential and cannot manage users; use the admin token "
                        "or sign in as a user with the admin role.")  # fmt: skip
    if not (caller.kind == "admin" or caller.has_role("admin")):
        raise Forbidden("Managing users needs the admin role.")


# --- small JSON helpers (these routes take only small bodies) ---------------------
def json_response(data: Any, status: int = 201) -> web.Response:
    return web.Response(status=status, body=json.dumps(data, ensure_ascii=False).encode("utf-8"),
                        content_type="application/json")  # fmt: skip


async def body_of(request: web.Request) -> Any:
    """The small JSON body, checked against the model the contract declares for this operation."""
    operation = request[OPERATION]
    assert operation.body is not None, operation.operation_id
    return schemas.parse(operation.body, await read_small_json(request))


async def read_small_json(request: web.Request) -> dict[str, Any]:
    too_large = TooLarge(f"The body is larger than {MAX_BODY:,} bytes, far more than this request needs.")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise too_large
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise too_large
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedInput("The body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise MalformedInput("The body must be a JSON object.")
    return data


# --- users ------------------------------------------------------------------------
async def post_user(request: web.Request) -> web.Response:
    caller = await authenticate(request)
    _require_user_manager(caller)
    people = request.app[PEOPLE]
    body: schemas.NewUser = await body_of(request)
    issuer_id = body.issuer
    if not _may_manage(caller, issuer_id):
        raise Forbidden(f"You may only create users of your own issuer ({caller.issuer_id}).")
    if await people.store.get_issuer(issuer_id) is None:
        raise InvalidInput(f"There is no issuer {issuer_id!r}; register it first.", field="issuer")
    user, totp_uri = await people.accounts.create_user(
        body.username, issuer_id, list(body.roles), body.password, body.expires
    )
    detail = {"issuer": user.issuer, "roles": user.roles, "expires": user.expires}
    await record(request, caller, "user.create", f"user:{user.username}", detail)
    return json_response({"username": user.username, "issuer": user.issuer, "roles": user.roles,
                          "totp_uri": totp_uri}, status=201)  # fmt: skip


async def _managed_user(request: web.Request) -> tuple[Caller, User]:
    caller = await authenticate(request)
    _require_user_manager(caller)
    username = request.match_info["username"]
    user = await request.app[PEOPLE].accounts.get_user(username)
    # Another issuer's users are not there, as far as this caller can tell.
    if user is None or not _may_manage(caller, user.issuer):
        raise NotFound(f"There is no user {username!r}.")
    return caller, user


async def list_users(request: web.Request) -> web.Response:
    caller = await authenticate(request)
    _require_user_manager(caller)
    users = await request.app[PEOPLE].accounts.list_users(
        None if caller.kind == "admin" else caller.issuer_id
    )
    return json_response([u.public() for u in users], status=200)


async def get_user(request: web.Request) -> web.Response:
    _, user = await _managed_user(request)
    return json_response(user.public(), status=200)


async def delete_user(request: web.Request) -> web.Response:
    caller, user = await _managed_user(request)
    people = request.app[PEOPLE]
    await people.accounts.delete_user(user.username)
    await record(request, caller, "user.delete", f"user:{user.username}", {"issuer": user.issuer})
    # What a removed person drafted is withdrawn with them: an approver must not send, in their
    # name, an order nobody at the desk stands behind any more.
    for draft in await people.drafts.waiting(user.issuer):
        if draft.drafted_by == f"user:{user.username}" and await people.drafts.claim(draft.id):
            reason = f"withdrawn: {user.username}, who drafted it, was removed"
            await people.drafts.decide(draft, "rejected", caller.actor, reason=reason)
            await record(request, caller, "reject", f"draft:{draft.id}", {"reason": reason})
    return web.Response(status=204)


async def delete_lockout(request: web.Request) -> web.Response:
    """Lift a sign-in lock at once: five wrong tries by anyone lock a username, and on a
    disaster day the approver cannot wait 15 minutes."""
    caller, user = await _managed_user(request)
    was_locked = await request.app[PEOPLE].accounts.unlock(user.username)
    await record(request, caller, "lockout.lifted", f"user:{user.username}", {"was_locked": was_locked})
    return web.Response(status=204)


# --- sessions ---------------------------------------------------------------------
async def post_session(request: web.Request) -> web.Response:
    people = request.app[PEOPLE]
    body: schemas.SignIn = await body_of(request)
    token, session = await people.accounts.login(body.username, body.password, body.otp, address=request.remote)
    expires = _iso(session.expires)
    response = json_response({"token": token, "expires": expires}, status=201)
    # For the console: HttpOnly (no script reads it), SameSite=Strict (no other site
    # can make the browser send it), Secure whenever alertd is served over TLS — its own,
    # or a proxy's that says so (trusting that header can only make the cookie stricter).
    tls = request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    response.set_cookie(COOKIE, token, max_age=people.accounts.session_ttl_s, path="/", httponly=True,
                        samesite="Strict", secure=tls or None)  # fmt: skip
    return response


async def delete_current_session(request: web.Request) -> web.Response:
    caller = await authenticate(request)
    if caller.session is None:
        raise InvalidInput(
            "Only a person's session can be signed out; admin and issuer tokens are not sessions."
        )
    await request.app[PEOPLE].accounts.logout(caller.session)
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/")
    return response


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- the audit trail ------------------------------------------------------------------
async def get_audit(request: web.Request) -> web.Response:
    """Entries after ``since`` (a seq), oldest first; a Link header gives the next page."""
    caller = await authenticate(request)
    if not (caller.kind == "admin" or caller.has_role("auditor")):
        raise Forbidden("Reading the audit trail needs the auditor role (or the admin token).")
    query: schemas.AuditQuery = query_of(request)
    since, limit = query.since, query.limit
    entries = await request.app[PEOPLE].audit.read(since, limit)
    response = json_response(entries, status=200)
    if len(entries) == limit:
        query = urlencode({"since": entries[-1]["seq"], "limit": limit})
        response.headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return response
