"""Secrets copied from the examples must not go live.

The shipped examples (``deploy/systemd/alertd.env.example``, ``config/alertd.example.yaml``)
carry placeholders that start ``change-me``; the README-only trial found them accepted, so a
deployment could run with an admin token anyone reading the repository knows. ``alertd serve``
and ``alertd worker`` refuse to start with one, or with an admin token too short to resist
guessing, unless ``ALERTD_ALLOW_EXAMPLE_SECRETS=1`` says this is a demo.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from alertd.config import Settings

PLACEHOLDER = "change-me"
MIN_ADMIN_TOKEN = 16
ALLOW_VARIABLE = "ALERTD_ALLOW_EXAMPLE_SECRETS"


def allowed() -> bool:
    return os.environ.get(ALLOW_VARIABLE, "").strip().lower() in ("1", "yes", "true")


def _url_password(url: str | None) -> str:
    try:
        return urlsplit(url or "").password or ""
    except ValueError:
        return ""


def problems(settings: Settings, seed: dict[str, Any] | None) -> list[str]:
    """Each example or weak secret in the settings and the seed file, as a sentence naming
    where it is set (never the secret itself)."""
    found: list[str] = []
    token = settings.admin_token or ""
    if token.startswith(PLACEHOLDER):
        found.append("ALERTD_ADMIN_TOKEN is still the example's 'change-me…'")
    elif token and len(token) < MIN_ADMIN_TOKEN:
        found.append(f"ALERTD_ADMIN_TOKEN is {len(token)} characters; it must be at least {MIN_ADMIN_TOKEN}")
    for name, value in (("ALERTD_REDIS_URL's password", _url_password(settings.redis_url)),
                        ("ALERTD_MQTT_URL's password", _url_password(settings.mqtt_url)),
                        ("ALERTD_MQTT_PASSWORD", settings.mqtt_password or "")):  # fmt: skip
        if value.startswith(PLACEHOLDER):
            found.append(f"{name} is still the example's 'change-me…'")
    for kind, key in (("issuers", "token"), ("subscribers", "secret")):
        for item in (seed or {}).get(kind) or []:
            if isinstance(item, dict) and str(item.get(key) or "").startswith(PLACEHOLDER):
                found.append(f"the {key} of {kind[:-1]} '{item.get('id')}' in {settings.seed_file} is still "
                             "the example's 'change-me…'")  # fmt: skip
    return found


def refusal(settings: Settings, seed: dict[str, Any] | None) -> str | None:
    """The sentence to stop on, or None to go ahead."""
    found = problems(settings, seed)
    if not found or allowed():
        return None
    return ("refusing to start with example or weak secrets: " + "; ".join(found) + ". Set your own (python3 -c "
            "'import secrets; print(secrets.token_urlsafe(24))'), or for a demo only set "
            f"{ALLOW_VARIABLE}=1.")  # fmt: skip
