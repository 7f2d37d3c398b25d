"""What a drill checks after a step: the in-force model, the active list, Atom and the MQTT state agree."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import aiohttp

from alertd.broker import Broker, stop_client_task
from alertd.drills.scenario import KIND_KEYS


class ViewUnavailable(Exception):
    pass


class Views:
    """The four views of what is in force, read as a receiver or a resident would, and compared.

    The model (GET /api/v1/in-force), the active list (GET /api/v1/alerts?active=true),
    the Atom feed and the retained MQTT state must all say the same thing, and it
    must be what the scenario expects after each step. Drills are Exercise: the
    views are read for that status (the drill never touches the Actual state).
    """

    def __init__(self, desk_url: str, public_url: str, mqtt_url: str, topic_prefix: str) -> None:
        self.public_url = public_url.rstrip("/")
        self.mqtt_url = mqtt_url
        self.topic_prefix = topic_prefix.strip("/")
        self.states: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._registry: Any = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), 15)

    async def stop(self) -> None:
        if self._task is not None:
            await stop_client_task(self._task)

    async def _listen(self) -> None:
        import aiomqtt

        broker = Broker.from_env(self.mqtt_url)  # TLS and login as the engine's own
        while True:
            try:
                async with aiomqtt.Client(**broker.client_options(),
                                          identifier=f"drill-views-{secrets.token_hex(4)}") as client:  # fmt: skip
                    await client.subscribe(f"{self.topic_prefix}/+/+/state/exercise", qos=1)
                    self._ready.set()
                    async for message in client.messages:
                        state = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                        self.states[str(state.get("municipality"))] = state
            except aiomqtt.MqttError:
                await asyncio.sleep(0.5)

    def registry(self) -> Any:
        if self._registry is None:
            from geo.registry import Registry

            self._registry = Registry.default()
        return self._registry

    async def check(
        self, http: aiohttp.ClientSession, expect: dict[str, dict[str, int | None]], token: str, timeout: float = 10
    ) -> list[str]:
        """[] when every view shows what is expected (waiting up to ``timeout``), else each difference."""
        deadline = time.monotonic() + timeout
        while True:
            problems: list[str] = []
            for muni, wanted in expect.items():
                try:
                    problems += await self._check_one(http, muni, wanted)
                except ViewUnavailable as exc:
                    problems.append(f"{muni}: {exc}")
            if not problems or time.monotonic() > deadline:
                return problems
            await asyncio.sleep(0.3)

    async def _get(self, http: aiohttp.ClientSession, path: str) -> Any:
        async with http.get(self.public_url + path) as resp:
            if resp.status != 200:
                raise ViewUnavailable(f"GET {path} answered {resp.status}: {(await resp.text())[:200]}")
            return await (resp.json() if "json" in resp.content_type else resp.text())

    async def _check_one(self, http: aiohttp.ClientSession, muni: str, wanted: dict[str, int | None]) -> list[str]:
        model = await self._get(http, f"/api/v1/in-force?municipality={muni}&status=Exercise")
        active = await self._get(http, f"/api/v1/alerts?active=true&status=Exercise&district={muni}&limit=200")
        atom = await self._get(http, f"/feeds/alerts.atom?municipality={muni}&status=Exercise")
        state = self.states.get(muni, {"districts": [], "alerts": []})
        views = {
            "model": lambda key: self._from_rows(muni, model, key),
            "active list": lambda key: self._from_alerts(muni, active, key),
            "MQTT state": lambda key: self._from_rows(muni, state, key),
        }
        problems = []
        for key, level in wanted.items():
            for view, read in views.items():
                got = read(key)
                if got != level:
                    problems.append(f"{muni} {key}: expected {_lv(level)}, the {view} says {_lv(got)}")
        standing_in_atom = _standing_entries(atom)
        listed = {a["id"] for a in active}
        if standing_in_atom != listed:
            problems.append(f"{muni}: the Atom feed lists {sorted(standing_in_atom)} in force, the active list "
                            f"{sorted(listed)}")  # fmt: skip
        return problems

    def _from_rows(self, muni: str, view: dict[str, Any], key: str) -> int | None:
        """A level from the model or the MQTT state (the same shape)."""
        if key in KIND_KEYS:
            levels = [a.get("level") for a in view.get("alerts") or []
                      if a.get("kind") == key and a.get("level") is not None]  # fmt: skip
            return max(levels, default=None)
        rows = {r["name"]: r["level"] for r in view.get("districts") or []}
        if key in rows:
            return rows[key]
        town = self.registry().get(muni).name
        return rows.get(town)

    def _from_alerts(self, muni: str, alerts: list[dict[str, Any]], key: str) -> int | None:
        if key in KIND_KEYS:
            return max((a["level"] for a in alerts if a.get("kind") == key and a.get("level") is not None),
                       default=None)  # fmt: skip
        registry = self.registry()
        code = muni if key == registry.get(muni).name else registry.resolve_name(muni, key).code
        levels = []
        for a in alerts:
            if a.get("kind") != "evacuation" or a.get("action") != "issue" or a.get("level") is None:
                continue
            lifted = set(a.get("lifted_districts") or [])
            if (muni in a["districts"] or code in a["districts"]) and code not in lifted and muni not in lifted:
                levels.append(a["level"])
        return max(levels, default=None)


def _standing_entries(atom: str) -> set[str]:
    """Ids of the Atom entries that are in force (not the lifts and cancels the feed keeps too)."""
    from lxml import etree

    ns = {"a": "http://www.w3.org/2005/Atom"}
    out = set()
    for entry in etree.fromstring(atom.encode()).iterfind("a:entry", ns):
        summary = (entry.findtext("a:summary", namespaces=ns) or "").split()
        entry_id = (entry.findtext("a:id", namespaces=ns) or "").rsplit(":", 1)[-1]
        if len(summary) > 1 and summary[1] in ("Alert", "Update") and "(lift)" not in summary:
            out.add(entry_id)
    return out


def _lv(level: int | None) -> str:
    return "nothing" if level is None else f"level {level}"
