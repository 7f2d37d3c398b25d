"""A drill against an engine of its own: ``alertd drill run`` without ``--url``, and ``make demo``.

Starts an engine on embedded Redis and MQTT (or the configured ones) with its own key and
topic prefixes and drop folder, serves its API on a free loopback port, runs the
``DrillRunner`` against it, and removes what it made. Its own module because it needs the
API (``make_app``), which itself runs drills the console starts (alertd/drills/desk.py):
the runner must not import the API back.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from alertd.api import make_app
from alertd.config import Settings
from alertd.drills.receivers import _free_port
from alertd.drills.runner import DrillRunner
from alertd.drills.scenario import Scenario
from alertd.engine import Engine
from alertd.store import remove_prefix


async def run_embedded(
    scenario: Scenario,
    speed: float,
    *,
    on_ready: Callable[[str, str, str], Awaitable[None]] | None = None,
    on_report: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    lenient: bool = False,
) -> dict[str, Any]:
    """Start an engine on embedded Redis and MQTT (or the configured ones) and drill against it.

    ``on_ready(url, admin_token, mqtt_url)`` runs once the engine answers, before the drill (``make demo``
    adds its console accounts there); ``on_report(report)`` runs after the drill while the engine
    still serves (the demo keeps it up there until Ctrl-C when a person is watching)."""
    settings = Settings.from_env()
    settings.admin_token = settings.admin_token or secrets.token_hex(16)
    # On a shared Redis, its own keys under the deployment's prefix, removed at the end.
    shared_redis = bool(settings.redis_url)
    settings.key_prefix = (
        f"{settings.key_prefix}-drill-{secrets.token_hex(3)}" if shared_redis else settings.key_prefix
    )
    settings.retry_base_s, settings.retry_max_s = 0.2, 2.0
    # Its own topics: a drill's retained states never land where live receivers read.
    settings.topic_prefix = f"alertd-drill-{secrets.token_hex(3)}/alerts/v1"
    # Its own drop folder, so 'spool' steps take the real JMA path.
    spool = Path(tempfile.mkdtemp(prefix="alertd-drill-spool-"))
    os.environ["ALERTD_JMA_SPOOL"] = str(spool)
    os.environ.setdefault("ALERTD_JMA_SPOOL_INTERVAL_S", "0.2")
    engine = Engine(settings)
    await engine.start()
    runner = web.AppRunner(make_app(engine), access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        assert settings.mqtt_url is not None
        url = f"http://127.0.0.1:{port}"
        if on_ready is not None:
            await on_ready(url, settings.admin_token, settings.mqtt_url)
        drill = DrillRunner(
            scenario, url, settings.admin_token, settings.mqtt_url, speed,
            topic_prefix=settings.topic_prefix, spool=spool, lenient=lenient,
        )  # fmt: skip
        report = await drill.run()
        if on_report is not None:
            await on_report(report)
        return report
    finally:
        await runner.cleanup()
        await engine.stop()
        if shared_redis:
            await remove_prefix(settings.redis_url or "", settings.key_prefix, settings.lane_shards)  # no keys left behind
        os.environ.pop("ALERTD_JMA_SPOOL", None)
        shutil.rmtree(spool, ignore_errors=True)
