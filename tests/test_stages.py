"""Each stage of the intake and delivery chains on its own, against a real Redis.

The end-to-end tests show the chains' outcomes through the API; these pin down what
each stage decides, so a stage moved, merged or reordered shows up by name.
"""

from __future__ import annotations

import ast
import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import adapters
from adapters.base import PermanentError, RetryableError
from alertd.delivery import Job
from alertd.engine import Engine
from alertd.errors import Conflict, Forbidden, InvalidInput, OutsideJurisdiction, UnknownArea
from alertd.feed import FEED_SUBSCRIBER
from alertd.intake import IntakeContext
from alertd.json_alert import parse_json_alert
from alertd.models import (
    AdapterKind,
    Alert,
    AlertState,
    DeliveryState,
    Issuer,
    MsgType,
    Priority,
    Subscriber,
    utcnow,
)
from alertd.store import AlertChange, PlannedDelivery, token_hash
from alertd.worker import Worker
from tests.conftest import Sink, make_settings, wipe
from tests.support import ROOT

DESK = Issuer(id="joso", name="常総市 desk", token_hash=token_hash("t-joso"), jurisdiction=["08211"])
OTHER = Issuer(id="tsukuba", name="つくば市 desk", token_hash=token_hash("t-tsukuba"), jurisdiction=["08220"])


def warning(issuer: Issuer, **body: Any) -> Alert:
    body = {"status": "Exercise", "event": "大雨警報", "districts": ["08211"],
            "identifier": f"w-{secrets.token_hex(4)}", **body}  # fmt: skip
    return parse_json_alert(body, f"{issuer.id}@alertd")


def ctx_for(alert: Alert, issuer: Issuer | None, **kw: Any) -> IntakeContext:
    return IntakeContext(alert, issuer, {}, **kw)


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[Engine]:
    """Intake and store on a random prefix; no delivery workers, no JMA poller."""
    eng = Engine(make_settings(), workers=False, ingest=False)
    await eng.start()
    for issuer in (DESK, OTHER):
        await eng.store.put_issuer(issuer)
    try:
        yield eng
    finally:
        await eng.stop()
        await wipe(eng.settings.key_prefix)


# --- intake -----------------------------------------------------------------------
async def test_screen_refuses_a_town_desk_originating_a_missile_alert(engine: Engine) -> None:
    ctx = ctx_for(warning(DESK, kind="missile", level=5), DESK)
    with pytest.raises(Forbidden, match="national issuers only"):
        await engine.intake.screen(ctx)


async def test_screen_stamps_the_issuer_and_passes_a_desk_warning(engine: Engine) -> None:
    ctx = ctx_for(warning(DESK), DESK)
    assert await engine.intake.screen(ctx) is False
    assert ctx.alert.issuer_id == "joso"


async def test_dedup_answers_a_repeat_with_the_first_answer_and_refuses_a_reused_identifier(
    engine: Engine,
) -> None:
    first = warning(DESK)
    identifier = first.identifier
    answer, created = await engine.intake.accept(first, DESK, fingerprint="content-a")
    assert created

    repeat = ctx_for(warning(DESK, identifier=identifier), DESK, fingerprint="content-a")
    repeat.alert.issuer_id = DESK.id
    assert await engine.intake.dedup(repeat) is True
    assert repeat.answer == answer and repeat.created is False

    reused = ctx_for(warning(DESK, identifier=identifier), DESK, fingerprint="content-b")
    reused.alert.issuer_id = DESK.id
    with pytest.raises(Conflict, match="already used for a different message"):
        await engine.intake.dedup(reused)

    # Another issuer's identical sender and identifier is not this issuer's repeat.
    elsewhere = ctx_for(warning(DESK, identifier=identifier), OTHER)
    elsewhere.alert.issuer_id = OTHER.id
    assert await engine.intake.dedup(elsewhere) is False


async def test_references_end_what_an_update_names_and_inherit_its_kind(engine: Engine) -> None:
    original, _ = await engine.intake.accept(warning(DESK, kind="flood", level=3), DESK)
    update = warning(DESK, msg_type="Update", references=[original["id"]])
    update.kind = None
    ctx = ctx_for(update, DESK)
    assert await engine.intake.references(ctx) is False
    assert [r.id for r in ctx.referenced] == [original["id"]]
    assert ctx.changes[original["id"]].state == AlertState.UPDATED
    assert update.kind == "flood"
    assert update.references and update.references[0].startswith("joso@alertd,")


