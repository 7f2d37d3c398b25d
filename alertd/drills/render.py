"""A drill's report as a terminal table and as Markdown (the JSON is the report itself)."""

from __future__ import annotations

from typing import Any

from alertd import report
from alertd.drills.views import _lv


def render_text(rep: dict[str, Any]) -> str:
    lines = [f"Drill: {rep['scenario']} (run {rep['run_id']}, status Exercise)", ""]
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
    lines += ["", "Totals by adapter:", report.summary_table(rep["total"])]
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
            [[u["step"], u["subscriber"], u["state"], u["attempts"], (u["last_error"] or "")[:70]] for u in undelivered],
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
    out = [f"# Drill report: {rep['scenario']}", "", f"Run `{rep['run_id']}`, status **Exercise**.", ""]
    out += [
        "| step | adapter | planned | delivered | confirmed | failed | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in rep["steps"]:
        if s["error"]:
            out.append(f"| {s['at']:.0f}s {s['name']} | error | {s['error']} | | | | | |")
        for adapter, t in s["by_adapter"].items():
            cells = [
                t["planned"],
                t["delivered"],
                t["confirmed"],
                t["failed"],
                t["latency_p50_ms"],
                t["latency_p99_ms"],
            ]
            out.append(
                f"| {s['at']:.0f}s {s['name']} | {adapter} | "
                + " | ".join(
                    "-" if c is None else (f"{c:.1f}" if isinstance(c, float) else str(c)) for c in cells
                )
                + " |"
            )
    return "\n".join(out) + "\n"
