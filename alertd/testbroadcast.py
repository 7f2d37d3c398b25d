"""The transmission test (全国一斉情報伝達試験): a Test message to every subscriber in scope.

J-Alert is tested four times a year and the government publishes which
municipalities failed to broadcast. Here the engine sends a status-Test
message, waits for confirmations, and reports per subscriber: confirmed
(with latency), delivered but not confirmed, or failed (with the last error).

    POST /api/v1/test-broadcasts        (admin)  {"districts": [...], "wait_s": 60}
    GET  /api/v1/test-broadcasts/{id}            the result so far, final after wait_s
    alertd test-broadcast [--districts ...] [--wait S] [--json PATH] --url URL --admin-token T
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import sys
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from alertd import logs
from alertd.errors import InvalidInput, NotFound
from alertd.metrics import TEST_BROADCAST, TEST_BROADCAST_LAST
from alertd.models import JST, AdapterKind, Alert, Info, MsgType, Origin, Status, utcnow
from alertd.redact import public_error
from alertd.routing import DRILLS_ONLY

if TYPE_CHECKING:
    from alertd.intake import Intake
    from alertd.store import Store
    from geo.registry import Registry

log = logs.get("alertd.testbroadcast")

ALL_PREFECTURES = [f"{i:02d}" for i in range(1, 48)]
RESULTS = ("confirmed", "unconfirmed", "failed")


def test_alert(districts: list[str], run_id: str, wait_s: float = 60.0, *, drills: bool = False) -> Alert:
    now = utcnow()
    # The test ends when its wait does: retries stop there (the delivery chain drops what has
    # expired), so no gateway hears "これは、防災情報の伝達試験です" minutes after the result was published.
    # It says what it is — alertd's own transmission test, never J-Alert's (alertd is not J-Alert);
    # the loudspeakers speak the catalog's test.body_national (alertd/texts/*.yaml).
    ends = now + timedelta(seconds=wait_s)
    return Alert(
        identifier=f"transmission-test-{run_id}",
        sender="alertd-transmission-test",
        sent=now,
        status=Status.TEST,
        msg_type=MsgType.ALERT,
        origin=Origin.TEST,
        kind="test",
        districts=districts,
        # A drill's own test reaches only receivers that take drills, like the rest of the drill.
        codes=[DRILLS_ONLY] if drills else [],
        source="alertd 情報伝達試験",
        infos=[
            Info(
                language="ja-JP", event="情報伝達試験", categories=["Other"], urgency="Unknown",
                severity="Minor", certainty="Unknown", headline="これは、防災情報の伝達試験です。", expires=ends,
                description="これは、防災情報の伝達試験です。受信を確認してください。",
            ),
            Info(
                language="en-US", event="Transmission test", categories=["Other"], urgency="Unknown",
                severity="Minor", certainty="Unknown", headline="This is a transmission test of the disaster alert "
                "system.", expires=ends, description="This is a transmission test of the disaster alert system. "
                "Please confirm receipt.",
            ),
        ],
    )  # fmt: skip


def classify(rows: list[dict[str, Any]], final: bool) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if r["adapter"] == AdapterKind.FEED:
            continue
        if r["state"] == "confirmed":
            result = "confirmed"
        elif r["state"] == "delivered":
            result = "unconfirmed"
        elif r["state"] in ("failed", "expired") or final:
            result = "failed"  # still queued or retrying at the deadline counts as failed
        else:
            result = "pending"
        latency = None
        if result == "confirmed" and r.get("confirmed_at") and r.get("accepted_at"):
            latency = round((float(r["confirmed_at"]) - float(r["accepted_at"])) * 1000, 1)
        out.append(
            {
                "subscriber": r["subscriber"], "adapter": r["adapter"], "result": result,
                "delivery_latency_ms": r.get("latency_ms"), "confirm_latency_ms": latency,
                "attempts": r["attempts"], "last_error": r.get("last_error"),
            }
        )  # fmt: skip
    return out


def cause(last_error: str | None) -> str | None:
    """Why a receiver failed, in the words of the published results: refused, timeout or the
    HTTP status (else the error itself)."""
    if not last_error:
        return None
    text = last_error.lower()
    if "refused" in text or "cannot connect" in text or "not reachable" in text:
        return "refused"
    if "no answer" in text or "timeout" in text or "timed out" in text:
        return "timeout"
    m = re.search(r"\b(?:http |status )?([1-5]\d\d)\b", last_error)
    if m:
        return f"HTTP {m.group(1)}"
    # Published as is: the receiver's internal address (host:port, URL) stays out.
    return public_error(last_error)[:80]


_WORST = ("failed", "pending", "unconfirmed", "confirmed")


def _within(registry: Registry, district: str, town: str) -> bool:
    """The district is the town or lies inside it (08211:三坂町 in 08211; 08 is not)."""
    try:
        return town in registry.ancestors(district)
    except Exception:  # a district code the registry no longer knows
        return False  # a town is as good as its worst receiver


def municipality_results(registry: Registry, scope: list[str], receivers: list[dict[str, Any]],
                         districts_of: dict[str, list[str]]) -> list[dict[str, Any]]:  # fmt: skip
    """Every municipality in scope by name, with the town's own receivers and its result —
    including the towns with none, as the national test's published tables do. A receiver for
    the whole prefecture (a broadcaster) is not any one town's: it never makes a town look tested."""
    munis: dict[str, Any] = {}
    for code in scope:
        d = registry.find(code)
        if d is None:
            continue
        if d.level == "prefecture":
            for m in registry.municipalities():
                if m.level == "municipality" and m.code[:2] == d.code[:2]:
                    munis[m.code] = m
        else:
            muni = registry.municipality_of(d.code)
            if muni is not None:
                munis[muni] = registry.get(muni)
    out = []
    for code, m in sorted(munis.items()):
        mine = [r for r in receivers if not _is_wide(registry, districts_of.get(r["subscriber"], []))
                and any(_within(registry, d, code) for d in districts_of.get(r["subscriber"], []))]  # fmt: skip
        if not mine:
            result = "no receiver"
        else:
            result = min((r["result"] for r in mine), key=_WORST.index)
        out.append({"municipality": code, "name": m.full_name, "result": result,
                    "receivers": [{"subscriber": r["subscriber"], "result": r["result"], "cause": r.get("cause")}
                                  for r in mine]})  # fmt: skip
    return out


