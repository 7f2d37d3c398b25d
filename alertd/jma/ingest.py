"""From parsed JMA telegrams to alerts the core takes — the same path for the feed and the drop folder.

Whatever carried a telegram (the Atom poller, a file in ALERTD_JMA_SPOOL),
it goes through here, one telegram at a time (a lock; one ingester per
deployment holds the lease, see lease.py):

1. order: arrival order (the drop folder: ReportDateTime, then Serial), and
   within one EventID by Serial, then ReportDateTime, then InfoType (発表 before
   取消) — never by feed timestamp alone, so two serials published in the same
   second are told oldest first;
2. dedup by JMA identity (type, offices, title, EventID, Serial,
   ReportDateTime, InfoType), not by bytes: the same telegram with CRLF line
   endings, or from another relay, is announced once;
3. 試験 (Test) telegrams are logged and counted, never broadcast;
4. sequence (sequence.py) EEW and tsunami telegrams per EventID;
5. the policy decides lane and adapters, at least as wide as what an
   Update/lift/Cancel references;
6. hand each alert to the core (``on_alert``) and record what it took.

Every telegram that is not broadcast leaves a log line and a count
(``alertd_jma_ignored_total{reason}``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis

import alertd.jma.sequence as sequence
from alertd import logs
from alertd.constants import Keys
from alertd.errors import AlertdError
from alertd.jma.head import AreaRegistry, Resolver
from alertd.jma.metrics import ALERTS, IGNORED
from alertd.jma.parse import ParseResult
from alertd.jma.policy import Decision, Policy
from alertd.models import Alert, MsgType, Status

log = logs.get("alertd.jma")

OnAlert = Callable[[Alert], Awaitable[Any]]
Guard = Callable[[], Awaitable[bool]]


@dataclass
class Telegram:
    """One parsed JMA message and where it came from."""

    source: str  # the feed name, or "spool"
    name: str  # entry URL or file name, for logs
    result: ParseResult
    position: int = 0  # arrival order, oldest first: the tie-break between events


@dataclass(frozen=True)
class Outcome:
    done: bool  # False: hand the telegram over again later (the core could not take it)
    reason: str  # broadcast | refused | ignored:<why> | retry | not_leader
    # Why the core refused the telegram's alerts (expired, …), for "refused": the drop
    # folder writes it beside the file in rejected/, so nobody reads "broadcast" in the log.
    detail: str = ""


DONE = Outcome(True, "broadcast")


# Types whose every report restates its event whole (EventID: the earthquake, the volcano, the
# 臨時情報): a later 発表 replaces the earlier report, so it is an Update referencing it and
# the earlier one stops being in force (調査中 → 巨大地震警戒 → 調査終了; レベル3 → レベル2). Not
# 竜巻注意情報, 記録的短時間大雨情報 or 熱中症警戒アラート: their incident is the issuing office,
# and a report for other towns must not end one still being delivered.
RESTATED = frozenset({"VXSE51", "VXSE52", "VXSE53", "VTSE51", "VTSE52", "VFVO50", "VYSE50", "VYSE60"})


class TelegramSink(Protocol):
    """Where a source hands its telegrams: the Ingest path, or the drop-folder handover (handover.py)."""

    async def handle(self, telegrams: list[Telegram], guard: Guard | None = None) -> dict[int, Outcome]: ...


def order(telegrams: list[Telegram]) -> list[Telegram]:
    """Arrival order, except that within an event its telegrams go by Serial/ReportDateTime/InfoType.

    Each event keeps the arrival slots its telegrams took and fills them in story order, so
    two events dropped together stay interleaved as they arrived (a 津波情報 after the 津波警報
    it is about) rather than one whole event going before the other.
    """
    arrival = sorted(telegrams, key=lambda t: t.position)

    def group(t: Telegram) -> Any:
        h = t.result.header
        if sequence.is_sequenced(h):
            assert h is not None
            return (h.type_code, h.status.value, " ".join(sorted(h.event_id.split())))
        return ("", t.position)

    def within(t: Telegram) -> tuple[Any, ...]:
        h = t.result.header
        return (sequence.order_key(h) if h is not None and sequence.is_sequenced(h) else (-1, "", 0), t.position)

    members: dict[Any, list[Telegram]] = {}
    for t in arrival:
        members.setdefault(group(t), []).append(t)
    slots: list[tuple[int, Telegram]] = []
    for group_members in members.values():
        positions = [t.position for t in group_members]
        slots.extend(zip(positions, sorted(group_members, key=within), strict=True))
    return [t for _, t in sorted(slots, key=lambda st: st[0])]


class Ingest:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        on_alert: OnAlert,
        policy: Policy,
        registry: Callable[[], AreaRegistry],
        *,
        retention_s: float = 14 * 86400.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.on_alert = on_alert
        self.policy = policy
        self._registry = registry
        self.retention_s = retention_s
        self.events = sequence.EventStore(redis, keys, retention_s)
        self._lock = asyncio.Lock()
        self._refused: list[str] = []  # the core's refusals for the telegram in hand (under _lock)
        self._sent = 0  # and how many of its alerts the core took

    @property
    def registry(self) -> AreaRegistry:
        return self._registry()

    async def handle(self, telegrams: list[Telegram], guard: Guard | None = None) -> dict[int, Outcome]:
        """Process telegrams in story order; returns position → outcome.

        ``guard`` (the lease check) is asked before each telegram: a process
        that lost the lease stops, and leaves the rest to the new holder.
        """
        outcomes: dict[int, Outcome] = {}
        async with self._lock:
            for telegram in order(telegrams):
                if guard is not None and not await guard():
                    outcomes[telegram.position] = Outcome(False, "not_leader")
                    continue
                outcomes[telegram.position] = await self._one(telegram)
        return outcomes

    # --- one telegram -----------------------------------------------------------------

    async def _one(self, t: Telegram) -> Outcome:
        result, header = t.result, t.result.header
        if not result.supported or header is None:
            return self._ignored(t, "unsupported")
        identity_key = self.keys.jma(f"identity:{header.identity}")
        if await self.redis.exists(identity_key):
            return self._ignored(t, "duplicate")
        if result.unresolved:
            log.warning(
                "jma.unresolved_areas",
                source=t.source,
                name=t.name,
                type=result.type_code,
                codes=result.unresolved,
            )
        self._refused = []
        self._sent = 0
        if header.status is Status.TEST:
            outcome = self._ignored(t, "test")
        elif sequence.is_sequenced(header):
            outcome = await self._sequenced(t)
        else:
            outcome = await self._simple(t)
        if outcome is DONE and self._refused and not self._sent:
            # Every alert the policy would have sent was refused: nothing went out, and the
            # outcome must say so (the same telegram again would be refused again: done).
            outcome = Outcome(True, "refused", "; ".join(dict.fromkeys(self._refused)))
        if outcome.done:
            await self.redis.set(identity_key, "1", ex=int(self.retention_s))
        return outcome

    def _ignored(self, t: Telegram, reason: str) -> Outcome:
        h = t.result.header
        fields: dict[str, Any] = {"source": t.source, "name": t.name, "type": t.result.type_code,
                                  "title": t.result.title, "reason": reason}  # fmt: skip
        if h is not None:
            fields.update(event_id=h.event_id, serial=h.serial, info_type=h.info_type,
                          report_time=h.report_time.isoformat(), status=h.status.value)  # fmt: skip
        log.info("jma.entry_ignored", **fields)
        IGNORED.labels(source=t.source, type=t.result.type_code, reason=reason).inc()
        return Outcome(True, f"ignored:{reason}")

    async def _sequenced(self, t: Telegram) -> Outcome:
        header = t.result.header
        assert header is not None
        state = await self.events.load(header)
        resolver = Resolver(self.registry) if header.type_code == "VTSE41" else None
        planned = sequence.plan(header, t.result.alerts, state, resolver)
        if planned.skip is not None:
            return self._ignored(t, planned.skip)
        accepted: dict[str, tuple[Alert, Decision]] = {}
        for step in planned.steps:
            got = await self._send(t, step.alert, step.inherit)
            if got is not None:
                accepted[step.alert.identifier] = (step.alert, got)
        # Saved only once the whole telegram went through: a telegram retried after
        # the core failed is planned again from the same state, to the same identifiers.
        await self.events.save(header, sequence.record(planned, accepted))
        return DONE

    async def _simple(self, t: Telegram) -> Outcome:
        """Other types: a 訂正/取消 references the last broadcast report of the same incident.

        For the types in RESTATED a new 発表 does too, and is an Update of it. Either way
        it goes at least as far as that report went (a レベル5 → レベル3 reaches the
        loudspeakers that announced レベル5).
        """
        sent: list[tuple[Alert, Decision]] = []
        header = t.result.header
        restated = header is not None and header.type_code in RESTATED
        for alert in t.result.alerts:
            inherit: list[Decision] = []
            if alert.msg_type in (MsgType.UPDATE, MsgType.CANCEL) or restated:
                refs, inherit = await self._incident(alert.status, alert.incidents)
                alert.references = refs
                if alert.msg_type is MsgType.UPDATE and not refs:
                    alert.msg_type = MsgType.ALERT  # a 訂正 of nothing alertd sent is news
                elif alert.msg_type is MsgType.ALERT and refs:
                    alert.msg_type = MsgType.UPDATE  # the event's newer report replaces the older
            decision = await self._send(t, alert, inherit)
            if decision is not None:
                sent.append((alert, decision))
        if sent and sent[0][0].incidents:
            first = sent[0][0]
            record = {"refs": [a.reference_key() for a, _ in sent], "decisions": [d.to_dict() for _, d in sent]}
            await self.redis.set(
                self._incident_key(first.status, first.incidents), json.dumps(record), ex=int(self.retention_s)
            )
        return DONE

    def _incident_key(self, status: Status, incident: str) -> str:
        """One record per (status, incident): a drill (Exercise) report must never find, and
        so reference, update or lift, the Actual report of the same incident — the
        南海トラフ臨時情報 of a drill and of the real trough share one incident — nor the reverse."""
        return self.keys.jma(f"incident:{status.value}:{incident}")

    async def _incident(self, status: Status, incident: str | None) -> tuple[list[str], list[Decision]]:
        """The reference keys and routing decisions of the incident's last broadcast report of this status."""
        if not incident:
            return [], []
        raw = await self.redis.get(self._incident_key(status, incident))
        if not raw:
            return [], []
        data = json.loads(raw)
        if isinstance(data, list):  # written before decisions were kept: references only
            return list(data), []
        return list(data.get("refs", [])), [Decision.from_dict(d) for d in data.get("decisions", [])]

    async def _send(self, t: Telegram, alert: Alert, inherit: list[Decision]) -> Decision | None:
        """Policy, then the core. The decision when the core took it; None when not sent or refused.

        Any error other than AlertdError (Redis down …) propagates: the telegram is retried.
        """
        decision = self.policy.apply(alert, getattr(self.registry, "prefecture_of", None), inherit)
        label = "broadcast" if decision.broadcast else "dropped"
        if decision.broadcast and alert.msg_type is MsgType.CANCEL and not alert.references:
            label = "unreferenced"  # nothing alertd sent to withdraw
        elif decision.broadcast and not alert.districts and not alert.references:
            label = "no_districts"
        if label != "broadcast":
            ALERTS.labels(kind=alert.kind or "", decision=label).inc()
            log.info(
                "jma.alert_not_sent",
                source=t.source,
                name=t.name,
                identifier=alert.identifier,
                decision=label,
                rule=decision.rule,
            )
            return None
        try:
            await self.on_alert(alert)
        except AlertdError as exc:
            self._refused.append(exc.detail)
            ALERTS.labels(kind=alert.kind or "", decision="refused").inc()
            log.error(
                "jma.alert_refused",
                source=t.source,
                identifier=alert.identifier,
                error=exc.detail,
            )
            return None
        self._sent += 1
        ALERTS.labels(kind=alert.kind or "", decision="broadcast").inc()
        log.info(
            "jma.alert_sent",
            source=t.source,
            identifier=alert.identifier,
            msg_type=alert.msg_type.value,
            kind=alert.kind,
            alert_level=alert.level,
            action=alert.action,
            references=len(alert.references),
            priority=alert.priority.value,
            adapters=alert.adapters,
        )
        return decision
