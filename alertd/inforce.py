"""What is in force, district by district: the one model every view is drawn from.

An alert is *in force* from its acceptance until it ends. It ends, district by
district, only through

- a **lift** (解除) of its level in those districts,
- a **Cancel** (取消) or **Update** that references it,
- its **expiry**.

So an alert in force carries its original districts and the districts lifted
from it so far. A district's level is the highest level of the alerts
standing there. The API's active list, the Atom feed, the retained MQTT
state, the preview and the lift's own text are all drawn from here.

Lift rules (docs: README "Lifting an order"):

- a lift names a level and districts, and ends the orders of exactly that
  level in exactly those districts: an L4 for [若宮戸, 本石下] lifted for 本石下
  still stands for 若宮戸;
- a lift for the whole municipality (``["all"]``) ends every order of that
  level *and below* in the whole municipality (避難指示等の解除（全域）);
- a lift that would end nothing anywhere it names is refused (409), naming
  what is in force there.

Everything here is pure: no Redis, no clock but the one passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from alertd.errors import Conflict
from alertd.models import Action, Alert, AlertKind, MsgType, format_cap_time

if TYPE_CHECKING:
    from geo.registry import Registry

LEVEL_NAMES = {3: "高齢者等避難", 4: "避難指示", 5: "緊急安全確保"}


# CAP <code> of an alert that informs about something rather than being it: JMA's 津波情報
# (the heights and arrival times under a 津波警報) and observed-earthquake reports. It is
# delivered like any alert, but never stands in force: the warning it is about does (the
# VTSE41 and its 解除 decide what is in force), and a 震度 report asks nobody to do
# anything for 24 hours. Without it a 津波情報 stood on after the warning's 解除.
CODE_INFORMATION = "alertd:information"


def is_standing_kind(alert: Alert) -> bool:
    """Alerts that are themselves 'in force' once accepted (not lifts, cancels, tests or information)."""
    return (
        alert.msg_type in (MsgType.ALERT, MsgType.UPDATE)
        and alert.action != "lift"
        and CODE_INFORMATION not in alert.codes
    )


@dataclass(frozen=True)
class Standing:
    """An alert in force, with the districts lifted from it so far."""

    alert: Alert
    lifted: frozenset[str] = frozenset()
    rev: int = 0  # the alert's revision when read: a change planned from it names it

    @property
    def level(self) -> int | None:
        return self.alert.level

    @property
    def is_order(self) -> bool:
        """An evacuation order of the desk (what a desk lift can end)."""
        return self.alert.kind == AlertKind.EVACUATION and self.alert.action == Action.ISSUE

    def covers(self, registry: Registry, district: str) -> bool:
        chain = _chain(registry, district)
        return any(c in chain for c in self.alert.districts) and not any(c in chain for c in self.lifted)

    def remaining(self, registry: Registry) -> list[str]:
        """The alert's districts not (wholly) lifted; a whole-town order with some
        districts lifted still stands (``lifted`` says where it no longer does)."""
        return [d for d in self.alert.districts if not any(c in self.lifted for c in _chain(registry, d))]

    def in_force(self, registry: Registry, now: datetime | None = None) -> bool:
        expires = self.alert.expires
        if now is not None and expires is not None and expires <= now:
            return False
        return bool(self.remaining(registry))

    def summary(self, registry: Registry) -> dict[str, Any]:
        expires = self.alert.expires
        return {
            "alert_id": self.alert.id,
            "kind": self.alert.kind,
            "level": self.alert.level,
            "event": self.alert.event,
            "districts": self.remaining(registry),
            "district_names": [_name(registry, d) for d in self.remaining(registry)],
            "except": sorted(self.lifted),
            "except_names": [_name(registry, d) for d in sorted(self.lifted)],
            "expires": format_cap_time(expires) if expires else None,
            "on_behalf_of": self.alert.on_behalf_of,
        }


def _chain(registry: Registry, district: str) -> list[str]:
    try:
        return registry.ancestors(district)
    except Exception:  # an unknown code covers only itself
        return [district]


def _name(registry: Registry, code: str) -> str:
    district = registry.find(code)
    return district.name if district is not None else code


@dataclass
class DistrictLevels:
    code: str
    name: str
    before: int | None
    after: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"district": self.code, "name": self.name, "level_before": self.before, "level_after": self.after}


@dataclass
class LiftPlan:
    """What a lift would do: which orders end, which lose some districts, per-district levels."""

    level: int
    districts: list[str]
    revs: dict[str, int] = field(default_factory=dict)  # revision of each order as planned from
    ends: list[str] = field(default_factory=list)  # alert ids that end wholly
    lifts: dict[str, list[str]] = field(default_factory=dict)  # alert id -> districts lifted from it
    levels: list[DistrictLevels] = field(default_factory=list)
    # What still stands in the lift's districts afterwards: [(level, [district names])], highest first.
    still_standing: list[tuple[int, list[str]]] = field(default_factory=list)

    @property
    def touched(self) -> list[str]:
        return list(dict.fromkeys([*self.ends, *self.lifts]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ends": self.ends,
            "lifts_from": self.lifts,
            "districts": [d.as_dict() for d in self.levels],
            "still_in_force": [{"level": lvl, "districts": names} for lvl, names in self.still_standing],
        }


class InForce:
    """Alerts in force in one municipality (one status: Actual, Exercise and Test never mix)."""

    def __init__(self, registry: Registry, municipality: str, standing: list[Standing]) -> None:
        self.registry = registry
        self.municipality = municipality
        self.standing = standing

    def orders(self) -> list[Standing]:
        return [s for s in self.standing if s.is_order]

    def level_at(self, district: str, standing: list[Standing] | None = None) -> int | None:
        levels = [s.level for s in (standing or self.orders()) if s.level is not None and s.covers(self.registry, district)]
        return max(levels, default=None)

    def codes(self) -> list[str]:
        """Every district named by an order in force (or lifted from one), the whole town first."""
        out: dict[str, None] = {self.municipality: None}
        for s in self.orders():
            out.update(dict.fromkeys(s.alert.districts))
            out.update(dict.fromkeys(sorted(s.lifted)))
        return list(out)

    def effect_of_issue(self, level: int, districts: list[str]) -> list[DistrictLevels]:
        """Per district, the level before and after a new order of ``level`` there."""
        return [
            DistrictLevels(d, _name(self.registry, d), before := self.level_at(d), max(level, before or 0))
            for d in districts
        ]

    def per_district(self) -> list[dict[str, Any]]:
        rows = []
        for code in self.codes():
            standing = [s for s in self.orders() if s.covers(self.registry, code)]
            rows.append({
                "district": code,
                "name": _name(self.registry, code),
                "level": max((s.level for s in standing if s.level is not None), default=None),
                "alerts": [s.alert.id for s in standing],
            })  # fmt: skip
        return rows

    def plan_lift(self, level: int, districts: list[str]) -> LiftPlan:
        """Exactly what a lift of ``level`` for ``districts`` ends; 409 if it ends nothing it names."""
        whole = self.municipality in districts
        orders = self.orders()
        plan = LiftPlan(level=level, districts=districts, revs={s.alert.id: s.rev for s in orders})
        if whole:
            # 避難指示等の解除（全域）: that level and every level below, in the whole town.
            plan.ends = [s.alert.id for s in orders if s.level is not None and s.level <= level]
            if not plan.ends:
                raise self._nothing_to_lift(level, districts, orders)
        else:
            missing = []
            for district in districts:
                hit = [s for s in orders if s.level == level and s.covers(self.registry, district)]
                if not hit:
                    missing.append(district)
                for s in hit:
                    plan.lifts.setdefault(s.alert.id, []).append(district)
            if missing:
                raise self._nothing_to_lift(level, missing, orders)
            by_id = {s.alert.id: s for s in orders}
            for alert_id, lifted in list(plan.lifts.items()):
                after = Standing(by_id[alert_id].alert, by_id[alert_id].lifted | frozenset(lifted))
                if not after.remaining(self.registry):
                    plan.ends.append(alert_id)
                    del plan.lifts[alert_id]
        after = self._after(plan)
        shown = self.codes() if whole else districts
        plan.levels = [
            DistrictLevels(d, _name(self.registry, d), self.level_at(d), self.level_at(d, after) if after else None)
            for d in shown
        ]
        plan.still_standing = self.still_standing(after, districts)
        return plan

    def by_level(self) -> list[tuple[int, list[str]]]:
        """Every order standing, as (level, districts by name), highest first."""
        out: dict[int, list[str]] = {}
        for s in self.orders():
            if s.level is None:
                continue
            names = out.setdefault(s.level, [])
            names.extend(n for n in (_name(self.registry, d) for d in s.remaining(self.registry)) if n not in names)
        return sorted(out.items(), reverse=True)

    def ended_by(self, plan: LiftPlan) -> list[dict[str, Any]]:
        """What a lift ends, by level (highest first), with the districts where: its text names all of it."""
        by_level: dict[int, list[str]] = {}
        for s in self.orders():
            if s.level is None:
                continue
            if s.alert.id in plan.ends:
                where = s.remaining(self.registry)
            elif s.alert.id in plan.lifts:
                where = plan.lifts[s.alert.id]
            else:
                continue
            names = by_level.setdefault(s.level, [])
            names.extend(n for n in (_name(self.registry, d) for d in where) if n not in names)
        return [{"level": lvl, "districts": names} for lvl, names in sorted(by_level.items(), reverse=True)]

    def _after(self, plan: LiftPlan) -> list[Standing]:
        out = []
        for s in self.orders():
            if s.alert.id in plan.ends:
                continue
            if s.alert.id in plan.lifts:
                s = Standing(s.alert, s.lifted | frozenset(plan.lifts[s.alert.id]), s.rev)
            out.append(s)
        return out

    def still_standing(self, after: list[Standing], districts: list[str]) -> list[tuple[int, list[str]]]:
        """Per level, the lift's districts where an order of that level still stands."""
        by_level: dict[int, list[str]] = {}
        for district in districts:
            for s in after:
                if s.level is not None and s.covers(self.registry, district):
                    names = by_level.setdefault(s.level, [])
                    name = _name(self.registry, district)
                    if name not in names:
                        names.append(name)
        return sorted(by_level.items(), reverse=True)

    def _nothing_to_lift(self, level: int, districts: list[str], orders: list[Standing]) -> Conflict:
        what = [f"警戒レベル{s.level} {LEVEL_NAMES.get(s.level or 0, '')} ({self._where(s)})" for s in orders]
        places = "、".join(_name(self.registry, d) for d in districts)
        kind = f"警戒レベル{level} ({LEVEL_NAMES.get(level, '')})" + (" or below" if self.municipality in districts else "")
        in_force = "; ".join(what) if what else "nothing"
        return Conflict(
            f"There is no {kind} evacuation order in force in {places} to lift. In force in "
            f"{_name(self.registry, self.municipality)}: {in_force}. Check the level, the districts and the "
            "status (Actual/Exercise/Test). Nothing was sent.",
            in_force=[s.summary(self.registry) for s in orders],
            not_in_force=districts,
        )

    def _where(self, s: Standing) -> str:
        names = [_name(self.registry, d) for d in s.remaining(self.registry)]
        text = "、".join(names)
        if s.lifted:
            text += "（" + "、".join(_name(self.registry, d) for d in sorted(s.lifted)) + "を除く）"
        return text