async def test_references_refuse_an_unknown_alert_and_anothers_alert(engine: Engine) -> None:
    with pytest.raises(Conflict, match="no record of"):
        await engine.intake.references(ctx_for(warning(DESK, msg_type="Cancel", references=["nope"]), DESK))
    theirs, _ = await engine.intake.accept(warning(OTHER, districts=["08220"]), OTHER)
    with pytest.raises(OutsideJurisdiction, match="may not update or cancel"):
        await engine.intake.references(ctx_for(warning(DESK, msg_type="Cancel", references=[theirs["id"]]), DESK))


async def test_geocode_resolves_codes_and_a_cancel_goes_where_its_alert_went(engine: Engine) -> None:
    ctx = ctx_for(warning(DESK, districts=["082112"]), DESK)  # with its check digit
    await engine.intake.geocode(ctx)
    assert ctx.alert.districts == ["08211"]

    original, _ = await engine.intake.accept(warning(DESK, level=4), DESK)
    cancel = warning(DESK, msg_type="Cancel", districts=[], references=[original["id"]])
    ctx = ctx_for(cancel, DESK)
    await engine.intake.references(ctx)
    await engine.intake.geocode(ctx)
    assert cancel.districts == original["districts"]
    assert cancel.level == 4


async def test_geocode_refuses_unknown_codes_and_an_expired_alert(engine: Engine) -> None:
    with pytest.raises(UnknownArea, match="99999"):
        await engine.intake.geocode(ctx_for(warning(DESK, districts=["99999"]), DESK))
    expired = warning(DESK)
    expired.infos[0].expires = utcnow() - timedelta(minutes=1)
    with pytest.raises(InvalidInput, match="expired"):
        await engine.intake.geocode(ctx_for(expired, DESK))


async def test_compose_names_bare_areas_and_words_a_silent_block(engine: Engine) -> None:
    alert = warning(DESK)
    assert all(not info.areas for info in alert.infos) and not alert.infos[0].headline
    await engine.intake.compose(ctx_for(alert, DESK))
    assert all(info.headline for info in alert.infos)
    assert "常総市" in alert.infos[0].areas[0].desc


async def test_authorize_refuses_districts_outside_the_jurisdiction(engine: Engine) -> None:
    ctx = ctx_for(warning(DESK, districts=["08220"]), DESK)
    await engine.intake.geocode(ctx)
    with pytest.raises(OutsideJurisdiction, match="outside your jurisdiction"):
        await engine.intake.authorize(ctx)


async def test_route_reaches_earlier_recipients_only_where_the_alert_speaks(engine: Engine) -> None:
    store = engine.store
    here = Subscriber("here", AdapterKind.SIGNAGE, "http://127.0.0.1:9/a", ["08211"], min_level=5, drills=True)
    there = Subscriber("there", AdapterKind.SIGNAGE, "http://127.0.0.1:9/b", ["08220"], min_level=5, drills=True)
    await store.put_subscribers([here, there])
    # What the lift references went to both (a wide alert, say).
    earlier = warning(DESK, level=5)
    earlier.id, earlier.accepted_at, earlier.districts = "earlier-1", utcnow(), ["08211", "08220"]
    await store.commit_alert(earlier, [PlannedDelivery("here", "signage"), PlannedDelivery("there", "signage")],
                             {"id": "earlier-1"}, {})  # fmt: skip
    lift = warning(DESK, level=3)
    ctx = ctx_for(lift, DESK)
    ctx.referenced = [earlier]
    lift.districts = ["08211"]
    assert await engine.intake.route(ctx) is False
    planned = {p.subscriber_id for p in ctx.plan}
    assert "here" in planned  # below its min_level, but it showed what this changes
    assert "there" not in planned  # this lift does not speak where "there" is
    assert ctx.answer is not None and ctx.answer["deliveries"] == 1 and ctx.answer["id"] == lift.id


async def test_route_gives_a_flash_lane_to_level_5(engine: Engine) -> None:
    ctx = ctx_for(warning(DESK, level=5), DESK)
    ctx.alert.districts = ["08211"]
    await engine.intake.route(ctx)
    assert ctx.alert.priority is Priority.FLASH and ctx.alert.id


class RecordingHold:
    """Stands in for the API's drafts: says when the approval stage would keep a message."""

    def __init__(self, approved: bool = False) -> None:
        self.approved = approved
        self.held: list[Alert] = []

    async def draft(self, ctx: IntakeContext) -> dict[str, Any]:
        self.held.append(ctx.alert)
        return {"id": "d1", "state": "awaiting_approval", "deliveries": 0}


