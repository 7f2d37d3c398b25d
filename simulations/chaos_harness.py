"""What the chaos scenarios (simulations/chaos.py) and the soak (simulations/soak.py) share:
alertd run as real processes of one deployment, waiting with a deadline, the webhook
population, counting arrivals against alertd's own record, and an MQTT receiver that
keeps a persistent session like a gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from alertd.broker import Broker
from alertd.feed import clear_retained
from alertd.store import remove_prefix
from simulations.chaos_sink import Sink
from simulations.faults import free_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "chaos-admin-token-0123456789abcdef"
PREFECTURES = ["08", "09", "10"]  # 茨城, 栃木, 群馬: the chaos issuer's jurisdiction


@functools.cache
def towns() -> list[str]:
    """The municipalities of the issuer's prefectures: one order each, so no order
    supersedes another's deliveries and every town's retained state can be checked."""
    from geo.registry import Registry

    registry = Registry.load()
    return [d.code for p in PREFECTURES for d in registry.children(p) if d.level in ("municipality", "ward")]


@dataclass(frozen=True)
class Shared:
    """The machine's own Redis and broker, for the scenarios that break something else."""

    redis_url: str
    mqtt_url: str


class Alertd:
    """alertd processes of one deployment (one key prefix), started and killed like in production."""

    def __init__(self, redis_url: str, mqtt_url: str, workdir: Path, **env: str) -> None:
        self.redis_url = redis_url
        self.mqtt_url = mqtt_url
        self.workdir = workdir
        self.prefix = f"alertd-chaos-{secrets.token_hex(4)}"
        self.topics = f"{self.prefix}/alerts/v1"
        self.env = {
            **os.environ,
            "ALERTD_REDIS_URL": redis_url,
            "ALERTD_MQTT_URL": mqtt_url,
            "ALERTD_ADMIN_TOKEN": ADMIN_TOKEN,
            "ALERTD_KEY_PREFIX": self.prefix,
            "ALERTD_TOPIC_PREFIX": self.topics,
            # A dead process's jobs move after 2 s, not 30: the scenarios kill processes.
            "ALERTD_CLAIM_IDLE_S": "2",
            "ALERTD_FEED_LEASE_TTL_S": "2",
            "ALERTD_REDIS_TIMEOUT_S": "2.5",
            "ALERTD_RETRY_BASE_S": "0.2",
            "ALERTD_RETRY_MAX_S": "2",
            "ALERTD_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.token = secrets.token_hex(16)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def seed(self, subscribers: list[dict[str, Any]]) -> None:
        path = self.workdir / f"{self.prefix}.yaml"
        issuers = [{"id": "kanto", "name": "北関東", "token": self.token, "jurisdiction": PREFECTURES}]
        path.write_text(yaml.safe_dump({"issuers": issuers, "subscribers": subscribers}, allow_unicode=True))
        self.env["ALERTD_CONFIG"] = str(path)

    def twin(self, wait_replicas: str) -> Alertd:
        """Another API process of this same deployment (its keys, seed and token), on its own
        port, with ALERTD_REDIS_WAIT_REPLICAS set."""
        other = Alertd(self.redis_url, self.mqtt_url, self.workdir, ALERTD_REDIS_WAIT_REPLICAS=wait_replicas)
        other.prefix, other.topics, other.token = self.prefix, self.topics, self.token
        for name in ("ALERTD_KEY_PREFIX", "ALERTD_TOPIC_PREFIX", "ALERTD_CONFIG", "ALERTD_LANE_SHARDS"):
            if name in self.env:
                other.env[name] = self.env[name]
        return other

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{self.prefix}-{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "alertd", *args], cwd=ROOT, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        log.close()
        self.procs[name] = proc
        return proc

    async def serve(self, *extra: str) -> None:
        log = self.workdir / f"{self.prefix}-serve.log"
        for attempt in range(3):
            seen = log.stat().st_size if log.exists() else 0
            proc = self.spawn("serve", ["serve", "--port", str(self.port), *extra])
            try:
                await self.wait_healthy(proc)
                return
            except RuntimeError:
                # free_port() only found the port free: another process (a test running beside
                # this one) may have bound it first. Then take another; any other exit is raised.
                with log.open("rb") as f:
                    f.seek(seen)
                    said = f.read().decode(errors="replace")
                if attempt == 2 or "Address already in use" not in said:
                    raise
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, ["worker"])

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)

    async def wait_healthy(self, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> float:
        t0 = time.monotonic()

        async def check() -> bool:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"alertd exited early (status {proc.returncode}); see {self.workdir}")
            status, _ = await self.get("/healthz")
            return status == 200

        await until(check, timeout, "alertd /healthz 200")
        return time.monotonic() - t0

    async def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http, \
                    http.get(self.url + path, headers=headers) as resp:  # fmt: skip
                text = await resp.text()
                return resp.status, (json.loads(text) if "json" in resp.content_type else text)
        except (aiohttp.ClientError, TimeoutError):
            return 0, None

    async def order(
        self, town: str, identifier: str, level: int = 4, expires_in_s: float | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """A desk order for one town; (status, answer, headers). Status 0: no answer at all."""
        body = {"municipality": town, "level": level, "action": "issue", "districts": ["all"], "reason": "洪水",
                "status": "Exercise", "identifier": identifier}  # fmt: skip
        if expires_in_s is not None:
            # Retries last until expiry: a short one makes the bad endpoints' deliveries end.
            body["expires"] = (datetime.now(UTC) + timedelta(seconds=expires_in_s)).isoformat(timespec="seconds")
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http, http.post(
                f"{self.url}/api/v1/evacuation-orders", json=body, headers={"Authorization": f"Bearer {self.token}"}
            ) as resp:
                text = await resp.text()
                return resp.status, (json.loads(text) if "json" in resp.content_type else text), dict(resp.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 0, repr(exc), {}

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http, http.post(
                self.url + path, json=body, headers={"Authorization": f"Bearer {self.token}"}
            ) as resp:
                text = await resp.text()
                return resp.status, (json.loads(text) if "json" in resp.content_type else text)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 0, repr(exc)

    async def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        status, data = await self.get(f"/api/v1/alerts/{alert_id}/deliveries", ADMIN_TOKEN)
        return list(data["deliveries"]) if status == 200 else []

    async def stop(self) -> None:
        await self.stop_processes()
        with contextlib.suppress(Exception):
            await remove_prefix(self.redis_url, self.prefix, int(self.env.get("ALERTD_LANE_SHARDS") or 1))
        with contextlib.suppress(Exception):
            await clear_retained(Broker.parse(self.mqtt_url), {self.prefix})

    async def stop_processes(self) -> None:
        """SIGTERM every process (kill -9 after 10 s), leaving the keys in place."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def until(check: Callable[[], Awaitable[Any] | Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll until ``check`` is truthy; at the deadline raise naming what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        await asyncio.sleep(interval)


def webhooks(sink: Sink, n: int, kind: str = "ok", start: int = 0) -> list[dict[str, Any]]:
    """``n`` webhook receivers at ``/<kind>/<i>`` covering the issuer's prefectures; they
    take drills, since every order the scenarios send is an Exercise."""
    return [{"id": f"{kind}{i}", "adapter": "isp", "endpoint": f"{sink.url}/{kind}/{i}", "districts": PREFECTURES,
             "drills": True}
            for i in range(start, start + n)]  # fmt: skip


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def count_arrivals(sink: Sink, expected: set[tuple[str, str]], timeout: float) -> set[tuple[str, str]]:
    """Wait (up to ``timeout``) until every expected delivery arrived; return what is missing."""
    with contextlib.suppress(TimeoutError):
        await until(lambda: expected <= sink.delivered(), timeout, "every delivery", interval=0.1)
    return expected - sink.delivered()


async def recorded_delivered(alertd: Alertd, alert_ids: list[str], expected: int, timeout: float = 30) -> bool:
    """Whether alertd's own record (the deliveries API) shows every webhook delivery delivered:
    an arrival is recorded a moment after it lands, so this waits for it."""

    async def check() -> bool:
        rows = [r for a in alert_ids for r in await alertd.deliveries(a) if r["adapter"] != "feed"]
        return len(rows) == expected and all(r["state"] in ("delivered", "confirmed") for r in rows)

    with contextlib.suppress(TimeoutError):
        return bool(await until(check, timeout, "every delivery recorded", interval=0.3))
    return False


class Receiver:
    """An MQTT receiver with a persistent session (clean session off, QoS 1), reconnecting
    on its own like a gateway does: it must get every message published after it subscribed."""

    def __init__(self, host: str, port: int, topic_filter: str) -> None:
        self.host, self.port, self.filter = host, port, topic_filter
        self.client_id = f"chaos-rx-{secrets.token_hex(4)}"
        self.got: dict[str, int] = {}
        self.first: dict[str, float] = {}  # topic -> time.monotonic() of its first message
        self.subscribed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Receiver:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 15)
        return self

    async def _run(self) -> None:
        import aiomqtt

        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=self.client_id, clean_session=False,
                                          protocol=aiomqtt.ProtocolVersion.V311) as client:  # fmt: skip
                    await client.subscribe(self.filter, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        topic = str(message.topic)
                        self.got[topic] = self.got.get(topic, 0) + 1
                        self.first.setdefault(topic, time.monotonic())
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def retained_states(port: int, topic_filter: str, want: int, timeout: float) -> dict[str, dict[str, Any]]:
    """The retained messages a new (clean) client is handed for ``topic_filter``."""
    import aiomqtt

    states: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(TimeoutError, aiomqtt.MqttError):
        async with asyncio.timeout(timeout), aiomqtt.Client("127.0.0.1", port,
                                                            identifier=f"chaos-look-{secrets.token_hex(4)}") as c:
            await c.subscribe(topic_filter, qos=1)
            async for message in c.messages:
                states[str(message.topic)] = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                if len(states) >= want:
                    break
    return states


async def metric_lines(alertd: Alertd, name: str) -> list[str]:
    _, text = await alertd.get("/metrics")
    return [ln for ln in (text or "").splitlines() if ln.startswith(name + "{")]
