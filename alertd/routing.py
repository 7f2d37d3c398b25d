"""Routing: which subscribers an alert goes to.

A subscriber's districts match an alert's districts in both directions of the
hierarchy: a prefecture-wide station gets a town's evacuation order (the
town is inside its prefecture), and one town's signage gets a warning for
its whole prefecture (the prefecture contains the town).

One rule keeps drills off live receivers, whatever sent them (a desk, a drill
run with --url, CAP, JSON or the JMA feed): an Exercise (訓練) reaches only the
receivers that take drills (``drills: true``) — a drill's own simulated
receivers, and live ones that said they take part. A loudspeaker that did not
opt in never speaks a drill. A Test goes to every receiver in scope: checking
the live receivers is what the transmission test is for — except the
transmission test a drill runs as one of its steps, which is part of the drill
(marked ``alertd:drills-only``) and takes the drill's rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alertd.feed import FEED_SUBSCRIBER
from alertd.models import AdapterKind, Alert, Status, Subscriber
from alertd.store import PlannedDelivery, Store

if TYPE_CHECKING:
    from geo.registry import Registry


WITHHELD = "alertd:withheld="
# A CAP code (special handling) for a message that is part of a drill without being an Exercise:
# the transmission test a drill runs. It reaches only receivers that take drills.
DRILLS_ONLY = "alertd:drills-only"


def withheld_adapters(alert: Alert) -> set[str]:
    """Adapter kinds the JMA policy kept a drill from (alertd:withheld=radio): a subscriber of
    that kind that opted in to drills ('drills': true) still gets it."""
    for code in alert.codes:
        if code.startswith(WITHHELD):
            return {a for a in code[len(WITHHELD):].split(",") if a}
    return set()


# The order a fan-out's deliveries are queued in: the carriers' cell broadcast and the
# town's loudspeakers (J-Alert's purpose) reach people directly; broadcasters, signage and
# portals relay; mail and chat services last. In a national flash to 3,000 receivers the
# loudspeakers otherwise waited behind every portal registered before them.
DELIVERY_ORDER: dict[AdapterKind, int] = {
    kind: rank
    for rank, kind in enumerate((AdapterKind.CBC, AdapterKind.RADIO, AdapterKind.BROADCASTER, AdapterKind.SIGNAGE,
                                 AdapterKind.ISP, AdapterKind.EMAIL, AdapterKind.APPRISE))
}  # fmt: skip


class Router:
    def __init__(self, store: Store, registry: Registry, *, feed: bool) -> None:
        self.store = store
        self.registry = registry
        self.feed = feed
        self._version = -1
        # Index: code -> subscribers with a district at that code (exact), and
        # code -> subscribers with a district inside it (within). Matching then
        # costs what matches, not the number of subscribers.
        self._exact: dict[str, list[int]] = {}
        self._within: dict[str, list[int]] = {}
        # The subscribers in delivery order (DELIVERY_ORDER, then as listed), so the
        # matches sorted by index are already the fan-out's order; beside each, what the
        # filters read and its planned delivery, worked out once per refresh: a national
        # flash routes 3,000 receivers before its commit, and the first delivery waits.
        self._subs: list[Subscriber] = []
        self._filters: list[tuple[bool, str, int | None]] = []  # (drills, adapter, min_level)
        self._planned: list[PlannedDelivery] = []

    def _ancestors(self, code: str) -> list[str]:
        try:
            return self.registry.ancestors(code)
        except Exception:
            return [code]

    async def refresh(self) -> None:
        version = await self.store.subscribers_version()
        if version == self._version:
            return
        last = len(DELIVERY_ORDER)
        subs = sorted(await self.store.list_subscribers(), key=lambda s: DELIVERY_ORDER.get(s.adapter, last))
        exact: dict[str, list[int]] = {}
        within: dict[str, list[int]] = {}
        for i, sub in enumerate(subs):
            for d in sub.districts:
                exact.setdefault(d, []).append(i)
            for a in {a for d in sub.districts for a in self._ancestors(d)}:
                within.setdefault(a, []).append(i)
        self._subs, self._exact, self._within = subs, exact, within
        self._filters = [(s.drills, s.adapter.value, s.min_level) for s in subs]
        self._planned = [PlannedDelivery(s.id, s.adapter.value) for s in subs]
        self._version = version

    def by_id(self) -> dict[str, Subscriber]:
        """The subscribers as of the last refresh (every plan refreshes), by id: the preview names
        those it routes to without asking Redis once per receiver."""
        return {s.id: s for s in self._subs}

    def _matching(self, alert: Alert, ignore_min_level: bool) -> list[int]:
        """The indexes of the subscribers the alert goes to, in delivery order."""
        hits: set[int] = set()
        for d in [*alert.districts, *alert.reach]:
            hits.update(self._within.get(d, ()))  # subscribers inside (or at) the alert's district
            for a in self._ancestors(d):
                hits.update(self._exact.get(a, ()))  # subscribers at a level above it
        # A drill (or a drill's own test) goes only to receivers that opted in.
        drill = alert.status is Status.EXERCISE or DRILLS_ONLY in alert.codes
        allowed = set(alert.adapters) if alert.adapters is not None else None
        withheld = withheld_adapters(alert) if alert.status is Status.EXERCISE else set()
        level = None if ignore_min_level else alert.level
        if not drill and allowed is None and level is None:
            return sorted(hits)  # nothing to filter on: every match goes
        filters = self._filters
        out = []
        for i in sorted(hits):
            drills, adapter, min_level = filters[i]
            if drill and not drills:
                continue
            if allowed is not None and adapter not in allowed and not (drills and adapter in withheld):
                continue
            if level is not None and min_level is not None and level < min_level:
                continue
            out.append(i)
        return out

    def matches(self, alert: Alert, *, ignore_min_level: bool = False) -> list[Subscriber]:
        """The subscribers the alert goes to, in delivery order."""
        subs = self._subs
        return [subs[i] for i in self._matching(alert, ignore_min_level)]

    async def plan(self, alert: Alert) -> list[PlannedDelivery]:
        await self.refresh()
        # A lane is read in order: within a fan-out, the channels that speak to people at
        # once go first (the index is in that order; subscribers keep theirs within a kind).
        planned = self._planned
        plan = [planned[i] for i in self._matching(alert, False)]
        if self.feed and (alert.adapters is None or AdapterKind.FEED in alert.adapters):
            # First, so one feed publish is not queued behind thousands of webhooks.
            plan.insert(0, PlannedDelivery(FEED_SUBSCRIBER, AdapterKind.FEED))
        return plan
