"""A drill's report as a terminal table and as Markdown (the JSON is the report itself)."""

from __future__ import annotations

from typing import Any

from alertd import report
from alertd.drills.views import _lv
from alertd.redact import public_error


def render_text(rep: dict[str, Any]) -> str:
    """The terminal report: one section per question a drill office asks, in reading order."""
    lines = [f"Drill: {rep['scenario']} (run {rep['run_id']}, status Exercise)"]
    if rep.get("date"):
        lines.append(f"{rep['date']}, speed ×{rep.get('speed', 1):g} — {rep.get('description') or ''}".rstrip(" —"))
    lines += ["", _steps_text(rep)]
    lines += _step_errors_text(rep)
    lines += _faults_text(rep)
    lines += ["", "Totals by adapter:", report.summary_table(rep["total"])]
    lines += _towns_text(rep)
    lines += _in_force_text(rep)
    lines += _tests_text(rep)
    lines += _missed_text(rep)
    done = rep.get("cleanup")
    if done is not None:
        lines += ["", f"Afterwards: {_cleanup_sentence(done)}"]
        lines += [f"  NOT CLEANED UP: {e}" for e in done["errors"]]
    if rep.get("compare"):
        lines += ["", compare(rep, {})]
    lines += ["", verdict_line(rep)]
    return "\n".join(lines)


def _steps_text(rep: dict[str, Any]) -> str:
    """What each step planned and what became of it, per adapter."""
    rows = []
    for s in rep["steps"]:
        if s["error"]:
            # The error in full below the table: cut to fit, a 422's sentence lost its end, and
            # placed in a column it widened the whole table.
            rows.append([f"{s['at']:>5.0f}s {s['name']}", "", "ERROR", "", "", "", "", "", "", "", ""])
            continue
        for adapter, t in s["by_adapter"].items():
            rows.append([f"{s['at']:>5.0f}s {s['name']}", s["lane"], adapter, t["planned"], t["delivered"], t["confirmed"], t["failed"],
                         t.get("superseded", 0), t.get("pending", 0), t["latency_p50_ms"], t["latency_p99_ms"]])  # fmt: skip
        if not s["by_adapter"] and s["kind"] not in ("fault", "wait"):
            rows.append([f"{s['at']:>5.0f}s {s['name']}", s["lane"], "-", 0, 0, 0, 0, 0, 0, None, None])
    return report.table(
        ["step", "lane", "adapter", "planned", "delivered", "confirmed", "failed", "superseded", "pending",
         "p50 ms", "p99 ms"],
        rows,
    )


def _step_errors_text(rep: dict[str, Any]) -> list[str]:
    failed = [s for s in rep["steps"] if s["error"]]
    if not failed:
        return []
    return ["", "Step errors (the step was not sent):",
            *[f"  {s['at']:>5.0f}s  {s['name']}: {s['error']}" for s in failed]]  # fmt: skip


def _faults_text(rep: dict[str, Any]) -> list[str]:
    faults = [s for s in rep["steps"] if s.get("fault")]
    if not faults:
        return []
    return ["", "Fault timeline:",
            *[f"  {s['at']:>5.0f}s  {s['name']}: {s['fault'].get('receiver')} {s['fault'].get('kind')}"
              + (f" ({s['fault']['seconds']} s)" if s["fault"].get("seconds") else "") for s in faults]]  # fmt: skip


def _towns_text(rep: dict[str, Any]) -> list[str]:
    towns = rep.get("by_municipality") or {}
    if not (len(towns) > 1 or any(v.get("no_receiver") for v in towns.values())):
        return []
    cols = ("planned", "delivered", "confirmed", "failed", "expired", "superseded", "pending", "missed")
    return ["", "By municipality (failed counts the expired too; missed: never heard — failed, pending, "
                "or superseded before delivery):",
            report.table(["municipality", *cols], [_town_row(t, v, cols) for t, v in towns.items()])]  # fmt: skip


def _in_force_text(rep: dict[str, Any]) -> list[str]:
    checked = [s for s in rep["steps"] if s.get("expect")]
    if not checked:
        return []
    lines = ["", "What is in force after each step (model, active list, Atom, MQTT state):"]
    rows = []
    for s in checked:
        wanted = "; ".join(f"{m} " + ", ".join(f"{k} {_lv(v)}" for k, v in e.items()) for m, e in s["expect"].items())
        rows.append([f"{s['at']:>5.0f}s {s['name']}", "agree" if not s["views"] else "DIFFER", wanted])
        rows += [["", "", f"  {p}"] for p in s["views"] or []]
    lines.append(report.table(["step", "views", "expected"], rows, left={1, 2}))
    if rep.get("hint"):
        lines.append(f"Hint: {rep['hint']}")
    return lines


