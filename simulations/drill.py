"""Drill scenarios: replay a timeline of desk orders, national warnings and faults.

    alertd drill run SCENARIO [--speed N] [--json PATH] [--markdown PATH]
                              [--url URL --admin-token T]   (a running engine; default: embedded)

Every message a drill sends is forced to status Exercise (訓練), whatever the
file says, so a drill can never go out as a real alert. The scenario format
is documented in simulations/scenarios/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from alertd import loop, report
from simulations.receivers import Fleet, ReceiverSpec, default_fleet

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
STEP_KINDS = ("order", "shelter", "alert", "cap", "jma", "cancel", "fault", "wait")


class ScenarioError(ValueError):
    """A scenario file that cannot be run, with where and why."""


@dataclass
class Step:
    at: float
    name: str
    kind: str
    spec: Any
    issuer: str | None = None


@dataclass
class Scenario:
    name: str
    description: str
    receivers: list[ReceiverSpec]
    issuers: list[dict[str, Any]]
    steps: list[Step]
    settle_s: float = 15.0
    path: Path | None = None


def resolve_scenario(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    for candidate in (SCENARIOS / name, SCENARIOS / f"{name}.yaml"):
        if candidate.exists():
            return candidate
    raise ScenarioError(
        f"no scenario {name!r}: give a file path or one of {sorted(p.stem for p in SCENARIOS.glob('*.yaml'))}"
    )


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "steps" not in data:
        raise ScenarioError(f"{path}: a scenario needs 'name' and 'steps'")
    receivers = [
        ReceiverSpec(
            id=r["id"],
            adapter=r["adapter"],
            districts=[str(d) for d in r["districts"]],
            transport=r.get("transport", "http"),
            languages=r.get("languages", ["ja", "en"]),
            min_level=r.get("min_level"),
        )
        for r in data.get("receivers") or []
    ] or default_fleet(str(data.get("municipality", "08211")))
    issuers = data.get("issuers") or [{"id": "desk", "name": "災害対策本部", "jurisdiction": ["08211"]}]
    steps = []
    for i, raw in enumerate(data["steps"]):
        where = f"{path}: step {i + 1}"
        if not isinstance(raw, dict) or "at" not in raw:
            raise ScenarioError(f"{where}: every step needs 'at' (seconds from the start)")
        kinds = [k for k in STEP_KINDS if k in raw]
        if len(kinds) != 1:
            raise ScenarioError(f"{where}: a step does exactly one of {', '.join(STEP_KINDS)}")
        steps.append(
            Step(
                float(raw["at"]),
                str(raw.get("name", f"step {i + 1}")),
                kinds[0],
                raw[kinds[0]],
                raw.get("issuer"),
            )
        )
    steps.sort(key=lambda s: s.at)
    return Scenario(
        name=str(data.get("name", path.stem)), description=str(data.get("description", "")),
        receivers=receivers, issuers=issuers, steps=steps, settle_s=float(data.get("settle_s", 15)), path=path,
    )  # fmt: skip


@dataclass
class StepResult:
    step: Step
    alert_ids: list[str] = field(default_factory=list)
    error: str | None = None
    planned: int = 0
    lanes: set[str] = field(default_factory=set)


class Progress:
    """One updating line on a terminal; a line per change otherwise (logs, CI)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = ""

    def show(self, text: str) -> None:
        if text == self._last:
            return
        self._last = text
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class DrillRunner:
    def __init__(
        self, scenario: Scenario, url: str, admin_token: str, mqtt_url: str, speed: float = 1.0
    ) -> None:
        self.scenario = scenario
        self.url = url.rstrip("/")
        self.admin_token = admin_token
        self.mqtt_url = mqtt_url
        self.speed = max(speed, 0.001)
        self.run_id = time.strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(2)
        self.fleet = Fleet(scenario.receivers, url, mqtt_url)
        self.tokens: dict[str, str] = {}
        self.results: list[StepResult] = []
        self.by_name: dict[str, StepResult] = {}
        self.progress = Progress()

    async def _api(
        self, http: aiohttp.ClientSession, method: str, path: str, token: str, **kw: Any
    ) -> tuple[int, Any]:
        async with http.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {token}", **kw.pop("headers", {})},
            **kw,
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, {"detail": text}

    async def setup(self, http: aiohttp.ClientSession) -> None:
        await self.fleet.start()
        for body in self.fleet.subscriber_bodies():
            body["id"] = body["id"]
            status, data = await self._api(http, "POST", "/api/v1/subscribers", self.admin_token, json=body)
            if status != 201:
                raise ScenarioError(f"could not register receiver {body['id']}: {data.get('detail')}")
        issuers = [
            *self.scenario.issuers,
            {"id": "drill-national", "name": "全国瞬時警報システム(訓練)", "national": True},
        ]
        for issuer in issuers:
            token = secrets.token_hex(16)
            body = {**issuer, "token": token, "jurisdiction": issuer.get("jurisdiction", [])}
            status, data = await self._api(http, "POST", "/api/v1/issuers", self.admin_token, json=body)
            if status != 201:
                raise ScenarioError(f"could not register issuer {issuer['id']}: {data.get('detail')}")
            self.tokens[issuer["id"]] = token

    def _issuer_token(self, step: Step) -> str:
        issuer = step.issuer or self.scenario.issuers[0]["id"]
        if issuer not in self.tokens:
            raise ScenarioError(
                f"step {step.name!r} names issuer {issuer!r}, which the scenario does not define"
            )
        return self.tokens[issuer]

    def _resolve_file(self, name: str) -> Path:
        base = self.scenario.path.parent if self.scenario.path else Path.cwd()
        for candidate in (Path(name), base / name, Path.cwd() / name):
            if candidate.exists():
                return candidate
        raise ScenarioError(f"file {name!r} not found (relative to {base} or {Path.cwd()})")

    async def run_step(self, http: aiohttp.ClientSession, step: Step) -> StepResult:
        result = StepResult(step)
        ident = f"drill-{self.run_id}-{len(self.results) + 1}"
        try:
            if step.kind == "fault":
                self.fleet.apply_fault(
                    step.spec["receiver"], step.spec["kind"], float(step.spec.get("seconds", 2))
                )
            elif step.kind == "wait":
                pass
            elif step.kind in ("order", "shelter"):
                path = "/api/v1/evacuation-orders" if step.kind == "order" else "/api/v1/shelters"
                body = {**step.spec, "status": "Exercise", "identifier": ident}
                if "corrects" in body:
                    body["corrects"] = self.by_name[body["corrects"]].alert_ids[0]
                await self._submit(http, result, path, self._issuer_token(step), json=body)
            elif step.kind == "alert":
                body = {**step.spec, "status": "Exercise", "identifier": ident}
                await self._submit(http, result, "/api/v1/alerts", self._issuer_token(step), json=body)
            elif step.kind == "cancel":
                target = self.by_name[str(step.spec)]
                for alert_id in target.alert_ids:
                    body = {"status": "Exercise", "msg_type": "Cancel", "event": "取消", "references": [alert_id],
                            "identifier": f"{ident}-{alert_id}"}  # fmt: skip
                    await self._submit(http, result, "/api/v1/alerts", self._issuer_token(step), json=body)
            elif step.kind == "cap":
                await self._submit_cap(
                    http, result, self._resolve_file(str(step.spec)).read_bytes(), ident, step
                )
            elif step.kind == "jma":
                await self._submit_jma(http, result, self._resolve_file(str(step.spec)), ident)
        except (ScenarioError, KeyError, ValueError) as exc:
            result.error = str(exc)
        return result

    async def _submit(
        self, http: aiohttp.ClientSession, result: StepResult, path: str, token: str, **kw: Any
    ) -> None:
        status, data = await self._api(http, "POST", path, token, **kw)
        if status != 202:
            result.error = f"{status}: {data.get('detail')}"
            return
        result.alert_ids.append(data["id"])
        result.planned += int(data.get("deliveries", 0))
        result.lanes.add(str(data.get("priority", "routine")))

    async def _submit_cap(
        self, http: aiohttp.ClientSession, result: StepResult, raw: bytes, ident: str, step: Step
    ) -> None:
        from alertd.cap import parse_cap, to_cap
        from alertd.models import Status

        alert = parse_cap(raw)
        alert.status = Status.EXERCISE
        alert.identifier = ident
        alert.sender = "drill@alertd"
        await self._submit(
            http, result, "/api/v1/alerts", self.tokens["drill-national"], data=to_cap(alert),
            headers={"Content-Type": "application/cap+xml"},
        )  # fmt: skip

    async def _submit_jma(
        self, http: aiohttp.ClientSession, result: StepResult, path: Path, ident: str
    ) -> None:
        """Parse a JMA file as the poller would, apply the JMA policy, and send what it broadcasts.

        It travels as the project's JSON alert so the policy's districts and
        adapter choice arrive exactly; sample files are years old, so the
        expiry is reset to an hour from now.
        """
        from datetime import timedelta

        from alertd.jma.parse import parse_message
        from alertd.jma.policy import Policy
        from alertd.models import format_cap_time, utcnow
        from geo.registry import Registry

        registry = Registry.default()
        raw = await asyncio.to_thread(path.read_bytes)
        parsed = parse_message(raw, registry, name=path.name)
        if not parsed.alerts:
            result.error = f"{path.name}: {parsed.type_code} yields no alerts alertd broadcasts"
            return
        policy = Policy.default()
        for i, alert in enumerate(parsed.alerts):
            decision = policy.apply(alert, registry.prefecture_of)
            if not decision.broadcast or not alert.districts:
                continue
            ja = alert.info_for("ja")
            body = {
                "identifier": f"{ident}-{i}", "status": "Exercise", "msg_type": "Alert", "kind": alert.kind,
                "event": alert.event, "level": alert.level, "districts": alert.districts,
                "adapters": alert.adapters, "headline": {"ja": ja.headline if ja and ja.headline else alert.event},
                "description": {"ja": ja.description} if ja and ja.description else None,
                "expires": format_cap_time(utcnow() + timedelta(hours=1)),
            }  # fmt: skip
            body = {k: v for k, v in body.items() if v is not None}
            await self._submit(http, result, "/api/v1/alerts", self.tokens["drill-national"], json=body)

    async def deliveries(self, http: aiohttp.ClientSession, alert_id: str) -> list[dict[str, Any]]:
        async with http.get(
            f"{self.url}/api/v1/alerts/{alert_id}/deliveries",
            headers={"Authorization": f"Bearer {self.admin_token}"},
        ) as resp:
            data = await resp.json()
        return [r for r in data.get("deliveries", []) if r["adapter"] != "feed"]

    async def snapshot(self, http: aiohttp.ClientSession) -> dict[str, list[dict[str, Any]]]:
        return {a: await self.deliveries(http, a) for r in self.results for a in r.alert_ids}

    def _line(self, i: int, snap: dict[str, list[dict[str, Any]]]) -> str:
        rows = [row for rows in snap.values() for row in rows]
        delivered = sum(r["state"] in ("delivered", "confirmed") for r in rows)
        confirmed = sum(r["state"] == "confirmed" for r in rows)
        failed = sum(r["state"] in ("failed", "expired") for r in rows)
        return (
            f"{bar(i, len(self.scenario.steps))} step {i}/{len(self.scenario.steps)}  "
            f"deliveries {len(rows)}  delivered {delivered}  confirmed {confirmed}  failed {failed}"
        )

    async def run(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            await self.setup(http)
            try:
                start = time.monotonic()
                for i, step in enumerate(self.scenario.steps, 1):
                    delay = start + step.at / self.speed - time.monotonic()
                    while delay > 0:
                        self.progress.show(
                            self._line(i - 1, await self.snapshot(http)) + f"  next: {step.name}"
                        )
                        await asyncio.sleep(min(delay, 0.25))
                        delay = start + step.at / self.speed - time.monotonic()
                    result = await self.run_step(http, step)
                    self.results.append(result)
                    self.by_name[step.name] = result
                    self.progress.show(self._line(i, await self.snapshot(http)) + f"  sent: {step.name}")
                deadline = time.monotonic() + self.scenario.settle_s
                while time.monotonic() < deadline:
                    snap = await self.snapshot(http)
                    self.progress.show(self._line(len(self.scenario.steps), snap) + "  settling")
                    if self._settled(snap):
                        break
                    await asyncio.sleep(0.2)
                self.progress.done()
                return self.build_report(await self.snapshot(http))
            finally:
                await self.fleet.stop()

    def _settled(self, snap: dict[str, list[dict[str, Any]]]) -> bool:
        no_confirm = self.fleet.faults.no_confirm | self.fleet.faults.down
        for rows in snap.values():
            for r in rows:
                if r["state"] in ("queued", "sent"):
                    return False
                if r["state"] == "delivered" and r["subscriber"] not in no_confirm:
                    return False
        return True

    def build_report(self, snap: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        steps = []
        for r in self.results:
            rows = [row for a in r.alert_ids for row in snap.get(a, [])]
            steps.append(
                {
                    "at": r.step.at, "name": r.step.name, "kind": r.step.kind, "alert_ids": r.alert_ids,
                    "error": r.error, "planned": len(rows), "by_adapter": report.summarize(rows),
                    "lane": "/".join(sorted(r.lanes)) or None,
                }
            )  # fmt: skip
        all_rows = [row for rows in snap.values() for row in rows]
        return {
            "scenario": self.scenario.name,
            "run_id": self.run_id,
            "status": "Exercise",
            "steps": steps,
            "total": report.summarize(all_rows),
            "duplicates_dropped_by_receivers": sum(1 for x in self.fleet.receipts if x.duplicate),
            "signature_failures": self.fleet.signature_failures,
            "step_errors": [s["name"] for s in steps if s["error"]],
        }


def render_text(rep: dict[str, Any]) -> str:
    lines = [f"Drill: {rep['scenario']} (run {rep['run_id']}, status Exercise)", ""]
    rows = []
    for s in rep["steps"]:
        if s["error"]:
            rows.append([f"{s['at']:>5.0f}s {s['name']}", "", "ERROR", s["error"][:70], "", "", "", "", ""])
            continue
        for adapter, t in s["by_adapter"].items():
            rows.append([f"{s['at']:>5.0f}s {s['name']}", s["lane"], adapter, t["planned"], t["delivered"], t["confirmed"], t["failed"],
                         t["latency_p50_ms"], t["latency_p99_ms"]])  # fmt: skip
        if not s["by_adapter"] and s["kind"] not in ("fault", "wait"):
            rows.append([f"{s['at']:>5.0f}s {s['name']}", s["lane"], "-", 0, 0, 0, 0, None, None])
    lines.append(
        report.table(
            ["step", "lane", "adapter", "planned", "delivered", "confirmed", "failed", "p50 ms", "p99 ms"],
            rows,
        )
    )
    lines += ["", "Totals by adapter:", report.summary_table(rep["total"])]
    return "\n".join(lines)


def render_markdown(rep: dict[str, Any]) -> str:
    out = [f"# Drill report: {rep['scenario']}", "", f"Run `{rep['run_id']}`, status **Exercise**.", ""]
    out += [
        "| step | adapter | planned | delivered | confirmed | failed | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in rep["steps"]:
        if s["error"]:
            out.append(f"| {s['at']:.0f}s {s['name']} | error | {s['error']} | | | | | |")
        for adapter, t in s["by_adapter"].items():
            cells = [
                t["planned"],
                t["delivered"],
                t["confirmed"],
                t["failed"],
                t["latency_p50_ms"],
                t["latency_p99_ms"],
            ]
            out.append(
                f"| {s['at']:.0f}s {s['name']} | {adapter} | "
                + " | ".join(
                    "-" if c is None else (f"{c:.1f}" if isinstance(c, float) else str(c)) for c in cells
                )
                + " |"
            )
    return "\n".join(out) + "\n"


async def run_embedded(scenario: Scenario, speed: float) -> dict[str, Any]:
    """Start an engine on embedded Redis and MQTT (or the configured ones) and drill against it."""
    from aiohttp import web

    from alertd.api import make_app
    from alertd.config import Settings
    from alertd.engine import Engine
    from simulations.receivers import _free_port

    settings = Settings.from_env()
    settings.admin_token = settings.admin_token or secrets.token_hex(16)
    settings.key_prefix = (
        f"alertd-drill-{secrets.token_hex(3)}" if settings.redis_url else settings.key_prefix
    )
    settings.retry_base_s, settings.retry_max_s = 0.2, 2.0
    engine = Engine(settings)
    await engine.start()
    runner = web.AppRunner(make_app(engine), access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        assert settings.mqtt_url is not None
        drill = DrillRunner(
            scenario, f"http://127.0.0.1:{port}", settings.admin_token, settings.mqtt_url, speed
        )
        return await drill.run()
    finally:
        await runner.cleanup()
        await engine.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="alertd drill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="replay a scenario (status forced to Exercise)")
    p.add_argument("scenario", help="a YAML file, or the name of a shipped scenario")
    p.add_argument("--speed", type=float, default=1.0, help="time compression: 10 runs ten times faster")
    p.add_argument("--json", help="write the report as JSON here")
    p.add_argument("--markdown", help="write the report as Markdown here")
    p.add_argument("--url", help="a running engine (default: start an embedded one)")
    p.add_argument("--admin-token", default=os.environ.get("ALERTD_ADMIN_TOKEN"))
    p.add_argument("--mqtt-url", default=os.environ.get("ALERTD_MQTT_URL"))
    sub.add_parser("list", help="the shipped scenarios")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for path in sorted(SCENARIOS.glob("*.yaml")):
            print(f"{path.stem:<28} {load_scenario(path).description}")
        return 0
    try:
        scenario = load_scenario(resolve_scenario(args.scenario))
        if args.url:
            if not args.admin_token or not args.mqtt_url:
                raise ScenarioError(
                    "with --url, give --admin-token and --mqtt-url (or ALERTD_ADMIN_TOKEN / ALERTD_MQTT_URL)"
                )
            rep = loop.run(
                DrillRunner(scenario, args.url, args.admin_token, args.mqtt_url, args.speed).run()
            )
        else:
            rep = loop.run(run_embedded(scenario, args.speed))
    except ScenarioError as exc:
        print(f"alertd drill: {exc}", file=sys.stderr)
        return 2
    print(render_text(rep))
    if args.json:
        Path(args.json).write_text(json.dumps(rep, ensure_ascii=False, indent=2), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(render_markdown(rep), encoding="utf-8")
    return 1 if rep["step_errors"] else 0
