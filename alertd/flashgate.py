"""Flash work in flight in this process, and the routine work that steps aside for it.

A flash alert (EEW, tsunami, missile, level 5) shares the process's one event loop with
everything else: routine orders being taken, routine deliveries, the feed's state rounds.
While flash work is under way here (a flash alert's intake, or its deliveries), the
others wait at their next step, each for a bounded time so none is starved: the routine
lanes read no new work, a routine message sent through the API pauses between its intake
stages (at most ``ROUTINE_WAIT_S`` in all; the JMA feed's telegrams never pause, as they are
taken one at a time and a flash one may be next), and a state round waits (at most 2 s,
alertd.feed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

# The most a routine order's intake waits, over all its stages, for flash work: its 202
# comes at most this much later during a national alert.
ROUTINE_WAIT_S = 1.0
# How long a flash alert's intake keeps the gate after its commit, for its deliveries to
# enter it here first.
HAND_OVER_S = 0.05


class FlashGate:
    """A count of flash work in flight in this process (across its lane shards' workers
    and its intake); ``idle`` is set when there is none."""

    def __init__(self) -> None:
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def enter(self) -> None:
        self.inflight += 1
        self.idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self.idle.set()

    def leave_soon(self, seconds: float = HAND_OVER_S) -> None:
        """Leave after ``seconds``: a flash alert's intake hands the gate to its deliveries,
        which enter it once a worker has read them (a few ms after the commit). Without the
        overlap, routine work held back would all resume in between, ahead of them."""
        asyncio.get_running_loop().call_later(seconds, self.leave)

    async def step_aside(self, deadline: float) -> None:
        """Wait while flash work is in flight, until ``deadline`` (time.monotonic()) at most."""
        if self.idle.is_set():
            return
        left = deadline - time.monotonic()
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), left)
