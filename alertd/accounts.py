"""People who use alertd: their accounts, sign-in with password and one-time code, sessions, lockout.

Everything lives in Redis under the deployment's key prefix and is read on
every request, so deleting a user ends their sessions at once on every alertd
process — nothing is cached in a process past a revoke.

- **Users** belong to one issuer and hold roles (``operator``, ``approver``,
  ``auditor``, ``admin``). Passwords are stored as argon2id hashes
  (argon2-cffi), hashed and checked in a thread: an argon2 check takes tens of
  milliseconds of CPU, which must never hold up a flash delivery on the loop.
- **One-time codes** are TOTP (RFC 6238: 30 s, 6 digits, SHA-1, as every
  authenticator app does), one secret per user. A code is accepted one step
  either side of now, and only once: a code seen over someone's shoulder cannot
  be used again.
- **Sessions** are random bearer tokens; only their SHA-256 is stored, with a
  time to live, and a per-user set lets a delete revoke them all.
- **Lockout**: 5 failed sign-ins for one username within 15 minutes lock that
  username for 15 minutes, right password or not. Unknown usernames count and
  lock the same way, so the answers never tell which usernames exist.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, NoReturn, TypeVar

import pyotp
import redis.asyncio as aioredis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from alertd import logs
from alertd.audit import AuditLog
from alertd.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthorized

log = logs.get("alertd.accounts")
T = TypeVar("T")

ROLES = ("operator", "approver", "auditor", "admin")
USERNAME = re.compile(r"[a-z][a-z0-9._-]{2,31}")
MIN_PASSWORD = 12
MAX_PASSWORD = 256  # a longer "password" is a paste accident or an attempt to burn CPU
LOCK_AFTER = 5
FAIL_WINDOW_S = 15 * 60
LOCK_S = 15 * 60
DEFAULT_SESSION_TTL_S = 12 * 3600
TOTP_DIGITS = 6
TOTP_STEP_S = 30
# Japan has one time zone; an account "expires 2027-03-31" works through that day there.
JST = timezone(timedelta(hours=9))

_hasher = PasswordHasher()  # argon2id, RFC 9106's second recommended parameters


def session_ttl_from_env() -> int:
    hours = float(os.environ.get("ALERTD_SESSION_TTL_H") or DEFAULT_SESSION_TTL_S / 3600)
    return max(60, int(hours * 3600))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@functools.cache
def _decoy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


class OneTimeCodeUsed(Unauthorized):
    """The right one-time code, already used: its own type, so the console can say "wait for the
    next code" instead of "something is wrong". It still counts towards the lockout."""

    type_slug = "otp-used"


class AccountKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.users = f"{prefix}:users"  # set of usernames

    def user(self, username: str) -> str:
        return f"{self.prefix}:user:{username}"  # JSON of the User

    def session(self, token_sha: str) -> str:
        return f"{self.prefix}:session:{token_sha}"  # JSON {username, uid, expires}, with a TTL

    def user_sessions(self, username: str) -> str:
        return f"{self.prefix}:user-sessions:{username}"  # set of session token hashes

    def failures(self, username: str) -> str:
        return f"{self.prefix}:login-failures:{username}"  # zset: failed sign-ins by time (ms)

    def lock(self, username: str) -> str:
        return f"{self.prefix}:login-lock:{username}"  # present while the username is locked

    def otp_used(self, username: str) -> str:
        return f"{self.prefix}:otp-used:{username}"  # the last TOTP step accepted


# One failure, counted in a sliding window; at the limit the username is locked.
# Returns the failures in the window, or -1 when this failure locked it (audited once).
_FAIL = """
local now = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[1])
  if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[5]) then return -1 end
end
return n
"""

# A TOTP step is taken only if it is later than the last one taken.
_TAKE_STEP = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


