"""``alertd jma parse FILE…``: what alertd would make of a JMA message, for an operator to check by hand.

Output is one JSON object per line: one per alert a file yields, or one
naming the file's unsupported type. Exit status is 0 unless a file is not
JMA XML at all (or cannot be read), which is 2 — so a script can tell
"alertd does not broadcast this type" (normal) from "this is not a JMA
message" (something is wrong upstream).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, TextIO

from alertd.errors import AlertdError
from alertd.jma.head import AreaRegistry
from alertd.jma.parse import parse_message
from alertd.jma.policy import Policy, PolicyError
from alertd.models import Alert, format_cap_time

EXIT_OK = 0
EXIT_NOT_JMA = 2


def alert_line(path: str, type_code: str, alert: Alert) -> dict[str, Any]:
    info = alert.infos[0] if alert.infos else None
    english = alert.info_for("en-US")
    return {
        "file": path,
        "type": type_code,
        "identifier": alert.identifier,
        "sent": format_cap_time(alert.sent),
        "status": alert.status.value,
        "msg_type": alert.msg_type.value,
        "kind": alert.kind,
        "event": alert.event,
        "event_en": english.event if english else None,
        "level": alert.level,
        "action": alert.action,
        "priority": alert.priority.value,
        "adapters": next((c.split("=", 1)[1] for c in alert.codes if c.startswith("alertd:adapters=")), None),
        "districts": alert.districts,
        "areas": [a.desc for a in info.areas] if info else [],
        "expires": format_cap_time(alert.expires) if alert.expires else None,
        "incidents": alert.incidents,
        "headline": info.headline if info else None,
    }


def parse_files(
    paths: list[str], registry: AreaRegistry, policy: Policy | None, out: TextIO, err: TextIO
) -> int:
    code = EXIT_OK
    for path in paths:
        try:
            data = Path(path).read_bytes()
            result = parse_message(data, registry, name=path)
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror or exc}", file=err)
            code = EXIT_NOT_JMA
            continue
        except AlertdError as exc:
            print(f"{path}: not a JMA XML message: {exc.detail}", file=err)
            code = EXIT_NOT_JMA
            continue
        if not result.supported:
            line = {
                "file": path,
                "type": result.type_code,
                "title": result.title,
                "unsupported": result.type_code,
                "why": result.reason,
            }
            print(json.dumps(line, ensure_ascii=False), file=out)
            continue
        for alert in result.alerts:
            if policy is not None:
                policy.apply(alert)
            line = alert_line(path, result.type_code, alert)
            if result.unresolved:
                line["unresolved"] = result.unresolved
            print(json.dumps(line, ensure_ascii=False), file=out)
    return code


JMA_FEED_BASE = "https://www.data.jma.go.jp/developer/xml/feed"


def poll_to(directory: Path, feed_base: str | None, *, once: bool) -> int:
    """``alertd jma poll --to DIR``: the poller's state in ALERTD_REDIS_URL, or an embedded Redis.

    With an embedded Redis the record of fetched entries ends with the
    process, so a restart writes the feeds' current entries again; the LGWAN
    side announces each JMA report once whatever bytes carry it (dedup by
    JMA identity), so that costs disk, not duplicate alerts.
    """
    import asyncio
    import os
    import signal

    import redis.asyncio as aioredis

    from alertd.embedded import EmbeddedServices
    from alertd.jma.handover import build_handover_poller
    from alertd.jma.poller import PollerConfig, PollerConfigError

    env = dict(os.environ)
    if feed_base:
        env["ALERTD_JMA_FEED_BASE"] = feed_base
    try:
        config = PollerConfig.from_env(env)
    except (PollerConfigError, ValueError) as exc:
        print(f"poll: {exc}", file=sys.stderr)
        return 1
    if config is None:
        print(f"poll: give --feed-base or set ALERTD_JMA_FEED_BASE (JMA: {JMA_FEED_BASE})", file=sys.stderr)
        return 1

    async def run(url: str) -> None:
        client = aioredis.from_url(url)
        poller = build_handover_poller(directory, config, client)
        try:
            if once:
                outcomes = await poller.poll_once()
                print(json.dumps(outcomes), file=sys.stdout)
                await poller.close()
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await poller.run(stop)
        finally:
            await client.aclose()

    with EmbeddedServices() as services:
        url = os.environ.get("ALERTD_REDIS_URL") or services.start_redis()
        asyncio.run(run(url))
    return 0


def _control_time(text: str) -> datetime | None:
    """Control/DateTime: when the telegram was sent, often a minute after its ReportDateTime."""
    m = re.search(r"<Control>.*?<DateTime>([^<]+)<", text, flags=re.S)
    return datetime.fromisoformat(m[1].replace("Z", "+00:00")) if m else None


def replay_deltas(texts: list[str], now: datetime, gap_s: float) -> list[timedelta]:
    """How far to move each telegram (given in telegram order): ReportDateTimes in the same
    order, each at most ``gap_s`` after the one before — JMA's spacing (51 hours for the 2011
    tsunami) would expire the early ones on arrival — and the whole moved so that the latest
    time sent (Control/DateTime) is a second before ``now``: nothing in the future."""
    from alertd.drills.jma_replay import report_time

    reported = [report_time(t) for t in texts]
    offsets = [0.0]  # each ReportDateTime's place on the compressed line, from the first
    for before, after in pairwise(reported):
        offsets.append(offsets[-1] + min(max((after - before).total_seconds(), 0.0), gap_s))
    # How long after its ReportDateTime each telegram was sent.
    lag = [max(((_control_time(t) or r) - r).total_seconds(), 0.0) for t, r in zip(texts, reported, strict=True)]
    start = now - timedelta(seconds=1 + max(o + g for o, g in zip(offsets, lag, strict=True)))
    return [start + timedelta(seconds=o) - r for o, r in zip(offsets, reported, strict=True)]


def shift_to(samples: list[Path], directory: Path, *, drill: bool, gap_s: float = 2.0) -> int:
    """``alertd jma shift SAMPLE… --to DIR [--drill] [--gap S]``: replay old telegrams now, through the drop folder.

    A sample years old is refused as expired (rejected/ says so). The samples are told in
    telegram order (ReportDateTime, then Serial), at most ``gap_s`` seconds apart, the last
    sent just now and none in the future (replay_deltas), and written the way the
    sanitising side writes (temporary name, then rename). ``--drill`` makes them 訓練
    (Exercise): never to loudspeakers, never flash.
    """
    from alertd.drills.jma_replay import drop, report_time, shift

    def serial(text: str) -> int:
        m = re.search(r"<Serial>(\d+)</Serial>", text)
        return int(m[1]) if m else 0

    try:
        texts = [(p, p.read_text(encoding="utf-8")) for p in samples]
        texts.sort(key=lambda pt: (report_time(pt[1]), serial(pt[1])))
        deltas = replay_deltas([t for _, t in texts], datetime.now(UTC), gap_s)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"shift: {exc}", file=sys.stderr)
        return 1
    if not directory.is_dir():
        print(f"shift: {directory} is not a directory (the drop folder, ALERTD_JMA_SPOOL)", file=sys.stderr)
        return 1
    for (path, text), delta in zip(texts, deltas, strict=True):
        target = drop(directory, path.name, shift(text, delta, status="訓練" if drill else None))
        print(target)
    return 0


def main(argv: list[str], *, registry: AreaRegistry | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alertd jma", description="JMA disaster-prevention XML tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parse", help="print the alerts each JMA XML file yields, one JSON object per line")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--policy", help="JMA policy YAML (default: ALERTD_JMA_POLICY or the built-in policy)")
    p.add_argument("--no-policy", action="store_true", help="do not apply the broadcast policy")
    q = sub.add_parser(
        "poll",
        help="internet side of the drop folder: poll JMA's feeds and write each telegram, sanitised, into DIR",
    )
    q.add_argument("--to", required=True, metavar="DIR", help="the drop folder LGWAN reads (ALERTD_JMA_SPOOL)")
    q.add_argument("--feed-base", help="feed base URL (default: ALERTD_JMA_FEED_BASE; JMA: " + JMA_FEED_BASE + ")")
    q.add_argument("--once", action="store_true", help="poll every feed once and exit")
    r = sub.add_parser(
        "shift",
        help="replay old JMA samples now: the latest sent now, at most --gap seconds apart, written into DIR",
    )
    r.add_argument("samples", nargs="+", metavar="SAMPLE", type=Path)
    r.add_argument("--to", required=True, metavar="DIR", help="the drop folder (ALERTD_JMA_SPOOL)")
    r.add_argument("--drill", action="store_true", help="as 訓練 (Exercise): never to loudspeakers, never flash")
    r.add_argument("--gap", type=float, default=2.0, metavar="SECONDS",
                   help="at most this many seconds between consecutive telegrams (default 2)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.command == "shift":
        if args.gap < 0:
            print("shift: --gap must be 0 seconds or more", file=sys.stderr)
            return 2
        return shift_to(args.samples, Path(args.to), drill=args.drill, gap_s=args.gap)
    if args.command == "poll":
        return poll_to(Path(args.to), args.feed_base, once=args.once)

    policy: Policy | None = None
    if not args.no_policy:
        try:
            policy = Policy.from_file(args.policy) if args.policy else Policy.from_env()
        except (OSError, PolicyError) as exc:
            print(f"policy: {exc}", file=sys.stderr)
            return 1
    if registry is None:
        from geo.registry import Registry

        registry = Registry.default()
    return parse_files(args.files, registry, policy, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