def _tests_text(rep: dict[str, Any]) -> list[str]:
    """Each transmission-test step: its headline, and the receivers that did not pass, with why."""
    from alertd.testbroadcast import towns_report

    lines: list[str] = []
    for s in rep["steps"]:
        result = s.get("test_broadcast")
        if not result:
            continue
        lines += ["", f"Transmission test ({s['name']}): {towns_report(result)}"]
        failing = [f for f in rep.get("test_failures") or [] if f["step"] == s["name"]]
        if failing:
            # By receiver, with why: what the drill office follows up with each gateway's operator.
            towns = len({f["municipality"] for f in failing})
            receivers = sum(1 for f in failing if f["subscriber"] != "-")
            lines += ["", f"TRANSMISSION TEST NOT PASSED ({towns} town(s), {receivers} receiver(s)):", report.table(
                ["municipality", "receiver", "result", "cause"],
                [[f["municipality"], f["subscriber"], f["result"], f["cause"]] for f in failing],
                left={0, 1, 2, 3},
            )]  # fmt: skip
    return lines


def _missed_text(rep: dict[str, Any]) -> list[str]:
    """Towns no receiver covers, and every delivery that never arrived."""
    lines: list[str] = []
    for u in rep.get("no_receiver") or []:
        lines += ["", f"NO RECEIVER: {u['municipality']} ({u['code']}), named by {u['step']!r}, heard nothing: "
                      "no receiver of the drill covers it"]  # fmt: skip
    undelivered = rep.get("undelivered") or []
    if undelivered:
        lines += ["", f"NOT DELIVERED ({len(undelivered)}): the drill did not pass"]
        lines.append(report.table(
            ["step", "receiver", "state", "attempts", "last error"],
            # The whole last error: what a drill office follows up with the receiver's operator.
            [[u["step"], u["subscriber"], u["state"], u["attempts"], u["last_error"] or ""] for u in undelivered],
            left={0, 1, 2, 4},
        ))  # fmt: skip
    return lines


def _cleanup_sentence(done: dict[str, Any]) -> str:
    """What the drill's end did, counted: the lifts and cancels it sent (cleanup messages the
    receivers heard), the deliveries it ended, what it removed."""
    return (f"ended {len(done['cancelled'])} drill alert(s) still standing with "
            f"{len(done.get('cleanup_alerts') or [])} cleanup message(s); ended {len(done.get('ended') or [])} "
            f"delivery(ies) still unfinished (never delivered: 'ended by the drill'); removed "
            f"{len(done['removed_receivers'])} receiver(s) and {len(done['removed_issuers'])} issuer(s) the drill "
            "registered.")  # fmt: skip


def verdict(rep: dict[str, Any]) -> dict[str, Any]:
    """What the saved report says of itself: passed or failed, and each reason, as the last line."""
    return {"passed": passed(rep), "result": "PASSED" if passed(rep) else "FAILED", "reasons": _reasons(rep)}


def verdict_line(rep: dict[str, Any]) -> str:
    """The last line: PASSED, or FAILED with what failed it."""
    if passed(rep):
        return "PASSED: every step sent, every view agreed, everything delivered."
    return "FAILED: " + ", ".join(_reasons(rep)) + "."


def _reasons(rep: dict[str, Any]) -> list[str]:
    return [f"{n} {what}" for n, what in (
        (len(rep.get("step_errors") or []), "step(s) refused"),
        (len(rep.get("view_mismatches") or []), "step(s) whose views differed"),
        (len(rep.get("undelivered") or []), "delivery(ies) not delivered"),
        (_test_failure_towns(rep), "town(s) failing the transmission test"
         + (f" ({_test_failure_receivers(rep)} receiver(s))" if _test_failure_receivers(rep) else "")),
        (len({u["code"] for u in rep.get("no_receiver") or []}), "town(s) an order named that no receiver covers"),
    ) if n]  # fmt: skip


def _test_failure_towns(rep: dict[str, Any]) -> int:
    """Towns (or prefecture-wide receivers' areas) that failed a transmission test: the unit the
    test's headline counts in; a town with two failed gateways is one town."""
    return len({(f["step"], f["municipality"]) for f in rep.get("test_failures") or []})


def _test_failure_receivers(rep: dict[str, Any]) -> int:
    return sum(1 for f in rep.get("test_failures") or [] if f["subscriber"] != "-")


def passed(rep: dict[str, Any]) -> bool:
    """A drill passes when every step went in, every view agreed, everything planned was delivered
    and its transmission test passed by the standalone test's rule."""
    return not (rep.get("undelivered") or rep.get("step_errors") or rep.get("view_mismatches")
                or rep.get("test_failures") or rep.get("no_receiver"))  # fmt: skip


