"""Broadcasters (TV, radio stations, cable): CAP 1.2 XML, the format their newsroom systems take."""

from __future__ import annotations

from typing import ClassVar

from adapters.base import Adapter, Payload
from alertd.cap_signature import CapSigner
from alertd.models import AdapterKind, Alert, Subscriber


class BroadcasterAdapter(Adapter):
    kind: ClassVar[AdapterKind] = AdapterKind.BROADCASTER

    def __init__(self, cap_signer: CapSigner | None = None) -> None:
        # With a signing key configured, every document carries an XML-DSig signature; it
        # is made once per alert, like the document (render_key).
        self.cap_signer = cap_signer

    def render(self, alert: Alert, subscriber: Subscriber) -> Payload:
        from alertd.cap import to_cap

        document = to_cap(alert)
        if self.cap_signer is not None:
            document = self.cap_signer.sign(document)
        return Payload(document, "application/cap+xml; charset=utf-8")

    def render_key(self, alert: Alert, subscriber: Subscriber) -> tuple[object, ...]:
        return (self.kind,)  # CAP carries every language; one render serves all