def _is_wide(registry: Registry, districts: list[str]) -> bool:
    """A receiver for more than one town — a prefecture code (NHK, a portal) or several towns'
    codes: it is listed apart, with its own counts, never as one of those towns' own."""
    towns = set()
    for d in districts:
        try:
            muni = registry.municipality_of(d)
        except Exception:  # a code the registry no longer knows
            continue
        if muni is None:
            return True  # a prefecture, a region or the whole country
        towns.add(muni)
    return len(towns) > 1


def wide_results(registry: Registry, receivers: list[dict[str, Any]],
                 districts_of: dict[str, list[str]]) -> list[dict[str, Any]]:  # fmt: skip
    """The receivers that cover more than one town, grouped by what they cover, under a name the
    published table can show in its municipality column: 茨城県 (全域)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in receivers:
        districts = districts_of.get(r["subscriber"], [])
        if _is_wide(registry, districts):
            groups.setdefault(",".join(sorted(districts)), []).append(r)
    out = []
    for key, mine in sorted(groups.items()):
        names = []
        for d in key.split(","):
            found = registry.find(d)
            if found is None:
                names.append(d)
            elif registry.municipality_of(found.code) is None:
                names.append(f"{found.full_name} (全域)")
            else:
                names.append(found.full_name)
        out.append({"code": key, "name": "、".join(names),
                    "result": min((r["result"] for r in mine), key=_WORST.index),
                    "receivers": [{"subscriber": r["subscriber"], "result": r["result"], "cause": r.get("cause")}
                                  for r in mine]})  # fmt: skip
    return out


def town_counts(towns: list[dict[str, Any]]) -> dict[str, int]:
    """The headline in towns, so it sums to the number of towns in scope, as the table lists them."""
    return {k.replace(" ", "_"): sum(1 for t in towns if t["result"] == k)
            for k in ("confirmed", "unconfirmed", "failed", "pending", "no receiver")}  # fmt: skip


def headline(result: dict[str, Any]) -> str:
    """One line a desk reads: the towns (summing to the towns in scope), then the receivers that
    cover more than one town, counted apart."""
    towns = result.get("municipalities") or []
    t = town_counts(towns)
    line = (f"municipalities {len(towns)}: confirmed {t['confirmed']}, delivered but not confirmed "
            f"{t['unconfirmed']}, failed {t['failed'] + t['pending']}, no receiver {t['no_receiver']}")  # fmt: skip
    wide = [r for w in result.get("wide_receivers") or [] for r in w["receivers"]]
    if wide:
        w = {k: sum(1 for r in wide if r["result"] == k) for k in ("confirmed", "unconfirmed", "failed", "pending")}
        line += (f"; receivers for more than one town {len(wide)}: confirmed {w['confirmed']}, delivered but not "
                 f"confirmed {w['unconfirmed']}, failed {w['failed'] + w['pending']}")  # fmt: skip
    return line


class TestBroadcasts:
    """Server side: start a test, answer for its result, publish the metric when it ends."""

    def __init__(self, intake: Intake, store: Store) -> None:
        # The intake and the store, not the engine: the engine owns this, not the other way round.
        self.intake, self.store = intake, store
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, body: dict[str, Any]) -> dict[str, Any]:
        districts = body.get("districts") or ALL_PREFECTURES
        wait_s = body.get("wait_s", 60)
        if not isinstance(districts, list) or not all(isinstance(d, str) for d in districts):
            raise InvalidInput("'districts' must be a list of district codes.", field="districts")
        if not isinstance(wait_s, int | float) or not 1 <= wait_s <= 3600:
            raise InvalidInput("'wait_s' must be between 1 and 3600 seconds.", field="wait_s")
        # Named by its start in Japan time, like the date in its published table (not the server's zone).
        run_id = datetime.now(JST).strftime("%Y%m%dT%H%M%S") + f"-{secrets.token_hex(3)}"
        drills = bool(body.get("drills", False))
        answer, _ = await self.intake.accept(test_alert(districts, run_id, float(wait_s), drills=drills), None)
        started = time.time()
        record = {"id": run_id, "alert_id": answer["id"], "districts": answer["districts"], "scope": districts,
                  "started": started, "wait_s": float(wait_s), "deliveries": answer["deliveries"],
                  "drills": drills}  # fmt: skip
        await self.store.put_test_run(run_id, record)
        task = asyncio.create_task(self._finish_later(run_id, float(wait_s)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info(
            "test_broadcast.started", test_id=run_id, alert_id=answer["id"], deliveries=answer["deliveries"]
        )
        return record

    async def result(self, run_id: str) -> dict[str, Any]:
        record = await self.store.test_run(run_id)
        if record is None:
            raise NotFound(f"There is no transmission test {run_id!r}.")
        frozen = record.pop("final_result", None)
        if frozen is not None:
            return dict(frozen)  # final means final: what was published never changes afterwards
        final = time.time() >= record["started"] + record["wait_s"]
        rows = await self.store.deliveries(record["alert_id"])
        for r in rows:
            r["accepted_at"] = record["started"]
        subs = classify(rows, final)
        for s in subs:
            s["cause"] = cause(s["last_error"]) if s["result"] == "failed" else None
        summary = {k: sum(1 for s in subs if s["result"] == k) for k in (*RESULTS, "pending")}
        districts_of = {}
        for s in subs:
            sub = await self.store.get_subscriber(s["subscriber"])
            districts_of[s["subscriber"]] = sub.districts if sub is not None else []
        towns = municipality_results(self.intake.registry, record.get("scope") or record["districts"], subs,
                                     districts_of)  # fmt: skip
        summary["no_receiver"] = sum(1 for t in towns if t["result"] == "no receiver")
        wide = wide_results(self.intake.registry, subs, districts_of)
        answer = {**record, "final": final, "summary": summary, "subscribers": subs, "municipalities": towns,
                  "wide_receivers": wide}  # fmt: skip
        if not final and subs and summary["confirmed"] == len(subs):
            # Every receiver confirmed: nothing can change any more, so the result is final now —
            # the CLI that stops early then saves the same frozen result a later GET gives.
            answer["final"] = final = True
        if final:
            await self.store.put_test_run(run_id, {**record, "final_result": answer})
        return answer

    async def _finish_later(self, run_id: str, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        result = await self.result(run_id)
        for name in RESULTS:
            TEST_BROADCAST.labels(result=name).set(result["summary"][name])
        TEST_BROADCAST_LAST.set_to_current_time()
        log.info("test_broadcast.finished", test_id=run_id, **result["summary"])


# --- the command ---------------------------------------------------------------
def _table(result: dict[str, Any]) -> str:
    from alertd.report import table

    order = {"failed": 0, "unconfirmed": 1, "pending": 2, "confirmed": 3}
    rows = sorted(result["subscribers"], key=lambda s: (order[s["result"]], s["subscriber"]))
    return table(
        ["subscriber", "adapter", "result", "confirm ms", "attempts", "last error"],
        [[s["subscriber"], s["adapter"], s["result"], s["confirm_latency_ms"], s["attempts"],
          (s["last_error"] or "")[:60]] for s in rows],
    )  # fmt: skip


def _towns_table(result: dict[str, Any]) -> str:
    from alertd.report import table

    order = {"no receiver": 0, "failed": 1, "pending": 2, "unconfirmed": 3, "confirmed": 4}
    towns = sorted(result.get("municipalities") or [], key=lambda t: (order[t["result"]], t["municipality"]))
    return table(
        ["municipality", "code", "result", "receivers", "cause"],
        [[t["name"], t["municipality"], t["result"], len(t["receivers"]),
          ", ".join(sorted({r["cause"] for r in t["receivers"] if r.get("cause")}))] for t in towns],
        left={2, 4},
    )  # fmt: skip


def _wide_table(result: dict[str, Any]) -> str:
    """The receivers that cover more than one town (NHK, a portal): in their own table, so the
    towns' table above sums to the towns in scope."""
    from alertd.report import table

    return table(
        ["covers", "code", "receiver", "result", "cause"],
        [[w["name"], w["code"], r["subscriber"], r["result"], r.get("cause") or ""]
         for w in result.get("wide_receivers") or [] for r in w["receivers"]],
        left={0, 2, 3, 4},
    )  # fmt: skip


