"""Intake: the chain of stages between "a message arrived" and "its fan-out is queued".

    screen → dedup → references → geocode → compose → authorize → route → approval → commit

Every ingest path (desk orders, CAP, JSON, the JMA feed, drills, the transmission
test) goes through ``Intake.accept``. Each stage reads and fills one
``IntakeContext``, refuses bad input by raising an ``alertd.errors`` problem, or ends
the chain with an answer (a repeated message gets its first answer). Nothing is
written until every check has passed, and then everything at once
(``Store.commit_alert``). The preview runs the same stages without dedup (it
shows what this message would do, never an earlier answer), approval and commit.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from alertd import logs
from alertd.errors import Conflict, Forbidden, InvalidInput, UnknownArea
from alertd.feed import FEED_SUBSCRIBER, municipalities_of, with_city_and_wards
from alertd.flashgate import ROUTINE_WAIT_S, FlashGate
from alertd.inforce import InForce
from alertd.jurisdiction import Jurisdiction
from alertd.limits import check_alert
from alertd.metrics import ALERTS_RECEIVED
from alertd.models import (
    AdapterKind,
    Alert,
    AlertKind,
    AlertState,
    Area,
    Issuer,
    MsgType,
    Origin,
    Priority,
    Status,
    parse_time,
    utcnow,
)
from alertd.offload import run_blocking
from alertd.routing import Router
from alertd.store import AlertChange, PlannedDelivery, Store, dedup_scope

if TYPE_CHECKING:
    from geo.geocoder import Geocoder
    from geo.registry import Registry

log = logs.get("alertd.intake")

# National warnings with no time to spare, and the desk's highest level.
FLASH_KINDS = frozenset({AlertKind.EEW, AlertKind.TSUNAMI, AlertKind.MISSILE, AlertKind.SPECIAL_WARNING,
                         AlertKind.NATIONAL})  # fmt: skip
# What only the state (J-Alert) or JMA announces: a town's desk relays it, never originates it.
NATIONAL_KINDS = frozenset({AlertKind.EEW, AlertKind.TSUNAMI, AlertKind.MISSILE, AlertKind.NATIONAL})


def inherit_from(alert: Alert, referenced: list[Alert]) -> None:
    """A Cancel or Update that does not say what it is about is about what it references:
    its kind, its reason, its municipality (for the call sign), its level when none is given."""
    first = referenced[0]
    if alert.kind in (None, "", "warning") and first.kind:
        alert.kind = first.kind
    alert.reason = alert.reason or first.reason
    alert.municipality = alert.municipality or first.municipality
    alert.on_behalf_of = alert.on_behalf_of or first.on_behalf_of
    if alert.msg_type is MsgType.CANCEL:
        if not alert.shelters and first.kind == "shelter":
            # What is cancelled is named by its shelters: a 満員 notice is 「避難所の満員」, not 「避難所開設」.
            alert.shelters = list(first.shelters)
        for info in alert.infos:  # "取消" alone says nothing: it is the 取消 of that event
            ref = first.info_for(info.language)
            if ref is not None and info.event in ("", "取消"):
                info.event = ref.event


def new_alert_id() -> str:
    """Sortable by acceptance time, unguessable beyond it."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(5)}"


def adapters_from_codes(codes: list[str]) -> list[str] | None:
    """A national source's CAP <code>alertd:adapters=radio,broadcaster</code> (the JMA
    policy's decision, carried through CAP) limits which adapter kinds get it."""
    for code in codes:
        if code.startswith("alertd:adapters="):
            return [a for a in code.split("=", 1)[1].split(",") if a]
    return None


def priority_for(alert: Alert) -> Priority:
    if alert.kind in FLASH_KINDS or (alert.level is not None and alert.level >= 5):
        return Priority.FLASH
    return Priority.ROUTINE


def is_flash(alert: Alert) -> bool:
    """Whether the alert goes on the flash lane, known before its route is planned (the
    JMA policy may have chosen it already)."""
    return alert.priority is Priority.FLASH or priority_for(alert) is Priority.FLASH


