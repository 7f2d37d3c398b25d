"""What many test modules need and none owns: ports, the shared data's paths, an alert, a wait.

Kept free of fixtures and of any running engine, so conftest.py, servers.py and
plain unit tests can all import it.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from alertd.models import Alert, MsgType, Status

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
# The reference data lives beside the project, never inside it (see README).
SHARED = ROOT.parent / "shared" / "data"
JMAXML = SHARED / "jmaxml"
GEO = SHARED / "geo"
CAP_XSD = SHARED / "cap" / "CAP-v1.2.xsd"


def shared_data(*parts: str) -> Path:
    """A file from the shared data, or a skip that says where it was looked for."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared test data lives in ../shared/data beside the project")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(
    check: Callable[[], Awaitable[T] | T],
    *,
    what: str | Callable[[], str],
    timeout: float = 20.0,
    interval: float = 0.03,
) -> T:
    """Poll ``check`` (sync or async) until it returns something truthy, and return that.

    At the deadline the test fails naming ``what`` it waited for, so a failure
    reads as the behaviour that did not happen rather than as a timeout; a
    callable ``what`` is asked only then, so it can say how far things got.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {what() if callable(what) else what}; it did not happen")
        await asyncio.sleep(interval)


def make_alert(**fields: object) -> Alert:
    """A level 4 evacuation order for two districts of 常総市, as the desk sends it; override any field."""
    values: dict[str, object] = {
        "identifier": "joso-2026-0001",
        "sender": "desk@city.joso.ibaraki.jp",
        "sent": datetime(2026, 6, 1, 9, 0, tzinfo=UTC),
        "status": Status.ACTUAL,
        "msg_type": MsgType.ALERT,
        "id": "a-1",
        "origin": "desk",
        "kind": "evacuation",
        "level": 4,
        "action": "issue",
        "reason": "洪水",
        "municipality": "08211",
        "districts": ["08211:若宮戸", "08211:三坂町"],
    }
    values.update(fields)
    return Alert(**values)  # type: ignore[arg-type]