def towns_report(result: dict[str, Any]) -> str:
    """The headline, the towns' table and, when there are any, the receivers for more than one town."""
    out = [headline(result), _towns_table(result)]
    if result.get("wide_receivers"):
        out += ["", "Receivers for more than one town (no town's own; counted apart):", _wide_table(result)]
    return "\n".join(out)


# The published table's columns. date and test_id came later: they are added at the end, so a
# spreadsheet or script that reads the first five columns keeps working.
CSV_COLUMNS = ["municipality", "code", "receiver", "result", "cause", "date", "test_id"]


def test_date(result: dict[str, Any]) -> str:
    """When the test was run, in Japan time (as the national results are dated): 2026-12-01T10:00:00+09:00."""
    return datetime.fromtimestamp(float(result["started"]), JST).isoformat(timespec="seconds")


def published_rows(result: dict[str, Any]) -> list[list[str]]:
    """The table a prefecture publishes: municipality, receiver, result, cause — one row per
    receiver, and one for each municipality no receiver covers — each with the test's date and id,
    so rows from several quarterly tests can be filed together."""
    rows = []
    when, test_id = test_date(result), str(result["id"])
    for t in result.get("municipalities") or []:
        if not t["receivers"]:
            rows.append([t["name"], t["municipality"], "-", "no receiver", "", when, test_id])
        for r in t["receivers"]:
            rows.append([t["name"], t["municipality"], r["subscriber"], r["result"], r.get("cause") or "", when,
                         test_id])  # fmt: skip
    # Then the receivers for more than one town, under what they cover: 茨城県 (全域).
    for w in result.get("wide_receivers") or []:
        for r in w["receivers"]:
            rows.append([w["name"], w["code"], r["subscriber"], r["result"], r.get("cause") or "", when, test_id])
    return rows


