"""`alertd jma parse FILE…` run as an operator would: a subprocess, JSON lines on stdout, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import JMAXML, ROOT

pytestmark = pytest.mark.skipif(not JMAXML.is_dir(), reason="JMA samples not found at ../shared/data/jmaxml")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertd.jma.cli", "parse", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_prints_one_json_line_per_alert_or_unsupported_type() -> None:
    eew = "../shared/data/jmaxml/37_01_01_240613_VXSE43.xml"
    drill = "../shared/data/jmaxml/32-39_13_07_250206_VTSE41.xml"
    other = "../shared/data/jmaxml/01_01_01_091210_VGSK50.xml"
    proc = run(eew, drill, other)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 3
    first, second, third = lines
    for key in ("status", "msg_type", "event", "level", "districts"):
        assert key in first and key in second
    assert (first["status"], first["msg_type"], first["kind"], first["priority"]) == (
        "Actual",
        "Alert",
        "eew",
        "flash",
    )
    assert first["districts"] == ["38", "39", "44", "35", "34"]
    assert (second["status"], second["event"], second["action"]) == ("Exercise", "津波注意報解除", "lift")
    assert all(d.startswith("tsunami:") or d.isdigit() for d in second["districts"])
    assert third == {"file": other, "type": "VGSK50", "title": "季節観測", "unsupported": "VGSK50",
                     "why": "seasonal and special observations (季節観測, 生物季節観測, 特殊気象報): not for public alerting"}


def test_exit_code_2_when_a_file_is_not_jma_xml(tmp_path: Path) -> None:
    cap = tmp_path / "cap.xml"
    cap.write_text('<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>', encoding="utf-8")
    broken = tmp_path / "broken.xml"
    broken.write_text("<Report><Control>", encoding="utf-8")
    good = "../shared/data/jmaxml/62_01_01_130412_VPNO50.xml"
    proc = run(str(cap), good, str(broken), str(tmp_path / "missing.xml"))
    assert proc.returncode == 2
    assert [json.loads(line)["kind"] for line in proc.stdout.splitlines()] == ["special_warning"]
    assert "cap.xml: not a JMA XML message" in proc.stderr
    assert "broken.xml: not a JMA XML message" in proc.stderr
    assert "missing.xml: cannot read" in proc.stderr