@dataclass
class User:
    username: str
    issuer: str
    roles: list[str]
    password_hash: str
    totp_secret: str
    created: str
    # A new uid each time a username is created: a session of a deleted user never
    # works for someone later given the same name.
    uid: str
    expires: str | None = None  # ISO 8601 UTC; past it the account cannot sign in

    def public(self) -> dict[str, Any]:
        return {"username": self.username, "issuer": self.issuer, "roles": self.roles,
                "expires": self.expires, "created": self.created}  # fmt: skip

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and (now or datetime.now(UTC)) >= datetime.fromisoformat(self.expires)

    def totp(self) -> pyotp.TOTP:
        return pyotp.TOTP(self.totp_secret, digits=TOTP_DIGITS, interval=TOTP_STEP_S)


@dataclass(frozen=True)
class Session:
    token_sha: str
    user: User
    expires: float  # unix seconds

    @property
    def short_id(self) -> str:
        """Enough of the token's hash to match a logout to its login in the audit trail."""
        return self.token_sha[:12]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- validation ---------------------------------------------------------------
def check_username(value: Any) -> str:
    if not isinstance(value, str) or not USERNAME.fullmatch(value):
        raise InvalidInput(
            "'username' must be 3 to 32 characters: lower-case letters a-z, digits, '.', '_' or '-', "
            "starting with a letter (for example tanaka.h).",
            field="username",
        )
    return value


def check_roles(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(r, str) and r in ROLES for r in value):
        raise InvalidInput(f"'roles' must be a list of one or more of {', '.join(ROLES)}.", field="roles")
    return [r for r in ROLES if r in value]


def check_password(value: Any) -> str:
    if not isinstance(value, str) or not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise InvalidInput(
            f"'password' must be {MIN_PASSWORD} to {MAX_PASSWORD} characters; a short phrase is easier to "
            "remember than a short code and much harder to guess.",
            field="password",
        )
    return value


def check_expires(value: Any, now: datetime | None = None) -> str | None:
    """A date (valid through that day, Japan time) or a date and time with its offset."""
    if value is None:
        return None
    wrong = InvalidInput(
        "'expires' must be a date such as 2027-03-31 (the account works through that day, Japan time) "
        "or a date and time with its offset, such as 2027-03-31T17:00:00+09:00.",
        field="expires",
    )
    if not isinstance(value, str):
        raise wrong
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value) + timedelta(days=1), datetime.min.time(), JST)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):  # OverflowError: the day after 9999-12-31
        raise wrong from None
    if moment.tzinfo is None:
        raise wrong
    if moment <= (now or datetime.now(UTC)):
        raise InvalidInput(
            "'expires' is already past: an account must be usable when it is made.", field="expires"
        )
    return moment.astimezone(UTC).isoformat(timespec="seconds")


