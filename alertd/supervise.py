"""Supervised background tasks: no long-running loop of alertd may end silently.

Every loop that keeps alertd working (the lane readers, the reclaimer, the
retry mover, expiry, the feed connection, the JMA poller) runs under a
``Supervisor``. Two layers keep it alive:

- ``every(name, step, interval)`` runs one step at a time; a step that raises
  is logged with its task name, counted, and retried after an exponential
  backoff with jitter. The loop itself never ends because of an error.
- ``spawn(name, factory)`` restarts a coroutine that ends anyway (a bug, an
  error nobody expected) and counts it in ``alertd_task_restarts_total``.

Each task also keeps a heartbeat: the last time it finished a step (or said
it was making progress). ``problems()`` turns stale heartbeats and failing
steps into sentences for ``/healthz``, so a stalled reader is reported, not
hidden behind a cheerful "ok".
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from alertd import logs
from alertd.metrics import TASK_RESTARTS, TASK_STEP_FAILURES, precreate_tasks

log = logs.get("alertd.supervise")

# How long stop() waits for cancelled tasks before it names the ones still running and goes on.
STOP_TIMEOUT_S = 10.0

Step = Callable[[], Awaitable[None]]


@dataclass
class TaskHealth:
    """What the supervisor knows about one task, for logs and /healthz."""

    name: str
    group: str
    critical: bool
    # A task whose heartbeat is older than this is reported as stalled.
    stale_after_s: float
    started_at: float = field(default_factory=time.monotonic)
    last_beat: float = field(default_factory=time.monotonic)
    failures: int = 0  # consecutive failed steps; 0 after a good one
    restarts: int = 0
    last_error: str | None = None
    running: bool = True

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def problem(self, now: float) -> str | None:
        if not self.running:
            return f"{self.name} is not running (last error: {self.last_error or 'none'})"
        idle = now - self.last_beat
        if idle > self.stale_after_s:
            why = f"; failing since then: {self.last_error}" if self.failures else ""
            return f"{self.name} has made no progress for {idle:.0f} s{why}"
        return None


def backoff_delay(failures: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter; the first retry comes quickly, since a
    flash alert may be waiting behind a reader that just hit one error."""
    ceiling = min(max_s, base_s * 2 ** max(0, failures - 1))
    return random.uniform(ceiling / 2, ceiling)