async def test_approval_holds_what_the_issuers_rule_covers_and_never_a_national_warning(engine: Engine) -> None:
    ruled = Issuer(id="joso", name="常総市 desk", token_hash=token_hash("t-joso"), jurisdiction=["08211"],
                   approval={"status": ["Actual"], "min_level": 4})  # fmt: skip
    national = Issuer(id="jma", name="JMA", token_hash=token_hash("t-jma"), jurisdiction=[], national=True,
                      approval={"status": ["Actual"], "min_level": 4})  # fmt: skip
    cases = [
        (ruled, warning(ruled, status="Actual", level=4), True),
        (ruled, warning(ruled, status="Actual", level=5), True),
        (ruled, warning(ruled, status="Actual", level=3), False),  # below min_level
        (ruled, warning(ruled, status="Exercise", level=5), False),  # a status the rule does not name
        (ruled, warning(ruled, status="Actual"), False),  # no level: nothing to weigh
        (national, warning(national, status="Actual", level=5, kind="eew"), False),  # never held
        (ruled, warning(ruled, status="Actual", level=5, kind="tsunami"), False),
        (DESK, warning(DESK, status="Actual", level=5), False),  # no rule, as before
    ]
    for issuer, alert, held in cases:
        hold = RecordingHold()
        ctx = ctx_for(alert, issuer, hold=hold)
        ctx.answer = {"id": "a", "deliveries": 1}
        assert await engine.intake.approval(ctx) is held, (alert.status, alert.level, alert.kind, issuer.id)
        assert bool(hold.held) is held
        if held:
            assert ctx.answer == {"id": "d1", "state": "awaiting_approval", "deliveries": 0} and not ctx.created
    # The approval itself, and internal sources (no hold), go on to the commit.
    for hold in (RecordingHold(approved=True), None):
        ctx = ctx_for(warning(ruled, status="Actual", level=4), ruled, hold=hold)
        assert await engine.intake.approval(ctx) is False
    # Through the whole chain: nothing is written while it waits.
    hold = RecordingHold()
    answer, created = await engine.intake.accept(warning(ruled, status="Actual", level=4), ruled, hold=hold)
    assert answer["state"] == "awaiting_approval" and not created and len(hold.held) == 1
    assert await engine.store.list_alerts(limit=10) == []


async def test_the_preview_runs_every_stage_but_dedup_approval_and_commit(engine: Engine) -> None:
    intake = engine.intake
    assert [s.name for s in intake.chain] == [
        "screen", "dedup", "references", "geocode", "compose", "authorize", "route", "approval", "commit",
    ]  # fmt: skip
    assert [s.name for s in intake.preview_chain] == ["screen", "references", "geocode", "compose",
                                                      "authorize", "route"]  # fmt: skip
    alert = warning(DESK)
    answer, created = await intake.accept(alert, DESK, dry_run=True)
    assert answer["id"] is None and not created and answer["districts"] == ["08211"]
    assert await engine.store.list_alerts(limit=10) == []
    # A preview of a message already sent previews it again; it never returns the first answer.
    sent, _ = await intake.accept(warning(DESK, identifier=alert.identifier), DESK)
    again, _ = await intake.accept(warning(DESK, identifier=alert.identifier), DESK, dry_run=True)
    assert sent["id"] and again["id"] is None


async def test_commit_keeps_its_guard_when_twins_race_past_dedup(engine: Engine) -> None:
    identifier = f"twin-{secrets.token_hex(3)}"
    results = await asyncio.gather(
        *(engine.intake.accept(warning(DESK, identifier=identifier), DESK, fingerprint="same") for _ in range(5))
    )
    assert sum(created for _, created in results) == 1
    assert len({answer["id"] for answer, _ in results}) == 1
    assert len(await engine.store.list_alerts(limit=10)) == 1


# --- delivery -----------------------------------------------------------------------
@pytest_asyncio.fixture
async def worker(engine: Engine) -> AsyncIterator[Worker]:
    """A worker's stages, not its lane readers: jobs are handed to the chain directly."""
    w = Worker(engine.redis, engine.store, engine.settings, adapters.registry({}), None,
               topics=engine.feed.topics if engine.feed else None)  # fmt: skip
    await w.http.start()
    try:
        yield w
    finally:
        await w.close()


async def committed(engine: Engine, sub: Subscriber | None = None, **body: Any) -> Alert:
    if sub is not None:
        await engine.store.put_subscriber(sub)
    answer, _ = await engine.intake.accept(warning(DESK, **body), DESK)
    alert = await engine.store.get_alert(answer["id"])
    assert alert is not None
    return alert


