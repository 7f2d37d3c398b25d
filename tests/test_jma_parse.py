"""JMA XML → alerts: every official sample, and the cases an operator checks by hand."""

from __future__ import annotations

from collections import Counter

import pytest

from alertd.errors import HostileInput, MalformedInput
from alertd.jma.parse import NotJmaXml, parse_message, type_code_hint
from alertd.models import MsgType, Status
from tests.support import JMAXML

SUPPORTED = {"VPWW54", "VPWW55", "VPWW56", "VPWW57", "VPWW58", "VPWW59", "VPWW60", "VPWW61", "VPNO50",
             "VXSE43", "VTSE41", "VXWW50", "VXKOii",
             "VXSE44", "VXSE45", "VXSE51", "VXSE52", "VXSE53", "VTSE51", "VTSE52", "VFVO50", "VFVO56",
             "VYSE50", "VYSE60", "VPOA50", "VPHW50", "VPHW51", "VPFT50", "VXSUii"}  # fmt: skip

pytestmark = pytest.mark.skipif(not JMAXML.is_dir(), reason="JMA samples not found at ../shared/data/jmaxml")


@pytest.fixture(scope="module")
def registry():
    from geo.registry import Registry

    return Registry.default()


def parse(name: str, registry):
    path = JMAXML / name
    return parse_message(path.read_bytes(), registry, name=path.name)


def test_every_sample_yields_known_districts_or_is_named_unsupported(registry) -> None:
    files = sorted(JMAXML.glob("*.xml"))
    assert len(files) == 546
    supported: Counter[str] = Counter()
    unsupported: Counter[str] = Counter()
    for path in files:
        result = parse_message(path.read_bytes(), registry, name=path.name)
        hint = type_code_hint(path.name)
        if not result.supported:
            assert result.type_code and result.type_code not in SUPPORTED, path.name
            unsupported[result.type_code] += 1
            continue
        assert result.type_code in SUPPORTED
        assert hint in (None, result.type_code), path.name  # the title agrees with the file name
        assert result.alerts, f"{path.name} is supported but yielded no alert"
        supported[result.type_code] += 1
        for alert in result.alerts:
            assert alert.origin == "jma" and alert.kind and alert.identifier
            unknown = [d for d in alert.districts if registry.find(d) is None]
            assert not unknown, f"{path.name}: districts not in the registry: {unknown}"
    assert sum(supported.values()) == 242
    assert sum(unsupported.values()) == 304


def test_identifiers_are_unique_per_report_and_stable(registry) -> None:
    """One identifier per JMA report (type, offices, title, EventID, Serial, ReportDateTime, InfoType).

    JMA's sample set holds a few reports twice, in two format revisions
    (…_241226_… and …_250630_…); those are the same report and share their
    identifiers, which is what lets the core drop the second as a duplicate.
    """
    seen: dict[str, tuple[str, str]] = {}
    for path in sorted(JMAXML.glob("*.xml")):
        result = parse_message(path.read_bytes(), registry, name=path.name)
        for alert in result.alerts:
            assert result.identity is not None
            if alert.identifier in seen:
                other_file, other_identity = seen[alert.identifier]
                assert other_identity == result.identity, (path.name, other_file)
            seen[alert.identifier] = (path.name, result.identity)
    again = parse("15_11_01_150916_VPWW54.xml", registry).alerts
    assert [a.identifier for a in again] == [
        i for i, (f, _) in seen.items() if f == "15_11_01_150916_VPWW54.xml"
    ]


def test_the_same_report_with_other_bytes_has_the_same_identifiers(registry) -> None:
    raw = (JMAXML / "37_01_01_240613_VXSE43.xml").read_bytes()
    crlf = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert crlf != raw
    first = parse_message(raw, registry, name="a.xml")
    second = parse_message(crlf, registry, name="b.xml")
    assert first.identity == second.identity
    assert [a.identifier for a in first.alerts] == [a.identifier for a in second.alerts]
    serial2 = parse("37_01_02_240613_VXSE43.xml", registry)
    assert serial2.identity != first.identity


def test_eew_warning(registry) -> None:
    result = parse("37_01_01_240613_VXSE43.xml", registry)
    assert result.type_code == "VXSE43"
    (alert,) = result.alerts
    assert alert.kind == "eew" and alert.status is Status.ACTUAL and alert.msg_type is MsgType.ALERT
    assert alert.districts == ["38", "39", "44", "35", "34"]  # 愛媛 高知 大分 山口 広島
    assert alert.level == 4  # 震度5弱 forecast; 6弱 and above would be 5 (a special warning)
    assert alert.incidents == "jma-VXSE43-20240417231454"
    assert alert.info_for("en").event == "Earthquake early warning"
    assert alert.infos[0].parameter("JMA_MAGNITUDE") == "5.8"


FINAL = "<NextAdvisory>この情報をもって、緊急地震速報：最終報とします。</NextAdvisory>"


