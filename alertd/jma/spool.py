"""The JMA drop folder (ALERTD_JMA_SPOOL=DIR): telegrams handed over across the network boundary.

Municipal networks keep LGWAN apart from the internet; JMA's feed is on the
internet side. There a poller fetches the telegrams and sanitises them
(無害化), then writes each one into a directory alertd can read. alertd
watches that directory and treats each file exactly like a telegram from
the feed: the same hardened parser (alertd.xmlsafe), the same ordering,
dedup, sequencing and policy (ingest.py), the same ``on_alert``.

The writer's side of the contract (docs/jma.md):

- write to a temporary name (a dotfile, or ``*.tmp``) and rename it into the
  directory when complete; alertd never opens dotfiles or ``*.tmp`` files, so
  it never reads a half-written telegram;
- any other regular file in the directory is a telegram.

alertd's side: each file is processed once, then moved to ``done/``, or to
``rejected/`` with ``<name>.reason.txt`` beside it saying why (not XML, hostile
XML, not a JMA message, too large, or refused by the engine — an expired
telegram — so that nothing was sent). A file the core could not take (Redis
down) stays where it is and is tried again at the next scan. Files are taken
oldest first (modification time, then name), so an EEW's serial 1 dropped
before serial 2 is told first — and within one scan the ingest path orders
the telegrams of one EventID by Serial anyway.

Like the poller, the folder is watched by one process per deployment (the
holder of the JMA lease): with several alertd processes on one Redis, two
must not race for the same file.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from alertd import logs
from alertd.constants import DEFAULT_PREFIX, Keys
from alertd.errors import AlertdError
from alertd.jma.head import AreaRegistry
from alertd.jma.ingest import Guard, Ingest, OnAlert, Telegram
from alertd.jma.metrics import ENTRY_FAILURES, SPOOL_FILES
from alertd.jma.parse import ParseResult, parse_message
from alertd.jma.policy import Policy
from alertd.lease import Lease
from alertd.redis_client import key_root

log = logs.get("alertd.jma")

SOURCE = "spool"
DONE_DIR = "done"
REJECTED_DIR = "rejected"
REASON_SUFFIX = ".reason.txt"
MAX_FILE_BYTES = 5_000_000  # as for a feed entry; a bigger file is rejected unread


@dataclass(frozen=True)
class SpoolConfig:
    directory: Path
    interval_s: float = 1.0  # a local directory listing costs next to nothing
    key_prefix: str = DEFAULT_PREFIX
    retention_s: float = 14 * 86400.0
    lease_ttl_s: float = 30.0
    batch: int = 200  # files taken per scan; the rest wait for the next

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SpoolConfig | None:
        """The drop folder's settings, or None when ALERTD_JMA_SPOOL is unset."""
        env = os.environ if env is None else env
        directory = env.get("ALERTD_JMA_SPOOL", "").strip()
        if not directory:
            return None
        return cls(
            directory=Path(directory),
            interval_s=float(env.get("ALERTD_JMA_SPOOL_INTERVAL_S") or 1.0),
            key_prefix=key_root(env.get("ALERTD_KEY_PREFIX", DEFAULT_PREFIX), env.get("ALERTD_REDIS_URL") or ""),
            lease_ttl_s=float(env.get("ALERTD_JMA_LEASE_TTL_S") or 30.0),
        )


def is_ready(path: Path) -> bool:
    """A complete telegram: a regular file whose name is not a dotfile or a temporary (*.tmp)."""
    name = path.name
    return not name.startswith(".") and not name.endswith(".tmp") and path.is_file()


