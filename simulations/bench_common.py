"""What the bench's phases share: timing of a fan-out as the sink saw it, the table's rows,
the engine processes the bench starts, CPU pinning. (simulations/bench.py runs the phases;
simulations/bench_national.py and simulations/bench_scaleout.py are two of them.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from alertd.report import percentile

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench"
ADMIN_TOKEN = secrets.token_hex(16)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# --- small helpers -------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_port(url: str, default: int) -> tuple[str, int]:
    """The first host and port of a URL; of a Sentinel or Cluster URL's list, the first named."""
    rest = url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[2].split(",", 1)[0]
    host, _, port = rest.partition(":")
    return host or "127.0.0.1", int(port or default)


def reachable(url: str, default: int) -> bool:
    try:
        socket.create_connection(host_port(url, default), timeout=1).close()
        return True
    except OSError:
        return False


def ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def p(values: list[float], q: float) -> float | None:
    return percentile(values, q)


def rel(times: list[float], t0: float) -> tuple[float | None, float | None]:
    """First and last receipt after t0, in ms."""
    if not times:
        return None, None
    return (min(times) - t0) * 1000, (max(times) - t0) * 1000


def expires_iso(minutes: float = 10) -> str:
    # Short expiry: the retained feed state the bench leaves on the broker goes away by itself.
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of a process onto these cores (``taskset -a -p``); gone threads are skipped."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its living children (``/proc``; 0 if it is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        for task in os.listdir(f"/proc/{pid}/task"):
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            total += sum(cpu_seconds(int(c)) for c in children)
    return total


async def wait_idle(pid: int, timeout: float, busy: float = 0.15, step: float = 0.25) -> float:
    """Until a process (with its children) uses less than ``busy`` of a core over ``step``
    seconds: the work an alert left behind (retained states, recording) is done. Returns
    the seconds waited."""
    start = time.monotonic()
    before = cpu_seconds(pid)
    while time.monotonic() - start < timeout:
        await asyncio.sleep(step)
        now = cpu_seconds(pid)
        if now - before < busy * step:
            break
        before = now
    return time.monotonic() - start


@dataclass
class EngineProc:
    """One ``alertd serve`` the bench started: its desk URL, its process and its key prefix."""

    url: str
    proc: subprocess.Popen[bytes]
    prefix: str


@dataclass
class FanoutRun:
    """One fan-out as seen at the sink: first/last receipt after the send, per-delivery latencies."""

    t0: float
    times: list[float]
    expected: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def first_ms(self) -> float | None:
        return rel(self.times, self.t0)[0]

    @property
    def last_ms(self) -> float | None:
        # A fan-out that lost deliveries has no "last": None rather than a flattering number.
        return rel(self.times, self.t0)[1] if len(self.times) >= self.expected else None

    @property
    def per_s(self) -> float | None:
        last = self.last_ms
        return self.expected / (last / 1000) if last else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": len(self.times), "expected": self.expected, "first_ms": self.first_ms,
            "last_ms": self.last_ms, "per_s": self.per_s, **self.extra,
        }  # fmt: skip


def summarize_runs(runs: list[FanoutRun]) -> dict[str, Any]:
    firsts = [r.first_ms for r in runs if r.first_ms is not None]
    lasts = [r.last_ms for r in runs if r.last_ms is not None]
    rates = [r.per_s for r in runs if r.per_s is not None]
    return {
        "runs": len(runs),
        "complete_runs": len(lasts),
        "first_p50_ms": p(firsts, 50), "first_p99_ms": p(firsts, 99),
        "last_p50_ms": p(lasts, 50), "last_p99_ms": p(lasts, 99),
        "per_s_p50": p(rates, 50),
        "each": [r.as_dict() for r in runs],
    }  # fmt: skip


# --- the table ---------------------------------------------------------------------
def speed(alertd: float | None, raw: float | None, *, rate: bool) -> float | None:
    """alertd's speed as a fraction of the raw ceiling: a rate alertd/raw, a time raw/alertd."""
    if alertd is None or raw is None or alertd <= 0 or raw <= 0:
        return None
    return round(alertd / raw if rate else raw / alertd, 2)


def row(measure: str, a: Any, r: Any = None, rate: bool | None = None, apv: Any = None, amv: Any = None,
        target: str = "", met: bool | None = None) -> dict[str, Any]:  # fmt: skip
    """One line of the table: alertd, the raw ceiling (and the ratio), the peers, the target."""
    ratio = speed(a, r, rate=rate) if rate is not None and isinstance(r, int | float) else None
    return {"measure": measure, "alertd": a, "raw": r, "ratio": ratio, "apprise": apv,
            "alertmanager": amv, "target": target, "met": met}  # fmt: skip


def le(v: float | None, limit: float) -> bool | None:
    return None if v is None else v <= limit


def ge(v: float | None, limit: float) -> bool | None:
    return None if v is None else v >= limit


class BenchRun(Protocol):
    """What the national and scale-out phases use of ``simulations.bench.Bench``: written out
    so those modules need not import the module that imports them."""

    o: Any  # simulations.bench.Options
    run_id: str
    prefix: str
    national_token: str
    sink_url: str
    sink_proc: subprocess.Popen[bytes] | None
    results: dict[str, Any]
    http: aiohttp.ClientSession | None

    def say(self, text: str) -> None: ...
    async def wait_count(self, key: str, n: int, timeout: float) -> int: ...
    async def take(self, key: str) -> list[float]: ...
    async def start_engine(self, seed: Path, *, prefix: str, log: Path, args: tuple[str, ...] = (),
                           env: dict[str, str] | None = None, cpus: set[int] | None = None) -> EngineProc: ...  # fmt: skip
    async def stop_engine(self, engine: EngineProc) -> None: ...
    async def post_flash(self, label: str, *, url: str | None = None,
                         districts: list[str] | None = None) -> tuple[float, dict[str, Any]]: ...  # fmt: skip
    async def engine_latencies(self, alert_id: str, expect: int, timeout: float = 20,
                               url: str | None = None) -> dict[str, list[float]]: ...  # fmt: skip
    async def profiled(self, phase: str, fn: Callable[[], Awaitable[Any]], pid: int | None = None) -> None: ...
