"""The audit trail: who did what, in one hash-chained log that a municipality can re-check.

Every action — sign-ins and their failures, lockouts, user and issuer changes,
orders drafted, approved and sent — is appended as one entry::

    {"seq": 7, "ts": "2026-12-01T00:41:02.123Z", "actor": "user:tanaka", "action": "login",
     "target": "user:tanaka", "detail": {...}, "prev": "<hash of seq 6>", "hash": "<this entry's hash>"}

**The hash input.** ``hash`` is the SHA-256 (lower-case hex) of the entry's
*canonical JSON without the ``hash`` field*: keys sorted, no spaces
(separators ``,`` and ``:``), non-ASCII characters written as themselves,
encoded as UTF-8. The previous entry's hash is part of that input as
``prev``; the first entry's ``prev`` is 64 zeros. In Python::

    hashlib.sha256(json.dumps({k: v for k, v in e.items() if k != "hash"}, sort_keys=True,
                   ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()

Values are text, whole numbers, lists and objects only — never floats — so
any language's JSON library gives the same bytes. ``seq`` counts from 1
without gaps, which is what lets a verifier name the first entry that was
altered, removed or moved.

**Storage.** The entries are a Redis list (``<prefix>:audit``, entry ``seq``
at index ``seq - 1``) beside a head (``<prefix>:audit:head``: the last seq and
hash). The head is what makes removing the *last* entries visible too. An
append reads the head, builds the entry and hands it to a Lua script that
appends it only if the head is still the one it read (compare-and-set), so
appends from any number of processes at once keep one unbroken chain.

No entry holds a password, token, one-time code or secret: ``append`` refuses
a ``detail`` with such a key, so a careless caller fails loudly in tests
instead of leaking into the archive.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from alertd import logs
from alertd.errors import ServiceUnavailable

log = logs.get("alertd.audit")

GENESIS = "0" * 64
FIELDS = frozenset({"seq", "ts", "actor", "action", "target", "detail", "prev", "hash"})

# The vocabulary of the trail, fixed so an auditor can search it and a typo cannot
# hide an action under a new name.
ACTIONS = frozenset({
    "login", "login.failed", "lockout", "lockout.lifted", "logout",
    "user.create", "user.delete",
    "issuer.save", "issuer.delete",
    "subscriber.save", "subscriber.change", "subscriber.delete",
    "token.rotate",
    "draft", "approve", "reject", "send", "lift", "cancel",
    "test-broadcast", "drill", "deliveries.end", "config.reload",
})  # fmt: skip

# Words that mark a secret; a detail key containing one is refused.
_SECRET_WORDS = ("password", "token", "secret", "otp", "totp")

# A chain is read and checked this many entries at a time.
_CHUNK = 1000


def canonical(value: Any) -> bytes:
    """The one byte form of a JSON value that the hash is taken over."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


class AuditKeys:
    def __init__(self, prefix: str) -> None:
        self.entries = f"{prefix}:audit"  # list: canonical JSON entries, seq N at index N-1
        self.head = f"{prefix}:audit:head"  # hash: seq, hash of the last entry appended


# Append only if nobody appended since the caller read the head.
_APPEND_IF_HEAD = """
local head = redis.call('HGET', KEYS[2], 'hash')
if not head then head = '' end
if head ~= ARGV[1] then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[4])
redis.call('HSET', KEYS[2], 'seq', ARGV[2], 'hash', ARGV[3])
return 1
"""


def _check_detail(detail: Any, path: str = "detail") -> None:
    if isinstance(detail, float):
        raise ValueError(
            f"audit {path} is a float; use text or a whole number so every verifier hashes the same bytes"
        )
    if isinstance(detail, dict):
        for key, value in detail.items():
            if not isinstance(key, str) or any(word in key.lower() for word in _SECRET_WORDS):
                raise ValueError(
                    f"audit {path} may not carry {key!r}: no passwords, tokens or secrets in the trail"
                )
            _check_detail(value, f"{path}.{key}")
    elif isinstance(detail, list):
        for item in detail:
            _check_detail(item, path)


class AuditLog:
    """Appends to and reads the chain of one deployment (its key prefix)."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.keys = AuditKeys(prefix)
        self._append_if_head = redis.register_script(_APPEND_IF_HEAD)

    async def append(
        self, actor: str, action: str, target: str, detail: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if action not in ACTIONS:
            raise ValueError(f"{action!r} is not an audit action; add it to alertd.audit.ACTIONS")
        detail = detail or {}
        _check_detail(detail)
        for attempt in range(100):
            seq_raw, hash_raw = await self.redis.hmget(self.keys.head, ["seq", "hash"])
            prev = hash_raw.decode() if hash_raw else GENESIS
            entry: dict[str, Any] = {
                "seq": int(seq_raw or 0) + 1, "ts": iso_now(), "actor": actor, "action": action,
                "target": target, "detail": detail, "prev": prev,
            }  # fmt: skip
            entry["hash"] = entry_hash(entry)
            expected = hash_raw.decode() if hash_raw else ""
            done = await self._append_if_head(
                keys=[self.keys.entries, self.keys.head],
                args=[expected, entry["seq"], entry["hash"], canonical(entry)],
            )
            if done:
                return entry
            # Another process appended first: read the new head and try again, spread out
            # a little so a crowd of appenders does not collide in lock step.
            await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
        log.error("audit.append_failed", action=action, target=target)
        raise ServiceUnavailable(
            "alertd could not write the audit trail just now, so nothing was changed; try again."
        )

    async def read(self, since: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Entries after seq ``since``, oldest first, at most ``limit``."""
        raws = await self.redis.lrange(self.keys.entries, since, since + limit - 1)
        return [json.loads(raw) for raw in raws]

    async def head(self) -> tuple[int, str]:
        seq_raw, hash_raw = await self.redis.hmget(self.keys.head, ["seq", "hash"])
        return int(seq_raw or 0), hash_raw.decode() if hash_raw else GENESIS