@dataclass
class IntakeContext:
    """One message on its way through the chain, and what the stages learned about it."""

    alert: Alert
    issuer: Issuer | None  # None: a trusted internal source (the JMA poller)
    changes: dict[str, AlertChange]  # referenced alert id -> what this message does to it
    fingerprint: str = ""  # the content's, to tell a repeat from a reused identifier
    extra: dict[str, Any] | None = None  # added to the answer
    preview: bool = False
    referenced: list[Alert] = field(default_factory=list)
    plan: list[PlannedDelivery] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    created: bool = False
    hold: Hold | None = None  # how to keep it for approval; None: never held (internal sources)


class Hold(Protocol):
    """Keeps a message for a second person's approval (the HTTP API's drafts, alertd.drafts)."""

    # True when this run is the approval itself: the chain goes on to the commit.
    approved: bool

    async def draft(self, ctx: IntakeContext) -> dict[str, Any]:
        """Store the draft and return the caller's answer; nothing is committed."""
        ...


class IntakeStage(Protocol):
    name: str

    async def __call__(self, ctx: IntakeContext) -> bool:
        """True when the chain ends here with ``ctx.answer``; raises to refuse the message."""
        ...


class Screen:
    """The cheap checks before anything that costs: size and shape limits, that the issuer
    may use this sender, and that a town's desk does not originate what only the state or
    JMA announces. A hostile message is refused before it can hold the event loop, and
    before dedup could hand anyone an earlier answer."""

    name = "screen"

    def __init__(self, jurisdiction: Jurisdiction) -> None:
        self.jurisdiction = jurisdiction

    async def __call__(self, ctx: IntakeContext) -> bool:
        alert, issuer = ctx.alert, ctx.issuer
        check_alert(alert, national=issuer is None or issuer.national)
        if issuer is not None:
            self.jurisdiction.check_sender(issuer, alert.sender)
            if not issuer.national and (alert.kind or "").lower() in NATIONAL_KINDS:
                raise Forbidden(
                    f"{issuer.name} may not send a '{alert.kind}' alert: earthquake early warnings, tsunami "
                    "warnings and missile alerts come from national issuers only (they take the flash lane "
                    "to every loudspeaker). Nothing was sent.",
                    field="kind",
                )
        alert.issuer_id = issuer.id if issuer is not None else alert.issuer_id
        return False


class Dedup:
    """A repeat of a message this issuer already sent (same sender and identifier, same
    content) gets the first answer and changes nothing; the identifier reused for a
    different message is a 409, never a silently swallowed order. Read once here; the
    commit keeps its own guard for two requests racing past this stage."""

    name = "dedup"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def __call__(self, ctx: IntakeContext) -> bool:
        alert = ctx.alert
        earlier = await self.store.earlier_message(dedup_scope(alert.issuer_id), alert.sender, alert.identifier)
        if earlier is None:
            return False
        previous, stored = earlier
        if ctx.fingerprint and stored and stored != ctx.fingerprint:
            raise Conflict(
                f"The identifier {alert.identifier!r} was already used for a different message "
                f"(alert {previous.get('id')}). Nothing was sent. Use a new identifier for a new message.",
                field="identifier",
                existing_alert=previous.get("id"),
            )
        ctx.answer, ctx.created = previous, False
        return True