class Supervisor:
    def __init__(self, component: str) -> None:
        self.component = component
        self.tasks: dict[str, TaskHealth] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def health(self, name: str) -> TaskHealth:
        return self.tasks[name]

    def spawn(
        self,
        name: str,
        factory: Step,
        *,
        group: str | None = None,
        critical: bool = True,
        stale_after_s: float = float("inf"),
        restart_base_s: float = 0.1,
        restart_max_s: float = 5.0,
        ends_when: asyncio.Event | None = None,
    ) -> TaskHealth:
        """Run ``factory()`` until stopped, restarting it whenever it ends or raises.

        ``ends_when``: once it is set, the task returning is the end it was asked for (a lease
        holder handing its lease over at shutdown, before stop()), not a fault to restart."""
        state = TaskHealth(name, group or name, critical, stale_after_s)
        self.tasks[name] = state
        precreate_tasks([state.group])  # at zero from the start: the first restart must show in rate()
        self._running[name] = asyncio.create_task(
            self._keep(state, factory, restart_base_s, restart_max_s, ends_when), name=name
        )
        return state

    def every(
        self,
        name: str,
        step: Step,
        interval_s: float,
        *,
        group: str | None = None,
        critical: bool = True,
        stale_after_s: float | None = None,
        backoff_base_s: float = 0.1,
        backoff_max_s: float = 5.0,
    ) -> TaskHealth:
        """Call ``step()`` every ``interval_s`` (0: back to back), surviving every error it raises."""
        stale = stale_after_s if stale_after_s is not None else max(15.0, 4 * interval_s)
        state: TaskHealth

        async def loop() -> None:
            while not self._stopping:
                try:
                    await step()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    state.failures += 1
                    state.last_error = _describe(exc)
                    TASK_STEP_FAILURES.labels(task=state.group).inc()
                    # The first failure of a run gets the traceback; repeats of the
                    # same outage get one line each, not a wall of stack traces.
                    fields = {"task": name, "error": state.last_error, "failures": state.failures}
                    if state.failures == 1:
                        log.exception("task.step_failed", **fields)
                    else:
                        log.warning("task.step_failed", **fields)
                    await asyncio.sleep(backoff_delay(state.failures, backoff_base_s, backoff_max_s))
                    continue
                if state.failures:
                    log.info("task.recovered", task=name, after_failures=state.failures)
                state.failures = 0
                state.beat()
                if interval_s > 0:
                    await asyncio.sleep(interval_s)

        state = self.spawn(name, loop, group=group, critical=critical, stale_after_s=stale)
        return state

    async def _keep(
        self, state: TaskHealth, factory: Step, base_s: float, max_s: float, ends_when: asyncio.Event | None = None
    ) -> None:
        restarts_in_a_row = 0
        while not self._stopping:
            state.running = True
            began = time.monotonic()
            try:
                await factory()
                if self._stopping or (ends_when is not None and ends_when.is_set()):
                    state.running = False
                    return
                why = "it returned while alertd was still running"
            except asyncio.CancelledError:
                # Cancellation is how a process shuts down (stop(), or asyncio tearing down
                # after a failed start): never fight it, or shutdown hangs for ever.
                state.running = False
                raise
            except Exception as exc:
                why = _describe(exc)
                state.last_error = why
                log.exception("task.crashed", task=state.name, error=why)
            state.running = False
            state.restarts += 1
            TASK_RESTARTS.labels(task=state.group).inc()
            # A task that ran a good while before ending starts over quickly.
            restarts_in_a_row = 1 if time.monotonic() - began > 30 else restarts_in_a_row + 1
            delay = backoff_delay(restarts_in_a_row, base_s, max_s)
            log.error("task.restarting", task=state.name, reason=why, in_s=round(delay, 2),
                      restarts=state.restarts)  # fmt: skip
            await asyncio.sleep(delay)
            state.beat()

    def problems(self) -> list[str]:
        now = time.monotonic()
        out = []
        for state in self.tasks.values():
            if not state.critical:
                continue
            problem = state.problem(now)
            if problem is not None:
                out.append(problem)
        return out

    def summary(self) -> dict[str, dict[str, object]]:
        """Per task group (the 512 flash delivery coroutines are one row)."""
        now = time.monotonic()
        groups: dict[str, list[TaskHealth]] = {}
        for state in self.tasks.values():
            groups.setdefault(state.group, []).append(state)
        out: dict[str, dict[str, object]] = {}
        for group, states in groups.items():
            errors = [s.last_error for s in states if s.last_error]
            out[group] = {
                "tasks": len(states),
                "running": sum(s.running for s in states),
                "seconds_since_progress": round(max(now - s.last_beat for s in states), 1),
                "failures": max(s.failures for s in states),
                "restarts": sum(s.restarts for s in states),
                "last_error": errors[-1] if errors else None,
            }
        return out

    async def stop(self, *, grace: dict[str, float] | None = None) -> None:
        """Cancel every task; the ones named in ``grace`` first get that long to end by
        themselves (a lease holder told to stop hands its lease over instead of leaving
        it to lapse)."""
        self._stopping = True
        for name, seconds in (grace or {}).items():
            task = self._running.get(name)
            if task is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(task), seconds)
        names = {task: name for name, task in self._running.items()}
        for task in names:
            task.cancel()
        # Bounded: a task that swallows its cancellation (a library awaiting inside a
        # suppress(CancelledError)) must not hang shutdown for ever. Name it instead.
        _done, stuck = await asyncio.wait(names, timeout=STOP_TIMEOUT_S) if names else (set(), set())
        for task in stuck:
            log.error("task.would_not_stop", task=names[task], waited_s=STOP_TIMEOUT_S)
        for task in names:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: its failure was logged where it happened
        self._running.clear()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
