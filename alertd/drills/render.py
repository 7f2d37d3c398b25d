"""A drill's report as a terminal table and as Markdown (the JSON is the report itself)."""

from __future__ import annotations

from typing import Any

from alertd import report
from alertd.drills.views import _lv


def render_text(rep: dict[str, Any]) -> str:
    lines = [f"Drill: {rep['scenario']} (run {rep['run_id']}, status Exercise)"]
    if rep.get("date"):
        lines.append(f"{rep['date']}, speed ×{rep.get('speed', 1):g} — {rep.get('description') or ''}".rstrip(" —"))
    lines.append("")
    rows = []
    for s in rep["steps"]:
        if s["error"]:
            rows.append([f"{s['at']:>5.0f}s {s['name']}", "", "ERROR", s["error"][:70], "", "", "", "", "", "", ""])
            continue
        for adapter, t in s["by_adapter"].items():
            rows.append([f"{s['at']:>5.0f}s {s['name']}", s["lane"], adapter, t["planned"], t["delivered"], t["confirmed"], t["failed"],
                         t.get("superseded", 0), t.get("pending", 0), t["latency_p50_ms"], t["latency_p99_ms"]])  # fmt: skip
        if not s["by_adapter"] and s["kind"] not in ("fault", "wait"):
            rows.append([f"{s['at']:>5.0f}s {s['name']}", s["lane"], "-", 0, 0, 0, 0, 0, 0, None, None])
    lines.append(
        report.table(
            ["step", "lane", "adapter", "planned", "delivered", "confirmed", "failed", "superseded", "pending",
             "p50 ms", "p99 ms"],
            rows,
        )
    )
    faults = [s for s in rep["steps"] if s.get("fault")]
    if faults:
        lines += ["", "Fault timeline:"]
        lines += [f"  {s['at']:>5.0f}s  {s['name']}: {s['fault'].get('receiver')} {s['fault'].get('kind')}"
                  + (f" ({s['fault']['seconds']} s)" if s["fault"].get("seconds") else "") for s in faults]  # fmt: skip
    lines += ["", "Totals by adapter:", report.summary_table(rep["total"])]
    towns = rep.get("by_municipality") or {}
    if len(towns) > 1:
        cols = ("planned", "delivered", "confirmed", "failed", "expired", "superseded", "pending")
        lines += ["", "By municipality (failed counts the expired too):",
                  report.table(["municipality", *cols], [[t, *(v.get(c, 0) for c in cols)] for t, v in towns.items()])]  # fmt: skip
    checked = [s for s in rep["steps"] if s.get("expect")]
    if checked:
        lines += ["", "What is in force after each step (model, active list, Atom, MQTT state):"]
        rows = []
        for s in checked:
            wanted = "; ".join(f"{m} " + ", ".join(f"{k} {_lv(v)}" for k, v in e.items()) for m, e in s["expect"].items())
            rows.append([f"{s['at']:>5.0f}s {s['name']}", "agree" if not s["views"] else "DIFFER", wanted])
            rows += [["", "", f"  {p}"] for p in s["views"] or []]
        lines.append(report.table(["step", "views", "expected"], rows, left={1, 2}))
    for s in rep["steps"]:
        result = s.get("test_broadcast")
        if result:
            from alertd.testbroadcast import _towns_table

            t = result["summary"]
            lines += ["", f"Transmission test ({s['name']}): confirmed {t['confirmed']}, delivered but not "
                          f"confirmed {t['unconfirmed']}, failed {t['failed']}, municipalities with no receiver "
                          f"{t.get('no_receiver', 0)}", _towns_table(result)]  # fmt: skip
    undelivered = rep.get("undelivered") or []
    if undelivered:
        lines += ["", f"NOT DELIVERED ({len(undelivered)}): the drill did not pass"]
        lines.append(report.table(
            ["step", "receiver", "state", "attempts", "last error"],
            # The whole last error: what a drill office follows up with the receiver's operator.
            [[u["step"], u["subscriber"], u["state"], u["attempts"], u["last_error"] or ""] for u in undelivered],
            left={0, 1, 2, 4},
        ))  # fmt: skip
    done = rep.get("cleanup")
    if done is not None:
        lines += ["", f"Afterwards: cancelled {len(done['cancelled'])} drill alert(s) still standing; removed "
                      f"{len(done['removed_receivers'])} receiver(s) and {len(done['removed_issuers'])} issuer(s) "
                      "the drill registered."]  # fmt: skip
        lines += [f"  NOT CLEANED UP: {e}" for e in done["errors"]]
    return "\n".join(lines)


def render_markdown(rep: dict[str, Any]) -> str:
    """The same report as the terminal's — every section, failures first in mind — for the file
    a drill office hands on."""
    verdict = "did not pass" if rep.get("undelivered") or rep.get("step_errors") or rep.get("view_mismatches") else "passed"
    out = [f"# Drill report: {rep['scenario']}", "",
           f"Run `{rep['run_id']}`, status **Exercise**, {rep.get('date', '')}: **the drill {verdict}**.", "",
           "```", render_text(rep), "```"]  # fmt: skip
    return "\n".join(out) + "\n"

def write_csv(rep: dict[str, Any], path: str) -> None:
    """Every delivery of the drill: step, municipality, receiver, adapter, state, attempts, last error
    (UTF-8 with a BOM, so a spreadsheet reads the Japanese)."""
    import csv

    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "municipality", "receiver", "adapter", "state", "attempts", "last_error"])
        for d in rep.get("deliveries") or []:
            writer.writerow([d["step"], d["municipality"], d["subscriber"], d["adapter"], d["state"], d["attempts"],
                             d["last_error"] or ""])  # fmt: skip


def compare(rep: dict[str, Any], previous: dict[str, Any]) -> str:
    """What changed since the last drill, town by town: delivered of planned, then and now."""
    before, now = previous.get("by_municipality") or {}, rep.get("by_municipality") or {}
    rows = []
    for town in sorted(set(before) | set(now)):
        b, n = before.get(town), now.get(town)
        was = f"{b['delivered']}/{b['planned']}" if b else "-"
        is_ = f"{n['delivered']}/{n['planned']}" if n else "-"
        if was != is_:
            rows.append([town, was, is_])
    head = f"Compared with {previous.get('scenario')} run {previous.get('run_id')} ({previous.get('date', '?')}):"
    if not rows:
        return head + " every municipality delivered as before."
    return head + "\n" + report.table(["municipality", "delivered then", "delivered now"], rows)