class References:
    """What this message updates, cancels or lifts: every reference must name an alert
    alertd has and this issuer may change. An Update or Cancel with no exact changes
    ends what it references; it inherits what it does not say (kind, reason, town,
    event) from it; a Cancel of evacuation orders says which still stand."""

    name = "references"

    def __init__(self, store: Store, registry: Registry, jurisdiction: Jurisdiction) -> None:
        self.store = store
        self.registry = registry
        self.jurisdiction = jurisdiction

    async def __call__(self, ctx: IntakeContext) -> bool:
        alert, issuer = ctx.alert, ctx.issuer
        referenced = ctx.referenced = await self._resolve(alert, issuer)
        if issuer is not None:
            for ref in referenced:
                self.jurisdiction.check_may_change(issuer, ref)
        crossed = [t for t in referenced if t.status is not alert.status]
        if crossed:
            # A drill must never change a real alert, nor a real message a drill: an
            # Exercise lift of an Actual 警戒 would silence the real warning.
            raise Conflict(
                f"This {alert.status.value} message references "
                + ", ".join(f"{t.id} ({t.status.value})" for t in crossed)
                + f"; a message may only change alerts of its own status ({alert.status.value}). "
                "Nothing was sent.",
                cross_status_references=[t.id for t in crossed],
            )
        if alert.msg_type in (MsgType.UPDATE, MsgType.CANCEL) and not ctx.changes:
            # A desk lift arrives with its exact changes (alertd/inforce.py); any other
            # Update replaces what it references, a lift ends it, a Cancel withdraws it.
            state = (
                AlertState.CANCELLED if alert.msg_type is MsgType.CANCEL
                else AlertState.LIFTED if alert.action == "lift" else AlertState.UPDATED
            )  # fmt: skip
            for ref in referenced:
                ctx.changes[ref.id] = AlertChange(state=state)
        alert.referenced_ids = list(dict.fromkeys([*alert.referenced_ids, *(r.id for r in referenced)]))
        # Every Update, Cancel, lift and correction says in CAP what it changes, as
        # sender,identifier,sent triples a CAP receiver can act on.
        alert.references = list(dict.fromkeys([*alert.references, *(r.reference_key() for r in referenced)]))
        if referenced and alert.msg_type in (MsgType.UPDATE, MsgType.CANCEL):
            inherit_from(alert, referenced)
        if alert.msg_type is MsgType.CANCEL and referenced and not alert.remaining:
            alert.remaining = await self._left_standing(alert, referenced)
        return False

    async def _resolve(self, alert: Alert, issuer: Issuer | None) -> list[Alert]:
        found: list[Alert] = []
        missing: list[str] = []
        for ref in alert.referenced_ids:
            target = await self.store.get_alert(ref)
            (found.append(target) if target else missing.append(ref))
        for ref in alert.references:
            parts = [p.strip() for p in ref.split(",")]
            if len(parts) < 2:
                missing.append(ref)
                continue
            target = await self._by_reference(parts[0], parts[1], parts[2] if len(parts) > 2 else None, issuer)
            (found.append(target) if target else missing.append(ref))
        if missing:
            raise Conflict(
                "This message updates or cancels an alert alertd has no record of: "
                + "; ".join(missing)
                + ". Check the reference (sender,identifier,sent) or the alert id.",
                unknown_references=missing,
            )
        if alert.msg_type in (MsgType.UPDATE, MsgType.CANCEL) and not found and alert.action != "lift":
            raise InvalidInput(
                f"A {alert.msg_type.value} must reference the alert it changes; this one references none."
            )
        return found

    async def _by_reference(
        self, sender: str, identifier: str, sent: str | None, issuer: Issuer | None
    ) -> Alert | None:
        """The one alert a CAP reference (sender,identifier,sent) names.

        Only alerts this issuer may change are candidates: its own, or those
        inside its jurisdiction (a trusted internal source sees its own only),
        so nobody can plant an alert that a real reference then resolves to.
        Two candidates left is a 409, never a guess.
        """
        ids = await self.store.referenced(sender, identifier)
        candidates = [a for a in [await self.store.get_alert(i) for i in ids] if a is not None]
        if sent is not None:
            try:
                when = parse_time(sent)
            except ValueError:
                return None
            candidates = [a for a in candidates if a.sent.replace(microsecond=0) == when.replace(microsecond=0)]
        if issuer is None:
            candidates = [a for a in candidates if a.issuer_id is None]
        else:
            anywhere = candidates
            candidates = [
                a for a in candidates if a.issuer_id == issuer.id or self.jurisdiction.may_change(issuer, a)
            ]
            if anywhere and not candidates:
                # Said as plainly as for a reference by alertd id: it exists, but it is not yours.
                self.jurisdiction.check_may_change(issuer, anywhere[-1])
        if len(candidates) > 1:
            raise Conflict(
                f"The reference {sender},{identifier},{sent or '?'} matches {len(candidates)} alerts "
                f"({', '.join(a.id for a in candidates)}); alertd will not guess which one you mean. "
                "Reference it by its alertd id instead. Nothing was sent.",
                ambiguous_reference=f"{sender},{identifier},{sent or ''}",
                candidates=[a.id for a in candidates],
            )
        return candidates[0] if candidates else None

    async def _left_standing(self, cancel: Alert, referenced: list[Alert]) -> list[dict[str, Any]]:
        """What still stands, by level, where a Cancel withdraws evacuation orders: its text says so."""
        muni = cancel.municipality or next((r.municipality for r in referenced if r.municipality), None)
        if muni is None or not any(r.kind == AlertKind.EVACUATION for r in referenced):
            return []
        gone = {r.id for r in referenced}
        standing = [s for s in await self.store.in_force(muni, cancel.status.value, self.registry, orders_only=True)
                    if s.alert.id not in gone]  # fmt: skip
        model = InForce(self.registry, muni, standing)
        # Everywhere in the town, not only where the cancelled order was: a resident told
        # "the 避難指示 is cancelled" must also hear which ones still stand.
        return [{"level": lvl, "districts": names} for lvl, names in model.by_level()]


