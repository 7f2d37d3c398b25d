"""Prometheus Alertmanager as a peer: the same fan-out, one alert to N webhook receivers.

DESIGN.md sets Alertmanager (Debian's ``prometheus-alertmanager``) with
webhook receivers and ``group_wait: 0s`` as the bar for the flash lane. This
module writes such a config (one child route with ``continue: true`` per
receiver, so every receiver gets its own notification pipeline, as N
separate receivers would), starts the binary on a free loopback port with
clustering off, and posts one alert per run through the v2 API.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import yaml

BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")


def find_binary() -> str | None:
    for name in BINARY_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def config(sink_url: str, n: int) -> dict[str, object]:
    return {
        "route": {
            "receiver": "blackhole",
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": "5m",
            "repeat_interval": "24h",
            "routes": [{"receiver": f"r{i}", "continue": True} for i in range(n)],
        },
        "receivers": [
            {"name": "blackhole"},
            *(
                {"name": f"r{i}", "webhook_configs": [{"url": f"{sink_url}/am/{i}", "send_resolved": False}]}
                for i in range(n)
            ),
        ],
    }


class Alertmanager:
    def __init__(self, binary: str, sink_url: str, n: int, port: int, log_path: Path) -> None:
        self.binary = binary
        self.sink_url = sink_url
        self.n = n
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._dir = tempfile.TemporaryDirectory(prefix="alertd-bench-am-")
        self.proc: subprocess.Popen[bytes] | None = None

    def version(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, timeout=10)
        first = (out.stdout or out.stderr).splitlines()
        return first[0] if first else "?"

    def spawn(self) -> subprocess.Popen[bytes]:
        cfg = Path(self._dir.name) / "alertmanager.yml"
        cfg.write_text(yaml.safe_dump(config(self.sink_url, self.n)))
        with self.log_path.open("wb") as log:
            return subprocess.Popen(
                [
                    self.binary, f"--config.file={cfg}", f"--storage.path={self._dir.name}",
                    # Clustering off: a single instance, no gossip port, no peer wait.
                    f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
                    "--log.level=warn",
                ],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    async def start(self, timeout: float = 30) -> None:
        self.proc = self.spawn()
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"alertmanager exited with {self.proc.returncode}; see {self.log_path}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/-/ready") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"alertmanager did not become ready in {timeout:g} s; see {self.log_path}")

    async def post(self, http: aiohttp.ClientSession, name: str) -> float:
        """Post one new alert (a new group, so group_wait 0s sends it at once); returns the send time."""
        now = datetime.now(UTC)
        alert = [{
            "labels": {"alertname": name, "severity": "critical", "kind": "missile"},
            "annotations": {"summary": "弾道ミサイル情報 (bench)"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=10)).isoformat(),
        }]  # fmt: skip
        t0 = time.time()
        async with http.post(f"{self.url}/api/v2/alerts", json=alert) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"alertmanager refused the alert: HTTP {resp.status}")
        return t0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._dir.cleanup()
