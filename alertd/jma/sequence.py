"""The reports of one JMA event, told in order: EEW serials, tsunami grades per region, 取消.

JMA reports an event as a sequence — an EEW as serials 1, 2, 3 … and maybe a
取消; a tsunami as messages that each restate the grade of every 津波予報区
still concerned, down to the last 解除. A receiver must hear the sequence as
one story: a later report replaces the earlier ones, a 取消 withdraws all of
them, a 解除 ends what it lifts. alertd tells it in CAP terms:

- every report after the first is an ``Update`` whose ``references`` list the
  reports it replaces (for an EEW: every earlier report of the EventID that
  alertd accepted; for a tsunami message: the alerts in force for the regions
  it names). The core ends what is referenced and supersedes its undelivered
  work;
- a 取消 is a ``Cancel`` referencing every report of the EventID, with the
  highest level among them, so no receiver is skipped on level grounds;
- a report older than (or as old as) one already processed — by Serial, then
  ReportDateTime — is recorded and not passed on, and after a 取消 nothing of
  that EventID is passed on;
- a tsunami region whose alert is lifted (解除, or 津波予報 after a 注意報), or
  that a later message of the event no longer names (nothing in force there
  any more), gets a lift: an ``Update`` with ``action: lift`` and CAP
  responseType ``AllClear`` referencing the alerts it ends.

The state lives in Redis, one JSON document per (status, type, EventID) under
``<prefix>:jma:event:…``, so Exercise and Actual never share it and a
restarted process continues the story. A JMA EventID can name several
events ("20151114055157 20151114061750" when an aftershock joins the first
quake's tsunami messages): each is stored under every one of its parts and
the parts are merged when read.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import redis.asyncio as aioredis

from alertd.constants import Keys
from alertd.jma.head import GEOCODE_TSUNAMI, Header, Part, Resolver, area, build_alert, unique
from alertd.jma.levels import TSUNAMI_LIFT_EVENTS
from alertd.jma.policy import Decision
from alertd.jma.seismic import LIFTED_LEVEL
from alertd.models import Alert, MsgType

# Types told as sequences per EventID; every other type keeps the simpler
# "reference the last broadcast report of the incident" rule (ingest.py).
SEQUENCED = frozenset({"VXSE43", "VTSE41"})

# Within one Serial and ReportDateTime: 発表 before 訂正 before 取消 (JMA's 取消 of an
# EEW repeats the Serial of the report it withdraws).
INFO_RANK = {"発表": 0, "訂正": 1, "遅延": 1, "取消": 2}

_SAFE = re.compile(r"^[0-9A-Za-z_-]{1,40}$")


def is_sequenced(header: Header | None) -> bool:
    return header is not None and header.type_code in SEQUENCED and bool(header.event_id.split())


def order_key(header: Header) -> tuple[int, str, int]:
    """Serial (numeric; -1 when there is none, as in tsunami messages), then ReportDateTime, then InfoType."""
    serial = int(header.serial) if header.serial.isdigit() else -1
    return (serial, header.report_time.astimezone(UTC).isoformat(), INFO_RANK.get(header.info_type, 0))


def tsunami_regions(alert: Alert) -> list[str]:
    """The 津波予報区 codes an alert names, from its areas (present even when the registry lacks one)."""
    return unique(
        v for info in alert.infos[:1] for a in info.areas for k, v in a.geocodes if k == GEOCODE_TSUNAMI
    )


@dataclass
class Report:
    """A report of the event that alertd accepted: how to reference it and how far it went."""

    ref: str
    level: int | None
    decision: dict[str, Any]

    @property
    def routing(self) -> Decision:
        return Decision.from_dict(self.decision)


@dataclass
class Region:
    """What is in force for one 津波予報区: its grade and the alerts saying so."""

    level: int | None
    refs: list[str] = field(default_factory=list)
    name: str = ""


@dataclass
class EventState:
    last: tuple[int, str] | None = None  # (serial, report time) of the newest report processed
    cancelled: bool = False
    reports: list[Report] = field(default_factory=list)
    regions: dict[str, Region] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "last": list(self.last) if self.last else None,
                "cancelled": self.cancelled,
                "reports": [r.__dict__ for r in self.reports],
                "regions": {k: r.__dict__ for k, r in self.regions.items()},
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> EventState:
        data = json.loads(raw)
        last = data.get("last")
        return cls(
            last=(int(last[0]), str(last[1])) if last else None,
            cancelled=bool(data.get("cancelled")),
            reports=[Report(**r) for r in data.get("reports") or []],
            regions={k: Region(**r) for k, r in (data.get("regions") or {}).items()},
        )

    @classmethod
    def merged(cls, states: Iterable[EventState]) -> EventState:
        """One state from the states of an EventID's parts (usually just one)."""
        states = list(states)
        if len(states) == 1:
            return states[0]
        out = cls()
        lasts = [s.last for s in states if s.last]
        out.last = max(lasts) if lasts else None
        # Withdrawn only when every event it names was: a 取消 of the first quake
        # must not silence a message that is also about a second one.
        out.cancelled = bool(states) and all(s.cancelled for s in states)
        seen: set[str] = set()
        for s in states:
            for report in s.reports:
                if report.ref not in seen:
                    seen.add(report.ref)
                    out.reports.append(report)
            for code, region in s.regions.items():
                have = out.regions.get(code)
                if have is None:
                    out.regions[code] = Region(region.level, list(region.refs), region.name)
                else:
                    have.refs = unique([*have.refs, *region.refs])
                    have.level = max((x for x in (have.level, region.level) if x is not None), default=None)
        return out

    def decisions(self, refs: Iterable[str]) -> list[Decision]:
        by_ref = {r.ref: r for r in self.reports}
        return [by_ref[ref].routing for ref in refs if ref in by_ref]