class Geocode:
    """Where the message applies, as district codes: the codes it gives (in the forms peers
    send), else its areas geocoded, else — a Cancel names no area — where what it cancels
    went. Refused here: an alert already expired, one with no area alertd can resolve,
    and codes alertd does not know."""

    name = "geocode"

    def __init__(self, registry: Registry, geocoder: Geocoder) -> None:
        self.registry = registry
        self.geocoder = geocoder

    async def __call__(self, ctx: IntakeContext) -> bool:
        alert, referenced = ctx.alert, ctx.referenced
        alert.districts = self._normalize(alert.districts) if alert.districts else await self._geocode(alert)
        if not alert.districts and referenced:
            # A Cancel usually names no area: it goes where the alerts it cancels went.
            alert.districts = list(dict.fromkeys(d for r in referenced for d in r.districts))
        if alert.level is None and referenced and alert.msg_type is MsgType.CANCEL:
            alert.level = max((r.level for r in referenced if r.level is not None), default=None)
        expires = alert.expires
        if expires is not None and expires <= utcnow():
            raise InvalidInput(
                f"This alert expired at {expires.isoformat()}; nothing was sent. Check the expiry time.",
                field="expires",
            )
        if not alert.districts:
            raise InvalidInput(
                "The message names no area alertd can resolve: give municipality codes, "
                "JMA area codes, district names, a polygon or a circle."
            )
        unknown = [d for d in alert.districts if self.registry.find(d) is None]
        if unknown:
            raise UnknownArea(
                f"alertd does not know these area codes: {', '.join(unknown[:50])}.", unknown_districts=unknown[:50]
            )
        return False

    def _normalize(self, codes: list[str]) -> list[str]:
        """Accept the forms peers send: 6-digit codes with check digit, JMA 7-digit area codes."""
        out: dict[str, None] = {}
        for code in codes:
            if code.isdigit() and len(code) == 7:
                out.update(dict.fromkeys(self.registry.jma_area(code)))
            elif code.isdigit() and len(code) == 6:
                out[self.registry.normalize_code(code)] = None
            else:
                out[code] = None
        return list(out)

    async def _geocode(self, alert: Alert) -> list[str]:
        # The same area appears once per language block; resolve each once.
        areas = list(
            {(a.desc, tuple(a.polygons), tuple(a.circles), tuple(a.geocodes)): a
             for info in alert.infos for a in info.areas}.values()
        )  # fmt: skip
        if any(a.polygons or a.circles for a in areas) or sum(len(a.geocodes) for a in areas) > 100:
            # Shapes, and long lists of codes, cost real CPU: off the event loop that
            # delivers flash warnings.
            return await run_blocking(self._geocode_areas, areas)
        return self._geocode_areas(areas)

    def _geocode_areas(self, areas: list[Area]) -> list[str]:
        codes: dict[str, None] = {}
        for area in areas:
            for match in self.geocoder.area(area):
                codes[match.code] = None
        return list(codes)


