"""``alertd demo``: the whole path on one machine, with nothing installed but alertd.

Starts an embedded Redis and MQTT broker, the engine, and simulated receivers
of all four kinds (broadcasters, portals, signage, radio gateways), replays a
short Joso (08211) flood drill with status Exercise — level 3, level 4 for
named districts, a shelter opening, a lift — and ends with the delivery report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alertd import loop
from alertd.drills.render import render_text
from alertd.drills.runner import run_embedded
from alertd.drills.scenario import SCENARIOS, load_scenario


def main(args: argparse.Namespace) -> int:
    scenario = load_scenario(SCENARIOS / "joso-demo.yaml")
    print(f"alertd demo: {scenario.description}", file=sys.stderr)
    print("starting embedded Redis, MQTT broker (amqtt), engine and demo receivers…", file=sys.stderr)
    rep = loop.run(run_embedded(scenario, args.speed))
    print(render_text(rep))  # per step, then the totals by adapter (once)
    total = rep["total"]
    if args.json:
        Path(args.json).write_text(json.dumps(rep, ensure_ascii=False, indent=2), encoding="utf-8")
    failed = sum(t["failed"] + t["pending"] for t in total.values())
    if rep["step_errors"] or failed:
        print(
            f"demo finished with problems: steps {rep['step_errors']}, undelivered {failed}", file=sys.stderr
        )
        return 1
    return 0
