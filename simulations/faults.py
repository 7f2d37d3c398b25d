"""Real servers to break: a Redis that persists to its AOF, a Mosquitto that persists its
sessions, each on a free loopback port, killed with ``kill -9`` and started again on the
same port from what it left on disk.

The chaos suite (``simulations/chaos.py``) and its short versions in the tests use them;
the shared Redis and Mosquitto on 6379/1883 are never touched. Binaries come from PATH
(``make test`` installs them: tests/services.sh).
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} within {timeout:g} s")


def binary(name: str) -> str:
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in ("/usr/sbin", "/usr/bin", "/usr/local/bin") if (Path(d) / name).exists()), None
    )
    if found is None:
        raise RuntimeError(f"{name} is not installed; `make test` installs it (tests/services.sh)")
    return found


class Process:
    """A server process that can be killed hard and started again with the same arguments."""

    name = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"alertd-chaos-{self.name}-")
        self.proc: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Process:
        log = open(Path(self.dir) / "server.log", "ab")
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        log.close()
        wait_for(lambda: port_open(self.port), 15, f"{self.name} did not listen on {self.port}")
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """``kill -9``: no shutdown, no final save; what is on disk is all that is left."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        wait_for(lambda: not port_open(self.port), 5, f"{self.name} did not go away")

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(Process):
    """``redis-server`` with ``appendonly yes`` and the default ``appendfsync everysec``."""

    name = "redis"

    def __init__(self, *, fsync: str = "everysec", extra: list[str] | None = None) -> None:
        super().__init__()
        self.fsync = fsync
        self.extra = extra or []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        return [
            binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", self.fsync, "--dir", self.dir, *self.extra,
        ]  # fmt: skip


class SmallDisk:
    """A tiny filesystem of its own (a tmpfs of ``size_kb``) that can be filled to the last
    byte and freed again: a Redis whose ``--dir`` is on it meets a real full disk (its AOF
    write fails with ENOSPC) without touching any other disk on the machine.

    Mounting needs root (CAP_SYS_ADMIN), as ``make test`` and CI run; ``mount()`` raises
    ``OSError`` saying so where it is not allowed, and a test skips on that alone.
    """

    def __init__(self, size_kb: int = 4096) -> None:
        self.size_kb = size_kb
        self.path = tempfile.mkdtemp(prefix="alertd-smalldisk-")
        self.mounted = False
        self.filler = Path(self.path) / "filler"

    def mount(self) -> SmallDisk:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_kb}k,mode=0777", "tmpfs", self.path],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            shutil.rmtree(self.path, ignore_errors=True)
            raise OSError(f"cannot mount a {self.size_kb} KB tmpfs (needs root): {done.stderr.strip()}")
        self.mounted = True
        return self

    def fill(self) -> int:
        """Write a filler file until the disk is full; returns the bytes it took."""
        written = 0
        chunk = b"\0" * 4096
        with open(self.filler, "ab", buffering=0) as f:
            try:
                while True:
                    written += f.write(chunk)
            except OSError:  # ENOSPC: the disk is full
                pass
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", self.path], capture_output=True)
            self.mounted = False
        shutil.rmtree(self.path, ignore_errors=True)


class MosquittoServer(Process):
    """``mosquitto`` keeping sessions, queued QoS 1 messages and retained messages on disk.

    It writes its database every second (``autosave_interval 1``): a kill -9 loses what
    changed in the last second, which is what alertd's republishing has to make good.
    """

    name = "mosquitto"

    def args(self) -> list[str]:
        conf = Path(self.dir) / "mosquitto.conf"
        conf.write_text(
            "\n".join([
                f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence true",
                f"persistence_location {self.dir}/", "autosave_interval 1", "max_queued_messages 100000",
                # As whoever runs this: as root it would switch to a user that cannot write the dir.
                f"user {getpass.getuser()}",
            ]) + "\n"
        )  # fmt: skip
        return [binary("mosquitto"), "-c", str(conf)]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def saved_since(self, t: float) -> bool:
        """Whether the broker wrote its database after ``t`` (time.time()): what it knew then
        (a new session, a subscription) now survives a kill -9."""
        db = Path(self.dir) / "mosquitto.db"
        return db.exists() and db.stat().st_mtime > t

    def forget(self) -> None:
        """Lose everything on disk (sessions, queues, retained): as if the broker were replaced."""
        for db in Path(self.dir).glob("*.db"):
            db.unlink()


class SentinelServer(Process):
    """One ``redis-server --sentinel`` watching the master ``service``; it rewrites its own
    config file (that is how Sentinel keeps what it learnt), so each has its own."""

    name = "sentinel"

    def __init__(self, master_port: int, service: str = "mymaster", quorum: int = 2) -> None:
        super().__init__()
        self.master_port = master_port
        self.service = service
        self.quorum = quorum
        self.conf = Path(self.dir) / "sentinel.conf"
        self.conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}",
            f"sentinel monitor {service} 127.0.0.1 {master_port} {quorum}",
            # Down after 0.5 s of silence, failover at once: a test must not wait the 30 s default.
            f"sentinel down-after-milliseconds {service} 500",
            f"sentinel failover-timeout {service} 5000",
            f"sentinel parallel-syncs {service} 1",
        ]) + "\n")  # fmt: skip

    def args(self) -> list[str]:
        return [binary("redis-server"), str(self.conf), "--sentinel"]


class SentinelGroup:
    """A master, one replica and three sentinels: the smallest setup that survives losing the master."""

    def __init__(self, service: str = "mymaster") -> None:
        self.service = service
        # No 5 s wait for more replicas before the first (diskless) sync: there is only one.
        self.master = RedisServer(extra=["--repl-diskless-sync-delay", "0"])
        self.replica = RedisServer(extra=["--replicaof", "127.0.0.1", str(self.master.port),
                                          "--repl-diskless-sync-delay", "0"])  # fmt: skip
        self.sentinels = [SentinelServer(self.master.port, service) for _ in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica.start()
        wait_for(self._replica_in_sync, 15, "the replica did not sync with the master")
        for s in self.sentinels:
            s.start()
        return self

    def wait_ready(self) -> None:
        """Until the sentinels could fail over (they find each other within about 2 s): a
        caller may start its clients meanwhile, which need only one sentinel to answer."""
        wait_for(self._sentinels_see_replica, 15, "the sentinels did not find the replica and each other")

    @staticmethod
    def _ask(port: int, *command: str) -> Any:
        client = redis.Redis(port=port, socket_timeout=5, decode_responses=True)
        try:
            return client.execute_command(*command)
        except redis.RedisError:
            return None
        finally:
            client.close()

    def _replica_in_sync(self) -> bool:
        info = self._ask(self.replica.port, "INFO", "replication") or {}
        return info.get("master_link_status") == "up"

    def _sentinels_see_replica(self) -> bool:
        """Every sentinel knows the replica and the other sentinels (they find each other
        through the master every 2 s): before that, losing the master would go unnoticed."""
        infos = [(self._ask(s.port, "INFO", "sentinel") or {}).get("master0") or {} for s in self.sentinels]
        return all(info.get("slaves") == 1 and info.get("sentinels") == len(self.sentinels) for info in infos)

    def master_port(self) -> int | None:
        """Where the sentinels say the master is now."""
        answer = self._ask(self.sentinels[0].port, "SENTINEL", "get-master-addr-by-name", self.service)
        return int(answer[1]) if answer else None

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.stop()