def job_for(alert_id: str, sub_id: str, **kw: Any) -> Job:
    return Job(Priority.ROUTINE, b"0-1", alert_id, sub_id, int(time.time() * 1000), **kw)


async def test_terminal_only_acknowledges_a_job_done_before_a_crash(worker: Worker) -> None:
    chain = worker.chain
    assert [s.name for s in chain.stages] == [
        "terminal", "resolve", "supersede", "expire", "breaker", "send", "retry", "record",
    ]  # fmt: skip
    job = job_for("a", "s", state=DeliveryState.DELIVERED.value)
    assert chain.terminal(job) is True and job.fields == {} and job.outcome is None
    assert chain.terminal(job_for("a", "s", state=DeliveryState.SENT.value)) is False
    assert chain.terminal(job_for("a", "s")) is False


async def test_resolve_fails_an_unknown_alert_and_a_removed_subscriber(engine: Engine, worker: Worker) -> None:
    job = job_for("no-such-alert", "s")
    assert await worker.chain.resolve(job) is True
    assert job.fields == {"state": "failed", "error": "unknown alert"}
    alert = await committed(engine)
    job = job_for(alert.id, "gone")
    assert await worker.chain.resolve(job) is True
    assert job.fields == {"state": "failed", "error": "the subscriber was removed before delivery"}


async def test_supersede_comes_before_expire(engine: Engine, worker: Worker) -> None:
    alert = await committed(engine)
    for info in alert.infos:  # ended and expired both
        info.expires = utcnow() - timedelta(seconds=1)
    job = job_for(alert.id, FEED_SUBSCRIBER, alert_state=AlertState.CANCELLED, alert=alert)
    assert worker.chain.supersede(job) is True
    assert job.fields == {"state": "superseded"} and job.outcome == "superseded"
    fresh = job_for(alert.id, FEED_SUBSCRIBER, alert_state=AlertState.ACTIVE, alert=alert)
    assert worker.chain.supersede(fresh) is False
    assert worker.chain.expire(fresh) is True and fresh.fields == {"state": "expired"}
    # Through the whole chain, an alert both replaced and expired is recorded as superseded.
    worker.store.remember(alert)
    await worker.chain(job_for(alert.id, FEED_SUBSCRIBER, alert_state=AlertState.CANCELLED))
    rows = {r["subscriber"]: r for r in await engine.store.deliveries(alert.id)}
    assert rows[FEED_SUBSCRIBER]["state"] == "superseded"


async def test_breaker_parks_without_an_attempt_and_keeps_the_real_error(worker: Worker) -> None:
    sub = Subscriber("s1", AdapterKind.ISP, "http://127.0.0.1:9/x", ["08211"])
    for _ in range(worker.settings.breaker_threshold):
        worker.breaker.failure(sub.id, "HTTP 503")
    job = job_for("a", sub.id, sub=sub, attempts=2)
    assert worker.chain.breaker(job) is True
    assert job.retry_in is not None and job.retry_in > 0 and job.outcome is None
    assert job.fields is not None and job.fields["state"] == "queued" and "attempts" not in job.fields
    assert job.fields.get("error")  # never tried: says why it waits
    tried = job_for("a", sub.id, sub=sub, prev={"error": "HTTP 500"})
    assert worker.chain.breaker(tried) is True
    assert tried.fields == {"state": "queued"}  # the last real error stays


async def test_send_delivers_to_a_receiver_and_leaves_a_failure_to_retry(
    engine: Engine, worker: Worker, sink: Sink
) -> None:
    ok = Subscriber("ok", AdapterKind.ISP, f"{sink.url}/ok", ["08211"])
    bad = Subscriber("bad", AdapterKind.ISP, f"{sink.url}/bad", ["08211"])
    sink.status["/bad"] = 503
    alert = await committed(engine, ok)
    job = job_for(alert.id, "ok", alert=alert, sub=ok, adapter_label="isp", attempts=1)
    assert await worker.chain.send(job) is True
    assert job.fields is not None and job.fields["state"] == "delivered" and job.fields["attempts"] == 2
    assert job.outcome == "delivered" and len(sink.at("/ok")) == 1
    failing = job_for(alert.id, "bad", alert=alert, sub=bad, adapter_label="isp")
    assert await worker.chain.send(failing) is False
    assert failing.error is not None and failing.error.retryable and failing.attempt == 1
    assert failing.fields is None  # undecided: the retry stage says what happens


