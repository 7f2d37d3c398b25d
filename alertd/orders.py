"""Desk input: evacuation orders (避難情報) and shelter notices, as JSON, into alerts.

The checks here are the mis-send (誤発信) guards a desk needs: the level must
be one that exists since 2021 (3, 4, 5 — 避難勧告 is gone), every district
name must resolve inside the municipality, the status must be said out loud
(Actual, Exercise or Test — no default that could turn a drill real), and a
lift must lift something that is in force.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from alertd.errors import Conflict, InvalidInput, UnknownArea
from alertd.inforce import InForce
from alertd.json_alert import unknown_fields
from alertd.jurisdiction import Jurisdiction
from alertd.limits import MAX_SUGGESTED_NAMES, check_district_names, check_expiry
from alertd.models import (
    Alert,
    AlertState,
    Area,
    Info,
    Issuer,
    MsgType,
    Origin,
    Shelter,
    Status,
    parse_time,
    utcnow,
)
from alertd.offload import run_blocking
from alertd.store import AlertChange, Store

if TYPE_CHECKING:
    from geo.registry import Registry

LEVELS = {3: "高齢者等避難", 4: "避難指示", 5: "緊急安全確保"}
LEVELS_EN = {3: "Evacuate elderly and others", 4: "Evacuation order", 5: "Secure safety immediately"}
SEVERITY = {3: "Moderate", 4: "Severe", 5: "Extreme"}
URGENCY = {3: "Expected", 4: "Immediate", 5: "Immediate"}
ALL_NAMES = frozenset({"all", "全域", "市内全域", "町内全域", "村内全域", "区内全域"})
DESK_STATUSES = (Status.ACTUAL, Status.EXERCISE, Status.TEST)
ORDER_FIELDS = frozenset(
    {"municipality", "level", "action", "districts", "reason", "status", "shelters", "identifier", "expires"}
)
SHELTER_FIELDS = frozenset({"municipality", "shelters", "status", "identifier", "expires", "corrects"})


def _require(body: dict[str, Any], name: str, what: str) -> Any:
    if name not in body or body[name] in (None, "", []):
        raise InvalidInput(f"'{name}' is missing: {what}.", field=name)
    return body[name]


def _status(body: dict[str, Any]) -> Status:
    raw = _require(body, "status", "say whether this is Actual, Exercise (a drill) or Test")
    try:
        status = Status(raw)
    except ValueError:
        status = None  # type: ignore[assignment]
    if status not in DESK_STATUSES:
        raise InvalidInput(f"'status' must be Actual, Exercise or Test, not {raw!r}.", field="status")
    return status


def _shelters(raw: Any) -> list[Shelter]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput("'shelters' must be a list of shelters.", field="shelters")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not item.get("name"):
            raise InvalidInput(f"Shelter {i + 1} has no name.", field="shelters")
        status = item.get("status", "open")
        if status not in ("open", "closed", "full"):
            raise InvalidInput(
                f"Shelter {item['name']!r}: status must be open, closed or full.", field="shelters"
            )
        known = {k: item.get(k) for k in ("address", "capacity", "occupancy", "lat", "lon")}
        for k in ("capacity", "occupancy"):
            if known[k] is not None and (not isinstance(known[k], int) or known[k] < 0):
                raise InvalidInput(f"Shelter {item['name']!r}: {k} must be a whole number.", field="shelters")
        out.append(Shelter(name=str(item["name"]), status=status, **known))
    return out


def shelter_changes(before: list[Shelter], after: list[Shelter]) -> list[dict[str, Any]]:
    """What a correction changes, shelter by shelter, so its text can say exactly that."""
    old = {s.name: s for s in before}
    changes: list[dict[str, Any]] = []
    for shelter in after:
        was = old.pop(shelter.name, None)
        if was is None:
            changes.append({"shelter": shelter.name, "field": "added", "from": None, "to": shelter.status})
            continue
        for name in ("address", "status", "capacity", "occupancy"):
            a, b = getattr(was, name), getattr(shelter, name)
            if a != b:
                changes.append({"shelter": shelter.name, "field": name, "from": a, "to": b})
    for name in old:
        changes.append({"shelter": name, "field": "removed", "from": "open", "to": None})
    return changes


def _expires(body: dict[str, Any], default: timedelta) -> Any:
    if body.get("expires"):
        try:
            expires = parse_time(str(body["expires"]))
        except ValueError as exc:
            raise InvalidInput(
                f"'expires' is not a date and time: {body['expires']!r}.", field="expires"
            ) from exc
        check_expiry(expires)
        return expires
    return utcnow() + default


@dataclass
class Built:
    """A desk message made into an alert, with what it does to alerts in force."""

    alert: Alert
    changes: dict[str, AlertChange]
    # Per district: the level before and after (the answer and the preview show it).
    effect: list[dict[str, Any]] = field(default_factory=list)


class OrderBuilder:
    def __init__(
        self, registry: Registry, store: Store, default_expiry: timedelta, jurisdiction: Jurisdiction | None = None
    ) -> None:
        self.registry = registry
        self.store = store
        self.default_expiry = default_expiry
        self.jurisdiction = jurisdiction or Jurisdiction(registry)

    def municipality_of(self, body: dict[str, Any], issuer: Issuer) -> str:
        """The body's municipality, checked to be one and to be inside the issuer's jurisdiction."""
        return self._municipality(body, issuer)

    def _municipality(self, body: dict[str, Any], issuer: Issuer) -> str:
        raw = str(_require(body, "municipality", "give the 5-digit municipality code, e.g. 08211"))
        code = self.registry.normalize_code(raw)
        district = self.registry.get(code)
        if district.level not in ("municipality", "ward"):
            raise InvalidInput(
                f"{raw} is {district.full_name}, not a municipality: orders are issued per municipality.",
                field="municipality",
            )
        # Before any district name is looked at: an order for somebody else's town
        # is refused at once, whatever it lists.
        self.jurisdiction.check(issuer, [code])
        return code

    async def _districts(self, municipality: str, names: Any) -> list[str]:
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n.strip() for n in names)
        ):
            raise InvalidInput(
                '\'districts\' must list district names (e.g. ["三坂町"]) or be ["all"] for the whole municipality.',
                field="districts",
            )
        check_district_names(names)
        if any(n.strip().lower() in ALL_NAMES for n in names):
            return [municipality]  # the whole municipality covers any named district
        # The first look-up of a large city reads its every 町域 (over a second for
        # 横浜市): off the event loop that delivers flash warnings.
        return await run_blocking(self._resolve_names, municipality, names)

    def _resolve_names(self, municipality: str, names: list[str]) -> list[str]:
        codes: list[str] = []
        unknown: list[str] = []
        # Each unknown name with its similar names, so the desk console can say it in its own
        # language (the detail is English, for the API's callers).
        named: list[dict[str, Any]] = []
        for name in names:
            try:
                district = self.registry.resolve_name(
                    municipality, name, suggest=len(unknown) < MAX_SUGGESTED_NAMES
                )
                codes.append(district.code)
            except UnknownArea as exc:
                unknown.append(exc.detail)
                named.append({"name": name, "suggestions": list(exc.extra.get("suggestions") or [])})
        if unknown:
            shown = unknown[:MAX_SUGGESTED_NAMES]
            more = f" …and {len(unknown) - len(shown)} more unknown names." if len(unknown) > len(shown) else ""
            raise UnknownArea(" ".join(shown) + more, field="districts", unknown_count=len(unknown),
                              unknown=named[:MAX_SUGGESTED_NAMES])  # fmt: skip
        return list(dict.fromkeys(codes))

    def _base(self, body: dict[str, Any], issuer: Issuer, municipality: str) -> dict[str, Any]:
        muni = self.registry.get(municipality)
        return {
            "identifier": str(body.get("identifier") or ""),
            "sender": f"{issuer.id}@alertd",
            "sent": utcnow(),
            "status": _status(body),
            "origin": Origin.DESK,
            "issuer_id": issuer.id,
            "municipality": municipality,
            # 代行: a prefecture (or other wider authority) issuing for a municipality.
            "on_behalf_of": self.jurisdiction.on_behalf_of(issuer, municipality),
            "source": issuer.name,
            "note": f"{muni.full_name}",
        }

    async def evacuation(self, body: dict[str, Any], issuer: Issuer) -> Built:
        unknown_fields(body, ORDER_FIELDS)
        municipality = self._municipality(body, issuer)
        level = body.get("level")
        if level not in LEVELS:
            raise InvalidInput(
                f"'level' must be 3 (高齢者等避難), 4 (避難指示) or 5 (緊急安全確保), not {level!r}. "
                "避難勧告 was abolished in 2021.",
                field="level",
            )
        action = body.get("action")
        if action not in ("issue", "lift"):
            raise InvalidInput(
                f"'action' must be 'issue' (発令) or 'lift' (解除), not {action!r}.", field="action"
            )
        # A reason of only spaces says nothing: refused as missing, not sent as " ".
        reason = str(_require(body, "reason", "say why, e.g. 洪水 or 土砂災害")).strip()
        if not reason:
            raise InvalidInput("'reason' is missing: say why, e.g. 洪水 or 土砂災害.", field="reason")
        if len(reason) > 50:
            raise InvalidInput("'reason' must be a short word such as 洪水 or 土砂災害.", field="reason")
        districts = await self._districts(
            municipality, _require(body, "districts", "name the districts or ['all']")
        )
        base = self._base(body, issuer, municipality)
        in_force = InForce(self.registry, municipality,
                           await self.store.in_force(municipality, base["status"].value, self.registry,
                                                     orders_only=True))  # fmt: skip
        changes: dict[str, AlertChange] = {}
        references: list[str] = []
        msg_type = MsgType.ALERT
        remaining: list[dict[str, Any]] = []
        ended: list[dict[str, Any]] = []
        if action == "lift":
            # The same code answers the preview and the real lift (alertd/inforce.py).
            plan = in_force.plan_lift(int(level), districts)
            for alert_id in plan.ends:
                changes[alert_id] = AlertChange(state=AlertState.LIFTED, expect_rev=plan.revs[alert_id])
            for alert_id, lifted in plan.lifts.items():
                changes[alert_id] = AlertChange(lift=lifted, expect_rev=plan.revs[alert_id])
            references = plan.touched
            msg_type = MsgType.UPDATE
            effect = plan.levels
            remaining = [{"level": lvl, "districts": names} for lvl, names in plan.still_standing]
            ended = in_force.ended_by(plan)
        else:
            effect = in_force.effect_of_issue(int(level), districts)
        alert = Alert(
            **base,
            msg_type=msg_type,
            referenced_ids=references,
            kind="evacuation",
            level=int(level),
            action=action,
            reason=reason,
            districts=districts,
            shelters=_shelters(body.get("shelters")),
            remaining=remaining,
            ended=ended,
        )
        self._add_infos(alert, body)
        return Built(alert, changes, [d.as_dict() for d in effect])

    async def shelters(self, body: dict[str, Any], issuer: Issuer) -> Built:
        unknown_fields(body, SHELTER_FIELDS)
        """A shelter notice; with ``corrects`` it is a 訂正 that replaces an earlier notice
        without announcing a new evacuation."""
        municipality = self._municipality(body, issuer)
        shelters = _shelters(_require(body, "shelters", "list the shelters and whether they are open"))
        base = self._base(body, issuer, municipality)
        corrects = body.get("corrects")
        changes: dict[str, AlertChange] = {}
        msg_type = MsgType.ALERT
        refs: list[str] = []
        if corrects:
            target = await self.store.get_alert(str(corrects))
            if target is None:
                raise Conflict(f"'corrects' names alert {corrects!r}, which alertd has no record of.")
            if target.kind != "shelter":
                raise InvalidInput(
                    f"Alert {corrects} is not a shelter notice; correct it with its own kind of message.",
                    field="corrects",
                )
            refs, msg_type = [target.id], MsgType.UPDATE
            changes = {target.id: AlertChange(state=AlertState.UPDATED)}
        alert = Alert(
            **base, msg_type=msg_type, referenced_ids=refs, kind="shelter", districts=[municipality],
            shelters=shelters, corrections=shelter_changes(target.shelters, shelters) if corrects else [],
        )  # fmt: skip
        self._add_infos(alert, body)
        return Built(alert, changes, [])

    def _add_infos(self, alert: Alert, body: dict[str, Any]) -> None:
        from alertd import messages

        expires = _expires(body, self.default_expiry)
        area_desc = "、".join(self.registry.get(d).full_name for d in alert.districts)
        # The municipality's own code always, so a CAP receiver that knows only JIS X 0402
        # places the order; the districts inside it travel as JP-ALERTD-DISTRICT.
        municipality = alert.municipality or ""
        geocodes = [("JP-JISX0402", d) for d in alert.districts if ":" not in d]
        if municipality and ("JP-JISX0402", municipality) not in geocodes:
            geocodes.insert(0, ("JP-JISX0402", municipality))
        geocodes += [("JP-ALERTD-DISTRICT", d) for d in alert.districts if ":" in d]
        level = alert.level
        for lang, cap_lang in (("ja", "ja-JP"), ("en", "en-US")):
            alert.infos.append(
                Info(
                    language=cap_lang,
                    categories=["Safety"] if alert.kind == "evacuation" else ["Shelter"],
                    event=(LEVELS[level] if lang == "ja" else LEVELS_EN[level])
                    if level
                    else ("避難所情報" if lang == "ja" else "Shelter information"),
                    response_types=(["AllClear"] if alert.action == "lift" else ["Evacuate"])
                    if level
                    else ["Shelter"],
                    urgency=URGENCY.get(level or 0, "Expected") if alert.action != "lift" else "Past",
                    severity=SEVERITY.get(level or 0, "Minor") if alert.action != "lift" else "Minor",
                    certainty="Observed",
                    expires=expires,
                    sender_name=alert.source,
                    headline=messages.headline(alert, lang),
                    description=messages.body(alert, lang),
                    parameters=[],
                    areas=[Area(desc=area_desc, geocodes=geocodes)],
                )
            )
