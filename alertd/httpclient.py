"""The operator commands' HTTP client: a blocking call to a running alertd, no event loop.

Its own module, below both ``cli`` and ``testbroadcast``, so the server side of the
transmission test (imported by the engine) never reaches ``cli`` (which imports the engine).
"""

from __future__ import annotations

import json
from typing import Any


class CliError(Exception):
    """A sentence for the person at the terminal; printed without a traceback."""


def call(method: str, url: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    """A tiny blocking client for the operator commands (no event loop needed)."""
    import urllib.error
    import urllib.request

    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, {"detail": raw.decode(errors="replace")}
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        base = url.split("/api/")[0].split("/healthz")[0]
        raise CliError(
            f"No alertd answers at {base} ({reason}). Is 'alertd serve' running there? "
            "Give its address with --url or ALERTD_URL."
        ) from None