def _town_row(town: str, totals: dict[str, Any], cols: tuple[str, ...]) -> list[Any]:
    """A town's row; one no receiver covers says so in place of counts that would read as "all well"."""
    if totals.get("no_receiver"):
        return [town, "no receiver", *("" for _ in cols[1:])]
    return [town, *(totals.get(c, 0) for c in cols)]


def _md(headers: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table (a | in a cell would split it, so it is escaped)."""

    def cell(v: Any) -> str:
        return ("-" if v is None else str(v)).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)]  # fmt: skip


def render_markdown(rep: dict[str, Any]) -> str:
    """The same report as the terminal's, as Markdown tables — steps, by municipality, the
    transmission test, not delivered — for the file a drill office hands on."""
    verdict = "passed" if passed(rep) else "did not pass"
    out = [f"# Drill report: {rep['scenario']}", "",
           f"Run `{rep['run_id']}`, status **Exercise**, {rep.get('date', '')}: **the drill {verdict}**.", ""]  # fmt: skip
    if rep.get("description"):
        out += [rep["description"], ""]
    rows = []
    for s in rep["steps"]:
        name = f"{s['at']:.0f}s {s['name']}"
        if s["error"]:
            rows.append([name, "", "ERROR", "", "", "", "", "", "", "", ""])
        for adapter, t in s["by_adapter"].items():
            rows.append([name, s["lane"], adapter, t["planned"], t["delivered"], t["confirmed"], t["failed"],
                         t.get("superseded", 0), t.get("pending", 0), t["latency_p50_ms"], t["latency_p99_ms"]])  # fmt: skip
    out += ["## Steps", "", *_md(["step", "lane", "adapter", "planned", "delivered", "confirmed", "failed",
                                   "superseded", "pending", "p50 ms", "p99 ms"], rows), ""]  # fmt: skip
    out += [f"- **{s['name']}** was refused: {s['error']}" for s in rep["steps"] if s["error"]]
    out += [f"- **{u['municipality']}** ({u['code']}), named by {u['step']}, heard nothing: no receiver covers it"
            for u in rep.get("no_receiver") or []]  # fmt: skip
    towns = rep.get("by_municipality") or {}
    if towns:
        cols = ("planned", "delivered", "confirmed", "failed", "expired", "superseded", "pending", "missed")
        out += ["", "## By municipality", "", "missed: never heard — failed, pending, or superseded before delivery.",
                "", *_md(["municipality", *cols], [_town_row(t, v, cols) for t, v in towns.items()])]  # fmt: skip
    faults = [s for s in rep["steps"] if s.get("fault")]
    if faults:
        out += ["", "## Fault timeline", "", *_md(["at", "step", "receiver", "fault", "seconds"], [
            [f"{s['at']:.0f}s", s["name"], s["fault"].get("receiver"), s["fault"].get("kind"), s["fault"].get("seconds")]
            for s in faults])]  # fmt: skip
    total = rep.get("total") or {}
    if total:
        cols = ("planned", "delivered", "confirmed", "failed", "superseded", "pending", "latency_p50_ms",
                "latency_p99_ms")  # fmt: skip
        out += ["", "## Totals by adapter", "", *_md(["adapter", *(c.replace("latency_", "").replace("_ms", " ms")
                                                                    for c in cols)],
                                                      [[a, *(t.get(c, 0) for c in cols)] for a, t in total.items()])]  # fmt: skip
    checked = [s for s in rep["steps"] if s.get("expect")]
    if checked:
        out += ["", "## What is in force after each step", ""]
        rows = []
        for s in checked:
            wanted = "; ".join(f"{m} " + ", ".join(f"{k} {_lv(v)}" for k, v in e.items()) for m, e in s["expect"].items())
            rows.append([s["name"], wanted, "as expected, in every view" if not s["views"] else "; ".join(s["views"]),
                         "agree" if not s["views"] else "DIFFER"])  # fmt: skip
        out += _md(["step", "expected", "seen", "views"], rows)
        if rep.get("hint"):
            out += ["", f"Hint: {rep['hint']}"]
    for s in rep["steps"]:
        result = s.get("test_broadcast")
        if not result:
            continue
        from alertd.testbroadcast import headline

        out += ["", f"## Transmission test: {s['name']}", "", headline(result), "",
                *_md(["municipality", "code", "result", "receivers", "cause"],
                     [[t["name"], t["municipality"], t["result"], len(t["receivers"]),
                       ", ".join(sorted({r["cause"] for r in t["receivers"] if r.get("cause")}))]
                      for t in result.get("municipalities") or []])]  # fmt: skip
        wide = [[w["name"], w["code"], r["subscriber"], r["result"], r.get("cause") or ""]
                for w in result.get("wide_receivers") or [] for r in w["receivers"]]  # fmt: skip
        if wide:
            out += ["", "Receivers for more than one town:", "", *_md(["covers", "code", "receiver", "result", "cause"], wide)]
        failing = [f for f in rep.get("test_failures") or [] if f["step"] == s["name"]]
        if failing:
            out += ["", f"Not passed ({len(failing)}):", "", *_md(["municipality", "receiver", "result", "cause"],
                    [[f["municipality"], f["subscriber"], f["result"], f["cause"]] for f in failing])]  # fmt: skip
    undelivered = rep.get("undelivered") or []
    if undelivered:
        out += ["", f"## Not delivered ({len(undelivered)})", "",
                *_md(["step", "receiver", "state", "attempts", "last error"],
                     [[u["step"], u["subscriber"], u["state"], u["attempts"], public_error(u["last_error"])]
                      for u in undelivered])]  # fmt: skip
    done = rep.get("cleanup")
    if done is not None:
        out += ["", f"Afterwards: {_cleanup_sentence(done)}"]
    if rep.get("compare"):
        c = rep["compare"]
        out += ["", "## Compared with an earlier drill", "",
                f"{c['scenario']} run {c['run_id']} ({c.get('date') or '?'}): "
                + ("every municipality delivered as before." if not c["changed"] else ""), ""]  # fmt: skip
        if c["changed"]:
            out += _md(["municipality", "delivered then", "delivered now", "missed then", "missed now"],
                       [[x["municipality"], x["delivered_then"], x["delivered_now"], x["missed_then"], x["missed_now"]]
                        for x in c["changed"]])  # fmt: skip
    out += ["", f"**{verdict_line(rep)}**"]
    return "\n".join(out) + "\n"


def write_csv(rep: dict[str, Any], path: str) -> None:
    """Every delivery of the drill: step, municipality, receiver, adapter, state, attempts, last error
    (UTF-8 with a BOM, so a spreadsheet reads the Japanese)."""
    import csv

    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        # code, alert_id and delivered_at came later: at the end, so readers of the first columns keep working.
        # receiver_type (simulated: the drill's own; live: an engine's receiver that opted into drills) too.
        writer.writerow(["step", "municipality", "receiver", "adapter", "state", "attempts", "last_error", "code",
                         "alert_id", "delivered_at", "receiver_type"])  # fmt: skip
        for d in rep.get("deliveries") or []:
            writer.writerow([d["step"], d["municipality"], d["subscriber"], d["adapter"], d["state"], d["attempts"],
                             public_error(d["last_error"]), d.get("code", ""), d.get("alert_id", ""),
                             d.get("delivered_at") or "",
                             "simulated" if d.get("simulated") else "live" if "simulated" in d else ""])  # fmt: skip


def _missed_of(totals: dict[str, Any]) -> int:
    """A town's missed deliveries; a report from before 'missed' existed counted failed and pending."""
    if "missed" in totals:
        return int(totals["missed"])
    return int(totals.get("failed", 0)) + int(totals.get("pending", 0))


def comparison(rep: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """What changed since the last drill, town by town: delivered of planned and missed, then and
    now — kept in the JSON report, so the difference is on file, not only on the terminal."""
    before, now = previous.get("by_municipality") or {}, rep.get("by_municipality") or {}
    changed = []
    for town in [*now, *(t for t in before if t not in now)]:
        b, n = before.get(town), now.get(town)
        row = {"municipality": town,
               "delivered_then": f"{b['delivered']}/{b['planned']}" if b else None,
               "delivered_now": f"{n['delivered']}/{n['planned']}" if n else None,
               "missed_then": _missed_of(b) if b else None, "missed_now": _missed_of(n) if n else None}  # fmt: skip
        if (row["delivered_then"], row["missed_then"]) != (row["delivered_now"], row["missed_now"]):
            changed.append(row)
    return {"scenario": previous.get("scenario"), "run_id": previous.get("run_id"), "date": previous.get("date"),
            "changed": changed}  # fmt: skip


def compare(rep: dict[str, Any], previous: dict[str, Any]) -> str:
    """The comparison as the terminal shows it."""
    found = rep.get("compare") or comparison(rep, previous)
    head = f"Compared with {found['scenario']} run {found['run_id']} ({found.get('date') or '?'}):"
    if not found["changed"]:
        return head + " every municipality delivered as before."
    dash = "-"
    return head + "\n" + report.table(
        ["municipality", "delivered then", "delivered now", "missed then", "missed now"],
        [[c["municipality"], c["delivered_then"] or dash, c["delivered_now"] or dash,
          dash if c["missed_then"] is None else c["missed_then"],
          dash if c["missed_now"] is None else c["missed_now"]] for c in found["changed"]],
    )  # fmt: skip
