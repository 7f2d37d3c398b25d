"""The monitoring that ships with alertd (deploy/): the Prometheus rules do what their unit
tests say, the scrape config loads, and every Grafana panel is PromQL that parses and uses
only metrics alertd exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RunningEngine
from tests.support import ROOT

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "alertd.json"
RULES = DEPLOY / "prometheus" / "alertd-rules.yml"
# What Grafana fills in before a query reaches Prometheus.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__range": "6h", "$__interval": "30s", "$job": "alertd"}
# Series Prometheus itself makes for every target.
PROMETHEUS_OWN = {"up"}
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "and", "or", "unless", "rate",
    "increase", "irate", "histogram_quantile", "time", "le", "bool", "group_left", "group_right", "offset",
}  # fmt: skip


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: `make test` installs it (tests/services.sh, apt-get install prometheus)")
    return found


def run_promtool(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, cwd=cwd)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def panel_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL as Prometheus receives it) for every target of every panel."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                expr = target["expr"]
                for var, value in GRAFANA_VARS.items():
                    expr = expr.replace(var, value)
                assert "$" not in expr, f"{panel['title']}: a Grafana variable alertd does not define: {expr}"
                out.append((panel["title"], expr))

    walk(dash["panels"])
    return out


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label names, functions and strings aside)."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d.*|e\d+", n)}


def exported(text: str) -> set[str]:
    """Every name /metrics declares (a gauge with no series yet, such as an open circuit,
    is declared all the same) and every sample name it carries."""
    names = {m.group(1) for m in re.finditer(r"^(\w+)(?:\{| )", text, re.M)}
    for name, kind in re.findall(r"^# TYPE (\w+) (\w+)$", text, re.M):
        names |= {name} | ({f"{name}_bucket", f"{name}_count", f"{name}_sum"} if kind == "histogram" else set())
    return names


def test_the_alert_rules_pass_their_unit_tests() -> None:
    out = run_promtool("test", "rules", "alertd-rules.test.yml", cwd=DEPLOY / "prometheus")
    assert "SUCCESS" in out


def test_the_scrape_config_and_rules_load() -> None:
    out = run_promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert "12 rules found" in out


def test_the_rules_cover_what_on_call_must_hear() -> None:
    rules = {r["alert"] for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for r in g["rules"]}
    assert {"AlertdDown", "AlertdFlashLaneNotDrained", "AlertdCircuitOpen", "AlertdDeliveryFailureRatioHigh",
            "AlertdJmaNoPollSuccess", "AlertdJmaNeverPolled", "AlertdTransmissionTestFailed",
            "AlertdFlashDeliveryLate", "AlertdRoutineDeliveryLate"} <= rules  # fmt: skip


def test_every_dashboard_panel_is_promql_that_parses(tmp_path: Path) -> None:
    exprs = panel_exprs()
    assert len(exprs) >= 15
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"alertd_dashboard:panel{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)
    ]}]}  # fmt: skip
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    out = run_promtool("check", "rules", str(path))
    assert f"{len(exprs)} rules found" in out


async def test_every_metric_the_dashboard_and_rules_use_is_one_alertd_exports(engine: RunningEngine) -> None:
    status, text = await engine.get("/metrics")
    assert status == 200
    have = exported(str(text)) | PROMETHEUS_OWN
    used: dict[str, str] = {}
    for title, expr in panel_exprs():
        for name in metric_names(expr):
            used[name] = f"panel {title!r}"
    for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            for name in metric_names(rule["expr"]):
                used[name] = f"rule {rule['alert']}"
    missing = {name: where for name, where in used.items() if name not in have}
    assert not missing, f"not exported by alertd: {missing}"
    # The dashboard shows what the issue asks for.
    for name in ("alertd_alerts_received_total", "alertd_deliveries_completed_total",
                 "alertd_delivery_latency_seconds_bucket", "alertd_deliveries_pending", "alertd_circuits_open",
                 "alertd_test_broadcast_subscribers", "alertd_jma_last_success_timestamp_seconds"):  # fmt: skip
        assert name in used, name
