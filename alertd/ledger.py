"""The delivery ledger: how one delivery (an alert to one subscriber) is written down in Redis.

This is the one module that knows the record format; the store, the worker,
the recorder and the transmission test go through it.

Per alert, one hash (``Keys.deliveries``), with per subscriber:

    "<subscriber>|state"         the DeliveryState value; absent means "queued".
                                 Its own field so a batch reads every state in one
                                 HMGET and "sent" can be written with HSETNX (it
                                 never overwrites a later state that got there first).
    "<subscriber>|r"             msgpack map of the rest: attempts, error, latency_ms,
                                 delivered_at, report (what a channel library said). Packed in one field so a 2,000-way
                                 fan-out writes few arguments.
    "<subscriber>|confirmed_at"  when the receiver confirmed (HSETNX: the first counts).

Retries wait in one zset (``Keys.retry``) scored by their due time (unix ms).
A member is "lane|alert|subscriber|accepted_ms": everything needed to put the
job back into its lane, and the acceptance time, so a flash delivery that keeps
failing is seen as old however often it re-enters its lane.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import msgpack

from alertd.constants import Keys
from alertd.models import DeliveryState

# Moves due retries back into their lane atomically, so two processes never
# move the same one. Members are "lane|alert|subscriber|accepted_ms", with "|p" after
# them for a job parked behind an open circuit (the pattern ignores it).
MOVE_DUE_SCRIPT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local lane, a, s, t = string.match(m, '^([^|]+)|([^|]+)|([^|]+)|([^|]+)')
  if lane and string.sub(m, -2) == '|p' then
    -- marked: the backlog counts it parked until a worker re-parks or tries it (alertd/backlog.py)
    redis.call('XADD', ARGV[2] .. lane, '*', 'a', a, 's', s, 't', t, 'p', '1')
  elseif lane then
    redis.call('XADD', ARGV[2] .. lane, '*', 'a', a, 's', s, 't', t)
  end
end
return #due
"""

# Subscriber deliveries of one alert reached a final state in one recorder batch
# (ARGV[1] = how many, ARGV[2] = how many of them delivered, ARGV[3] = now in unix ms).
# Returns {first, last}: first = 1 when these hold the alert's first delivery; last = its
# last delivery's time (ms) once no delivery is left, else false. A missing hash (an alert
# from before, or counted out already) returns {0, false}, so a delivery recorded twice
# after a crash can never end a fan-out twice.
FANOUT_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, false} end
local first = 0
if tonumber(ARGV[2]) > 0 then
  first = redis.call('HSETNX', KEYS[1], 'first', ARGV[3])
  local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
  if tonumber(ARGV[3]) > last then redis.call('HSET', KEYS[1], 'last', ARGV[3]) end
end
local left = redis.call('HINCRBY', KEYS[1], 'left', -tonumber(ARGV[1]))
if left <= 0 then
  local last = redis.call('HGET', KEYS[1], 'last') or '0'
  redis.call('DEL', KEYS[1])
  return {first, last}
end
return {first, false}
"""

# A delivery's outcome that is not final (a retry to come), written only where its
# record is not final already: the desk may have ended it (superseded, end_deliveries)
# while this attempt was in flight, and a retry written over that revived it, to be
# tried again for ever. KEYS[1]: the alert's records. ARGV: triples of subscriber, state,
# packed rest ("" where the outcome has none). Returns how many were written.
GUARDED_RECORD_SCRIPT = """
local final = {delivered=true, confirmed=true, failed=true, expired=true, superseded=true}
local n = 0
for i = 1, #ARGV, 3 do
  local now = redis.call('HGET', KEYS[1], ARGV[i] .. '|state')
  if not (now and final[now]) then
    if ARGV[i + 1] ~= '' then redis.call('HSET', KEYS[1], ARGV[i] .. '|state', ARGV[i + 1]) end
    if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[1], ARGV[i] .. '|r', ARGV[i + 2]) end
    n = n + 1
  end
