"""A fleet of simulated conveyors (broadcasters, portals, signage, radio gateways) on loopback.

Drills and the demo need receivers that behave like real ones: they take
deliveries over HTTP or MQTT, verify what they can (the ISP signature),
drop duplicates by idempotency key, and confirm receipt back to alertd —
and they can be told to fail: go down (503), slow down, or stop confirming.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiomqtt
from aiohttp import web

from adapters.isp import SIGNATURE_HEADER, verify
from alertd.broker import Broker, stop_client_task


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ReceiverSpec:
    id: str
    adapter: str
    districts: list[str]
    transport: str = "http"  # http | mqtt
    languages: list[str] = field(default_factory=lambda: ["ja", "en"])
    min_level: int | None = None


@dataclass
class Receipt:
    alert_id: str
    receiver: str
    at: float
    duplicate: bool


@dataclass
class Faults:
    down: set[str] = field(default_factory=set)
    slow: dict[str, float] = field(default_factory=dict)
    no_confirm: set[str] = field(default_factory=set)


class Fleet:
    def __init__(self, specs: list[ReceiverSpec], engine_url: str, mqtt_url: str) -> None:
        self.specs = {s.id: s for s in specs}
        self.engine_url = engine_url.rstrip("/")
        self.mqtt_url = mqtt_url
        self.faults = Faults()
        self.receipts: list[Receipt] = []
        self.signature_failures = 0
        self.secrets = {s.id: secrets.token_hex(16) for s in specs}
        self._seen: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._mqtt_task: asyncio.Task[None] | None = None
        self._mqtt_ready = asyncio.Event()
        self._mqtt_client: aiomqtt.Client | None = None
        self._topic_prefix = f"drill/{secrets.token_hex(3)}"
        self.url = ""

    # --- subscriber definitions for alertd ------------------------------------
    def subscriber_bodies(self) -> list[dict[str, Any]]:
        out = []
        for s in self.specs.values():
            if s.transport == "mqtt":
                endpoint = f"{self.mqtt_url.rstrip('/')}/{self._topic_prefix}/{s.id}"
            else:
                endpoint = f"{self.url}/{s.adapter}/{s.id}"
            # A drill's own receivers take drills: an Exercise reaches only receivers that do
            # (routing.takes), so these get the drill and the engine's live receivers do not.
            body: dict[str, Any] = {
                "id": s.id, "adapter": s.adapter, "endpoint": endpoint, "districts": s.districts,
                "languages": s.languages, "secret": self.secrets[s.id], "timeout_s": 3.0, "drills": True,
            }  # fmt: skip
            if s.min_level is not None:
                body["min_level"] = s.min_level
            out.append(body)
        return out

    # --- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/{adapter}/{receiver}", self._on_http)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = _free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        if any(s.transport == "mqtt" for s in self.specs.values()):
            self._mqtt_task = asyncio.create_task(self._mqtt_loop())
            await asyncio.wait_for(self._mqtt_ready.wait(), 15)

    async def stop(self) -> None:
        if self._mqtt_task is not None:
            await stop_client_task(self._mqtt_task)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    # --- receiving -------------------------------------------------------------
    def _record(self, alert_id: str, receiver: str, key: str) -> bool:
        duplicate = key in self._seen
        self._seen.add(key)
        self.receipts.append(Receipt(alert_id, receiver, time.time(), duplicate))
        return duplicate

    async def _on_http(self, request: web.Request) -> web.Response:
        receiver = request.match_info["receiver"]
        body = await request.read()
        if receiver in self.faults.down:
            return web.Response(status=503, text="receiver down (drill fault)")
        if receiver in self.faults.slow:
            await asyncio.sleep(self.faults.slow[receiver])
        if request.headers.get(SIGNATURE_HEADER) and not verify(
            self.secrets[receiver],
            request.headers[SIGNATURE_HEADER],
            request.headers.get("Idempotency-Key", ""),
            request.headers.get("X-Alertd-Alert-Id", ""),
            body,
        ):
            self.signature_failures += 1
            return web.Response(status=401, text="bad signature")
        alert_id = request.headers.get("X-Alertd-Alert-Id", "")
        key = request.headers.get("Idempotency-Key", "")
        duplicate = self._record(alert_id, receiver, key)
        if not duplicate and receiver not in self.faults.no_confirm:
            # Confirm after answering, as a real receiver would once it has shown the alert.
            asyncio.get_running_loop().create_task(self._confirm_http(alert_id, receiver, key))
        return web.Response(status=200)

    async def _confirm_http(self, alert_id: str, receiver: str, key: str) -> None:
        assert self._http is not None
        with contextlib.suppress(aiohttp.ClientError):
            async with self._http.post(
                f"{self.engine_url}/api/v1/alerts/{alert_id}/ack",
                json={"subscriber": receiver, "idempotency_key": key},
            ) as resp:
                await resp.read()

    async def _mqtt_loop(self) -> None:
        broker = Broker.from_env(self.mqtt_url)  # TLS and login as the engine's own
        while True:
            try:
                async with aiomqtt.Client(**broker.client_options(), identifier=f"fleet-{secrets.token_hex(4)}") as client:
                    self._mqtt_client = client
                    await client.subscribe(f"{self._topic_prefix}/+", qos=1)
                    self._mqtt_ready.set()
                    async for message in client.messages:
                        await self._on_mqtt(client, message)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.5)

    async def _on_mqtt(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        receiver = str(message.topic).rsplit("/", 1)[-1]
        if receiver in self.faults.down:
            return  # a gateway that is down simply never sees it
        envelope = json.loads(bytes(message.payload))  # type: ignore[arg-type]
        duplicate = self._record(envelope["alert_id"], receiver, envelope["idempotency_key"])
        if not duplicate and receiver not in self.faults.no_confirm:
            ack = {"alert_id": envelope["alert_id"], "idempotency_key": envelope["idempotency_key"]}
            await client.publish(envelope["ack_topic"], json.dumps(ack), qos=1)

    # --- faults ----------------------------------------------------------------
    def apply_fault(self, receiver: str, kind: str, seconds: float = 2.0) -> None:
        if receiver not in self.specs:
            raise ValueError(f"the drill has no receiver {receiver!r}")
        if kind == "down":
            self.faults.down.add(receiver)
        elif kind == "slow":
            self.faults.slow[receiver] = seconds
        elif kind == "no-confirm":
            self.faults.no_confirm.add(receiver)
        elif kind == "recover":
            self.faults.down.discard(receiver)
            self.faults.slow.pop(receiver, None)
            self.faults.no_confirm.discard(receiver)
        else:
            raise ValueError(f"unknown fault {kind!r}: use down, slow, no-confirm or recover")


# The town the default fleet is built for: its signs stand in 常総市's 三坂町 and 本石下.
DEFAULT_FLEET_TOWN = "08211"


def default_fleet(municipality: str = DEFAULT_FLEET_TOWN) -> list[ReceiverSpec]:
    """Four kinds of conveyor around one town, as a prefecture's L-Alert would have."""
    pref = municipality[:2]
    return [
        ReceiverSpec("nhk-mito", "broadcaster", [pref]),
        ReceiverSpec("ibaraki-tv", "broadcaster", [pref]),
        ReceiverSpec("yahoo-bousai", "isp", [pref], languages=["ja", "en", "zh", "ko"]),
        ReceiverSpec("city-portal", "isp", [municipality], languages=["ja", "en", "ja-easy"]),
        ReceiverSpec("signage-station", "signage", [municipality], languages=["ja", "en", "zh", "ko"]),
        ReceiverSpec("signage-misaka", "signage", [f"{municipality}:三坂町"]),
        ReceiverSpec("signage-ishige", "signage", [f"{municipality}:本石下"]),
        ReceiverSpec("radio-gateway", "radio", [municipality], transport="mqtt"),
        ReceiverSpec("radio-fm-joso", "radio", [municipality]),
    ]
