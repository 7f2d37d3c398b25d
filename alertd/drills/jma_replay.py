"""JMA telegrams replayed now: sample files moved in time and lightly edited.

JMA's samples are years old and alertd rightly refuses what has expired, so a
drill (or a test) that replays a sequence moves every time in it by one
amount: relative order and spacing stay as JMA wrote them. A drill writes
them into the engine's drop folder (ALERTD_JMA_SPOOL) the way the sanitising
side must — a temporary name, then a rename — so they take the real path:
the same parser, sequencing per EventID and region, policy and engine.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2})")


def report_time(text: str) -> datetime:
    m = re.search(r"<ReportDateTime>([^<]+)<", text)
    if m is None:
        raise ValueError("the telegram has no ReportDateTime")
    return datetime.fromisoformat(m[1])


def shift(text: str, delta: timedelta, *, status: str | None = None, crlf: bool = False) -> bytes:
    """The telegram with every time moved by ``delta``; optionally another Control/Status, CRLF endings."""

    def moved(m: re.Match[str]) -> str:
        value = m[0]
        when = datetime.fromisoformat(value.replace("Z", "+00:00")) + delta
        return (
            when.isoformat(timespec="seconds").replace("+00:00", "Z")
            if value.endswith("Z")
            else when.isoformat(timespec="seconds")
        )

    body = ISO.sub(moved, text)
    if status is not None:
        body = re.sub(r"<Status>[^<]*</Status>", f"<Status>{status}</Status>", body, count=1)
    data = body.encode("utf-8")
    if crlf:
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data


def with_head(data: bytes, *, serial: str | None = None, event_id: str | None = None,
              report_time: datetime | None = None) -> bytes:  # fmt: skip
    """A telegram with its Serial, EventID or ReportDateTime (and Control/DateTime) replaced."""
    body = data.decode("utf-8")
    if serial is not None:
        body = re.sub(r"<Serial>[^<]*</Serial>", f"<Serial>{serial}</Serial>", body, count=1)
    if event_id is not None:
        body = re.sub(r"<EventID>[^<]*</EventID>", f"<EventID>{event_id}</EventID>", body, count=1)
    if report_time is not None:
        local = report_time.astimezone(timezone(timedelta(hours=9))).isoformat(timespec="seconds")
        utc = report_time.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        body = re.sub(r"<ReportDateTime>[^<]*<", f"<ReportDateTime>{local}<", body, count=1)
        body = re.sub(r"(<Control>.*?<DateTime>)[^<]*<", rf"\g<1>{utc}<", body, count=1, flags=re.S)
    return body.encode("utf-8")


def drop(directory: Path, name: str, data: bytes) -> Path:
    """Write a telegram into a drop folder the way the sanitising side must: temp name, then rename."""
    tmp = directory / f".{name}.tmp"
    tmp.write_bytes(data)
    target = directory / name
    tmp.replace(target)
    return target