class Compose:
    """What a CAP receiver shows: info blocks with no area get one naming the districts by
    place name, and blocks that came without words (a JSON Cancel, say) get alertd's own,
    so no receiver shows an empty headline."""

    name = "compose"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def __call__(self, ctx: IntakeContext) -> bool:
        self._name_areas(ctx.alert)
        self._fill_texts(ctx.alert)
        return False

    def _name_areas(self, alert: Alert) -> None:
        from alertd.cap import district_geocode

        bare = [info for info in alert.infos if not info.areas]
        if not bare:
            return
        names = "、".join(self.registry.get(d).full_name for d in alert.districts[:50])
        if len(alert.districts) > 50:
            names += f" ほか{len(alert.districts) - 50}"
        geocodes = list(dict.fromkeys(district_geocode(d) for d in alert.districts))
        for info in bare:
            info.areas = [Area(desc=names, geocodes=geocodes)]

    @staticmethod
    def _fill_texts(alert: Alert) -> None:
        from alertd import messages

        for info in alert.infos:
            lang = info.language.split("-")[0]
            if not info.headline:
                info.headline = messages.headline(alert, lang)
            if not info.description:
                info.description = messages.body(alert, lang)
            elif alert.status is not Status.ACTUAL:
                info.description = messages.with_status_sentence(info.description, alert.status, lang)
            # A drill or a test says so first in every title, CAP and Atom included, whoever
            # wrote the headline: a national drill's 「大津波警報」 must never look real.
            marker = messages.status_marker(alert.status, lang)
            if marker and not info.headline.startswith(marker.strip()):
                info.headline = f"{marker}{info.headline}"


class Authorize:
    """The issuer may alert these districts (its jurisdiction), and the alert carries who
    issued it (desk orders derive their own identity in orders.py). A trusted internal
    source passes."""

    name = "authorize"

    def __init__(self, jurisdiction: Jurisdiction) -> None:
        self.jurisdiction = jurisdiction

    async def __call__(self, ctx: IntakeContext) -> bool:
        alert, issuer = ctx.alert, ctx.issuer
        if issuer is not None:
            self.jurisdiction.check(issuer, alert.districts)
            if alert.origin != Origin.DESK:
                self.jurisdiction.stamp_identity(alert, issuer)
        return False


class Route:
    """Who gets it and in which lane: the alert gets its id, time and lane (flash for
    national warnings and level 5), every info block an expiry, and the router plans
    one delivery per matching subscriber. A lift, cancel or update also reaches whoever
    got what it changes, whatever their min_level — but only where this alert speaks.
    The answer the caller gets is settled here."""

    name = "route"

    def __init__(self, store: Store, router: Router, default_expiry: timedelta) -> None:
        self.store = store
        self.router = router
        self.default_expiry = default_expiry

    async def __call__(self, ctx: IntakeContext) -> bool:
        alert, issuer = ctx.alert, ctx.issuer
        alert.id = "" if ctx.preview else new_alert_id()
        alert.accepted_at = utcnow()
        if alert.origin != Origin.JMA:  # the JMA policy has already chosen the lane
            alert.priority = priority_for(alert) if alert.priority is Priority.ROUTINE else alert.priority
        if alert.adapters is None and (issuer is None or issuer.national):
            alert.adapters = adapters_from_codes(alert.codes)
        for info in alert.infos:
            if info.expires is None:
                info.expires = alert.sent + self.default_expiry
        plan = ctx.plan = await self.router.plan(alert)
        if ctx.referenced:
            # A portal showing an order must see it end.
            await self._add_earlier_recipients(alert, plan, [r.id for r in ctx.referenced])
        ctx.answer = {
            "id": alert.id,
            "districts": alert.districts,
            "deliveries": sum(1 for p in plan if p.adapter != AdapterKind.FEED),
            "priority": alert.priority.value,
            "status": alert.status.value,
            "msg_type": alert.msg_type.value,
            **(ctx.extra or {}),
        }
        return False

    async def _add_earlier_recipients(
        self, alert: Alert, plan: list[PlannedDelivery], referenced: list[str]
    ) -> None:
        """Whoever got what this alert changes hears it too, whatever its min_level — but only
        where this alert speaks: a lift of 本石下 is not for the signage at 若宮戸, and an update
        for 千葉's coast is not for 日立's loudspeakers."""
        planned = {p.subscriber_id for p in plan}
        here = {s.id for s in self.router.matches(alert, ignore_min_level=True)}
        for sub_id, adapter in await self.store.plan_of(referenced):
            if sub_id in planned:
                continue
            if sub_id in here or (sub_id == FEED_SUBSCRIBER and self.router.feed):
                plan.append(PlannedDelivery(sub_id, adapter))
                planned.add(sub_id)


