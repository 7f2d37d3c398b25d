"""Broadcasters (TV, radio stations, cable): CAP 1.2 XML, the format their newsroom systems take."""

from __future__ import annotations

from typing import ClassVar

from adapters.base import Adapter, Payload
from alertd.models import AdapterKind, Alert, Subscriber


class BroadcasterAdapter(Adapter):
    kind: ClassVar[AdapterKind] = AdapterKind.BROADCASTER

    def render(self, alert: Alert, subscriber: Subscriber) -> Payload:
        from alertd.cap import to_cap

        return Payload(to_cap(alert), "application/cap+xml; charset=utf-8")

    def render_key(self, alert: Alert, subscriber: Subscriber) -> tuple[object, ...]:
        return (self.kind,)  # CAP carries every language; one render serves all