class EventStore:
    """Reads and writes EventState in Redis; one key per (status, type, EventID part)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = int(ttl_s)

    def _keys(self, header: Header) -> list[str]:
        parts = []
        for part in header.event_id.split():
            safe = part if _SAFE.match(part) else hashlib.sha1(part.encode()).hexdigest()[:16]
            parts.append(self.keys.jma(f"event:{header.status.value}:{header.type_code}:{safe}"))
        return parts

    async def load(self, header: Header) -> EventState:
        keys = self._keys(header)
        raws = await self.redis.mget(keys)
        return EventState.merged(EventState.from_json(r) if r else EventState() for r in raws)

    async def save(self, header: Header, state: EventState) -> None:
        text = state.to_json()
        pipe = self.redis.pipeline(transaction=True)
        for key in self._keys(header):
            pipe.set(key, text, ex=self.ttl_s)
        await pipe.execute()


@dataclass
class Step:
    """One alert to hand over, with what it references (for routing) — or why nothing is."""

    alert: Alert
    inherit: list[Decision] = field(default_factory=list)


@dataclass
class Plan:
    """What a telegram becomes, given the event so far. ``skip`` names why nothing is passed on."""

    header: Header
    state: EventState
    steps: list[Step] = field(default_factory=list)
    skip: str | None = None  # stale | after_cancel


def plan(header: Header, alerts: list[Alert], state: EventState, resolver: Resolver | None) -> Plan:
    """Decide msg_type, references and level of each alert of a telegram; add lifts for dropped regions."""
    out = Plan(header, state)
    if state.cancelled:
        out.skip = "after_cancel"
        return out
    if header.msg_type is MsgType.CANCEL:
        refs = [r.ref for r in state.reports]
        levels = [r.level for r in state.reports if r.level is not None]
        for alert in alerts:
            alert.references = list(refs)
            alert.level = max(levels) if levels else alert.level
            out.steps.append(Step(alert, state.decisions(refs)))
        return out
    key = order_key(header)[:2]
    if state.last is not None and key <= state.last:
        out.skip = "stale"
        return out
    if header.type_code == "VTSE41":
        _plan_tsunami(out, alerts, resolver)
    else:
        refs = [r.ref for r in state.reports]
        for alert in alerts:
            _as_update(alert, refs)
            out.steps.append(Step(alert, state.decisions(refs)))
    return out


def _as_update(alert: Alert, refs: list[str]) -> None:
    """An Update of ``refs`` when there are any; news (an Alert) otherwise, even for a 訂正 of nothing."""
    alert.references = list(refs)
    if refs or alert.action == "lift":
        alert.msg_type = MsgType.UPDATE
    elif alert.msg_type is MsgType.UPDATE:
        alert.msg_type = MsgType.ALERT


def _all_clear(alert: Alert) -> None:
    for info in alert.infos:
        if "AllClear" not in info.response_types:
            info.response_types = [*info.response_types, "AllClear"]


def _plan_tsunami(out: Plan, alerts: list[Alert], resolver: Resolver | None) -> None:
    state = out.state
    named: set[str] = set()
    for alert in alerts:
        regions = tsunami_regions(alert)
        named.update(regions)
        refs = unique(ref for r in regions for ref in (state.regions[r].refs if r in state.regions else []))
        _as_update(alert, refs)
        if alert.action == "lift":
            _all_clear(alert)
        out.steps.append(Step(alert, state.decisions(refs)))
    # A region the event no longer names has nothing in force any more (VTSE41
    # lists every region with a grade): its alerts are lifted, as a 解除 would.
    dropped: dict[int, list[str]] = {}
    for code, region in state.regions.items():
        if code not in named and region.refs:
            dropped.setdefault(region.level if region.level is not None else 1, []).append(code)
    for lifted, codes in sorted(dropped.items(), reverse=True):
        event, english = TSUNAMI_LIFT_EVENTS.get(lifted, TSUNAMI_LIFT_EVENTS[1])
        districts = unique(d for c in codes for d in (resolver.tsunami(c) if resolver else [f"tsunami:{c}"]))
        part = Part(
            key=f"tsunami-lift-{lifted}-unlisted",
            kind="tsunami",
            event=event,
            event_en=english,
            level=None,
            action="lift",
            reason="津波",
            districts=districts,
            areas=[area(state.regions[c].name or c, c, GEOCODE_TSUNAMI) for c in codes],
            jma_status="津波なし",
            parameters=[(LIFTED_LEVEL, str(lifted))],
            headline=event,
            headline_en=english,
        )
        alert = build_alert(out.header, part)
        refs = unique(ref for c in codes for ref in state.regions[c].refs)
        _as_update(alert, refs)
        _all_clear(alert)
        out.steps.append(Step(alert, state.decisions(refs)))


def record(done: Plan, accepted: dict[str, tuple[Alert, Decision]]) -> EventState:
    """The event's state after a telegram: ``accepted`` maps identifier → (alert, decision) the core took."""
    state = done.state
    header = done.header
    if done.skip is not None:
        return state
    if header.msg_type is MsgType.CANCEL:
        state.cancelled = True
        state.regions = {}
        return state
    state.last = max(filter(None, [state.last, order_key(header)[:2]]))
    for step in done.steps:
        got = accepted.get(step.alert.identifier)
        if got is None:
            continue  # not sent (policy) or refused: what it would have ended is still in force
        alert, decision = got
        state.reports.append(Report(alert.reference_key(), alert.level, decision.to_dict()))
        if header.type_code != "VTSE41":
            continue
        in_force = alert.action != "lift"
        for area_ in alert.infos[0].areas if alert.infos else []:
            for kind, code in area_.geocodes:
                if kind != GEOCODE_TSUNAMI:
                    continue
                if in_force:
                    state.regions[code] = Region(alert.level, [alert.reference_key()], area_.desc)
                else:
                    state.regions.pop(code, None)
    return state