def needs_approval(alert: Alert, issuer: Issuer | None) -> bool:
    """The issuer's two-person rule covers this message: one of its statuses, at its minimum
    level or above (a lift or cancel has the level of what it ends). National warnings and
    national issuers are never held: an earthquake early warning cannot wait for a second person."""
    policy = issuer.approval if issuer is not None else None
    if not policy or issuer is None or issuer.national or (alert.kind or "").lower() in NATIONAL_KINDS:
        return False
    level = alert.level
    return alert.status.value in policy.get("status", ()) and level is not None and level >= policy["min_level"]


class Approval:
    """Where the issuer's two-person rule holds a message, it stops here as a draft, fully
    checked and routed but not committed: nothing is queued, published or delivered until
    another person approves it, and the approval runs the whole chain again. Whoever
    sends — a person or a machine's issuer token — an order the rule covers waits."""

    name = "approval"

    async def __call__(self, ctx: IntakeContext) -> bool:
        if ctx.hold is None or ctx.hold.approved or not needs_approval(ctx.alert, ctx.issuer):
            return False
        ctx.answer, ctx.created = await ctx.hold.draft(ctx), False
        return True


class Commit:
    """Writes the alert, its log entry, its fan-out and what it changes in one transaction
    (``Store.commit_alert``). Its own guard against a concurrent twin: when another request
    with this sender and identifier committed first, that one's answer comes back."""

    name = "commit"

    def __init__(self, store: Store, dirty_states: Callable[[Alert, list[Alert]], list[str]]) -> None:
        self.store = store
        self.dirty_states = dirty_states

    async def __call__(self, ctx: IntakeContext) -> bool:
        alert, issuer, plan = ctx.alert, ctx.issuer, ctx.plan
        assert ctx.answer is not None
        ctx.answer, ctx.created = await self.store.commit_alert(
            alert, plan, ctx.answer, ctx.changes, fingerprint=ctx.fingerprint,
            dirty=self.dirty_states(alert, ctx.referenced),
        )  # fmt: skip
        if ctx.created:
            ALERTS_RECEIVED.labels(source=alert.origin, status=alert.status.value).inc()
            log.info(
                "alert.accepted", alert_id=alert.id, sender=alert.sender, identifier=alert.identifier,
                issuer_id=issuer.id if issuer else None, msg_type=alert.msg_type.value,
                status=alert.status.value, priority=alert.priority.value, districts=len(alert.districts),
                deliveries=len(plan), references=alert.referenced_ids,
            )  # fmt: skip
        return True