def test_eew_final_report_is_marked(registry) -> None:
    from alertd import messages

    raw = (JMAXML / "37_01_02_240613_VXSE43.xml").read_text(encoding="utf-8")
    final = raw.replace("<Comments>", FINAL + "<Comments>", 1)
    (alert,) = parse_message(final.encode("utf-8"), registry).alerts
    ja, en = alert.info_for("ja"), alert.info_for("en")
    assert ja is not None and en is not None
    assert ja.parameter("JMA_FINAL_REPORT") == "true" and "最終報" in (ja.headline or "")
    assert "final report" in (en.headline or "")
    assert "最終報" in messages.headline(alert, "ja") and "最終報" in messages.body(alert, "ja")
    assert "final report" in messages.headline(alert, "en")
    (serial2,) = parse("37_01_02_240613_VXSE43.xml", registry).alerts  # not the last: no mark
    assert serial2.infos[0].parameter("JMA_FINAL_REPORT") is None
    assert "最終報" not in messages.headline(serial2, "ja")


def test_eew_cancel(registry) -> None:
    (alert,) = parse("37_01_03_240613_VXSE43.xml", registry).alerts
    assert alert.msg_type is MsgType.CANCEL and alert.kind == "eew"
    assert alert.incidents == "jma-VXSE43-20240417231454"  # what the poller links the cancel by
    assert alert.districts == [] and alert.level is None


def test_tsunami_regions_and_their_municipalities(registry) -> None:
    result = parse("32-39_11_02_250206_VTSE41.xml", registry)
    by_event = {a.event: a for a in result.alerts}
    assert list(by_event) == ["大津波警報", "津波警報", "津波注意報", "津波予報（若干の海面変動）"]
    major = by_event["大津波警報"]
    assert major.kind == "tsunami" and major.level == 5
    regions = [d for d in major.districts if d.startswith("tsunami:")]
    assert regions == ["tsunami:210", "tsunami:220", "tsunami:250"]  # 岩手 宮城 福島
    assert all(registry.prefecture_of(d) in ("03", "04", "07") for d in major.districts if ":" not in d)
    assert any(":" not in d for d in major.districts)
    assert by_event["津波警報"].level == 4 and by_event["津波注意報"].level == 2


def test_tsunami_exercise_and_cancel(registry) -> None:
    drill = parse("32-39_12_02_250206_VTSE41.xml", registry)
    assert {a.status for a in drill.alerts} == {Status.EXERCISE}
    (cancel,) = parse("38-39_03_01_210805_VTSE41.xml", registry).alerts
    assert cancel.msg_type is MsgType.CANCEL and cancel.kind == "tsunami"


def test_h27_warning_municipalities(registry) -> None:
    alerts = {a.event: a for a in parse("15_11_01_150916_VPWW54.xml", registry).alerts}
    surge = alerts["高潮警報"]
    assert surge.kind == "warning" and surge.level == 4 and surge.action == "issue"
    assert "35201" in surge.districts  # 下関市 (JMA area 3520100)
    assert "35213" not in surge.districts  # 美祢市 is inland: no storm-surge warning there
    assert all(len(d) == 5 for d in surge.districts)
    assert ("JP-JMA-AREA", "3520100") in [g for a in surge.infos[0].areas for g in a.geocodes]
    assert alerts["乾燥注意報"].kind == "advisory" and alerts["乾燥注意報"].level == 2
    assert surge.info_for("en-US").event == "Storm surge warning"


def test_r06_levels_come_from_the_name(registry) -> None:
    alerts = parse("15_16_01_241031_VPWW56.xml", registry).alerts
    levels = {(a.event, a.action): a.level for a in alerts}
    assert levels[("レベル４土砂災害危険警報", "issue")] == 4
    assert levels[("レベル３土砂災害警報", "continue")] == 3
    assert levels[("レベル２土砂災害注意報", "continue")] == 2
    lifted = [a for a in parse("15_17_01_241226_VPWW55.xml", registry).alerts if a.action == "lift"]
    assert lifted and all(a.level is None for a in lifted)


def test_special_warning_notice_and_its_lift(registry) -> None:
    (issued,) = parse("62_01_01_130412_VPNO50.xml", registry).alerts
    assert issued.kind == "special_warning" and issued.level == 5 and "29201" in issued.districts
    (lifted,) = parse("62_01_05_130412_VPNO50.xml", registry).alerts
    assert lifted.action == "lift" and lifted.level is None and lifted.districts == ["29"]


def test_landslide_and_flood(registry) -> None:
    alerts = parse("17_01_01_190529_VXWW50.xml", registry).alerts
    assert {(a.kind, a.action, a.level) for a in alerts} == {
        ("landslide", "continue", 4),
        ("landslide", "lift", None),
    }
    (flood,) = parse("16_02_02_220728_VXKOii.xml", registry).alerts
    assert flood.kind == "flood" and flood.level == 3 and flood.districts
    placeholder = parse("16_01_01_220728_VXKOii.xml", registry)
    assert placeholder.unresolved == ["0000000"] and placeholder.alerts[0].districts == []


def test_unsupported_type_is_named() -> None:
    result = parse_message((JMAXML / "01_01_01_091210_VGSK50.xml").read_bytes(), registry=None)  # type: ignore[arg-type]
    assert not result.supported and result.type_code == "VGSK50" and result.title == "季節観測"


def test_not_jma_and_hostile_xml_are_refused() -> None:
    with pytest.raises(NotJmaXml):
        parse_message(b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'/>", registry=None)  # type: ignore[arg-type]
    with pytest.raises(MalformedInput):
        parse_message(b"<Report><Control>", registry=None)  # type: ignore[arg-type]
    hostile = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><Report>&x;</Report>'
    with pytest.raises(HostileInput):
        parse_message(hostile, registry=None)  # type: ignore[arg-type]