def totals(result: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The headline counts, each in one unit: municipalities (summing to the towns in scope; a town
    counts as its worst receiver) and receivers. The API's ``summary`` mixes them (its confirmed
    and failed count receivers, its no_receiver towns) and stays as it is for those who read it."""
    t = town_counts(result.get("municipalities") or [])
    subs = result.get("subscribers") or []
    r = {k: sum(1 for x in subs if x["result"] == k) for k in ("confirmed", "unconfirmed", "failed", "pending")}
    return {
        "municipalities": {"confirmed": t["confirmed"], "unconfirmed": t["unconfirmed"],
                           "failed": t["failed"] + t["pending"], "no_receiver": t["no_receiver"]},
        "receivers": {"confirmed": r["confirmed"], "unconfirmed": r["unconfirmed"],
                      "failed": r["failed"] + r["pending"]},
    }  # fmt: skip


def verdict(result: dict[str, Any], lenient: bool) -> dict[str, Any]:
    """PASSED or NOT PASSED, and why, in towns: a town failed, has no receiver, or did not confirm
    (unless lenient); a receiver for more than one town that failed (or did not confirm) too."""
    t = totals(result)["municipalities"]
    wide = [r for w in result.get("wide_receivers") or [] for r in w["receivers"]]
    bad_wide = sum(1 for r in wide if r["result"] in ("failed", "pending") or (r["result"] == "unconfirmed"
                                                                                 and not lenient))  # fmt: skip
    reasons = [text for n, text in (
        (t["failed"], f"{t['failed']} municipality(ies) failed"),
        (t["no_receiver"], f"{t['no_receiver']} municipality(ies) with no receiver"),
        (0 if lenient else t["unconfirmed"], f"{t['unconfirmed']} municipality(ies) delivered but not confirmed"),
        (bad_wide, f"{bad_wide} receiver(s) for more than one town did not pass"),
    ) if n]  # fmt: skip
    return {"passed": not reasons, "result": "NOT PASSED" if reasons else "PASSED", "reasons": reasons,
            "lenient": lenient, "final": bool(result.get("final"))}  # fmt: skip


def verdict_line(v: dict[str, Any]) -> str:
    """The last line, as a drill's: PASSED, or NOT PASSED with what failed it."""
    rule = "not confirming passes (--lenient)" if v["lenient"] else "not confirming fails"
    if v["passed"]:
        return f"PASSED: every municipality in scope passed ({rule})."
    return f"NOT PASSED: {', '.join(v['reasons'])} ({rule})."


