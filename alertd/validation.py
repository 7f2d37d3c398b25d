"""Checks on admin input (issuers, subscribers), with sentences an operator can act on.

The shape (types, required fields, bounds) is the model's (alertd.schemas), the same
one the OpenAPI document is generated from; what is checked here is what only alertd
knows: whether district codes exist, and whose a CAP sender is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alertd import schemas
from alertd.errors import InvalidInput, UnknownArea

if TYPE_CHECKING:
    from geo.registry import Registry


def _known(codes: list[str], name: str, registry: Registry | None) -> None:
    if registry is not None:
        unknown = [c for c in codes if registry.find(c) is None]
        if unknown:
            raise UnknownArea(f"Unknown district codes in '{name}': {', '.join(unknown)}.", field=name)


def validate_issuer(item: dict[str, Any], registry: Registry | None = None) -> schemas.Issuer:
    issuer = schemas.parse(schemas.Issuer, item)
    if not issuer.national:
        _known(issuer.jurisdiction or [], "jurisdiction", registry)
    for sender in issuer.senders:
        local, _, domain = sender.partition("@")
        if domain == "alertd" and local != issuer.id:
            raise InvalidInput(
                f"The sender {sender!r} is another issuer's own; '<id>@alertd' belongs to the issuer with that id.",
                field="senders",
            )
    return issuer


def validate_subscriber(item: dict[str, Any], registry: Registry | None = None) -> schemas.Subscriber:
    sub = schemas.parse(schemas.Subscriber, item)
    _known(sub.districts, "districts", registry)
    return sub
