"""Drafts: orders held for a second person's approval (the issuer's two-person rule).

An issuer with ``approval`` (``{"status": ["Actual"], "min_level": 4}``) has its
matching orders — and their lifts and cancels — stopped by the intake chain's
approval stage just before the commit (``alertd.intake.Approval``): nothing is
queued, published or delivered. What was sent is kept here, in Redis, with the
preview an approver reads. Approving re-runs the whole chain from those inputs
rather than committing the old plan: the orders in force, the subscribers and
the districts may have changed in the meantime, and the approver must send what
is true now, with every check run again.

A draft waits ``ALERTD_DRAFT_TTL_S`` seconds (30 minutes by default); after that
it is refused (410), since an order nobody approved in half an hour is stale.
Its record stays a day longer so the answer can say it expired rather than that
it never existed. Approving and rejecting are decided once: a claim key taken
with SET NX makes two approvers at the same moment one approval.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from alertd.errors import AlertdError, Conflict

DEFAULT_DRAFT_TTL_S = 30 * 60
# Kept past its expiry so a late approver hears "expired", not "there is no such draft".
KEEP_AFTER_EXPIRY_S = 24 * 3600
WAITING = "awaiting_approval"


def draft_ttl_from_env() -> int:
    return max(1, int(float(os.environ.get("ALERTD_DRAFT_TTL_S") or DEFAULT_DRAFT_TTL_S)))


class Gone(AlertdError):
    """A draft that waited longer than alertd keeps an order for approval."""

    status = 410
    title = "Gone"
    type_slug = "draft-expired"


@dataclass
class Draft:
    id: str
    issuer_id: str
    kind: str  # "evacuation", "alert-json" or "alert-cap": how to send it again
    payload: Any  # the order as it was accepted by its model (a dict), or the CAP document's text
    identifier: str
    fingerprint: str
    drafted_by: str  # the audit trail's name of who sent it: "user:tanaka.h" or "issuer:joso"
    created: float
    expires: float
    preview: dict[str, Any] = field(default_factory=dict)
    state: str = WAITING  # awaiting_approval, approved or rejected
    decided_by: str | None = None
    reason: str | None = None
    alert_id: str | None = None  # the alert the approval sent

    def expired(self, now: float | None = None) -> bool:
        return self.state == WAITING and (now or time.time()) >= self.expires

    def view(self) -> dict[str, Any]:
        """What a user of the issuer sees: never the order's raw inputs beyond its preview."""
        return {
            "id": self.id, "issuer": self.issuer_id, "kind": self.kind, "state": self.state,
            "drafted_by": self.drafted_by, "created": _iso(self.created), "expires": _iso(self.expires),
            "preview": self.preview,
        }  # fmt: skip


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Drafts:
    def __init__(self, redis: aioredis.Redis, prefix: str, *, ttl_s: int = DEFAULT_DRAFT_TTL_S) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s

    def _key(self, draft_id: str) -> str:
        return f"{self.prefix}:draft:{draft_id}"

    def _waiting(self, issuer_id: str) -> str:
        return f"{self.prefix}:drafts:{issuer_id}"  # zset: waiting draft ids by expiry

    def _claim(self, draft_id: str) -> str:
        return f"{self.prefix}:draft-decided:{draft_id}"

    def _by_identifier(self, issuer_id: str, identifier: str) -> str:
        return f"{self.prefix}:draft-identifier:{issuer_id}:{identifier}"

    async def hold(
        self, *, issuer_id: str, kind: str, payload: Any, identifier: str, fingerprint: str,
        drafted_by: str, preview: dict[str, Any],
    ) -> tuple[Draft, bool]:
        """A new draft, or the one still waiting for this identifier (a resend is not a second
        draft); True when it is new. The identifier reused for a different order is a 409."""
        now = time.time()
        draft = Draft(
            id=f"d{int(now * 1000):012x}{secrets.token_hex(5)}", issuer_id=issuer_id, kind=kind, payload=payload,
            identifier=identifier, fingerprint=fingerprint, drafted_by=drafted_by, created=now,
            expires=now + self.ttl_s, preview=preview,
        )  # fmt: skip
        ident_key = self._by_identifier(issuer_id, identifier)
        if not await self.redis.set(ident_key, draft.id, nx=True, ex=self.ttl_s):
            earlier_id = await self.redis.get(ident_key)
            earlier = await self.get(earlier_id.decode()) if earlier_id else None
            if earlier is not None and earlier.state == WAITING and not earlier.expired(now):
                if earlier.fingerprint and fingerprint and earlier.fingerprint != fingerprint:
                    raise Conflict(
                        f"The identifier {identifier!r} is already used by draft {earlier.id}, a different "
                        "order awaiting approval. Nothing was sent. Use a new identifier for a new order.",
                        field="identifier", existing_draft=earlier.id,
                    )  # fmt: skip
                return earlier, False
            await self.redis.set(ident_key, draft.id, ex=self.ttl_s)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(draft.id), json.dumps(asdict(draft), ensure_ascii=False),
                     ex=self.ttl_s + KEEP_AFTER_EXPIRY_S)  # fmt: skip
            pipe.zadd(self._waiting(issuer_id), {draft.id: draft.expires})
            await pipe.execute()
        return draft, True

    async def get(self, draft_id: str) -> Draft | None:
        if not draft_id or len(draft_id) > 64:
            return None
        raw = await self.redis.get(self._key(draft_id))
        return Draft(**json.loads(raw)) if raw else None

    async def waiting(self, issuer_id: str) -> list[Draft]:
        """Drafts of this issuer still awaiting approval, oldest first."""
        now = time.time()
        key = self._waiting(issuer_id)
        await self.redis.zremrangebyscore(key, "-inf", now)  # expired ones wait no longer
        ids = [m.decode() for m in await self.redis.zrange(key, 0, -1)]
        found = [await self.get(i) for i in ids]
        return [d for d in found if d is not None and d.state == WAITING and not d.expired(now)]

    async def claim(self, draft_id: str) -> bool:
        """Take the one decision on a draft; False when someone else decided it first."""
        return bool(await self.redis.set(self._claim(draft_id), "1", nx=True, ex=self.ttl_s + KEEP_AFTER_EXPIRY_S))

    async def release(self, draft_id: str) -> None:
        """The approval failed (the chain refused the order now): it can be decided again."""
        await self.redis.delete(self._claim(draft_id))

    async def decide(self, draft: Draft, state: str, by: str, *, reason: str | None = None,
                     alert_id: str | None = None) -> Draft:  # fmt: skip
        draft.state, draft.decided_by, draft.reason, draft.alert_id = state, by, reason, alert_id
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(draft.id), json.dumps(asdict(draft), ensure_ascii=False), keepttl=True)
            pipe.zrem(self._waiting(draft.issuer_id), draft.id)
            pipe.delete(self._by_identifier(draft.issuer_id, draft.identifier))
            await pipe.execute()
        return draft