def write_csv(result: dict[str, Any], path: str, outcome: dict[str, Any] | None = None) -> None:
    """The published table; with ``outcome`` (the verdict) every row also says the test's verdict,
    whether --lenient was used, and whether the result was final — added at the end, as date and
    test_id were, so readers of the first columns keep working."""
    import csv

    extra = ([outcome["result"], "yes" if outcome["lenient"] else "no", "yes" if outcome["final"] else "no"]
             if outcome else [])  # fmt: skip
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:  # with a BOM, so Excel reads Japanese
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS + (["verdict", "lenient", "final"] if outcome else []))
        writer.writerows(row + extra for row in published_rows(result))


def write_markdown(result: dict[str, Any], path: str, outcome: dict[str, Any] | None = None) -> None:
    lines = [f"# 情報伝達試験 / Transmission test {result['id']}", "", f"Date: {test_date(result)}", "",
             headline(result), ""]  # fmt: skip
    if outcome:
        lines += [f"**{verdict_line(outcome)}** Final result: {'yes' if outcome['final'] else 'no'}; "
                  f"--lenient: {'yes' if outcome['lenient'] else 'no'}.", ""]  # fmt: skip
    lines += ["## By municipality", "",
              "| municipality | code | receiver | result | cause |", "|---|---|---|---|---|"]  # fmt: skip
    towns_only = {**result, "wide_receivers": []}
    lines += ["| " + " | ".join(row[:5]) + " |" for row in published_rows(towns_only)]  # date and id are above
    if result.get("wide_receivers"):
        lines += ["", "## Receivers for more than one town (prefecture-wide)", "",
                  "| covers | code | receiver | result | cause |", "|---|---|---|---|---|"]  # fmt: skip
        lines += ["| " + " | ".join(row[:5]) + " |" for row in published_rows({**result, "municipalities": []})]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    from alertd.httpclient import call as _http
    from alertd.report import Progress, bar

    parser = argparse.ArgumentParser(prog="alertd test-broadcast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--url", default=os.environ.get("ALERTD_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--admin-token", default=os.environ.get("ALERTD_ADMIN_TOKEN"))
    parser.add_argument(
        "--districts", nargs="*", help="district codes in scope (default: all 47 prefectures)"
    )
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for confirmations")
    parser.add_argument("--json", help="write the result as JSON here")
    parser.add_argument("--csv", help="write the published table (municipality, receiver, result, cause) here")
    parser.add_argument("--markdown", help="the same table as Markdown")
    parser.add_argument("--lenient", action="store_true",
                        help="pass when receivers got it but did not confirm (by default that fails, as in the "
                        "national test)")  # fmt: skip
    parser.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for scripts
    args = parser.parse_args(argv)
    if not args.admin_token:
        print("alertd test-broadcast: give --admin-token or set ALERTD_ADMIN_TOKEN", file=sys.stderr)
        return 2
    base = args.url.rstrip("/")
    body: dict[str, Any] = {"wait_s": args.wait}
    if args.districts:
        body["districts"] = args.districts
    status, started = _http("POST", f"{base}/api/v1/test-broadcasts", args.admin_token, body)
    if status != 202:
        print(f"alertd test-broadcast: refused ({status}): {started.get('detail')}", file=sys.stderr)
        return 2
    progress = Progress()
    result: dict[str, Any] = {}
    while True:
        status, result = _http("GET", f"{base}/api/v1/test-broadcasts/{started['id']}", args.admin_token)
        if status != 200:
            print(f"alertd test-broadcast: {result.get('detail')}", file=sys.stderr)
            return 2
        s = result["summary"]
        elapsed = min(args.wait, time.time() - started["started"])
        progress.show(
            f"{bar(int(elapsed), int(args.wait))} {elapsed:4.0f}/{args.wait:.0f}s  subscribers {len(result['subscribers'])}"
            f"  confirmed {s['confirmed']}  unconfirmed {s['unconfirmed']}  failed {s['failed']}  pending {s['pending']}"
        )
        # The engine itself calls the result final once every receiver confirmed (nothing can change
        # then): stopping here early, what --json saves is that frozen result, as a later GET gives it.
        if result["final"]:
            break
        time.sleep(0.5)
    progress.done()
    print(_table(result))
    s = result["summary"]
    if result.get("municipalities"):
        print()
        print(towns_report(result))
    print(
        f"\nreceivers {len(result['subscribers'])}: confirmed {s['confirmed']}, delivered but not confirmed "
        f"{s['unconfirmed']}, failed {s['failed'] + s['pending']}"
    )
    # A town no receiver covers, or one that did not confirm, fails the test unless --lenient.
    outcome = verdict(result, args.lenient)
    print(f"\n{verdict_line(outcome)}")
    if args.json:
        # The frozen result as the API gives it, plus the counts in one unit each and the verdict.
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({**result, "totals": totals(result), "verdict": outcome}, fh, ensure_ascii=False, indent=2)
    if args.csv:
        write_csv(result, args.csv, outcome)
    if args.markdown:
        write_markdown(result, args.markdown, outcome)
    return 0 if outcome["passed"] else 1
