"""Routing: which subscribers an alert goes to.

A subscriber's districts match an alert's districts in both directions of the
hierarchy: a prefecture-wide station gets a town's evacuation order (the
town is inside its prefecture), and one town's signage gets a warning for
its whole prefecture (the prefecture contains the town).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alertd.feed import FEED_SUBSCRIBER
from alertd.models import Alert, Subscriber
from alertd.store import PlannedDelivery, Store

if TYPE_CHECKING:
    from geo.registry import Registry


class Router:
    def __init__(self, store: Store, registry: Registry, *, feed: bool) -> None:
        self.store = store
        self.registry = registry
        self.feed = feed
        self._version = -1
        self._subs: list[tuple[Subscriber, frozenset[str], frozenset[str]]] = []

    def _ancestors(self, code: str) -> list[str]:
        try:
            return self.registry.ancestors(code)
        except Exception:
            return [code]

    async def refresh(self) -> None:
        version = await self.store.subscribers_version()
        if version == self._version:
            return
        subs = await self.store.list_subscribers()
        self._subs = []
        for sub in subs:
            own = frozenset(sub.districts)
            up = frozenset(a for d in sub.districts for a in self._ancestors(d))
            self._subs.append((sub, own, up))
        self._version = version

    def matches(self, alert: Alert) -> list[Subscriber]:
        targets = frozenset(alert.districts)
        targets_up = frozenset(a for d in alert.districts for a in self._ancestors(d))
        allowed = set(alert.adapters) if alert.adapters is not None else None
        out = []
        for sub, own, up in self._subs:
            if allowed is not None and sub.adapter.value not in allowed:
                continue
            if sub.min_level is not None and alert.level is not None and alert.level < sub.min_level:
                continue
            if own & targets_up or up & targets:
                out.append(sub)
        return out

    async def plan(self, alert: Alert) -> list[PlannedDelivery]:
        await self.refresh()
        plan = [PlannedDelivery(s.id, s.adapter.value) for s in self.matches(alert)]
        if self.feed and (alert.adapters is None or "feed" in alert.adapters):
            plan.append(PlannedDelivery(FEED_SUBSCRIBER, "feed"))
        return plan