end
return n
"""

# HSETNX for a whole batch in one command: "sent" never overwrites a later state.
MARK_SENT_SCRIPT = """
for i, key in ipairs(KEYS) do
  redis.call('HSETNX', key, ARGV[i] .. '|state', 'sent')
end
return #KEYS
"""


class RetryEntry(NamedTuple):
    lane: str
    alert_id: str
    subscriber_id: str
    accepted_ms: int


class DeliveryLedger:
    """Reads and writes of delivery records; commands are queued on the caller's pipeline
    where the caller batches (the worker's prefetch, the recorder's flush)."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.retry_key = keys.retry
        self.lane_prefix = keys.lanes_root + ":lane:"  # what MOVE_DUE_SCRIPT appends a lane name to

    def key(self, alert_id: str) -> str:
        return self.keys.deliveries(alert_id)

    # --- the retry schedule ----------------------------------------------------
    @staticmethod
    def retry_member(
        lane: str, alert_id: str, subscriber_id: str, accepted_ms: int, parked: bool = False
    ) -> str:
        # "|p": parked behind an open circuit rather than waiting out a backoff, which the
        # backlog metric tells apart (a dead endpoint's jobs are not a lane falling behind).
        return f"{lane}|{alert_id}|{subscriber_id}|{accepted_ms}" + ("|p" if parked else "")

    @staticmethod
    def parse_retry_member(member: bytes | str) -> RetryEntry:
        text = member.decode() if isinstance(member, bytes) else member
        lane, alert_id, sub_id, accepted_ms = text.split("|")[:4]
        return RetryEntry(lane, alert_id, sub_id, int(accepted_ms))

    # --- the worker's batch read -------------------------------------------------
    @staticmethod
    def prefetch_fields(subscriber_ids: Iterable[str]) -> list[str]:
        """The fields one HMGET reads for these subscribers: state and record of each, in pairs."""
        return [f for s in subscriber_ids for f in (f"{s}|state", f"{s}|r")]

    @staticmethod
    def unpack_prefetch(
        fields: list[str], values: list[bytes | None]
    ) -> dict[str, tuple[str | None, dict[str, Any]]]:
        """subscriber -> (state, record so far) from the answer to ``prefetch_fields``."""
        out: dict[str, tuple[str | None, dict[str, Any]]] = {}
        for i in range(0, len(fields), 2):
            state, record = values[i], values[i + 1]
            out[fields[i].rpartition("|")[0]] = (
                state.decode() if state else None,
                msgpack.unpackb(record, raw=False) if record else {},
            )
        return out

    @staticmethod
    def attempts(record: dict[str, Any]) -> int:
        return int(record.get("attempts", 0))

    # --- writes (queued on the recorder's transaction) -------------------------
    def queue_mark_sent(self, pipe: Any, sent: list[tuple[str, str]]) -> None:
        """An attempt is under way: "sent", unless a later state is there already."""
        if sent:
            pipe.eval(MARK_SENT_SCRIPT, len(sent), *(self.key(a) for a, _ in sent), *(s for _, s in sent))

    @staticmethod
    def record_mapping(
        mapping: dict[str, Any], subscriber_id: str, fields: dict[str, Any], prev: dict[str, Any]
    ) -> None:
        """Add one delivery's outcome to its alert's HSET mapping; ``prev`` is its record so
        far, which the outcome's fields update (the record is one packed field)."""
        rest = {k: v for k, v in fields.items() if k != "state"}
        if "state" in fields:
            mapping[f"{subscriber_id}|state"] = fields["state"]
        if rest:
            mapping[f"{subscriber_id}|r"] = msgpack.packb({**prev, **rest})

    def queue_records(
        self, pipe: Any, by_alert: dict[str, dict[str, Any]], retries: dict[str, int],
        not_final: dict[str, list[Any]] | None = None,
    ) -> None:
        """Final outcomes as they are (HSET); ``not_final`` ones (per alert, the triples of
        ``guarded_triple``) only where the record is not final already."""
        for alert_id, mapping in by_alert.items():
            pipe.hset(self.key(alert_id), mapping=mapping)
        for alert_id, triples in (not_final or {}).items():
            pipe.eval(GUARDED_RECORD_SCRIPT, 1, self.key(alert_id), *triples)
        if retries:
            pipe.zadd(self.retry_key, retries)

    @staticmethod
    def guarded_triple(subscriber_id: str, fields: dict[str, Any], prev: dict[str, Any]) -> list[Any]:
        """A not-final outcome as GUARDED_RECORD_SCRIPT takes it: subscriber, state, packed rest."""
        rest = {k: v for k, v in fields.items() if k != "state"}
        return [subscriber_id, fields.get("state", ""), msgpack.packb({**prev, **rest}) if rest else ""]

    def end_mapping(self, raw: dict[bytes, bytes], subscribers: Iterable[str], reason: str) -> dict[str, Any]:
        """The HSET that ends every delivery of ``subscribers`` not yet in a final state as
        superseded, with ``reason`` as its last error (what the delivery list shows): a job still
        in its lane or waiting for a retry then meets the terminal stage and is never sent."""
        mapping: dict[str, Any] = {}
        for sub in subscribers:
            state = raw.get(f"{sub}|state".encode(), b"").decode() or DeliveryState.QUEUED.value
            if DeliveryState(state).terminal or raw.get(self.confirmed_field(sub).encode()):
                continue
            prev = raw.get(self.record_field(sub).encode())
            record = msgpack.unpackb(prev, raw=False) if prev else {}
            # The error that kept it from being delivered stays readable after the reason.
            error = f"{reason} (last error: {record['error']})" if record.get("error") else reason
            self.record_mapping(
                mapping, sub, {"state": DeliveryState.SUPERSEDED.value, "error": error}, record
            )
        return mapping

    # --- reads for people ----------------------------------------------------------
    def rows(self, raw: dict[bytes, bytes], plan: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Every planned delivery of an alert as the API shows it, from its hash (HGETALL)."""
        rows: dict[str, dict[str, Any]] = {s: {"subscriber": s, "adapter": a} for s, a in plan}
        for k, v in raw.items():
            sub, _, name = k.decode().rpartition("|")
            row = rows.setdefault(sub, {"subscriber": sub})
            if name == "r":
                row.update({key: str(value) for key, value in msgpack.unpackb(v, raw=False).items()})
            else:
                row[name] = v.decode()
        out = []
        for sub, row in sorted(rows.items()):
            state = row.get("state", DeliveryState.QUEUED.value)
            if row.get("confirmed_at"):
                state = DeliveryState.CONFIRMED.value
            out.append(
                {
                    "subscriber": sub,
                    "adapter": row.get("adapter"),
                    "state": state,
                    "attempts": int(row.get("attempts", 0)),
                    "latency_ms": float(row["latency_ms"]) if "latency_ms" in row else None,
                    "last_error": row.get("error"),
                    "report": row.get("report"),
                    "delivered_at": row.get("delivered_at"),
                    "confirmed_at": row.get("confirmed_at"),
                }
            )
        return out

    @staticmethod
    def state_field(subscriber_id: str) -> str:
        return f"{subscriber_id}|state"

    @staticmethod
    def record_field(subscriber_id: str) -> str:
        return f"{subscriber_id}|r"

    @staticmethod
    def error_of(raw_record: bytes | None) -> str | None:
        if not raw_record:
            return None
        error = msgpack.unpackb(raw_record, raw=False).get("error")
        return str(error) if error else None

    @staticmethod
    def confirmed_field(subscriber_id: str) -> str:
        return f"{subscriber_id}|confirmed_at"
