"""`alertd jma poll --to DIR`: the internet side of the drop folder, against a local feed server and real Redis.

What crosses to LGWAN is only what the hardened parser accepted, re-serialised
(no comments, no processing instructions), written under a temporary dotfile
name and renamed; the LGWAN side's watcher turns it into alerts.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from alertd.jma.handover import build_handover_poller, file_name
from alertd.jma.poller import PollerConfig
from alertd.jma.spool import SpoolConfig, SpoolWatcher
from alertd.models import Alert
from tests.jma_samples import text
from tests.support import JMAXML, ROOT
from tests.test_jma_poller import REDIS_URL, FeedServer, redis, registry, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not JMAXML.is_dir(), reason="JMA samples not found at ../shared/data/jmaxml")

SHINDO = "32-35_01_01_100806_VXSE51.xml"
NANKAI = "74_01_04_200512_VYSE50.xml"
HOSTILE = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><Report><Control><Title>震度速報</Title></Control>&x;</Report>'


def _commented() -> bytes:
    """A 震度速報 with a comment and a processing instruction slipped in: neither may cross."""
    raw = text(SHINDO).replace("<Control>", "<Control><!-- from the internet side --><?evil run?>", 1)
    return raw.encode("utf-8")


async def test_fetched_telegrams_cross_sanitised_and_whole_and_become_alerts(
    server: FeedServer, redis, registry, tmp_path: Path  # noqa: F811
) -> None:
    client, prefix = redis
    server.bodies = {"hostile.xml": HOSTILE.encode(), "commented.xml": _commented()}
    server.updated = {"hostile.xml": "2010-01-01T00:00:00Z", "commented.xml": "2010-01-02T00:00:00Z"}
    server.feeds["eqvol"] = [SHINDO, NANKAI, "hostile.xml", "commented.xml"]
    config = PollerConfig(base_url=f"{server.base}/feed", feeds=("eqvol",), key_prefix=prefix)
    folder = tmp_path / "to-lgwan"
    poller = build_handover_poller(folder, config, client)
    try:
        assert await poller.poll_once() == {"eqvol": "updated"}
        assert await poller.poll_once() == {"eqvol": "not_modified"}
    finally:
        await poller.close()
    # The hostile entry is refused by the parser and never written; no temporary file is left behind.
    assert sorted(p.name for p in folder.iterdir()) == sorted([SHINDO, NANKAI, "commented.xml"])
    commented = (folder / "commented.xml").read_bytes()
    assert b"<!--" not in commented and b"<?evil" not in commented and "震度６弱".encode() in commented

    # The LGWAN side reads the folder like any drop folder.
    sink: list[Alert] = []

    async def on_alert(alert: Alert) -> None:
        sink.append(alert)

    watcher = SpoolWatcher(SpoolConfig(folder, key_prefix=prefix), client, on_alert, registry=registry)
    outcomes = await watcher.scan_once()
    assert set(outcomes.values()) == {"done"}
    assert {a.kind for a in sink} == {"earthquake", "megaquake"}


def test_file_names_are_safe() -> None:
    assert file_name("https://www.data.jma.go.jp/developer/xml/data/20240101_0_VXSE51_010000.xml") == (
        "20240101_0_VXSE51_010000.xml"
    )
    assert file_name("http://relay/data/..%2F..%2Fetc%2Fpasswd") == "_2F.._2Fetc_2Fpasswd.xml"
    assert not file_name("http://relay/data/.hidden").startswith(".")


async def test_the_command_polls_once_into_the_folder(server: FeedServer, redis, tmp_path: Path) -> None:  # noqa: F811
    _, prefix = redis
    server.feeds["eqvol"] = [NANKAI]
    env = {**os.environ, "ALERTD_REDIS_URL": REDIS_URL, "ALERTD_KEY_PREFIX": prefix, "ALERTD_JMA_FEEDS": "eqvol",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd.jma.cli", "poll", "--to", str(tmp_path / "out"),
        "--feed-base", f"{server.base}/feed", "--once",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out.decode().strip().splitlines()[-1]) == {"eqvol": "updated"}
    assert [p.name for p in (tmp_path / "out").iterdir()] == [NANKAI]


def test_the_command_says_what_it_needs(tmp_path: Path) -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "ALERTD_JMA_FEED_BASE"}
    done = subprocess.run([sys.executable, "-m", "alertd.jma.cli", "poll", "--to", str(tmp_path)],
                          env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and "ALERTD_JMA_FEED_BASE" in done.stderr
