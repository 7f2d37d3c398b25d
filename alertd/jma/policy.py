"""Which JMA alerts are broadcast, in which lane, to which kinds of adapter.

JMA publishes far more than anyone should hear over a loudspeaker (every
注意報 restated every few hours); the policy is the one place that says
what goes where, as data an operator can read and change (YAML), not as
code. The built-in default is config/jma-policy.yaml, embedded here so
alertd works without the file.

The decision travels with the alert: ``priority`` is set on the alert, and
the target adapter kinds and scope are added to CAP ``<code>`` values
(``alertd:adapters=radio,broadcaster``, ``alertd:scope=prefecture``) —
CAP's field for "special handling" flags — so it survives the durable log.

Two rules sit outside the rule list because no rule may undo them:

- an Update, lift or Cancel goes at least as far as the alerts it
  references went (``apply(..., inherit=...)``): a 解除 reaches every
  loudspeaker that announced the warning;
- an Exercise (訓練) never goes to the adapters the ``exercise`` section
  withholds (by default ``radio``, the loudspeaker gateways) and never in the
  flash lane. What was withheld is recorded as ``alertd:withheld=radio`` so
  a subscriber that opted in to drills can still be served by the core.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alertd.hazard_texts import PARAM_MAX_INTENSITY
from alertd.jma.levels import INTENSITIES
from alertd.messages import PARAM_LIFTED_LEVEL as LIFTED_LEVEL
from alertd.models import AdapterKind, Alert, MsgType, Priority, Status

FEED = AdapterKind.FEED.value  # alertd's own public feeds (MQTT feed topics, Atom), not a subscriber adapter
TARGETS = frozenset(a.value for a in AdapterKind)  # the subscriber kinds and the feed
SCOPES = frozenset({"districts", "prefecture"})
KINDS = frozenset({
    "eew", "tsunami", "special_warning", "warning", "advisory", "landslide", "flood",
    "earthquake", "eew_forecast", "tsunami_info", "volcano", "megaquake", "heavy_rain", "tornado", "heat",
})  # fmt: skip
ACTIONS = frozenset({"issue", "continue", "lift"})

CODE_ADAPTERS = "alertd:adapters="
CODE_SCOPE = "alertd:scope="
CODE_RULE = "alertd:jma-rule="
CODE_WITHHELD = "alertd:withheld="

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "config" / "jma-policy.yaml"

_RULE_KEYS = {
    "name",
    "kinds",
    "types",
    "min_intensity",
    "min_level",
    "max_level",
    "lifted_min_level",
    "lifted_max_level",
    "statuses",
    "actions",
    "msg_types",
    "broadcast",
    "priority",
    "adapters",
    "scope",
}


class PolicyError(ValueError):
    """The policy file says something alertd cannot follow; the message names the rule and field."""


@dataclass(frozen=True)
class Decision:
    broadcast: bool
    priority: Priority
    adapters: tuple[str, ...]  # AdapterKind values and/or "feed"
    scope: str
    rule: str

    def wants(self, adapter: AdapterKind | str) -> bool:
        return self.broadcast and str(adapter) in self.adapters

    @property
    def feed_only(self) -> bool:
        return self.adapters == (FEED,)

    def to_dict(self) -> dict[str, Any]:
        return {
            "broadcast": self.broadcast,
            "priority": self.priority.value,
            "adapters": list(self.adapters),
            "scope": self.scope,
            "rule": self.rule,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            broadcast=bool(data.get("broadcast", True)),
            priority=Priority(data.get("priority", "routine")),
            adapters=tuple(str(a) for a in data.get("adapters") or ()),
            scope=str(data.get("scope", "districts")),
            rule=str(data.get("rule", "")),
        )

    def widened(self, others: Iterable[Decision]) -> Decision:
        """At least as far, as fast and to as many adapter kinds as each of ``others``."""
        adapters = list(self.adapters)
        scope, priority, broadcast = self.scope, self.priority, self.broadcast
        widened = False
        for other in others:
            if not other.broadcast:
                continue
            widened = True
            broadcast = True
            adapters += [a for a in other.adapters if a not in adapters]
            if other.scope == "prefecture":
                scope = "prefecture"
            if other.priority is Priority.FLASH:
                priority = Priority.FLASH
        if not widened:
            return self
        return Decision(broadcast, priority, tuple(adapters), scope, self.rule)


DROP = Decision(broadcast=False, priority=Priority.ROUTINE, adapters=(), scope="districts", rule="no-rule")


@dataclass(frozen=True)
class Rule:
    name: str
    kinds: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()  # JMA type codes (VXSE51 …), for rules one kind is too coarse for
    min_intensity: str | None = None  # observed maximum 震度 (JMA's 1 … 5- 5+ 6- 6+ 7)
    min_level: int | None = None
    max_level: int | None = None
    lifted_min_level: int | None = None
    lifted_max_level: int | None = None
    statuses: frozenset[Status] = frozenset()
    actions: frozenset[str] = frozenset()
    msg_types: frozenset[MsgType] = frozenset()
    broadcast: bool = True
    priority: Priority = Priority.ROUTINE
    adapters: tuple[str, ...] = (FEED,)
    scope: str = "districts"

    def matches(self, alert: Alert) -> bool:
        if self.kinds and alert.kind not in self.kinds:
            return False
        if self.types and jma_type(alert) not in self.types:
            return False
        if self.min_intensity is not None:
            observed = max_intensity(alert)
            if observed is None or INTENSITIES.index(observed) < INTENSITIES.index(self.min_intensity):
                return False
        if self.actions and alert.action not in self.actions:
            return False
        if self.msg_types and alert.msg_type not in self.msg_types:
            return False
        if self.statuses and alert.status not in self.statuses:
            return False
        if self.min_level is not None and (alert.level is None or alert.level < self.min_level):
            return False
        if self.max_level is not None and alert.level is not None and alert.level > self.max_level:
            return False
        if self.lifted_min_level is not None or self.lifted_max_level is not None:
            lifted = lifted_level(alert)
            if lifted is None:
                return False
            if self.lifted_min_level is not None and lifted < self.lifted_min_level:
                return False
            if self.lifted_max_level is not None and lifted > self.lifted_max_level:
                return False
        return True

    def decision(self) -> Decision:
        return Decision(self.broadcast, self.priority, self.adapters, self.scope, self.name)


@dataclass(frozen=True)
class ExerciseRule:
    """What an Exercise (訓練) never gets, whatever the rule that matched it says."""

    withhold: tuple[str, ...] = (AdapterKind.RADIO.value,)
    priority: Priority = Priority.ROUTINE


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    statuses: frozenset[Status] = frozenset({Status.ACTUAL, Status.EXERCISE})
    exercise: ExerciseRule = ExerciseRule()

    def decide(self, alert: Alert, inherit: Iterable[Decision] = ()) -> Decision:
        """The rule's decision, widened to what ``inherit`` (the referenced alerts) had, drills restrained.

        A status not in ``statuses`` (by default Test) is never broadcast,
        whatever it references.
        """
        decision = self._unrestrained(alert, inherit)
        if alert.status is Status.EXERCISE and decision.broadcast:
            decision = Decision(
                decision.broadcast,
                self.exercise.priority,
                tuple(a for a in decision.adapters if a not in self.exercise.withhold),
                decision.scope,
                decision.rule,
            )
        return decision

    def withheld(self, alert: Alert, inherit: Iterable[Decision] = ()) -> list[str]:
        """The adapter kinds an exercise would have reached but for the ``exercise`` section."""
        if alert.status is not Status.EXERCISE:
            return []
        decision = self._unrestrained(alert, inherit)
        return [a for a in decision.adapters if decision.broadcast and a in self.exercise.withhold]

    def _unrestrained(self, alert: Alert, inherit: Iterable[Decision]) -> Decision:
        if alert.status not in self.statuses:
            return Decision(False, Priority.ROUTINE, (), "districts", f"status-{alert.status.value}")
        decision = DROP
        for rule in self.rules:
            if rule.matches(alert):
                decision = rule.decision()
                break
        return decision.widened(inherit)

    def apply(self, alert: Alert, _prefecture_of: Any = None, inherit: Iterable[Decision] = ()) -> Decision:
        """Decide, and write the decision onto the alert (priority and CAP codes).

        ``inherit`` holds the decisions of the alerts this one updates, lifts
        or cancels: it goes at least as far as they went.
        """
        inherit = list(inherit)
        decision = self.decide(alert, inherit)
        alert.priority = decision.priority
        # The router reads these fields: which adapter kinds may carry it, and for
        # scope "prefecture" the whole prefectures, so every subscriber there gets it.
        alert.adapters = list(decision.adapters) if decision.broadcast else []
        if decision.broadcast and decision.scope == "prefecture" and _prefecture_of is not None:
            extra = prefecture_districts(alert, _prefecture_of)
            alert.reach = [p for p in dict.fromkeys([*alert.reach, *extra]) if p not in alert.districts]
        codes = [
            c for c in alert.codes if not c.startswith((CODE_ADAPTERS, CODE_SCOPE, CODE_RULE, CODE_WITHHELD))
        ]
        if decision.broadcast:
            codes += [
                CODE_ADAPTERS + ",".join(decision.adapters),
                CODE_SCOPE + decision.scope,
                CODE_RULE + decision.rule,
            ]
            withheld = self.withheld(alert, inherit)
            if withheld:
                codes.append(CODE_WITHHELD + ",".join(withheld))
        alert.codes = codes
        return decision

    # --- loading ------------------------------------------------------------------

    @classmethod
    def default(cls) -> Policy:
        return cls.from_yaml_text(DEFAULT_POLICY_YAML, source="built-in JMA policy")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Policy:
        path = (env if env is not None else os.environ).get("ALERTD_JMA_POLICY")
        return cls.from_file(path) if path else cls.default()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Policy:
        with open(path, encoding="utf-8") as fh:
            return cls.from_yaml_text(fh.read(), source=str(path))

    @classmethod
    def from_yaml_text(cls, text: str, *, source: str = "JMA policy") -> Policy:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{source}: not valid YAML: {exc}") from None
        return cls.from_dict(data or {}, source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "JMA policy") -> Policy:
        if not isinstance(data, dict):
            raise PolicyError(f"{source}: expected a mapping with 'rules' (and optionally 'statuses')")
        unknown = set(data) - {"rules", "statuses", "exercise"}
        if unknown:
            raise PolicyError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list) or not raw_rules:
            raise PolicyError(f"{source}: 'rules' must be a non-empty list")
        statuses = data.get("statuses", ["Actual", "Exercise"])
        try:
            status_set = frozenset(Status(s) for s in _as_list(statuses, "statuses", source))
        except ValueError as exc:
            raise PolicyError(f"{source}: statuses: {exc}") from None
        rules = tuple(_rule(r, i, source) for i, r in enumerate(raw_rules))
        return cls(rules=rules, statuses=status_set, exercise=_exercise(data.get("exercise"), source))


def _as_list(value: Any, field_name: str, where: str) -> list[Any]:
    if isinstance(value, str | int):
        return [value]
    if not isinstance(value, list):
        raise PolicyError(f"{where}: '{field_name}' must be a list")
    return value


def _checked(values: Iterable[Any], allowed: frozenset[str], field_name: str, where: str) -> list[str]:
    out = [str(v) for v in values]
    bad = [v for v in out if v not in allowed]
    if bad:
        raise PolicyError(f"{where}: {field_name} {bad} not among {sorted(allowed)}")
    return out


def _level(value: Any, field_name: str, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 5:
        raise PolicyError(f"{where}: {field_name} must be a level from 1 to 5, not {value!r}")
    return value


def _exercise(raw: Any, source: str) -> ExerciseRule:
    if raw is None:
        return ExerciseRule()
    where = f"{source}: exercise"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where} must be a mapping with 'withhold' and/or 'priority'")
    unknown = set(raw) - {"withhold", "priority"}
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {sorted(unknown)}")
    withhold = _checked(_as_list(raw.get("withhold", []), "withhold", where), TARGETS, "withhold", where)
    try:
        priority = Priority(raw.get("priority", "routine"))
    except ValueError as exc:
        raise PolicyError(f"{where}: {exc}") from None
    return ExerciseRule(withhold=tuple(withhold), priority=priority)


def lifted_level(alert: Alert) -> int | None:
    """The level a lift ends (the tsunami parser's LIFTED_LEVEL parameter), if it says."""
    for info in alert.infos:
        value = info.parameter(LIFTED_LEVEL)
        if value is not None and value.isdigit():
            return int(value)
    return None


def _parameter(alert: Alert, name: str) -> str | None:
    for info in alert.infos:
        value = info.parameter(name)
        if value is not None:
            return value
    return None


def jma_type(alert: Alert) -> str | None:
    """The JMA type code the parser recorded (CAP parameter JMA_TYPE)."""
    return _parameter(alert, "JMA_TYPE")


def max_intensity(alert: Alert) -> str | None:
    """The highest 震度 an earthquake report observed, in JMA's notation, if it says."""
    value = _parameter(alert, PARAM_MAX_INTENSITY)
    return value if value in INTENSITIES else None


def _rule(raw: Any, index: int, source: str) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: rule #{index + 1} must be a mapping")
    name = str(raw.get("name") or f"rule-{index + 1}")
    where = f"{source}: rule '{name}'"
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {sorted(unknown)}")
    adapters = _checked(
        _as_list(raw.get("adapters", [FEED]), "adapters", where), TARGETS | {"all"}, "adapters", where
    )
    if "all" in adapters:
        adapters = [a.value for a in AdapterKind]  # every kind, the feed included
    try:
        priority = Priority(raw.get("priority", "routine"))
        msg_types = frozenset(MsgType(m) for m in _as_list(raw.get("msg_types", []), "msg_types", where))
        statuses = frozenset(Status(m) for m in _as_list(raw.get("statuses", []), "statuses", where))
    except ValueError as exc:
        raise PolicyError(f"{where}: {exc}") from None
    scope = str(raw.get("scope", "districts"))
    if scope not in SCOPES:
        raise PolicyError(f"{where}: scope must be one of {sorted(SCOPES)}, not {scope!r}")
    broadcast = raw.get("broadcast", True)
    if not isinstance(broadcast, bool):
        raise PolicyError(f"{where}: broadcast must be true or false")
    min_intensity = raw.get("min_intensity")
    if min_intensity is not None:
        min_intensity = str(min_intensity)
        if min_intensity not in INTENSITIES:
            raise PolicyError(f"{where}: min_intensity must be one of {INTENSITIES} (5- is 震度5弱), not {min_intensity!r}")
    return Rule(
        name=name,
        types=frozenset(str(t) for t in _as_list(raw.get("types", []), "types", where)),
        min_intensity=min_intensity,
        kinds=frozenset(_checked(_as_list(raw.get("kinds", []), "kinds", where), KINDS, "kinds", where)),
        min_level=_level(raw.get("min_level"), "min_level", where),
        max_level=_level(raw.get("max_level"), "max_level", where),
        lifted_min_level=_level(raw.get("lifted_min_level"), "lifted_min_level", where),
        lifted_max_level=_level(raw.get("lifted_max_level"), "lifted_max_level", where),
        statuses=statuses,
        actions=frozenset(
            _checked(_as_list(raw.get("actions", []), "actions", where), ACTIONS, "actions", where)
        ),
        msg_types=msg_types,
        broadcast=broadcast,
        priority=priority,
        adapters=tuple(dict.fromkeys(adapters)),
        scope=scope,
    )


def prefecture_districts(alert: Alert, prefecture_of: Any) -> list[str]:
    """The prefectures an alert touches, for a decision with scope 'prefecture'.

    ``prefecture_of`` is geo.registry.Registry.prefecture_of; tsunami
    regions ("tsunami:…") are skipped because their municipalities are listed too.
    """
    prefs: list[str] = []
    for code in alert.districts:
        if code.startswith("tsunami:"):
            continue
        pref = code if len(code) == 2 else prefecture_of(code)
        pref_code = getattr(pref, "code", pref)
        if pref_code and pref_code not in prefs:
            prefs.append(str(pref_code))
    return prefs


DEFAULT_POLICY_YAML = """
statuses: [Actual, Exercise]
exercise: {withhold: [radio], priority: routine}
rules:
  - {name: eew-tsunami-cancel, kinds: [eew, tsunami], msg_types: [Cancel], priority: flash,
     adapters: [radio, broadcaster, cbc, feed], scope: prefecture}
  - {name: eruption, types: [VFVO56], actions: [issue], priority: flash, adapters: [all]}
  - {name: volcano-residential, kinds: [volcano], actions: [issue], min_level: 4, priority: flash, adapters: [all]}
  - {name: nankai-warning, kinds: [megaquake], actions: [issue], min_level: 4, priority: flash, adapters: [all],
     scope: prefecture}
  - {name: tsunami-information, types: [VTSE51], actions: [issue, continue], min_level: 4, priority: flash,
     adapters: [broadcaster, feed], scope: prefecture}
  - {name: tsunami-information-other, types: [VTSE51], adapters: [feed]}
  - {name: tsunami-offshore, kinds: [tsunami_info], priority: flash, adapters: [broadcaster, feed],
     scope: prefecture}
  - {name: eew-forecast, kinds: [eew_forecast], broadcast: false}
  - {name: eew, kinds: [eew], priority: flash, adapters: [radio, broadcaster, cbc, feed], scope: prefecture}
  - {name: tsunami-warning, kinds: [tsunami], actions: [issue, continue], min_level: 4, priority: flash,
     adapters: [radio, broadcaster, cbc, feed], scope: prefecture}
  - {name: tsunami-warning-lift, kinds: [tsunami], actions: [lift], lifted_min_level: 4, priority: flash,
     adapters: [radio, broadcaster, cbc, feed], scope: prefecture}
  - {name: tsunami-advisory, kinds: [tsunami], actions: [issue, continue], min_level: 2,
     adapters: [radio, broadcaster, feed]}
  - {name: tsunami-forecast-end, kinds: [tsunami], actions: [lift], lifted_max_level: 1, adapters: [feed]}
  - {name: tsunami-lift, kinds: [tsunami], actions: [lift], adapters: [radio, broadcaster, feed]}
  - {name: tsunami-forecast, kinds: [tsunami], adapters: [feed]}
  - {name: special-warning, kinds: [special_warning], actions: [issue], priority: flash, adapters: [all]}
  - {name: any-cancellation, msg_types: [Cancel], adapters: [all]}
  - {name: continuing, actions: [continue], adapters: [feed]}
  - {name: quake-strong, kinds: [earthquake], min_intensity: 5-, adapters: [radio, broadcaster, isp, signage, feed]}
  - {name: quake, kinds: [earthquake], min_intensity: '3', adapters: [broadcaster, isp, signage, feed]}
  - {name: quake-minor, kinds: [earthquake], adapters: [feed]}
  - {name: nankai-advisory, kinds: [megaquake], actions: [issue], min_level: 3,
     adapters: [broadcaster, isp, signage, feed], scope: prefecture}
  - {name: nankai-information, kinds: [megaquake], adapters: [broadcaster, feed], scope: prefecture}
  - {name: heavy-rain, kinds: [heavy_rain], actions: [issue], adapters: [broadcaster, isp, signage, radio, feed]}
  - {name: tornado-heat, kinds: [tornado, heat], actions: [issue], adapters: [broadcaster, isp, signage, feed]}
  - {name: level-4, kinds: [special_warning, warning, landslide, flood], actions: [issue], min_level: 4,
     adapters: [broadcaster, isp, signage, radio, feed]}
  - {name: warning, kinds: [warning, flood], actions: [issue], min_level: 3,
     adapters: [broadcaster, isp, signage, feed]}
  - {name: volcano, kinds: [volcano], actions: [issue], min_level: 2, adapters: [broadcaster, isp, signage, feed]}
  - {name: lift, kinds: [special_warning, warning, landslide, flood, volcano, heavy_rain, tornado], actions: [lift],
     adapters: [broadcaster, isp, signage, feed]}
  - {name: advisory, adapters: [feed]}
"""
