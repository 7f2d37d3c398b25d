"""Checks on admin input (issuers, subscribers), with sentences an operator can act on."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from alertd.errors import InvalidInput, UnknownArea
from alertd.models import AdapterKind

if TYPE_CHECKING:
    from geo.registry import Registry

# Ids appear in Redis keys, MQTT topics and "|"-separated job members.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
SENDER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:/-]{0,199}$")


def _id(item: dict[str, Any], what: str) -> None:
    value = item.get("id")
    if not isinstance(value, str) or not ID_PATTERN.match(value) or value.startswith("_"):
        raise InvalidInput(
            f"The {what} id {value!r} is not usable: use 1–64 letters, digits, '_', '-', '.' or ':'.",
            field="id",
        )


def _codes(item: dict[str, Any], name: str, registry: Registry | None) -> None:
    codes = item.get(name)
    if not isinstance(codes, list) or not codes or not all(isinstance(c, str) for c in codes):
        raise InvalidInput(
            f"'{name}' must be a non-empty list of district codes such as \"08211\".", field=name
        )
    if registry is not None:
        unknown = [c for c in codes if registry.find(c) is None]
        if unknown:
            raise UnknownArea(f"Unknown district codes in '{name}': {', '.join(unknown)}.", field=name)


def validate_issuer(item: dict[str, Any], registry: Registry | None = None) -> None:
    _id(item, "issuer")
    if not isinstance(item.get("name"), str) or not item["name"]:
        raise InvalidInput(
            "'name' is missing: give the issuer's name, e.g. 常総市災害対策本部.", field="name"
        )
    token = item.get("token")
    if not isinstance(token, str) or len(token) < 16:
        raise InvalidInput("'token' must be a secret of at least 16 characters.", field="token")
    national = item.get("national", False)
    if not isinstance(national, bool):
        raise InvalidInput("'national' must be true or false.", field="national")
    if not national:
        _codes(item, "jurisdiction", registry)
    senders = item.get("senders", [])
    if not isinstance(senders, list) or len(senders) > 10 or not all(isinstance(x, str) for x in senders):
        raise InvalidInput("'senders' must be a list of up to 10 CAP sender names.", field="senders")
    for sender in senders:
        if not SENDER_PATTERN.match(sender):
            raise InvalidInput(
                f"The sender {sender!r} is not a CAP sender: use letters, digits and '@.-_', no spaces or commas.",
                field="senders",
            )
        local, _, domain = sender.partition("@")
        if domain == "alertd" and local != item.get("id"):
            raise InvalidInput(
                f"The sender {sender!r} is another issuer's own; '<id>@alertd' belongs to the issuer with that id.",
                field="senders",
            )


def validate_subscriber(item: dict[str, Any], registry: Registry | None = None) -> None:
    _id(item, "subscriber")
    kinds = ", ".join(k.value for k in AdapterKind)
    if item.get("adapter") not in {k.value for k in AdapterKind}:
        raise InvalidInput(f"'adapter' must be one of {kinds}, not {item.get('adapter')!r}.", field="adapter")
    endpoint = item.get("endpoint")
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https", "mqtt", "mqtts") or not parts.hostname:
        raise InvalidInput(
            "'endpoint' must be an http(s):// URL or mqtt://host:port/topic.", field="endpoint"
        )
    if parts.scheme.startswith("mqtt") and (
        not parts.path.strip("/") or "#" in parts.path or "+" in parts.path
    ):
        raise InvalidInput("An mqtt:// endpoint must name one topic (no wildcards).", field="endpoint")
    _codes(item, "districts", registry)
    min_level = item.get("min_level")
    if min_level is not None and (not isinstance(min_level, int) or not 1 <= min_level <= 5):
        raise InvalidInput("'min_level' must be a whole number from 1 to 5.", field="min_level")
    langs = item.get("languages")
    if langs is not None and (not isinstance(langs, list) or not all(isinstance(x, str) for x in langs)):
        raise InvalidInput('\'languages\' must be a list such as ["ja", "en"].', field="languages")
    for name, low, high in (("timeout_s", 0.1, 60), ("max_in_flight", 1, 1000)):
        value = item.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high
        ):
            raise InvalidInput(f"'{name}' must be a number from {low} to {high}.", field=name)
    if not isinstance(item.get("drills", False), bool):
        raise InvalidInput("'drills' must be true or false.", field="drills")
    secret = item.get("secret")
    if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
        raise InvalidInput("'secret' must be at least 16 characters.", field="secret")
