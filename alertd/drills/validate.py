"""`alertd drill validate`: what would go wrong in a drill, found before anything is sent.

A drill office writes scenarios by hand; a misspelt 字, a step that cancels a step that does
not exist, or an order for a town outside the issuer's jurisdiction used to show only as one
ERROR line in the middle of the drill. This reads the scenario against the registry and says
every problem at once, each with its step.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from alertd.drills.scenario import Scenario, Step, resolve_file


def problems(scenario: Scenario, registry: Any) -> list[str]:
    """Every problem of the scenario, one sentence each naming its step; [] when it can run."""
    out: list[str] = []
    issuers = {i["id"]: i for i in scenario.issuers}
    names = Counter(step.name for step in scenario.steps)
    out += [f"step name {n!r} is used {c} times: a 'cancel' or 'corrects' could not tell which is meant"
            for n, c in names.items() if c > 1]  # fmt: skip
    for what, ids in (("receiver", [r.id for r in scenario.receivers]), ("issuer", list(issuers))):
        out += [f"{what} id {i!r} is used {c} times: the later one would replace the first"
                for i, c in Counter(ids).items() if c > 1]  # fmt: skip
    layer_names: dict[str, set[str]] = {}  # municipality -> names the scenario's layers add
    for spec in scenario.layers:
        found = _file_problems(f"layer {spec['layer']!r}", spec["file"], scenario.path)
        out += found
        if not found:
            from alertd.layer_cli import read_layer

            base = scenario.path.parent if scenario.path else Path.cwd()
            path = next(p for p in (Path(spec["file"]), base / spec["file"], Path.cwd() / spec["file"]) if p.exists())
            try:
                names = {d["name"] for d in read_layer(path)}
            except Exception as exc:  # CliError: the file's own sentence
                out.append(f"layer {spec['layer']!r}: {exc}")
                names = set()
            layer_names.setdefault(spec["municipality"], set()).update(names)
    earlier: set[str] = set()
    for step in scenario.steps:
        where = f"step {step.name!r}"
        issuer_id = step.issuer or (scenario.issuers[0]["id"] if scenario.issuers else None)
        if step.issuer is not None and step.issuer not in issuers:
            out.append(f"{where}: issuer {step.issuer!r} is not one of the scenario's issuers ({', '.join(issuers)})")
        if step.kind == "fault" and isinstance(step.spec, dict):
            receivers = {r.id for r in scenario.receivers}
            if step.spec.get("receiver") not in receivers:
                out.append(f"{where}: fault on {step.spec.get('receiver')!r}, which is not one of the scenario's receivers")
            if step.spec.get("kind") not in ("down", "slow", "no-confirm", "recover"):
                out.append(f"{where}: fault kind {step.spec.get('kind')!r} is not down, slow, no-confirm or recover")
        if step.kind == "order" and isinstance(step.spec, dict) and step.spec.get("level") not in (3, 4, 5):
            out.append(f"{where}: level {step.spec.get('level')!r} is not 3, 4 or 5 (避難勧告 was abolished in 2021)")
        if step.kind == "cancel" and str(step.spec) not in earlier:
            out.append(f"{where}: cancels {step.spec!r}, which is not the name of an earlier step")
        if step.kind in ("order", "shelter") and isinstance(step.spec, dict):
            target = step.spec.get("corrects")
            if target is not None and str(target) not in earlier:
                out.append(f"{where}: corrects {target!r}, which is not the name of an earlier step")
            out += _order_problems(step, registry, issuers.get(issuer_id or ""), layer_names)
        if step.kind in ("cap", "jma", "spool"):
            spec = step.spec if isinstance(step.spec, dict) else {"file": step.spec}
            out += _file_problems(where, str(spec.get("file", "")), scenario.path)
        earlier.add(step.name)
    return out


def _order_problems(
    step: Step, registry: Any, issuer: dict[str, Any] | None, layer_names: dict[str, set[str]]
) -> list[str]:
    where = f"step {step.name!r}"
    spec = step.spec
    muni = str(spec.get("municipality", ""))
    if registry.find(muni) is None:
        return [f"{where}: municipality {muni!r} is not a municipality code alertd knows"]
    out = []
    if issuer is not None and not issuer.get("national"):
        jurisdiction = [str(c) for c in issuer.get("jurisdiction") or []]
        if not registry.covers(jurisdiction, muni):
            out.append(f"{where}: {registry.get(muni).full_name} ({muni}) is outside the jurisdiction of "
                       f"{issuer['id']} ({', '.join(jurisdiction)})")  # fmt: skip
    if step.kind == "order":
        for name in spec.get("districts") or []:
            if str(name) in layer_names.get(muni, set()):
                continue  # a district of a layer the drill loads first
            try:
                registry.resolve_name(muni, str(name), suggest=False)  # 助川 is 助川町, as the README says
            except Exception:
                out.append(f"{where}: {name!r} is not a district of {registry.get(muni).full_name}")
    return out


def _file_problems(where: str, name: str, scenario_path: Path | None) -> list[str]:
    if resolve_file(name, scenario_path) is not None:
        return []
    hint = " (the JMA samples need ../shared beside the project)" if "shared/data" in name else ""
    return [f"{where}: file {name!r} is not there{hint}"]