# --- verifying ------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    entries: int
    bad_seq: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.bad_seq is None

    def sentence(self) -> str:
        if self.intact:
            return f"{self.entries} entries, chain intact"
        return f"chain broken at seq {self.bad_seq}: {self.reason}"


def verify_entries(raws: Iterable[bytes | str], head: tuple[int, str] | None = None) -> Verdict:
    """Walk the chain from seq 1; the first entry that is missing, moved or altered is named.

    ``head`` (last seq and hash, as alertd recorded them) also catches entries
    removed from the end, which a chain alone cannot show."""
    prev, expected = GENESIS, 1
    for raw in raws:
        try:
            entry = json.loads(raw)
        except ValueError:
            return Verdict(expected - 1, expected, "the entry in its place is not readable JSON")
        if not isinstance(entry, dict) or set(entry) != FIELDS:
            return Verdict(expected - 1, expected, "the entry in its place does not have the audit fields")
        if entry["seq"] != expected:
            return Verdict(expected - 1, expected,
                           f"it is missing or moved (the entry in its place is seq {entry['seq']})")  # fmt: skip
        if entry["prev"] != prev:
            return Verdict(expected - 1, expected, f"its prev is not the hash of seq {expected - 1}")
        if entry_hash(entry) != entry["hash"]:
            return Verdict(expected - 1, expected, "its content does not match its hash (it was altered)")
        prev, expected = entry["hash"], expected + 1
    count = expected - 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > count:
            return Verdict(count, expected, f"entries seq {expected} to {head_seq} are missing at the end")
        if head_seq < count:
            return Verdict(count, head_seq + 1, f"seq {head_seq} was the last entry alertd appended")
        if head_hash != prev:
            return Verdict(count, count, "the last entry is not the one alertd appended")
    return Verdict(count)


# --- the `alertd audit` command ---------------------------------------------------
def _entries(client: Any, keys: AuditKeys, since: int = 0) -> Iterator[bytes]:
    start = since
    while True:
        chunk = client.lrange(keys.entries, start, start + _CHUNK - 1)
        yield from chunk
        if len(chunk) < _CHUNK:
            return
        start += _CHUNK


def _connect() -> tuple[Any, AuditKeys]:
    url = os.environ.get("ALERTD_REDIS_URL")
    if not url:
        raise RuntimeError(
            "set ALERTD_REDIS_URL to the Redis alertd serve uses (and ALERTD_KEY_PREFIX if not 'alertd')"
        )
    from alertd.tls import redis_tls_options

    # rediss:// with ALERTD_REDIS_CA_FILE, as the engine connects.
    tls = redis_tls_options(url, os.environ.get("ALERTD_REDIS_CA_FILE") or None)
    from alertd.redis_client import connect_sync, key_root

    # Any form the engine takes: one server, Sentinel, Cluster.
    client = connect_sync(url, socket_timeout=10, socket_connect_timeout=5, **tls)
    return client, AuditKeys(key_root(os.environ.get("ALERTD_KEY_PREFIX", "alertd"), url))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alertd audit", description="check or archive the audit trail")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("verify", help="check the hash chain; exit 1 naming the first bad seq")
    p = sub.add_parser("export", help="write the entries as JSON lines, for the municipality's archive")
    p.add_argument("--since", type=int, default=0, help="only entries after this seq")
    p.add_argument("--output", "-o", help="write here instead of standard output")
    return parser


def main(argv: list[str]) -> int:
    """``alertd audit verify`` (0 intact, 1 broken, 2 cannot read) and ``alertd audit export``."""
    import redis

    args = build_parser().parse_args(argv)
    try:
        client, keys = _connect()
        if args.command == "verify":
            seq_raw, hash_raw = client.hmget(keys.head, ["seq", "hash"])
            head = (int(seq_raw), hash_raw.decode()) if seq_raw and hash_raw else None
            verdict = verify_entries(_entries(client, keys), head)
            print(verdict.sentence(), file=sys.stdout if verdict.intact else sys.stderr)
            return 0 if verdict.intact else 1
        if args.since < 0:
            print("alertd audit export: --since must be a seq (0 or more)", file=sys.stderr)
            return 2
        out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
        try:
            for raw in _entries(client, keys, args.since):
                out.write(raw.decode("utf-8") + "\n")
        finally:
            if out is not sys.stdout:
                out.close()
        # An archive must not be taken for sound when it is not: the export is written either
        # way (it is evidence), and the chain is checked as 'verify' would.
        seq_raw, hash_raw = client.hmget(keys.head, ["seq", "hash"])
        head = (int(seq_raw), hash_raw.decode()) if seq_raw and hash_raw else None
        verdict = verify_entries(_entries(client, keys), head)
        if not verdict.intact:
            print(f"alertd audit export: written, but the chain is not intact: {verdict.sentence()}", file=sys.stderr)
            return 1
        return 0
    except (RuntimeError, redis.RedisError, OSError) as exc:
        print(f"alertd audit: {exc}", file=sys.stderr)
        return 2
