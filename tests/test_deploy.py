"""The deployment files, proved with the tools this machine has: systemd-analyze on the units,
the real redis-server and mosquitto on their settings, docker-compose (v1, which needs no
Docker daemon) on the compose file, and the Dockerfile read for what it installs from where."""

from __future__ import annotations

import asyncio
import getpass
import re
import shutil
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest
import redis.asyncio as aioredis

from tests.support import ROOT, free_port, until

DEPLOY = ROOT / "deploy"
UNITS = ("alertd.service", "alertd-worker@.service")
COMPOSE_ENV = {"REDIS_PASSWORD": "r-pass", "MQTT_PASSWORD": "m-pass", "ALERTD_ADMIN_TOKEN": "a-token",
               "GRAFANA_ADMIN_PASSWORD": "g-pass"}  # fmt: skip


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {package}; tests/services.sh tries)")
    return path


def _units_here(where: Path) -> list[Path]:
    """The units as installed, with ExecStart pointing at this machine's alertd (verify checks
    that the program exists) and the template as instance 1."""
    alertd = Path(sys.executable).parent / "alertd"
    assert alertd.exists(), alertd
    out = []
    for name in UNITS:
        text = (DEPLOY / "systemd" / name).read_text(encoding="utf-8")
        assert "/opt/alertd/.venv/bin/alertd" in text
        target = where / name.replace("@.", "@1.")
        target.write_text(text.replace("/opt/alertd/.venv/bin/alertd", str(alertd)), encoding="utf-8")
        out.append(target)
    return out


def test_the_units_pass_systemd_analyze_verify_and_are_hardened(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze", "systemd")
    units = _units_here(tmp_path)
    run = subprocess.run([analyze, "verify", "--man=no", *map(str, units)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)  # fmt: skip
    # Any line is a finding (an unknown key is only a warning, with status 0): none allowed.
    assert run.returncode == 0 and run.stderr.strip() == "" and run.stdout.strip() == "", run.stderr + run.stdout
    for unit in units:
        text = unit.read_text(encoding="utf-8")
        for setting in ("ProtectSystem=strict", "NoNewPrivileges=yes", "Restart=always", "User=alertd",
                        "StateDirectory=alertd", "EnvironmentFile=/etc/alertd/alertd.env"):  # fmt: skip
            assert setting in text, (unit.name, setting)
        score = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(unit)],
                               capture_output=True, text=True, cwd=tmp_path, timeout=60)  # fmt: skip
        exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", score.stdout)
        assert exposure and float(exposure.group(1)) <= 2.0, score.stdout[-500:]  # 10 is unprotected


async def test_redis_starts_on_the_deployment_settings_with_aof_and_no_eviction(tmp_path: Path) -> None:
    server = _tool("redis-server", "redis-server")
    port = free_port()
    proc = await _redis(server, tmp_path, port)
    client = aioredis.Redis(port=port, password="change-me-redis-password")
    try:
        settings = {k: (await client.config_get(k))[k] for k in ("appendonly", "appendfsync", "maxmemory-policy")}
        assert settings == {"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"}
        assert (await client.config_get("save"))["save"]  # RDB snapshots for backups as well
        await client.set("alertd:probe", "1")
        assert any((tmp_path / "appendonlydir").iterdir())  # the append-only file is being written
    finally:
        await client.aclose()
        proc.terminate()
        await proc.wait()


