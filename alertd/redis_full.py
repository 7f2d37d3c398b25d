"""Redis that answers but cannot write: its disk full, or its memory limit reached.

Two ways Redis refuses writes while it still answers reads:

- **disk**: with ``appendonly yes``, a write of the AOF that fails (a full disk: "No space
  left on device") makes Redis refuse every command that writes — ``PING``, ``XREADGROUP``
  and ``XACK`` included — with ``MISCONF Errors writing to the AOF file: …``, until a
  retry of that write succeeds (Redis retries every second, and writes again by itself
  once space is freed). A failed RDB snapshot does the same (``MISCONF … unable to persist
  to disk``) with ``stop-writes-on-bgsave-error yes``, the default.
- **memory**: with ``maxmemory`` set and ``maxmemory-policy noeviction`` (alertd's, since
  an evicted job would be a receiver that never hears), commands that add data (``HSET``,
  ``XADD``, a transaction holding one) get ``OOM command not allowed when used memory >
  'maxmemory'``; ``XREADGROUP``, ``XACK`` and deletions still work.

Either way nothing alertd tried to write was written (a transaction is refused whole),
so a desk request can be refused with a 503 that says what is wrong, and delivery
outcomes can be kept in memory and written once Redis can write again
(alertd/recorder.py).
"""

from __future__ import annotations

from typing import Literal

from redis.exceptions import RedisError

Full = Literal["disk", "memory"]

# Seconds a desk is told to wait: freeing a disk or memory is a person's work, not a blip.
RETRY_AFTER_S = 30

# redis-py strips the "OOM " error code from the memory refusal (it raises OutOfMemoryError),
# and a pipeline's error quotes the refusal after the command: the sentences are looked for.
_MARKS: tuple[tuple[str, Full], ...] = (
    ("MISCONF", "disk"),
    ("command not allowed when used memory", "memory"),
)


def full_kind(exc: BaseException | None) -> Full | None:
    """The kind, "disk" or "memory", when ``exc`` (or what it was raised from) is Redis refusing a write
    because it cannot persist or has no memory left; None for anything else."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, RedisError):
            text = str(exc)
            for mark, kind in _MARKS:
                if mark in text:
                    return kind
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def redis_words(exc: BaseException) -> str:
    """Redis's own sentence, without what redis-py puts around it (a pipeline's error
    names the command and its arguments, which may be an alert's text)."""
    text = str(exc)
    if "MISCONF" in text:
        return text[text.find("MISCONF") :].split(" script: ")[0].strip().rstrip("'\",)")
    if _MARKS[1][0] in text:
        return "OOM command not allowed when used memory > 'maxmemory'"
    return text


def desk_detail(kind: Full) -> str:
    """The 503's sentence for the person at the desk."""
    what = (
        "cannot save anything to its disk (the disk is probably full)"
        if kind == "disk"
        else "has reached its memory limit (maxmemory)"
    )
    return (
        f"alertd's database {what}, so this was NOT accepted: nothing was sent or changed. "
        "Alerts accepted before are still being delivered. Call your system administrator, and send "
        f"this again when they say the database can write again (alertd needs no restart; try again "
        f"in {RETRY_AFTER_S} seconds at the earliest)."
    )


def health_cause(kind: Full, words: str) -> str:
    """The /healthz sentence for the operator."""
    fix = (
        "free space on the disk that holds its AOF/RDB files (Redis writes again by itself within a second)"
        if kind == "disk"
        else "raise maxmemory or free memory in Redis"
    )
    return (
        f"Redis cannot write ({words}): new alerts and changes are refused with 503; deliveries already "
        f"accepted are still being sent, and their outcomes are written once Redis can write again. Fix: {fix}"
    )


__all__ = ["RETRY_AFTER_S", "Full", "desk_detail", "full_kind", "health_cause", "redis_words"]
