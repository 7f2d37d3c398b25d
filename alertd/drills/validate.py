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
            out += _body_problems(step)
        if step.expect:
            out += _expect_problems(step, registry, layer_names)
        if step.kind in ("cap", "jma", "spool"):
            spec = step.spec if isinstance(step.spec, dict) else {"file": step.spec}
            out += _file_problems(where, str(spec.get("file", "")), scenario.path)
        earlier.add(step.name)
    out += _fleet_problems(scenario, registry)
    return out


def warnings(scenario: Scenario, registry: Any) -> list[str]:
    """What can run but will fail the drill: an order for a town no receiver of the scenario
    covers (潮来市 named, no gateway there) is heard by nobody; say so before the drill does."""
    if scenario.default_fleet:
        return []  # _fleet_problems already says the default fleet is 常総市's only
    out = _expect_elsewhere(scenario, registry)
    for step in scenario.steps:
        if step.kind != "order" or not isinstance(step.spec, dict):
            continue
        muni = str(step.spec.get("municipality") or "")
        if registry.find(muni) is None or muni in scenario.no_receiver_expected:
            continue
        if not any(registry.covers(r.districts, muni) for r in scenario.receivers):
            out.append(f"step {step.name!r}: no receiver covers {registry.get(muni).full_name} ({muni}), so nobody "
                       "there will hear it and the drill will fail; add a receiver for it, or list it under "
                       "no_receiver_expected if that is the point")  # fmt: skip
    return out


def _expect_elsewhere(scenario: Scenario, registry: Any) -> list[str]:
    """expect: naming a town of another prefecture (鹿島市 is Saga's; Ibaraki's is 鹿嶋市) checks a
    town the drill never speaks to: it can only 'agree' that nothing is in force there."""
    prefectures = {str(c)[:2] for i in scenario.issuers for c in i.get("jurisdiction") or []} | {
        str(step.spec.get("municipality"))[:2] for step in scenario.steps
        if step.kind in ("order", "shelter") and isinstance(step.spec, dict)}  # fmt: skip
    if not prefectures:
        return []
    out = []
    for step in scenario.steps:
        for muni in step.expect or {}:
            if registry.find(muni) is not None and muni[:2] not in prefectures:
                hint = _closest_town(registry, registry.get(muni).name, {"municipality": sorted(prefectures)[0]})
                out.append(f"step {step.name!r}: expect names {registry.get(muni).full_name} ({muni}), which is not in "
                           f"the scenario's prefecture(s){hint}")  # fmt: skip
    return out


def _body_problems(step: Step) -> list[str]:
    """The order or shelter notice as the engine will read it (status and id as the runner sets
    them): a shelter status 'packed' or an order without 'reason' is said here, not as a 422 mid-drill."""
    from alertd.errors import InvalidInput
    from alertd.schemas import EvacuationOrder, ShelterNotice, parse

    if step.kind == "shelter":
        # Each shelter by name: the engine's sentence covers the whole list and not which one.
        bad = [f"step {step.name!r}: shelter {sh.get('name')!r}: status {sh.get('status')!r} is not open, closed "
               "or full" for sh in step.spec.get("shelters") or []
               if isinstance(sh, dict) and sh.get("status", "open") not in ("open", "closed", "full")]  # fmt: skip
        if bad:
            return bad
    body = {**step.spec, "status": "Exercise", "identifier": "drill-validate"}
    if "corrects" in body:
        body["corrects"] = "drill-validate-earlier"  # the earlier step's alert id, known only at run time
    try:
        parse(EvacuationOrder if step.kind == "order" else ShelterNotice, body)
    except InvalidInput as exc:
        field = f" (field {exc.field!r})" if getattr(exc, "field", None) else ""
        return [f"step {step.name!r}: {step.kind}{field}: {exc}"]
    return []


def _expect_problems(step: Step, registry: Any, layer_names: dict[str, set[str]]) -> list[str]:
    """expect: names municipalities by code and, within each, districts by name or alert kinds: a
    misspelt town (鹿島市 for 鹿嶋市) or an unknown code would only show as a difference mid-drill."""
    from alertd.drills.scenario import KIND_KEYS

    out = []
    where = f"step {step.name!r}: expect"
    for muni, wanted in (step.expect or {}).items():
        found = registry.find(muni)
        if found is None or found.level not in ("municipality", "ward"):
            hint = _closest_town(registry, muni, step.spec if isinstance(step.spec, dict) else {})
            out.append(f"{where}: {muni!r} is not a municipality code alertd knows (expect: takes codes such as "
                       f"\"08211\"){hint}")  # fmt: skip
            continue
        for key in wanted:
            if key in KIND_KEYS or str(key) in layer_names.get(muni, set()):
                continue
            try:
                registry.resolve_name(muni, str(key), suggest=False)
            except Exception:
                out.append(f"{where}: {key!r} is neither a district of {found.full_name} nor an alert kind "
                           f"({', '.join(sorted(KIND_KEYS))})")  # fmt: skip
    return out


def _closest_town(registry: Any, text: str, spec: dict[str, Any]) -> str:
    """' — did you mean 08222 (茨城県鹿嶋市)?' for a town written by name or a mistyped code, looking
    first in the prefecture the step is about."""
    import difflib

    pref = str(spec.get("municipality") or "")[:2]
    towns = [m for m in registry.municipalities() if m.level == "municipality"]
    local = [m for m in towns if m.code[:2] == pref] or towns
    for pool in (local, towns):
        by_name = {m.name: m for m in pool} if not text.isdigit() else {m.code: m for m in pool}
        close = difflib.get_close_matches(text, list(by_name), n=1, cutoff=0.6)
        if close:
            m = by_name[close[0]]
            return f" — did you mean {m.code} ({m.full_name})?"
    return ""


def _fleet_problems(scenario: Scenario, registry: Any) -> list[str]:
    """A scenario without 'receivers:' gets the default fleet, which is 常総市's (its signs stand in
    三坂町 and 本石下): orders for any other town would reach no receiver of it, or fail to register."""
    if not scenario.default_fleet:
        return []
    from alertd.drills.receivers import DEFAULT_FLEET_TOWN

    towns = sorted({str(step.spec.get("municipality")) for step in scenario.steps
                    if step.kind in ("order", "shelter") and isinstance(step.spec, dict)} - {DEFAULT_FLEET_TOWN})  # fmt: skip
    if scenario.fleet_town != DEFAULT_FLEET_TOWN:
        towns = sorted({*towns, scenario.fleet_town})
    if not towns:
        return []
    named = ", ".join(f"{registry.get(t).full_name} ({t})" if registry.find(t) else t for t in towns)
    return [f"receivers: the scenario has none, and the default fleet works only for 茨城県常総市 "
            f"({DEFAULT_FLEET_TOWN}); it names {named}: add 'receivers:' for those towns"]


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
