"""The JMA broadcast policy: the built-in default, the shipped YAML, and validation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from alertd.jma.policy import DEFAULT_POLICY_PATH, Policy, PolicyError
from alertd.models import AdapterKind, Alert, MsgType, Priority, Status

ROOT = Path(__file__).resolve().parents[1]


def alert(kind: str, level: int | None, action: str | None = "issue", *, msg_type: MsgType = MsgType.ALERT,
          status: Status = Status.ACTUAL) -> Alert:  # fmt: skip
    return Alert(
        identifier="x", sender="jma.go.jp", sent=datetime(2024, 1, 1, tzinfo=UTC), status=status,
        msg_type=msg_type, origin="jma", kind=kind, level=level, action=action, districts=["08211"],
    )  # fmt: skip


def test_shipped_yaml_is_the_built_in_default() -> None:
    assert DEFAULT_POLICY_PATH == ROOT / "config" / "jma-policy.yaml"
    assert Policy.from_file(DEFAULT_POLICY_PATH) == Policy.default()


@pytest.mark.parametrize(
    ("case", "priority", "adapters", "scope"),
    [
        (alert("eew", 4), Priority.FLASH, ("radio", "broadcaster"), "prefecture"),
        (
            alert("eew", None, None, msg_type=MsgType.CANCEL),
            Priority.FLASH,
            ("radio", "broadcaster"),
            "prefecture",
        ),
        (alert("tsunami", 5), Priority.FLASH, ("radio", "broadcaster"), "prefecture"),
        (alert("tsunami", 4), Priority.FLASH, ("radio", "broadcaster"), "prefecture"),
        (alert("tsunami", 2), Priority.ROUTINE, ("radio", "broadcaster", "feed"), "districts"),
        (alert("tsunami", 1), Priority.ROUTINE, ("feed",), "districts"),
        (
            alert("special_warning", 5),
            Priority.FLASH,
            ("broadcaster", "isp", "signage", "radio", "feed"),
            "districts",
        ),
        (
            alert("warning", 4),
            Priority.ROUTINE,
            ("broadcaster", "isp", "signage", "radio", "feed"),
            "districts",
        ),
        (alert("warning", 3), Priority.ROUTINE, ("broadcaster", "isp", "signage", "feed"), "districts"),
        (alert("warning", 3, "continue"), Priority.ROUTINE, ("feed",), "districts"),
        (
            alert("warning", None, "lift"),
            Priority.ROUTINE,
            ("broadcaster", "isp", "signage", "feed"),
            "districts",
        ),
        (alert("advisory", 2), Priority.ROUTINE, ("feed",), "districts"),
        (
            alert("landslide", 4),
            Priority.ROUTINE,
            ("broadcaster", "isp", "signage", "radio", "feed"),
            "districts",
        ),
        (alert("flood", 2), Priority.ROUTINE, ("feed",), "districts"),
    ],
)
def test_default_decisions(case: Alert, priority: Priority, adapters: tuple[str, ...], scope: str) -> None:
    decision = Policy.default().apply(case)
    assert decision.broadcast
    assert (decision.priority, decision.adapters, decision.scope) == (priority, adapters, scope)
    assert case.priority is priority
    assert f"alertd:adapters={','.join(adapters)}" in case.codes


def test_test_messages_are_not_broadcast_but_exercises_are() -> None:
    policy = Policy.default()
    assert not policy.decide(alert("eew", 5, status=Status.TEST)).broadcast
    assert policy.decide(alert("eew", 5, status=Status.EXERCISE)).wants(AdapterKind.RADIO)


def test_custom_policy_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "rules:\n  - {kinds: [advisory], broadcast: false}\n  - {adapters: [all]}\n", encoding="utf-8"
    )
    policy = Policy.from_file(path)
    assert not policy.decide(alert("advisory", 2)).broadcast
    assert policy.decide(alert("warning", 3)).adapters == ("broadcaster", "isp", "signage", "radio", "feed")
    for bad, message in [
        ("rules: []", "non-empty"),
        ("rules:\n  - {adapters: [fax]}", "fax"),
        ("rules:\n  - {kinds: [meteor]}", "meteor"),
        ("rules:\n  - {min_level: 9}", "level from 1 to 5"),
        ("rules:\n  - {priority: urgent}", "urgent"),
        ("rules:\n  - {colour: red}", "colour"),
        ("statuses: [Live]\nrules:\n  - {}", "Live"),
    ]:
        with pytest.raises(PolicyError, match=message):
            Policy.from_yaml_text(bad)
