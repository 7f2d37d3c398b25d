"""Private Redis and Mosquitto servers on free loopback ports, for tests that kill,
pause or restart them (the shared ones on 6379/1883 must never be disturbed).

They are real servers started from the binaries `make test` installs
(tests/services.sh); a test that needs one and finds no binary fails with a
sentence saying what to install, rather than skipping silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import free_port


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a server on 127.0.0.1: its certificate and key, and the CA that signed it."""

    ca: str
    cert: str
    key: str


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} within {timeout} s")


def _binary(name: str, *extra_dirs: str) -> str:
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in ("/usr/sbin", "/usr/bin", *extra_dirs) if (Path(d) / name).exists()),
        None,
    )
    if found is None:
        raise AssertionError(f"{name} is not installed; `make test` installs it (tests/services.sh)")
    return found


class RedisServer:
    """``redis-server`` on a free port; kill -9, restart and pause like a real outage."""

    def __init__(
        self, *, appendonly: bool = False, password: str | None = None, tls: TlsFiles | None = None
    ) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="alertd-redis-")
        self.appendonly = appendonly
        self.password = password
        self.tls = tls  # with it, TLS only: the plain port is off
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        ports = ["--port", str(self.port)]
        if self.tls:
            ports = [
                "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls.cert,
                "--tls-key-file", self.tls.key, "--tls-ca-cert-file", self.tls.ca, "--tls-auth-clients", "no",
            ]  # fmt: skip
        args = [
            _binary("redis-server"), *ports, "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if self.appendonly else "no", "--dir", self.dir,
            *(["--requirepass", self.password] if self.password else []),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _port_open(self.port), 10, f"redis-server did not listen on {self.port}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        _wait(lambda: not _port_open(self.port), 5, "redis-server did not go away")

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class MosquittoServer:
    """``mosquitto`` on a free port; with ``tls`` a TLS listener, with ``users`` logins only."""

    def __init__(self, *, tls: TlsFiles | None = None, users: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="alertd-mosquitto-")
        self.tls = tls
        self.users = users
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def _password_file(self) -> str:
        path = Path(self.dir) / "passwords"
        path.unlink(missing_ok=True)
        for user, password in (self.users or {}).items():
            create = [] if path.exists() else ["-c"]
            subprocess.run([_binary("mosquitto_passwd"), "-b", *create, str(path), user, password],
                           check=True, capture_output=True)  # fmt: skip
        path.chmod(0o600)
        return str(path)

    def start(self) -> MosquittoServer:
        """Start (or start again, on the same port, with the current ``users``)."""
        conf = Path(self.dir) / "mosquitto.conf"
        # Run as whoever runs the tests: as root, mosquitto would otherwise become the
        # "mosquitto" user, which cannot read the key and password files in a private tmp dir.
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", f"user {getpass.getuser()}"]
        if self.tls:
            lines += [f"certfile {self.tls.cert}", f"keyfile {self.tls.key}", f"cafile {self.tls.ca}",
                      "tls_version tlsv1.2"]  # fmt: skip
        if self.users:
            lines += ["allow_anonymous false", f"password_file {self._password_file()}"]
        else:
            lines.append("allow_anonymous true")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [_binary("mosquitto"), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait(lambda: _port_open(self.port), 10, f"mosquitto did not listen on {self.port}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        with contextlib.suppress(AssertionError):
            _wait(lambda: not _port_open(self.port), 5, "mosquitto did not go away")

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


class Hangup:
    """A port that takes each connection and closes it at once, counting them: a node that
    restarts, or a proxy with nothing behind it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> Hangup:
        self.server = await asyncio.start_server(self._take, "127.0.0.1", self.port)
        return self

    async def _take(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def written_after_failover(client: Any, key: str, value: str) -> bool:
    """One try at a write through a client following a failover: False while its connection
    to the dead master is being dropped (the next one asks Sentinel or the cluster again)."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        await client.set(key, value)
        return True
    except RedisConnectionError:
        return False
