"""Webhook endpoints that behave well or badly, on one raw asyncio socket server.

The behaviour is the first segment of the path, so one server stands for thousands of
endpoints:

  /ok/<n>     answers 200 (after ``delay`` seconds, to slow a fan-out down on purpose)
  /hang/<n>   reads the request and never answers
  /late/<n>   answers 200 after ``late_s`` (10 s): later than alertd's timeout
  /flip/<n>   answers 500, then 200, then 500, … (per endpoint)
  /cut/<n>    sends half a response and closes the connection

A refusing endpoint is a sink that was stopped: its port refuses every connection.

Raw sockets rather than a framework: the "closing mid-response" case needs them, and a
2,000-endpoint fan-out must not be slowed by the sink. Every 2xx answer is recorded
with the idempotency key and the arrival time, which is what the scenarios count.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field

from simulations.faults import free_port


@dataclass
class Arrival:
    path: str
    alert: str  # X-Alertd-Alert-Id: one endpoint gets many alerts
    key: str
    at: float  # time.time()


@dataclass
class Sink:
    delay: float = 0.0
    late_s: float = 10.0
    all_good: bool = False
    arrivals: list[Arrival] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Sink:
        self.port = free_port()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=4096)
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def delivered(self, prefix: str = "") -> set[tuple[str, str]]:
        """(alert id, path) of every delivery that arrived at least once."""
        return {(a.alert, a.path) for a in self.arrivals if a.path.startswith(prefix)}

    def duplicated_beyond_key(self) -> int:
        """Deliveries (one alert to one endpoint) that arrived under two different
        idempotency keys: a duplicate a receiver could not drop."""
        keys: dict[tuple[str, str], set[str]] = defaultdict(set)
        for a in self.arrivals:
            keys[(a.alert, a.path)].add(a.key)
        return sum(len(k) - 1 for k in keys.values())

    def repeats(self) -> int:
        """Arrivals beyond the first of each delivery (same key: the receiver drops them)."""
        return len(self.arrivals) - len(self.delivered())

    def last_arrival(self, prefix: str = "") -> float | None:
        return max((a.at for a in self.arrivals if a.path.startswith(prefix)), default=None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                await reader.readexactly(int(headers.get("content-length", "0")))
                # In a baseline run every endpoint behaves: the same endpoints, all healthy.
                kind = "ok" if self.all_good else path.split("/")[1]
                self.attempts[path] += 1
                if kind == "hang":
                    await self._closing.wait()  # until the sink stops: never an answer
                    return
                if kind == "cut":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
                    await writer.drain()
                    return
                if kind == "late":
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._closing.wait(), self.late_s)
                    if self._closing.is_set():
                        return
                elif self.delay:
                    await asyncio.sleep(self.delay)
                status = 500 if kind == "flip" and self.attempts[path] % 2 == 1 else 200
                if status == 200:
                    self.arrivals.append(Arrival(
                        path, headers.get("x-alertd-alert-id", ""), headers.get("idempotency-key", ""), time.time()
                    ))
                reason = b"OK" if status == 200 else b"Internal Server Error"
                writer.write(b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n" % (status, reason))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, IndexError, ValueError):
            pass
        except asyncio.CancelledError:
            pass  # the run is ending with this endpoint still busy: nothing to report
        finally:
            self._writers.discard(writer)
            writer.close()