class SpoolWatcher:
    def __init__(
        self,
        config: SpoolConfig,
        redis: aioredis.Redis,
        on_alert: OnAlert,
        *,
        registry: AreaRegistry | None = None,
        policy: Policy | None = None,
        ingest: Ingest | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.config = config
        self.redis = redis
        self._registry = registry
        self.keys = Keys(config.key_prefix)
        self.ingest = ingest or Ingest(
            redis, self.keys, on_alert, policy or Policy.default(), lambda: self.registry,
            retention_s=config.retention_s,
        )  # fmt: skip
        self.lease = lease or Lease(redis, self.keys.jma("leader"), ttl_s=config.lease_ttl_s)
        self._guard: Guard | None = None

    @property
    def registry(self) -> AreaRegistry:
        if self._registry is None:
            from geo.registry import Registry

            self._registry = Registry.default()
        return self._registry

    def _prepare(self) -> None:
        for sub in (DONE_DIR, REJECTED_DIR):
            (self.config.directory / sub).mkdir(parents=True, exist_ok=True)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Watch the folder until ``stop`` — only while this process holds the deployment's JMA lease."""
        await self.lease.run_while_held(stop or asyncio.Event(), self.watch)

    async def watch(self, stop: asyncio.Event) -> None:
        """Scan every ``interval_s`` until ``stop``; the caller holds the lease."""
        await asyncio.to_thread(self._prepare)
        self._guard = self.lease.held
        try:
            while not stop.is_set():
                try:
                    await self.scan_once()
                except Exception:  # a bad scan must not end the watcher; logged, tried again
                    log.exception("jma.spool_scan_failed", **{"dir": str(self.config.directory)})
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.config.interval_s)
                except TimeoutError:
                    pass
        finally:
            self._guard = None

    def _ready_files(self) -> list[Path]:
        try:
            entries = list(self.config.directory.iterdir())
        except FileNotFoundError:
            return []
        ready = []
        for path in entries:
            try:
                if is_ready(path):
                    ready.append((path.stat().st_mtime_ns, path.name, path))
            except FileNotFoundError:  # renamed away between listing and stat
                continue
        return [p for _, _, p in sorted(ready)[: self.config.batch]]

    async def scan_once(self) -> dict[str, str]:
        """Process the files ready now; returns file name → done | rejected | retry."""
        await asyncio.to_thread(self._prepare)
        files = await asyncio.to_thread(self._ready_files)
        results: dict[str, str] = {}
        telegrams: list[Telegram] = []
        paths: dict[int, Path] = {}
        parsed_files: list[tuple[ParseResult, Path]] = []
        for path in files:
            parsed = await self._parse(path)
            if isinstance(parsed, str):
                await asyncio.to_thread(self._reject, path, parsed)
                results[path.name] = "rejected"
                continue
            parsed_files.append((parsed, path))
        # Files dropped together are told in telegram order, not file order: an older serial
        # is never sent after a newer one, a 津波情報 not before the 津波警報 it is about.
        for position, (parsed, path) in enumerate(sorted(parsed_files, key=lambda pp: telegram_order(pp[0]))):
            telegrams.append(Telegram(SOURCE, path.name, parsed, position))
            paths[position] = path
        if not telegrams:
            return results
        try:
            outcomes = await self.ingest.handle(telegrams, guard=self._guard)
        except Exception:
            # The core could not take them: the files stay and are tried again next scan.
            log.exception("jma.on_alert_failed", **{"source": SOURCE})
            ENTRY_FAILURES.labels(source=SOURCE, reason="core").inc()
            return {**results, **{p.name: "retry" for p in paths.values()}}
        for position, outcome in outcomes.items():
            path = paths[position]
            if outcome.reason == "refused":
                # Nothing was sent (expired, outside any district …): not "done", and the
                # reason beside the file says what to fix (docs/jma.md, replaying a sample).
                detail = outcome.detail
                # The core's own detail usually says it already ("…; nothing was sent.").
                why = (f"refused by the engine: {detail}" if "nothing was sent" in detail.lower()
                       else f"refused by the engine, nothing was sent: {detail}")  # fmt: skip
                await asyncio.to_thread(self._reject, path, why, "refused")
                results[path.name] = "rejected"
            elif outcome.done:
                await asyncio.to_thread(self._move, path, DONE_DIR)
                SPOOL_FILES.labels(outcome="done").inc()
                log.info("jma.spool_done", **{"file": path.name, "outcome": outcome.reason})
                results[path.name] = "done"
            else:
                results[path.name] = "retry"
        return results

    async def _parse(self, path: Path) -> ParseResult | str:
        """The parsed telegram, or why the file is rejected."""
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
            if size > MAX_FILE_BYTES:
                return f"too large: {size} bytes; a JMA telegram is at most {MAX_FILE_BYTES} bytes"
            data = await asyncio.to_thread(path.read_bytes)
            return await asyncio.to_thread(parse_message, data, self.registry, name=path.name)
        except AlertdError as exc:
            return f"{exc.title}: {exc.detail}"
        except OSError as exc:
            return f"cannot read: {exc.strerror or exc}"

    def _reject(self, path: Path, reason: str, failure: str = "unparsable") -> None:
        target = _free_name(self.config.directory / REJECTED_DIR, path.name)
        # The reason first, written atomically, so a reader of rejected/ never sees a file without one.
        note = target.with_name(target.name + REASON_SUFFIX)
        tmp = note.with_name("." + note.name + ".tmp")
        tmp.write_text(f"{reason}\nrejected at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n", encoding="utf-8")
        tmp.replace(note)
        path.replace(target)
        SPOOL_FILES.labels(outcome="rejected").inc()
        ENTRY_FAILURES.labels(source=SOURCE, reason=failure).inc()
        log.error("jma.spool_rejected", **{"file": path.name, "moved_to": str(target),
                                                          "reason": reason})  # fmt: skip

    def _move(self, path: Path, sub: str) -> None:
        path.replace(_free_name(self.config.directory / sub, path.name))


def telegram_order(result: ParseResult) -> tuple[float, int]:
    """ReportDateTime, then Serial (none counts as 0); a file with no header first (it is ignored)."""
    h = result.header
    if h is None:
        return (float("-inf"), 0)
    return (h.report_time.timestamp(), int(h.serial) if h.serial.isdigit() else 0)


def _free_name(directory: Path, name: str) -> Path:
    """``directory/name``, or ``name.1``, ``name.2`` … if a file of that name was handled before."""
    target = directory / name
    n = 0
    while target.exists() or target.with_name(target.name + REASON_SUFFIX).exists():
        n += 1
        target = directory / f"{name}.{n}"
    return target


def build_spool(
    redis: aioredis.Redis,
    on_alert: OnAlert,
    *,
    registry: AreaRegistry | None = None,
    env: Mapping[str, str] | None = None,
) -> SpoolWatcher | None:
    """The drop-folder watcher the environment asks for (None when ALERTD_JMA_SPOOL is unset)."""
    config = SpoolConfig.from_env(env)
    if config is None:
        return None
    return SpoolWatcher(config, redis, on_alert, registry=registry, policy=Policy.from_env(env))
