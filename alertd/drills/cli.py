"""Drill scenarios: replay a timeline of desk orders, national warnings and faults.

    alertd drill run SCENARIO [--speed N] [--json PATH] [--markdown PATH] [--csv PATH] [--lenient]
                              [--url URL --admin-token T --mqtt-url M --topic-prefix P]
                              (a running engine; default: embedded)
    alertd drill validate SCENARIO   (every problem, before anything is sent)

Every message a drill sends is forced to status Exercise (訓練), whatever the
file says, so a drill can never go out as a real alert. The scenario format
is documented in simulations/scenarios/README.md.
"""


from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from alertd import loop
from alertd.drills.embedded import run_embedded
from alertd.drills.render import comparison, passed, render_markdown, render_text, verdict, write_csv
from alertd.drills.runner import DrillRunner
from alertd.drills.scenario import SCENARIOS, Scenario, ScenarioError, load_scenario, resolve_scenario


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="alertd drill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="replay a scenario (status forced to Exercise)")
    p.add_argument("scenario", help="a YAML file, or the name of a shipped scenario")
    p.add_argument("--speed", type=float, default=1.0, help="time compression: 10 runs ten times faster")
    p.add_argument("--json", help="write the report as JSON here")
    p.add_argument("--markdown", help="write the report as Markdown here")
    p.add_argument("--csv", help="write every delivery (step, municipality, receiver, state, …) as CSV here")
    p.add_argument("--compare", metavar="PREVIOUS.json", help="say what changed since that drill's --json report")
    p.add_argument("--url", help="a running engine (default: start an embedded one)")
    p.add_argument("--admin-token", default=os.environ.get("ALERTD_ADMIN_TOKEN"))
    p.add_argument("--mqtt-url", default=os.environ.get("ALERTD_MQTT_URL"))
    p.add_argument("--topic-prefix", default=os.environ.get("ALERTD_TOPIC_PREFIX", "alerts/v1"),
                   help="with --url: the engine's ALERTD_TOPIC_PREFIX, where the drill reads the MQTT state "
                   "(default: ALERTD_TOPIC_PREFIX, else alerts/v1)")  # fmt: skip
    p.add_argument("--lenient", action="store_true",
                   help="a transmission test step passes when receivers got it but did not confirm (by default "
                   "that fails, as in 'alertd test-broadcast')")  # fmt: skip
    sub.add_parser("list", help="the shipped scenarios")
    v = sub.add_parser("validate", help="check names, targets, jurisdictions and files; send nothing")
    v.add_argument("scenario", help="a YAML file, or the name of a shipped scenario")
    args = parser.parse_args(argv)
    if args.cmd == "validate":
        return _validate(args.scenario)
    if args.cmd == "list":
        for path in sorted(SCENARIOS.glob("*.yaml")):
            print(f"{path.stem:<28} {load_scenario(path).description}")
        return 0
    # SIGTERM (a service manager, a kill) ends the drill like Ctrl-C: the runner still cancels
    # what it issued and removes what it registered before it exits.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        # The earlier report is read before anything is sent: a typo in its path found after the
        # drill would cost the whole drill.
        previous = _previous_report(args.compare) if args.compare else None
        scenario = load_scenario(resolve_scenario(args.scenario))
        found = _problems(scenario)
        if found:
            raise ScenarioError("the scenario has problems; nothing was sent:\n  " + "\n  ".join(found))
        for line in _warnings(scenario):
            print(f"alertd drill: warning: {line}", file=sys.stderr)
        if args.url:
            if not args.admin_token or not args.mqtt_url:
                raise ScenarioError(
                    "with --url, give --admin-token and --mqtt-url (or ALERTD_ADMIN_TOKEN / ALERTD_MQTT_URL)"
                )
            # The engine's topics (its ALERTD_TOPIC_PREFIX), or the in-force check reads the wrong ones.
            prefix = args.topic_prefix
            rep = loop.run(
                DrillRunner(scenario, args.url, args.admin_token, args.mqtt_url, args.speed, topic_prefix=prefix,
                            lenient=args.lenient).run()
            )
        else:
            rep = loop.run(run_embedded(scenario, args.speed, lenient=args.lenient))
    except ScenarioError as exc:
        print(f"alertd drill: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alertd drill: stopped; what it issued was cancelled and what it registered removed", file=sys.stderr)
        return 130
    if previous is not None:
        if previous.get("scenario") != rep["scenario"]:
            print(f"alertd drill: warning: {args.compare} is a report of scenario {previous.get('scenario')!r}, not "
                  f"{rep['scenario']!r}: towns that differ may only be towns the two scenarios do not share",
                  file=sys.stderr)  # fmt: skip
        rep["compare"] = comparison(rep, previous)  # in the report (terminal, JSON, Markdown) before its verdict
    # Saved with what it says of itself: the verdict, and final (read after the drill ended what it left).
    rep["verdict"] = verdict(rep)
    print(render_text(rep))
    if args.csv:
        write_csv(rep, args.csv)
    if args.json:
        Path(args.json).write_text(json.dumps(rep, ensure_ascii=False, indent=2), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(render_markdown(rep), encoding="utf-8")
    # Non-zero when a step failed, a view disagreed, anything planned was not delivered, or the
    # transmission test did not pass.
    return 0 if passed(rep) else 1


def _previous_report(path: str) -> dict[str, Any]:
    """An earlier drill's --json report, or a ScenarioError (exit 2) saying what is wrong with it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read {path} to compare with ({exc}); nothing was sent") from exc
    try:
        previous = json.loads(text)
    except ValueError:
        previous = None
    if not isinstance(previous, dict) or not isinstance(previous.get("by_municipality"), dict) \
            or "scenario" not in previous:
        raise ScenarioError(f"{path} is not a drill report (the file 'alertd drill run --json' writes), so there "
                            "is nothing to compare with; nothing was sent")  # fmt: skip
    return previous


def _problems(scenario: Scenario) -> list[str]:
    from alertd.drills.validate import problems
    from geo.registry import Registry

    return problems(scenario, Registry.default())


def _warnings(scenario: Scenario) -> list[str]:
    from alertd.drills.validate import warnings
    from geo.registry import Registry

    return warnings(scenario, Registry.default())


def _validate(name: str) -> int:
    try:
        scenario = load_scenario(resolve_scenario(name))
    except ScenarioError as exc:
        print(f"alertd drill validate: {exc}", file=sys.stderr)
        return 2
    found = _problems(scenario)
    for line in found:
        print(line)
    warned = _warnings(scenario)
    for line in warned:
        print(f"warning: {line}")
    print(f"{scenario.name}: {len(scenario.steps)} steps, " + (f"{len(found)} problem(s)" if found else "no problems")
          + (f", {len(warned)} warning(s)" if warned else ""))  # fmt: skip
    return 1 if found else 0


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM as Ctrl-C. Inside the drill's event loop asyncio's runner handles SIGINT by
    cancelling the drill's main task, at its next await, so its cleanup runs with every other
    task still alive, and then raises KeyboardInterrupt. Raising KeyboardInterrupt here
    instead landed wherever the process was (mid-request, inside another task), and a drill
    once hung after a SIGTERM until pytest's 300 s timeout. Before the loop runs, SIGINT's
    handler is Python's own, which raises KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not _interrupt:
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt
