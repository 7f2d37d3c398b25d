"""A drill scenario: a timeline of desk orders, national warnings and faults, read from YAML.

The format is documented in simulations/scenarios/README.md; the shipped scenarios live there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alertd.drills.receivers import ReceiverSpec, default_fleet

# The shipped scenarios are data beside the benchmarks (simulations/ is installed with alertd);
# alertd reads them, it never imports simulations.
SCENARIOS = Path(__file__).resolve().parents[2] / "simulations" / "scenarios"
STEP_KINDS = ("order", "shelter", "alert", "cap", "jma", "spool", "cancel", "fault", "wait", "test_broadcast")
# Expectation keys that are alert kinds (the highest level of that kind in force in the
# municipality); any other key is a district name (its evacuation level).
KIND_KEYS = frozenset({"eew", "tsunami", "warning", "special_warning", "advisory", "landslide", "flood", "missile"})


class ScenarioError(ValueError):
    """A scenario file that cannot be run, with where and why."""


@dataclass
class Step:
    at: float
    name: str
    kind: str
    spec: Any
    issuer: str | None = None
    # {municipality code: {district name or alert kind: level or None}}: what must be in force
    # after this step, in every view (the model, the active list, Atom, the MQTT state).
    expect: dict[str, dict[str, int | None]] | None = None


# The languages a scenario describes itself in: the console shows the one it speaks.
DESCRIPTION_LANGUAGES = ("ja", "en")


@dataclass
class Scenario:
    name: str
    description: str  # in English, for the command line and the report; every language in descriptions
    receivers: list[ReceiverSpec]
    issuers: list[dict[str, Any]]
    steps: list[Step]
    settle_s: float = 15.0
    path: Path | None = None
    # The municipality's own districts the drill loads first (自治区 …): {municipality, layer,
    # file}. Loaded as "drill-<layer>", so a drill never replaces a town's real layer.
    layers: list[dict[str, str]] = field(default_factory=list)
    # No 'receivers:' in the file: the default fleet stands in, built around fleet_town.
    default_fleet: bool = False
    fleet_town: str = "08211"
    # Towns an order may name knowing no receiver of the drill covers them (by code): without it,
    # a town that heard nothing fails the drill, as a town whose gateway missed the order does.
    no_receiver_expected: list[str] = field(default_factory=list)
    # {"ja": …, "en": …}: what the console shows in its language.
    descriptions: dict[str, str] = field(default_factory=dict)


def resolve_file(name: str, scenario_path: Path | None) -> Path | None:
    """A file a step names (jma:, cap:, spool:), relative to the scenario file, so a drill runs
    from any directory; a path relative to the current directory still works for older files."""
    base = scenario_path.resolve().parent if scenario_path else Path.cwd()
    for candidate in (base / name, Path.cwd() / name):
        if candidate.exists():
            return candidate
    return None


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


def read_descriptions(raw: Any, where: Path) -> dict[str, str]:
    """``description: {ja: …, en: …}`` (or one plain string, for a scenario of one's own: then
    every language shows it)."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        return dict.fromkeys(DESCRIPTION_LANGUAGES, raw.strip())
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ScenarioError(f"{where}: 'description' is a text, or one per language: {{ja: …, en: …}}")
    return {str(k): v.strip() for k, v in raw.items()}


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
    ]
    fleet_town = str(data.get("municipality", "08211"))
    defaulted = not receivers
    receivers = receivers or default_fleet(fleet_town)
    issuers = data.get("issuers") or [{"id": "desk", "name": "災害対策本部", "jurisdiction": ["08211"]}]
    steps = []
    for i, raw in enumerate(data["steps"]):
        where = f"{path}: step {i + 1}"
        if not isinstance(raw, dict) or "at" not in raw:
            raise ScenarioError(f"{where}: every step needs 'at' (seconds from the start)")
        kinds = [k for k in STEP_KINDS if k in raw]
        if len(kinds) != 1:
            raise ScenarioError(f"{where}: a step does exactly one of {', '.join(STEP_KINDS)}")
        expect = raw.get("expect")
        if expect is not None and not (
            isinstance(expect, dict) and all(isinstance(v, dict) for v in expect.values())
        ):
            raise ScenarioError(f"{where}: 'expect' maps municipality codes to {{district or kind: level}}")
        steps.append(
            Step(
                float(raw["at"]),
                str(raw.get("name", f"step {i + 1}")),
                kinds[0],
                raw[kinds[0]],
                raw.get("issuer"),
                {str(m): dict(v) for m, v in expect.items()} if expect else None,
            )
        )
    steps.sort(key=lambda s: s.at)
    layers = data.get("layers") or []
    if not isinstance(layers, list) or not all(
        isinstance(x, dict) and {"municipality", "layer", "file"} <= set(x) for x in layers
    ):
        raise ScenarioError(f"{path}: each of 'layers' needs municipality, layer and file")
    descriptions = read_descriptions(data.get("description"), path)
    return Scenario(
        name=str(data.get("name", path.stem)),
        description=descriptions.get("en") or next(iter(descriptions.values()), ""), descriptions=descriptions,
        receivers=receivers, issuers=issuers, steps=steps, settle_s=float(data.get("settle_s", 15)), path=path,
        layers=[{k: str(v) for k, v in x.items()} for x in layers], default_fleet=defaulted, fleet_town=fleet_town,
        no_receiver_expected=[str(c) for c in data.get("no_receiver_expected") or []],
    )  # fmt: skip