class Intake:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        geocoder: Geocoder,
        router: Router,
        *,
        default_expiry: timedelta = timedelta(hours=24),
        jurisdiction: Jurisdiction | None = None,
        flash_gate: FlashGate | None = None,
    ) -> None:
        self.store = store
        # A flash alert's intake counts as flash work in flight; a routine one steps aside
        # for flash work between its stages (alertd.flashgate).
        self.flash_gate = flash_gate or FlashGate()
        self.registry = registry
        self.geocoder = geocoder
        self.router = router
        self.default_expiry = default_expiry
        self.jurisdiction = jurisdiction or Jurisdiction(registry)
        self.screen = Screen(self.jurisdiction)
        self.dedup = Dedup(store)
        self.references = References(store, registry, self.jurisdiction)
        self.geocode = Geocode(registry, geocoder)
        self.compose = Compose(registry)
        self.authorize = Authorize(self.jurisdiction)
        self.route = Route(store, router, default_expiry)
        self.approval = Approval()
        self.commit = Commit(store, self.dirty_states)
        self.chain: tuple[IntakeStage, ...] = (self.screen, self.dedup, self.references, self.geocode, self.compose,
                                               self.authorize, self.route, self.approval, self.commit)  # fmt: skip
        # The preview shows what this message would do: never an earlier answer, never a write.
        self.preview_chain: tuple[IntakeStage, ...] = tuple(
            s for s in self.chain if s not in (self.dedup, self.approval, self.commit)
        )

    async def accept(
        self,
        alert: Alert,
        issuer: Issuer | None,
        *,
        changes: dict[str, AlertChange] | None = None,
        fingerprint: str = "",
        extra: dict[str, Any] | None = None,
        dry_run: bool = False,
        hold: Hold | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Accept an alert into the durable log; returns (answer, newly created).

        ``issuer`` None means a trusted internal source (the JMA poller).
        ``dry_run`` is the preview: every stage but dedup, approval and commit runs, nothing
        is written, and the answer names what the message references. ``hold`` keeps a
        message the issuer's two-person rule covers as a draft (its answer comes back).
        """
        ctx = IntakeContext(alert, issuer, dict(changes or {}), fingerprint, extra, preview=dry_run, hold=hold)
        if dry_run:
            await self._run(self.preview_chain, ctx)
        elif is_flash(alert):
            self.flash_gate.enter()
            try:
                await self._run(self.chain, ctx)
            finally:
                if ctx.created:
                    self.flash_gate.leave_soon()  # handed to its deliveries
                else:
                    self.flash_gate.leave()
        elif issuer is None:
            # An internal source (the JMA poller, the spool) takes its telegrams one at a
            # time: a routine one stepping aside would hold up a flash one queued behind it.
            await self._run(self.chain, ctx)
        else:
            await self._run(self.chain, ctx, step_aside_until=time.monotonic() + ROUTINE_WAIT_S)
        assert ctx.answer is not None
        if dry_run:
            # The preview names who it would reach (the desk reads receivers by name, not a count).
            receivers = [p.subscriber_id for p in ctx.plan if p.adapter != AdapterKind.FEED]
            return {**ctx.answer, "id": None, "references": alert.referenced_ids, "subscribers": receivers}, False
        return ctx.answer, ctx.created

    async def _run(
        self, chain: tuple[IntakeStage, ...], ctx: IntakeContext, step_aside_until: float | None = None
    ) -> None:
        for stage in chain:
            # Asked again at each stage: an update or cancel of a flash alert becomes one only
            # once its references are read (it inherits their kind and level).
            if step_aside_until is not None and not is_flash(ctx.alert):
                await self.flash_gate.step_aside(step_aside_until)
            if await stage(ctx):
                return

    def dirty_states(self, alert: Alert, referenced: list[Alert]) -> list[str]:
        """The retained states ("<status>|<municipality>") an alert changes: its own towns
        and those of every alert it lifts, cancels or replaces, with the designated city of
        a ward and the wards of a city (feed.with_city_and_wards). Tests have no state."""
        if alert.status not in (Status.ACTUAL, Status.EXERCISE):
            return []
        munis: dict[str, None] = {}
        for a in (alert, *referenced):
            munis.update(dict.fromkeys(municipalities_of(self.registry, a)))
        return [f"{alert.status.value}|{m}" for m in with_city_and_wards(self.registry, list(munis))]