# --- the store -----------------------------------------------------------------
class Accounts:
    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        audit: AuditLog,
        *,
        session_ttl_s: int = DEFAULT_SESSION_TTL_S,
    ) -> None:
        self.redis = redis
        self.keys = AccountKeys(prefix)
        self.audit = audit
        self.session_ttl_s = session_ttl_s
        # One argon2 computation at a time, in a thread: a burst of sign-ins then takes one
        # core at most and leaves the other to the event loop (on a 2-core host, four hashes
        # at once stretched the loop's worst stall from ~30 ms to ~80 ms).
        self._argon2_gate = asyncio.Semaphore(1)
        self._fail = redis.register_script(_FAIL)
        self._take_step = redis.register_script(_TAKE_STEP)

    async def _argon2(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._argon2_gate:
            return await asyncio.to_thread(fn, *args)

    # --- users ---------------------------------------------------------------
    async def create_user(
        self, username: str, issuer: str, roles: list[str], password: str, expires: str | None = None
    ) -> tuple[User, str]:
        """The new user and their ``otpauth://`` URI (shown once, for the authenticator app)."""
        check_username(username)
        check_roles(roles)
        check_password(password)
        password_hash = await self._argon2(_hasher.hash, password)
        user = User(
            username=username, issuer=issuer, roles=check_roles(roles), password_hash=password_hash,
            totp_secret=pyotp.random_base32(), created=_iso(time.time()), uid=secrets.token_hex(8),
            expires=check_expires(expires),
        )  # fmt: skip
        if not await self.redis.set(self.keys.user(username), json.dumps(asdict(user)), nx=True):
            raise Conflict(f"There is already a user {username!r}; choose another username or delete that one first.",
                           field="username")  # fmt: skip
        await self.redis.sadd(self.keys.users, username)
        uri = user.totp().provisioning_uri(name=username, issuer_name=f"alertd {issuer}")
        log.info("user.created", username=username, issuer_id=issuer, roles=user.roles)
        return user, uri

    async def get_user(self, username: str) -> User | None:
        if not USERNAME.fullmatch(username):
            return None
        raw = await self.redis.get(self.keys.user(username))
        return User(**json.loads(raw)) if raw else None

    async def list_users(self, issuer: str | None = None) -> list[User]:
        names = sorted(m.decode() for m in await self.redis.smembers(self.keys.users))
        users = [u for u in [await self.get_user(n) for n in names] if u is not None]
        return [u for u in users if issuer is None or u.issuer == issuer]

    async def unlock(self, username: str) -> bool:
        """Lift a sign-in lock and forget the failures; whether there was a lock."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(self.keys.lock(username))
            pipe.delete(self.keys.lock(username), self.keys.failures(username))
            was_locked, _ = await pipe.execute()
        log.info("login.unlocked", username=username, was_locked=bool(was_locked))
        return bool(was_locked)

    async def delete_user(self, username: str) -> User:
        """Remove a user and end every session of theirs, at once."""
        user = await self.get_user(username)
        if user is None:
            raise NotFound(f"There is no user {username!r}.")
        k = self.keys
        sessions = [m.decode() for m in await self.redis.smembers(k.user_sessions(username))]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(k.user(username), k.user_sessions(username), k.failures(username), k.lock(username),
                        k.otp_used(username), *(k.session(s) for s in sessions))  # fmt: skip
            pipe.srem(k.users, username)
            await pipe.execute()
        log.info("user.deleted", username=username, issuer_id=user.issuer, sessions_ended=len(sessions))
        return user

    # --- signing in ----------------------------------------------------------
    async def login(
        self, username: Any, password: Any, otp: Any, *, address: str | None = None
    ) -> tuple[str, Session]:
        """A new session token for the right password and one-time code; every refusal is audited."""
        if not isinstance(username, str) or not isinstance(password, str) or not isinstance(otp, str):
            raise InvalidInput('Send {"username": …, "password": …, "otp": "<the 6 digits your app shows>"}.')
        if not USERNAME.fullmatch(username) or len(password) > MAX_PASSWORD:
            # Not a username alertd could have: no lookup, but the same answer as a wrong password.
            raise self._wrong()
        await self._refuse_if_locked(username)
        user = await self.get_user(username)
        if not await self._argon2(_verify, user.password_hash if user else None, password) or user is None:
            await self._failed(username, "unknown user" if user is None else "password", address)
        assert user is not None
        if user.expired():
            await self.audit.append(f"user:{username}", "login.failed", f"user:{username}",
                                    {"reason": "account expired", "address": address or "-"})  # fmt: skip
            raise Forbidden(f"The account {username!r} expired on {user.expires}; ask your municipality's alertd "
                            "administrator for a new one.")  # fmt: skip
        taken = await self._take_otp(user, otp)
        if taken != "ok":
            await self._failed(username, "one-time code" if taken == "wrong" else "one-time code reused", address,
                               reused=taken == "used")  # fmt: skip
        token = secrets.token_urlsafe(32)
        session = Session(token_hash(token), user, time.time() + self.session_ttl_s)
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(k.session(session.token_sha), json.dumps({"username": username, "uid": user.uid}),
                     ex=self.session_ttl_s)  # fmt: skip
            pipe.sadd(k.user_sessions(username), session.token_sha)
            pipe.expire(k.user_sessions(username), self.session_ttl_s)
            pipe.delete(k.failures(username))
            await pipe.execute()
        await self.audit.append(f"user:{username}", "login", f"user:{username}",
                                {"session": session.short_id, "address": address or "-"})  # fmt: skip
        log.info("login", username=username, issuer_id=user.issuer, session=session.short_id)
        return token, session

    @staticmethod
    def _wrong() -> Unauthorized:
        return Unauthorized("The username, password or one-time code is wrong. After 5 wrong tries in 15 minutes "
                            "the username is locked for 15 minutes.")  # fmt: skip

    async def _refuse_if_locked(self, username: str) -> None:
        left_ms = await self.redis.pttl(self.keys.lock(username))
        if left_ms > 0:
            minutes = max(1, round(left_ms / 60_000))
            raise TooManyRequests(
                f"Sign-in for {username!r} is locked for about {minutes} more minute(s) after 5 wrong tries. "
                "Wait, or ask your municipality's alertd administrator.",
                retry_after_s=max(1, -(-left_ms // 1000)),
            )

    @staticmethod
    def _reused() -> Unauthorized:
        return OneTimeCodeUsed("That one-time code was already used to sign in. Wait for the next code (a new one "
                               "every 30 seconds) and enter it.")  # fmt: skip

    async def _failed(self, username: str, reason: str, address: str | None, *, reused: bool = False) -> NoReturn:
        """Count a failure (locking at the limit), audit it, and refuse."""
        now_ms = int(time.time() * 1000)
        counted = await self._fail(
            keys=[self.keys.failures(username), self.keys.lock(username)],
            args=[
                now_ms,
                f"{now_ms}-{secrets.token_hex(4)}",
                FAIL_WINDOW_S * 1000,
                LOCK_AFTER,
                LOCK_S * 1000,
            ],
        )
        where = address or "-"
        await self.audit.append(
            "anonymous", "login.failed", f"user:{username}", {"reason": reason, "address": where}
        )
        log.warning("login.failed", username=username, reason=reason, address=where)
        if counted == -1:
            await self.audit.append("alertd", "lockout", f"user:{username}",
                                    {"failures": LOCK_AFTER, "minutes": LOCK_S // 60, "address": where})  # fmt: skip
            log.warning("login.locked", username=username, minutes=LOCK_S // 60)
        raise self._reused() if reused else self._wrong()

    async def _take_otp(self, user: User, otp: str) -> str:
        """"ok"; "used" for a right code already taken (someone pressed サインイン twice within its
        30 s, or signed in again at once: they are told to wait for the next code); else "wrong"."""
        code = otp.strip().replace(" ", "")
        if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
            return "wrong"
        totp, step = user.totp(), int(time.time()) // TOTP_STEP_S
        # One step either side: a phone clock a little off, or a code typed as it changes.
        for candidate in (step - 1, step, step + 1):
            if hmac.compare_digest(totp.generate_otp(candidate), code):
                taken = await self._take_step(keys=[self.keys.otp_used(user.username)],
                                              args=[candidate, TOTP_STEP_S * 4])  # fmt: skip
                return "ok" if taken else "used"
        return "wrong"

    # --- sessions ------------------------------------------------------------
    async def session(self, token: str) -> Session | None:
        """The live session of this token, checked against the user as they are now."""
        sha = token_hash(token)
        raw = await self.redis.get(self.keys.session(sha))
        if raw is None:
            return None
        data = json.loads(raw)
        user = await self.get_user(data["username"])
        if user is None or user.uid != data["uid"] or user.expired():
            return None
        ttl = await self.redis.ttl(self.keys.session(sha))
        return Session(sha, user, time.time() + max(ttl, 0))

    async def logout(self, session: Session) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.session(session.token_sha))
            pipe.srem(self.keys.user_sessions(session.user.username), session.token_sha)
            await pipe.execute()
        await self.audit.append(f"user:{session.user.username}", "logout", f"user:{session.user.username}",
                                {"session": session.short_id})  # fmt: skip
        log.info("logout", username=session.user.username, session=session.short_id)


def _verify(hashed: str | None, password: str) -> bool:
    """``None`` (no such user) is checked against a decoy, so that answer takes as long as a real one."""
    try:
        return _hasher.verify(hashed or _decoy_hash(), password) and hashed is not None
    except (VerificationError, InvalidHashError):
        return False
