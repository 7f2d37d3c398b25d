"""Delivery reports: a table a person reads and a dict a machine reads, from the same numbers."""

from __future__ import annotations

import sys
import unicodedata
from collections import defaultdict
from typing import Any


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no data (a report must not invent a latency)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per adapter: planned, delivered, confirmed, failed (expired included), superseded, still
    pending, and latency p50/p99 (ms). Every planned delivery is in exactly one of delivered,
    failed, superseded and pending: nothing planned goes uncounted."""
    by: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"planned": 0, "delivered": 0, "confirmed": 0, "failed": 0, "expired": 0, "superseded": 0,
                 "pending": 0, "_lat": []}
    )
    for row in rows:
        s = by[row.get("adapter") or "?"]
        s["planned"] += 1
        state = row["state"]
        if state in ("delivered", "confirmed"):
            s["delivered"] += 1
            if row.get("latency_ms") is not None:
                s["_lat"].append(float(row["latency_ms"]))
        if state == "confirmed":
            s["confirmed"] += 1
        elif state in ("failed", "expired"):
            s["failed"] += 1
            s["expired"] += state == "expired"
        elif state == "superseded":
            s["superseded"] += 1  # a later update or cancel replaced it before it went out
        elif state in ("queued", "sent"):
            s["pending"] += 1
    out = {}
    for adapter, s in sorted(by.items()):
        lat = s.pop("_lat")
        s["latency_p50_ms"] = percentile(lat, 50)
        s["latency_p99_ms"] = percentile(lat, 99)
        out[adapter] = s
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def display_width(text: str) -> int:
    """Columns a terminal gives the text: CJK (常総市, 避難指示) takes two each."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _pad(text: str, width: int, *, right: bool) -> str:
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def table(headers: list[str], rows: list[list[Any]], *, left: set[int] | None = None) -> str:
    """Columns padded to their display width; the first (and any in ``left``) left-aligned."""
    left = {0} | (left or set())
    cells = [headers] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(display_width(str(r[i])) for r in cells) for i in range(len(headers))]
    lines = []
    for i, r in enumerate(cells):
        lines.append(
            "  ".join(
                _pad(str(c), w, right=j not in left)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_table(summary: dict[str, dict[str, Any]]) -> str:
    headers = ["adapter", "planned", "delivered", "confirmed", "failed", "superseded", "pending", "p50 ms",
               "p99 ms"]  # fmt: skip
    rows = [
        [
            a,
            s["planned"],
            s["delivered"],
            s["confirmed"],
            s["failed"],
            s.get("superseded", 0),
            s["pending"],
            s["latency_p50_ms"],
            s["latency_p99_ms"],
        ]
        for a, s in summary.items()
    ]
    return table(headers, rows)


def deliveries_table(rows: list[dict[str, Any]]) -> str:
    headers = ["subscriber", "adapter", "state", "attempts", "latency ms", "last error"]
    return table(
        headers,
        [
            [
                r["subscriber"],
                r["adapter"],
                r["state"],
                r["attempts"],
                r["latency_ms"],
                (r["last_error"] or "")[:60],
            ]
            for r in rows
        ],
    )


class Progress:
    """One updating line on a terminal; a line per change otherwise (logs, CI)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = ""

    def show(self, text: str) -> None:
        if text == self._last:
            return
        self._last = text
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + "]"