async def _redis(server: str, where: Path, port: int, *extra: str) -> asyncio.subprocess.Process:
    log = where / f"redis-{len(list(where.glob('redis-*.log')))}.log"
    proc = await asyncio.create_subprocess_exec(
        server, str(DEPLOY / "redis" / "alertd.conf"), "--port", str(port), "--dir", str(where),
        "--daemonize", "no", "--logfile", str(log), *extra,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    async def listens() -> bool:
        # A bare connect: redis-py's own retries would back off for seconds between tries.
        if proc.returncode is not None:
            raise AssertionError(f"redis-server refused deploy/redis/alertd.conf: {log.read_text()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    await until(listens, what="redis-server to start on deploy/redis/alertd.conf", timeout=10)
    return proc


async def test_the_readmes_restore_brings_back_a_snapshot_under_aof(tmp_path: Path) -> None:
    """README, Operating it: with appendonly on and no AOF, Redis would start empty; the
    sequence there (snapshot loaded with AOF off, then AOF switched on) keeps the data."""
    server = _tool("redis-server", "redis-server")
    port = free_port()
    live, restored = tmp_path / "live", tmp_path / "restored"
    live.mkdir()
    restored.mkdir()

    def connect() -> aioredis.Redis:
        # A client per server start: one whose server went away backs off for seconds.
        return aioredis.Redis(port=port, password="change-me-redis-password")

    running: list[asyncio.subprocess.Process] = []
    try:
        proc = await _redis(server, live, port)
        running.append(proc)
        async with connect() as client:
            await client.set("alertd:before-backup", "1")
            await client.save()  # the README's BGSAVE, waited for
            shutil.copy(live / "alertd.rdb", restored / "alertd.rdb")
            await client.set("alertd:after-backup", "1")
        proc.terminate()  # SIGTERM: Redis's own clean shutdown (SHUTDOWN through redis-py retries for seconds)
        await proc.wait()

        proc = await _redis(server, restored, port, "--appendonly", "no")
        running.append(proc)
        async with connect() as client:
            await client.config_set("appendonly", "yes")

            async def rewritten() -> bool:
                info = await client.info("persistence")
                return bool(info["aof_enabled"] == 1 and info["aof_rewrite_in_progress"] == 0
                            and not info.get("aof_rewrite_scheduled"))  # fmt: skip

            await until(rewritten, what="the new append-only file")
        proc.terminate()
        await proc.wait()

        proc = await _redis(server, restored, port)  # as redis-server.service starts it
        running.append(proc)
        async with connect() as client:
            assert await client.get("alertd:before-backup") == b"1"
            assert await client.get("alertd:after-backup") is None
        proc.terminate()
        await proc.wait()
    finally:
        for leftover in running:
            if leftover.returncode is None:
                leftover.kill()
                await leftover.wait()


async def test_mosquitto_lets_only_alertd_publish_alerts_and_a_gateway_only_its_acks(tmp_path: Path) -> None:
    broker = _tool("mosquitto", "mosquitto")
    passwd = _tool("mosquitto_passwd", "mosquitto")
    port = free_port()
    users = tmp_path / "alertd.passwd"
    for n, (user, password) in enumerate((("alertd", "alertd-pass"), ("gw1", "gw1-pass"))):
        subprocess.run([passwd, "-b", *(["-c"] if n == 0 else []), str(users), user, password], check=True,
                       capture_output=True)  # fmt: skip
    text = (DEPLOY / "mosquitto" / "alertd.conf").read_text(encoding="utf-8")
    text = (text.replace("/etc/mosquitto/alertd.passwd", str(users))
            .replace("/etc/mosquitto/alertd.acl", str(DEPLOY / "mosquitto" / "acl.example"))
            .replace("/var/lib/mosquitto/", f"{tmp_path}/"))  # fmt: skip
    # The listener and the user the test runs as (as root, mosquitto would become "mosquitto").
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nuser {getpass.getuser()}\n{text}", encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(broker, "-c", str(conf), stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE)  # fmt: skip
    try:

        async def connects() -> bool:
            if proc.returncode is not None:
                said = await proc.stderr.read() if proc.stderr else b""
                raise AssertionError(f"mosquitto refused the settings: {said.decode()}")
            try:
                async with aiomqtt.Client("127.0.0.1", port, username="alertd", password="alertd-pass"):
                    return True
            except aiomqtt.MqttError:
                return False

        await until(connects, what="mosquitto to start on deploy/mosquitto/alertd.conf", timeout=10)
        async with (
            aiomqtt.Client("127.0.0.1", port, username="alertd", password="alertd-pass", identifier="alertd") as me,
            aiomqtt.Client("127.0.0.1", port, username="gw1", password="gw1-pass", identifier="gw1") as gateway,
        ):
            await me.subscribe("alerts/v1/#", qos=1)
            await gateway.subscribe("alerts/v1/08/08211/state", qos=1)
            # A gateway posing as alertd: dropped by the ACL. Its own ack: delivered.
            await gateway.publish("alerts/v1/08/08211/state", b"forged", qos=1)
            await gateway.publish("alerts/v1/ack/gw1", b"ack", qos=1)
            await me.publish("alerts/v1/08/08211/state", b"real", qos=1, retain=True)
            got: list[tuple[str, bytes]] = []

            async def collect() -> None:
                async for message in me.messages:
                    got.append((str(message.topic), bytes(message.payload)))  # type: ignore[arg-type]
                    if len(got) == 2:
                        return

            await asyncio.wait_for(collect(), 10)
            # Per-connection order: the forged state would have come before the ack.
            assert got == [("alerts/v1/ack/gw1", b"ack"), ("alerts/v1/08/08211/state", b"real")]
            async for message in gateway.messages:  # the gateway reads what alertd published
                assert bytes(message.payload) == b"real"  # type: ignore[arg-type]
                break
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", port):  # no anonymous logins
                pass
    finally:
        proc.terminate()
        await proc.wait()


def test_compose_passes_docker_compose_config_and_provisions_the_dashboard(tmp_path: Path) -> None:
    compose = _tool("docker-compose", "docker-compose")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **COMPOSE_ENV}
    run = subprocess.run([compose, "-f", str(DEPLOY / "compose.yaml"), "config"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    resolved = run.stdout
    for service in ("alertd:", "worker:", "redis:", "mosquitto:", "prometheus:", "grafana:"):
        assert f"\n  {service}\n" in resolved, service
    # The dashboard where deploy/grafana/provisioning/dashboards/alertd.yml looks for it.
    provider = (DEPLOY / "grafana" / "provisioning" / "dashboards" / "alertd.yml").read_text(encoding="utf-8")
    where = re.search(r"path: (\S+)", provider)
    assert where and f"{DEPLOY}/grafana/alertd.json:{where.group(1)}/alertd.json" in resolved
    assert f"{DEPLOY}/grafana/provisioning/datasources:/etc/grafana/provisioning/datasources" in resolved
    assert f"{DEPLOY}/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml" in resolved
    assert f"{DEPLOY}/prometheus/alertd-rules.yml:/etc/prometheus/alertd-rules.yml" in resolved
    assert "redis://:r-pass@redis:6379/0" in resolved
    # A secret left unset stops it, naming the variable, instead of starting without a password.
    missing = {k: v for k, v in env.items() if k != "REDIS_PASSWORD"}
    run = subprocess.run([compose, "-f", str(DEPLOY / "compose.yaml"), "config"], capture_output=True, text=True,
                         env=missing, cwd=tmp_path, timeout=60)  # fmt: skip
    assert run.returncode != 0 and "REDIS_PASSWORD" in run.stderr


def test_the_dockerfile_builds_from_debian_and_installs_from_pypi_only() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)  # continued lines as one
    froms = re.findall(r"^FROM (\S+)", logical, re.M)
    assert froms and all(f.startswith("debian:") for f in froms), froms
    pip = [line for line in logical.splitlines() if "pip install" in line]
    assert pip and not any(re.search(r"--(extra-)?index-url|git\+|https?://|--find-links", p) for p in pip), pip
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", logical, re.M):
        for part in source.split():
            assert (ROOT / part).exists(), f"COPY {part}: not in the project"
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".git" in ignored and ".venv" in ignored