async def test_retry_fails_permanent_errors_and_expires_what_would_come_too_late(
    engine: Engine, worker: Worker
) -> None:
    alert = await committed(engine)
    job = job_for(alert.id, "s", alert=alert, attempt=1, error=PermanentError("HTTP 410"))
    assert worker.chain.retry(job) is True
    assert job.fields == {"state": "failed", "error": "HTTP 410", "attempts": 1} and job.outcome == "failed"
    job = job_for(alert.id, "s", alert=alert, attempt=1, error=RetryableError("HTTP 503"))
    assert worker.chain.retry(job) is True
    assert job.fields == {"state": "queued", "error": "HTTP 503", "attempts": 1} and job.outcome == "retry"
    assert job.retry_in is not None and 0 < job.retry_in <= worker.settings.retry_max_s
    for info in alert.infos:  # expires before the next try would come
        info.expires = utcnow() + timedelta(milliseconds=1)
    late = job_for(alert.id, "s", alert=alert, attempt=5, error=RetryableError("HTTP 503"))
    assert worker.chain.retry(late) is True and late.fields is not None
    assert late.fields["state"] == "expired" and late.retry_in is None


async def test_record_writes_through_the_ledger_and_schedules_the_retry(engine: Engine, worker: Worker) -> None:
    sub = Subscriber("s", AdapterKind.ISP, "http://127.0.0.1:9/x", ["08211"])
    alert = await committed(engine, sub, level=5)  # level 5: the flash lane
    assert alert.priority is Priority.FLASH
    job = Job(Priority.FLASH, b"0-1", alert.id, "s", int(time.time() * 1000) - 5000, prev={"attempts": 1},
              error=RetryableError("HTTP 503"))  # fmt: skip
    worker.chain.retry.decide(job, {"state": "queued", "error": "HTTP 503", "attempts": 2}, "retry", retry_in=30)
    await worker.chain.record(job)
    rows = {r["subscriber"]: r for r in await engine.store.deliveries(alert.id)}
    assert rows["s"]["state"] == "queued" and rows["s"]["attempts"] == 2 and rows["s"]["last_error"] == "HTTP 503"
    backlog = await engine.store.backlog()
    assert backlog.pending[("flash", "retry_wait")] == 1
    stuck = backlog.oldest_unfinished["flash"]
    assert (stuck.alert_id, stuck.subscriber_id) == (alert.id, "s")
    assert stuck.age_s >= 5  # its age counts from acceptance, not from the retry


async def test_the_chain_delivers_once_and_a_replayed_job_is_only_acknowledged(
    engine: Engine, worker: Worker, sink: Sink
) -> None:
    sub = Subscriber("s", AdapterKind.ISP, f"{sink.url}/s", ["08211"])
    alert = await committed(engine, sub)
    await worker._refresh_subscribers()
    await worker.chain(job_for(alert.id, "s"))
    rows = {r["subscriber"]: r for r in await engine.store.deliveries(alert.id)}
    assert rows["s"]["state"] == "delivered" and rows["s"]["attempts"] == 1
    # The same job again after a lost ack: the prefetch says delivered, nothing is sent.
    await worker.chain(job_for(alert.id, "s", state="delivered", prev={"attempts": 1}))
    assert len(sink.at("/s")) == 1


# --- the ledger and the module graph -------------------------------------------------
def test_a_retry_member_names_lane_alert_subscriber_and_acceptance() -> None:
    from alertd.ledger import DeliveryLedger

    member = DeliveryLedger.retry_member("flash", "a1", "radio-7", 1700000000000)
    entry = DeliveryLedger.parse_retry_member(member.encode())
    assert entry == ("flash", "a1", "radio-7", 1700000000000)


def test_the_engine_side_of_the_transmission_test_never_imports_the_cli() -> None:
    # engine → testbroadcast → cli → engine was a cycle; any import of the cli, even one
    # inside a function, would bring it back.
    tree = ast.parse(Path(ROOT, "alertd", "testbroadcast.py").read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "alertd.cli" not in imported and "alertd.httpclient" in imported


async def test_update_changes_stay_exact_for_a_desk_lift(engine: Engine) -> None:
    # A desk lift arrives with its exact changes: the references stage must not replace them.
    original, _ = await engine.intake.accept(warning(DESK, kind="evacuation", level=4), DESK)
    lift = warning(DESK, msg_type="Update", references=[original["id"]])
    lift.action = "lift"
    ctx = IntakeContext(lift, DESK, {original["id"]: AlertChange(lift=["x"])})
    await engine.intake.references(ctx)
    assert ctx.changes[original["id"]].state is None and ctx.changes[original["id"]].lift == ["x"]
    assert lift.msg_type is MsgType.UPDATE
