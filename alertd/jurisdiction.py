"""Who may speak for where: an issuer's jurisdiction, and the identity an alert carries.

Jurisdiction is upward only: an issuer covers a district when its
jurisdiction names the district or one of its ancestors (a prefecture covers
its towns — 代行 — never the reverse). A national issuer covers everything.

Identity is never taken from the message: the CAP sender must be one of the
issuer's own, and the municipality, 代行 and call sign an alert carries are
derived from the issuer and the districts the alert resolved to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alertd.errors import Forbidden, OutsideJurisdiction, UnknownArea
from alertd.models import Alert, Issuer

if TYPE_CHECKING:
    from geo.registry import Registry

# Parameters that claim an identity; stripped from what an issuer sends, then
# written back from what alertd derived (alertd/cap.py writes them out).
IDENTITY_PARAMETERS = frozenset({"JP-ALERTD-MUNICIPALITY", "JP-ALERTD-ON-BEHALF-OF", "JP-ALERTD-ID"})


def own_sender(issuer_id: str) -> str:
    """The CAP sender every issuer has: desk orders and JSON alerts are sent as it."""
    return f"{issuer_id}@alertd"


class Jurisdiction:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def _ancestors(self, code: str) -> list[str]:
        try:
            return self.registry.ancestors(code)
        except UnknownArea:
            return [code]

    def covers(self, issuer: Issuer, district: str) -> bool:
        return issuer.national or bool(set(issuer.jurisdiction).intersection(self._ancestors(district)))

    def check(self, issuer: Issuer, districts: list[str]) -> None:
        """Raise 403 naming every district outside the issuer's jurisdiction."""
        if issuer.national:
            return
        outside = [d for d in districts if not self.covers(issuer, d)]
        if outside:
            names = []
            for code in outside[:20]:
                district = self.registry.find(code)
                names.append(f"{district.full_name} ({code})" if district else code)
            more = f" and {len(outside) - 20} more" if len(outside) > 20 else ""
            raise OutsideJurisdiction(
                f"{issuer.name} may not send alerts for {', '.join(names)}{more}: "
                "these districts are outside your jurisdiction. Nothing was sent.",
                districts=outside,
            )

    def check_may_change(self, issuer: Issuer, target: Alert) -> None:
        """Only whoever may alert all of an alert's districts may update or cancel it."""
        if issuer.national or target.issuer_id == issuer.id:
            return
        try:
            self.check(issuer, target.districts)
        except OutsideJurisdiction as exc:
            raise OutsideJurisdiction(
                f"{issuer.name} may not update or cancel alert {target.id}: it covers districts outside "
                "your jurisdiction. Nothing was sent.",
                districts=exc.extra.get("districts", []),
            ) from exc

    def may_change(self, issuer: Issuer, target: Alert) -> bool:
        try:
            self.check_may_change(issuer, target)
        except OutsideJurisdiction:
            return False
        return True

    # --- identity ----------------------------------------------------------------
    @staticmethod
    def check_sender(issuer: Issuer, sender: str) -> None:
        """A CAP message from an issuer must carry one of that issuer's own senders."""
        allowed = issuer.all_senders()
        if sender not in allowed:
            raise Forbidden(
                f"This message says it is from '{sender}', but your token belongs to {issuer.name} "
                f"({issuer.id}), whose sender is {' or '.join(repr(s) for s in allowed)}. Set <sender> to "
                "that, or ask the administrator to register your sender. Nothing was sent.",
                field="sender",
                allowed_senders=allowed,
            )

    def municipality(self, districts: list[str]) -> str | None:
        """The one municipality (or ward) all the districts lie in, else None: a
        prefecture-wide or multi-town alert speaks for no single town."""
        found: set[str] = set()
        for code in districts:
            district = self.registry.find(code)
            if district is None or district.level in ("prefecture", "tsunami"):
                return None
            muni = self.registry.municipality_of(code)
            if muni is None:
                return None
            found.add(muni)
        if len(found) > 1:
            found = {self._city_of(code) for code in found}  # wards of one designated city
        return next(iter(found)) if len(found) == 1 else None

    def _city_of(self, code: str) -> str:
        """A ward's designated city (横浜市 for its 中区); any other municipality is its own."""
        district = self.registry.find(code)
        if district is not None and district.level == "ward" and district.parent is not None:
            return district.parent
        return code

    def on_behalf_of(self, issuer: Issuer, municipality: str | None) -> str | None:
        """代行: the municipality an issuer speaks for when it is not that municipality's own desk."""
        if municipality is None or issuer.national:
            return None
        own = set(issuer.jurisdiction)
        for code in self._ancestors(municipality):
            district = self.registry.find(code)
            if code in own and district is not None and district.level in ("municipality", "ward"):
                return None  # the town's own desk (or its city's, for a ward)
        return municipality

    def stamp_identity(self, alert: Alert, issuer: Issuer) -> None:
        """Write the identity alertd derived over whatever the message claimed."""
        for info in alert.infos:
            info.parameters = [(k, v) for k, v in info.parameters if k not in IDENTITY_PARAMETERS]
            if not issuer.national or not info.sender_name:
                info.sender_name = issuer.name
        alert.municipality = self.municipality(alert.districts)
        alert.on_behalf_of = self.on_behalf_of(issuer, alert.municipality)
        if not issuer.national:
            alert.source = issuer.name
