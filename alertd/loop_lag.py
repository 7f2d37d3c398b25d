"""How late the event loop runs: whether a flash alert arriving now would wait.

Every flash delivery, every desk order and every state round of a process share its one
event loop, so a step that holds the loop (a long computation, a full garbage collection,
a CPU taken by other work) delays everything behind it. The bench found such stalls with
a throwaway probe (README, "What this round changed", fifth session); this keeps the
measure in every process: a timer due every 100 ms, and how late it ran, in
``alertd_event_loop_lag_seconds``. A stall of 250 ms or more is also logged (at most one
line every 10 s), so it can be found in the logs beside what was happening then.
"""

from __future__ import annotations

import asyncio

from alertd import logs
from alertd.metrics import LOOP_LAG

log = logs.get("alertd.loop_lag")

INTERVAL_S = 0.1
STALL_S = 0.25
LOG_EVERY_S = 10.0


async def watch(interval_s: float = INTERVAL_S) -> None:
    """Observe the loop's lag until cancelled (Engine.start spawns it)."""
    loop = asyncio.get_running_loop()
    logged_at = -LOG_EVERY_S
    while True:
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        now = loop.time()
        lag = max(0.0, now - due)
        LOOP_LAG.observe(lag)
        if lag >= STALL_S and now - logged_at >= LOG_EVERY_S:
            logged_at = now
            log.warning("loop.stalled", ms=round(lag * 1000),
                        effect="every delivery, order and read of this process waited that long")  # fmt: skip
