"""Real servers to break: a Redis that persists to its AOF, a Mosquitto that persists its
sessions, each on a free loopback port, killed with ``kill -9`` and started again on the
same port from what it left on disk.

The chaos suite (``simulations/chaos.py``) and its short versions in the tests use them;
the shared Redis and Mosquitto on 6379/1883 are never touched. Binaries come from PATH
(``make test`` installs them: tests/services.sh).
"""

from __future__ import annotations

import contextlib
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


class ServerExited(RuntimeError):
    """A server that ended at its start (a port taken in the meantime, a bad option)."""


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
        wait_for(lambda: port_open(self.port) or not self.alive, 15, f"{self.name} did not listen on {self.port}")
        if not self.alive:
            said = (Path(self.dir) / "server.log").read_text(errors="replace")[-500:]
            raise ServerExited(f"{self.name} on {self.port} exited at its start: {said}")
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
        return _ask(port, *command)

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


class ClusterNode(RedisServer):
    """One node of a Redis Cluster: ``cluster-enabled yes``, its AOF (everysec) and its
    ``nodes.conf`` in its own dir, and its cluster bus on a free port of its own (the default,
    port + 10000, may be taken or past 65535)."""

    name = "cluster"

    def __init__(self, node_timeout_ms: int) -> None:
        super().__init__()
        self.node_timeout_ms = node_timeout_ms
        self.bus_port = free_port()

    def new_ports(self) -> None:
        """Other free ports, for a start that found one of these taken."""
        self.port, self.bus_port = free_port(), free_port()

    def args(self) -> list[str]:
        return [
            *super().args(), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(self.bus_port), "--cluster-node-timeout", str(self.node_timeout_ms),
            "--repl-diskless-sync-delay", "0",
            # A replica's offset reaches the others by gossip, and CLUSTER SLOTS leaves out a
            # replica whose offset is still 0: after an empty sync that lasts until the master's
            # first ping to it, every 10 s by default.
            "--repl-ping-replica-period", "1",
            # As the README advises for alertd: a failed master stops only its own slots, not
            # every node, until its replica is promoted (lane shards on the other masters go on).
            "--cluster-require-full-coverage", "no",
        ]  # fmt: skip

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class ClusterGroup:
    """A Redis Cluster of ``masters`` masters with one replica each (3 + 3 by default), the
    smallest that survives losing a master: the other masters vote its replica in.

    ``cluster-node-timeout`` is ``node_timeout_ms`` (1 s rather than the 15 s default): a
    master silent that long is marked failing, and its replica starts an election soon
    after, so a failover takes a few seconds, not half a minute."""

    def __init__(self, masters: int = 3, node_timeout_ms: int = 1000) -> None:
        self.node_timeout_ms = node_timeout_ms
        self.nodes = [ClusterNode(node_timeout_ms) for _ in range(masters * 2)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def start(self) -> ClusterGroup:
        try:
            return self._start()
        except BaseException:
            self.stop()  # the nodes started so far: none is left running
            raise

    def _start(self) -> ClusterGroup:
        taken: set[int] = set()
        for node in self.nodes:
            for attempt in range(3):
                # Twelve ports asked of the OS one by one, started later: two may coincide, or
                # another process may take one meanwhile. Such a node is started on others.
                while {node.port, node.bus_port} & taken or node.port == node.bus_port:
                    node.new_ports()
                try:
                    node.start()
                    break
                except ServerExited:
                    if attempt == 2:
                        raise
                    node.new_ports()
            taken |= {node.port, node.bus_port}
        done = subprocess.run(
            [binary("redis-cli"), "--cluster", "create", *(n.address for n in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        wait_for(self._formed, 30, "the cluster did not form (every node ok, every replica linked)")
        return self

    def _node(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def _alive(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.alive]

    def _formed(self) -> bool:
        """Every node running says ``cluster_state:ok`` and knows every other; every replica's
        link to its master is up (it has synced): only then can a master be lost."""
        alive = self._alive()
        for node in alive:
            info = _ask(node.port, "CLUSTER", "INFO")
            if not isinstance(info, str) or "cluster_state:ok" not in info:
                return False
            if f"cluster_known_nodes:{len(self.nodes)}" not in info:
                return False
            replication = _ask(node.port, "INFO", "replication") or {}
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return False
        return len(self._replicas()) == len(alive) - len(self._masters())

    def _topology(self) -> list[dict[str, Any]]:
        """CLUSTER SLOTS from the first running node that answers: [{start, end, master, replicas}]."""
        for node in self._alive():
            ranges = _ask(node.port, "CLUSTER", "SLOTS")
            if ranges:
                return [{"start": int(r[0]), "end": int(r[1]), "master": int(r[2][1]),
                         "replicas": [int(x[1]) for x in r[3:]]} for r in ranges]  # fmt: skip
        return []

    def _masters(self) -> set[int]:
        return {r["master"] for r in self._topology()}

    def _replicas(self) -> set[int]:
        return {p for r in self._topology() for p in r["replicas"]}

    def slot_of(self, prefix: str) -> int:
        """The slot of alertd's keys for this key prefix: every key carries the hash tag
        ``{prefix}`` (alertd/redis_client.py key_root), so the cluster's own CLUSTER KEYSLOT
        of the tag says where all of them live."""
        tag = prefix if prefix.startswith("{") and prefix.endswith("}") else "{" + prefix + "}"
        return int(_ask(self._alive()[0].port, "CLUSTER", "KEYSLOT", tag))

    def serving(self, slot: int, port: int | None = None) -> tuple[int, list[int]] | None:
        """(master port, replica ports) of ``slot``, as the node on ``port`` (else any) sees it."""
        if port is not None:
            ranges = _ask(port, "CLUSTER", "SLOTS") or []
            topology = [{"start": int(r[0]), "end": int(r[1]), "master": int(r[2][1]),
                         "replicas": [int(x[1]) for x in r[3:]]} for r in ranges]  # fmt: skip
        else:
            topology = self._topology()
        return next(((r["master"], r["replicas"]) for r in topology if r["start"] <= slot <= r["end"]), None)

    def kill_master_of(self, slot: int) -> tuple[ClusterNode, ClusterNode]:
        """``kill -9`` the master serving ``slot``; returns (the killed master, its replica)."""
        served = self.serving(slot)
        if served is None or not served[1]:
            raise RuntimeError(f"slot {slot} has no master with a replica: {self._topology()}")
        master, replica = self._node(served[0]), self._node(served[1][0])
        master.kill()
        return master, replica

    def promoted(self, slot: int, replica: ClusterNode) -> bool:
        """Every running node says ``cluster_state:ok`` and names ``replica`` master of ``slot``."""
        for node in self._alive():
            info = _ask(node.port, "CLUSTER", "INFO")
            if not isinstance(info, str) or "cluster_state:ok" not in info:
                return False
            served = self.serving(slot, node.port)
            if served is None or served[0] != replica.port:
                return False
        return True

    def wait_promoted(self, slot: int, replica: ClusterNode, timeout: float = 60) -> None:
        wait_for(lambda: self.promoted(slot, replica), timeout, f"{replica.address} was not promoted for slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(RuntimeError):  # a port another process took: every node is still stopped
                node.stop()


def _ask(port: int, *command: str) -> Any:
    """One command to the server on ``port``; None where it does not answer."""
    client = redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=1, decode_responses=True)
    try:
        return client.execute_command(*command)
    except redis.RedisError:
        return None
    finally:
        client.close()
