"""The JMA broadcast policy: the built-in default, the shipped YAML, and validation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from alertd.jma.policy import DEFAULT_POLICY_PATH, Decision, Policy, PolicyError
from alertd.models import AdapterKind, Alert, Info, MsgType, Priority, Status
from tests.support import ROOT

# "adapters: [all]": every subscriber kind (cell broadcast and the relays included), then the feed.
EVERY_KIND = tuple(a.value for a in AdapterKind)


def alert(kind: str, level: int | None, action: str | None = "issue", *, msg_type: MsgType = MsgType.ALERT,
          status: Status = Status.ACTUAL) -> Alert:  # fmt: skip
    return Alert(
        identifier="x", sender="jma.go.jp", sent=datetime(2024, 1, 1, tzinfo=UTC), status=status,
        msg_type=msg_type, origin="jma", kind=kind, level=level, action=action, districts=["08211"],
    )  # fmt: skip


def lifting(level: int) -> Alert:
    """A tsunami lift of the given grade, as the parser makes it (LIFTED_LEVEL parameter)."""
    lift = alert("tsunami", None, "lift", msg_type=MsgType.UPDATE)
    lift.infos = [Info(event="x", parameters=[("LIFTED_LEVEL", str(level))])]
    return lift


def test_shipped_yaml_is_the_built_in_default() -> None:
    assert DEFAULT_POLICY_PATH == ROOT / "config" / "jma-policy.yaml"
    assert Policy.from_file(DEFAULT_POLICY_PATH) == Policy.default()


@pytest.mark.parametrize(
    ("case", "priority", "adapters", "scope"),
    [
        # EEW and tsunami warnings reach the MQTT feed too, so the retained state shows them, and
        # cell broadcast (緊急速報メール/ETWS), whose main use they are.
        (alert("eew", 4), Priority.FLASH, ("radio", "broadcaster", "cbc", "feed"), "prefecture"),
        (
            alert("eew", None, None, msg_type=MsgType.CANCEL),
            Priority.FLASH,
            ("radio", "broadcaster", "cbc", "feed"),
            "prefecture",
        ),
        (alert("tsunami", 5), Priority.FLASH, ("radio", "broadcaster", "cbc", "feed"), "prefecture"),
        (alert("tsunami", 4), Priority.FLASH, ("radio", "broadcaster", "cbc", "feed"), "prefecture"),
        (lifting(4), Priority.FLASH, ("radio", "broadcaster", "cbc", "feed"), "prefecture"),
        (lifting(2), Priority.ROUTINE, ("radio", "broadcaster", "feed"), "districts"),
        (lifting(1), Priority.ROUTINE, ("feed",), "districts"),
        (alert("tsunami", 2), Priority.ROUTINE, ("radio", "broadcaster", "feed"), "districts"),
        (alert("tsunami", 1), Priority.ROUTINE, ("feed",), "districts"),
        (
            alert("special_warning", 5),
            Priority.FLASH,
            EVERY_KIND,
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


def test_test_messages_are_not_broadcast() -> None:
    policy = Policy.default()
    assert not policy.decide(alert("eew", 5, status=Status.TEST)).broadcast
    assert not policy.decide(alert("eew", 5, status=Status.TEST), [Policy.default().decide(alert("eew", 5))]).broadcast


@pytest.mark.parametrize("kind", ["eew", "tsunami"])
def test_exercises_never_reach_loudspeakers_nor_the_flash_lane(kind: str) -> None:
    """Finding 6: the default policy sent 訓練 EEWs to loudspeaker gateways in the flash lane."""
    policy = Policy.default()
    for case in (alert(kind, 5, status=Status.EXERCISE),
                 alert(kind, None, None, msg_type=MsgType.CANCEL, status=Status.EXERCISE)):  # fmt: skip
        real = policy.apply(alert(kind, 5))
        decision = policy.apply(case, inherit=[real])  # not even when what it updates went there
        assert decision.broadcast and not decision.wants(AdapterKind.RADIO)
        assert decision.priority is Priority.ROUTINE and case.priority is Priority.ROUTINE
        assert decision.wants(AdapterKind.BROADCASTER) and decision.wants("feed")
        assert "alertd:withheld=radio" in case.codes  # so the core can serve subscribers that opted in
        assert "radio" not in (case.adapters or [])


def test_an_update_goes_as_far_as_what_it_references() -> None:
    policy = Policy.default()
    warning = policy.decide(alert("tsunami", 4))
    downgrade = alert("tsunami", 2, msg_type=MsgType.UPDATE)
    decision = policy.apply(downgrade, inherit=[warning])
    assert (decision.priority, decision.scope) == (Priority.FLASH, "prefecture")
    assert set(decision.adapters) == {"radio", "broadcaster", "cbc", "feed"}
    forecast_end = lifting(1)
    assert policy.decide(forecast_end, [policy.decide(alert("tsunami", 1))]).adapters == ("feed",)
    # A decision survives the JSON it is stored as between telegrams.
    assert Decision.from_dict(warning.to_dict()) == warning


def test_custom_policy_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "rules:\n  - {kinds: [advisory], broadcast: false}\n  - {adapters: [all]}\n", encoding="utf-8"
    )
    policy = Policy.from_file(path)
    assert not policy.decide(alert("advisory", 2)).broadcast
    assert policy.decide(alert("warning", 3)).adapters == EVERY_KIND
    for bad, message in [
        ("rules: []", "non-empty"),
        ("rules:\n  - {adapters: [fax]}", "fax"),
        ("rules:\n  - {kinds: [meteor]}", "meteor"),
        ("rules:\n  - {min_level: 9}", "level from 1 to 5"),
        ("rules:\n  - {priority: urgent}", "urgent"),
        ("rules:\n  - {colour: red}", "colour"),
        ("statuses: [Live]\nrules:\n  - {}", "Live"),
        ("rules:\n  - {lifted_min_level: 0}", "level from 1 to 5"),
        ("rules:\n  - {statuses: [Pretend]}", "Pretend"),
        ("exercise: {withhold: [fax]}\nrules:\n  - {}", "fax"),
        ("exercise: {mute: true}\nrules:\n  - {}", "mute"),
    ]:
        with pytest.raises(PolicyError, match=message):
            Policy.from_yaml_text(bad)
