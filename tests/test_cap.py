"""CAP 1.2 in and out: round trips keep every block and area, and every emitted document is schema-valid."""

from __future__ import annotations

import copy
import functools
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from alertd.cap import (
    CAP_NAMESPACE,
    GEOCODE_DISTRICT,
    GEOCODE_JISX0401,
    GEOCODE_JISX0402,
    GEOCODE_JMA_AREA,
    GEOCODE_JMA_TSUNAMI,
    PARAM_ACTION,
    PARAM_ID,
    PARAM_LEVEL,
    PARAM_REASON,
    PARAM_SHELTER,
    district_geocode,
    parse_cap,
    to_cap,
)
from alertd.errors import HostileInput, InvalidInput, MalformedInput
from alertd.models import Alert, Area, Info, MsgType, Priority, Resource, Shelter, Status
from alertd.xmlsafe import load_schema
from tests.support import CAP_XSD

FIXTURES = Path(__file__).parent / "fixtures" / "cap"
FIXTURE_NAMES = sorted(p.name for p in FIXTURES.glob("*.xml"))
JST = timezone(timedelta(hours=9))
TIME_ELEMENTS = ("sent", "effective", "onset", "expires")


@functools.cache
def _schema_or_none() -> etree.XMLSchema | None:
    return load_schema(CAP_XSD) if CAP_XSD.exists() else None


@pytest.fixture
def schema() -> etree.XMLSchema:
    found = _schema_or_none()
    if found is None:
        pytest.skip(f"the OASIS CAP schema is not at {CAP_XSD} (../shared/data is absent)")
    return found


def assert_valid(schema: etree.XMLSchema, document: bytes) -> None:
    tree = etree.fromstring(document)
    assert schema.validate(tree), f"{schema.error_log}\n{document.decode()}"
    for name in TIME_ELEMENTS:
        for element in tree.iter(f"{{{CAP_NAMESPACE}}}{name}"):
            assert not element.text.endswith("Z"), "CAP times must spell UTC as -00:00"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def leaves(document: bytes) -> dict[str, str]:
    """Every text-bearing element, keyed by its position: 'alert/info[2]/area[1]/geocode[1]/value'."""
    out: dict[str, str] = {}

    def walk(element: etree._Element, path: str) -> None:
        children = [c for c in element if isinstance(c.tag, str)]
        if not children:
            out[path] = (element.text or "").strip()
            return
        seen: dict[str, int] = {}
        for child in children:
            name = etree.QName(child).localname
            seen[name] = seen.get(name, 0) + 1
            walk(child, f"{path}/{name}[{seen[name]}]")

    walk(etree.fromstring(document), "alert")
    return out


def base_alert(**overrides: object) -> Alert:
    fields: dict[str, object] = {
        "identifier": "alertd-0001",
        "sender": "bousai@city.joso.lg.jp",
        "sent": datetime(2024, 9, 10, 6, 15, tzinfo=JST),
        "status": Status.ACTUAL,
        "msg_type": MsgType.ALERT,
    }
    fields.update(overrides)
    return Alert(**fields)  # type: ignore[arg-type]


# --- the hand-written fixtures ------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_is_valid_cap(name: str, schema: etree.XMLSchema) -> None:
    assert schema.validate(etree.parse(str(FIXTURES / name)))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_round_trip_keeps_every_element_in_place(name: str, schema: etree.XMLSchema) -> None:
    source = fixture(name)
    out = to_cap(parse_cap(source))
    assert_valid(schema, out)
    before, after = leaves(source), leaves(out)
    # The only addition allowed is writing out CAP's own default language.
    added = {k: v for k, v in after.items() if k not in before}
    assert all(k.endswith("/language[1]") and v == "en-US" for k, v in added.items()), added
    assert {k: after.get(k) for k in before} == before


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_round_trip_is_a_fixed_point(name: str) -> None:
    alert = parse_cap(fixture(name))
    again = parse_cap(to_cap(alert))
    assert again == alert
    assert to_cap(again) == to_cap(alert)


def test_evacuation_order_reads_completely() -> None:
    alert = parse_cap(fixture("joso-evacuation-order.xml"))
    assert (alert.identifier, alert.sender, alert.status, alert.msg_type) == (
        "JP-08211-2024-0001",
        "bousai@city.joso.lg.jp",
        Status.ACTUAL,
        MsgType.ALERT,
    )
    assert alert.sent == datetime(2024, 9, 10, 6, 15, tzinfo=JST)
    assert alert.origin == "cap"
    assert alert.codes == ["JP-L-ALERT", "IPAWSv1.0"]
    assert alert.incidents == "JP-08211-2024-FLOOD-01"
    assert (alert.level, alert.action, alert.reason) == (4, "issue", "洪水")
    assert [s.name for s in alert.shelters] == ["石下総合体育館", "水海道小学校"]
    assert alert.shelters[0].capacity == 500 and alert.shelters[1].occupancy == 120

    ja, en = alert.infos
    assert alert.info_for("ja") is ja and alert.info_for("en") is en
    assert ja.categories == ["Met", "Safety"]
    assert ja.response_types == ["Evacuate", "Shelter"]
    assert (ja.urgency, ja.severity, ja.certainty) == ("Immediate", "Severe", "Likely")
    assert ja.event_codes == [("JP-ALERTD-KIND", "evacuation")]
    assert ja.expires == datetime(2024, 9, 11, 6, 15, tzinfo=JST)
    assert ja.parameter("river") == "鬼怒川"
    assert en.parameter(PARAM_REASON) == "Flood"
    assert ja.resources == [
        Resource(
            desc="浸水想定区域図",
            mime_type="application/pdf",
            size=204800,
            uri="https://www.city.joso.lg.jp/bousai/hazardmap.pdf",
            digest="2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
        )
    ]
    wakamiyado, misaka = ja.areas
    assert wakamiyado.polygons == ["36.06,139.97 36.07,139.99 36.05,140.00 36.06,139.97"]
    assert (GEOCODE_JISX0402, "08211") in wakamiyado.geocodes
    assert misaka.circles == ["36.03,139.98 1.5"]


def test_update_refers_to_the_order_it_corrects() -> None:
    order = parse_cap(fixture("joso-evacuation-order.xml"))
    update = parse_cap(fixture("joso-evacuation-update.xml"))
    assert update.msg_type is MsgType.UPDATE
    assert update.references == [order.reference_key()]
    assert update.shelters[0].address == "常総市新石下4310-1"
    assert b"<references>" + order.reference_key().encode() + b"</references>" in to_cap(update)


def test_cancel_refers_to_every_message_it_withdraws() -> None:
    order = parse_cap(fixture("joso-evacuation-order.xml"))
    update = parse_cap(fixture("joso-evacuation-update.xml"))
    cancel = parse_cap(fixture("joso-evacuation-cancel.xml"))
    assert cancel.msg_type is MsgType.CANCEL
    assert cancel.references == [order.reference_key(), update.reference_key()]
    assert [i.language for i in cancel.infos] == ["ja-JP", "en-US"]
    assert cancel.infos[0].response_types == ["AllClear"]


def test_exercise_stays_an_exercise(schema: etree.XMLSchema) -> None:
    alert = parse_cap(fixture("tsunami-exercise.xml"))
    assert alert.status is Status.EXERCISE
    assert (alert.kind, alert.level) == ("tsunami", 5)
    coast = alert.infos[0].areas[0]
    assert coast.geocodes == [(GEOCODE_JMA_TSUNAMI, "300")]
    assert (coast.altitude, coast.ceiling) == (0.0, 9.8)
    out = to_cap(alert)
    assert_valid(schema, out)
    assert b"<status>Exercise</status>" in out


def test_test_message_defaults_and_utc_spelling() -> None:
    alert = parse_cap(fixture("system-test.xml"))
    assert alert.status is Status.TEST
    assert alert.infos[0].language == "en-US"  # CAP's default when <language> is absent
    assert (alert.scope, alert.restriction) == ("Restricted", "Municipal receivers only")
    assert alert.sent == datetime(2024, 8, 21, 11, 0, tzinfo=UTC)
    out = to_cap(alert)
    assert b"<status>Test</status>" in out
    assert b"<sent>2024-08-21T11:00:00-00:00</sent>" in out


def test_polygons_and_circles_are_kept_per_area() -> None:
    alert = parse_cap(fixture("landslide-polygon-circle.xml"))
    slope, river = alert.infos[0].areas
    assert len(slope.polygons) == 2 and slope.circles == []
    assert slope.geocodes == [(GEOCODE_JMA_AREA, "0820200")]
    assert river.polygons == [] and river.circles == ["36.65,140.58 0.5", "36.66,140.59 0.25"]
    assert alert.on_behalf_of == "08202"
    assert alert.sent == datetime(2024, 6, 30, 23, 59, 59, tzinfo=JST)


# --- emitting alerts from every source ------------------------------------------------------


def test_desk_order_with_districts_gets_an_area_built_from_them(schema: etree.XMLSchema) -> None:
    alert = base_alert(
        id="a-7f3",
        origin="desk",
        municipality="08211",
        districts=["08211", "0821100", "08211-wakamiyado"],
        level=4,
        action="issue",
        reason="洪水",
        kind="evacuation",
        shelters=[Shelter(name="石下総合体育館", address="常総市新石下4310", capacity=500)],
        infos=[Info(event="避難指示", urgency="Immediate", severity="Severe", certainty="Likely")],
    )
    out = to_cap(alert)
    assert_valid(schema, out)
    back = parse_cap(out)
    assert [i.language for i in back.infos] == ["ja-JP"]  # only what the alert has
    (area,) = back.infos[0].areas
    assert area.desc == "08211, 0821100, 08211-wakamiyado"
    assert area.geocodes == [
        (GEOCODE_JISX0402, "08211"),
        (GEOCODE_JMA_AREA, "0821100"),
        (GEOCODE_DISTRICT, "08211-wakamiyado"),
    ]
    info = back.infos[0]
    assert info.parameter(PARAM_ID) == "a-7f3"
    assert info.parameter(PARAM_LEVEL) == "4"
    assert info.parameter(PARAM_ACTION) == "issue"
    assert (back.level, back.action, back.reason, back.kind, back.municipality) == (
        4,
        "issue",
        "洪水",
        "evacuation",
        "08211",
    )
    assert back.shelters == alert.shelters
    assert back.id == ""  # the receiving alertd assigns its own id


def test_explicit_areas_win_over_districts() -> None:
    alert = base_alert(districts=["08211"], infos=[Info(event="x", areas=[Area(desc="若宮戸")])])
    assert [a.desc for a in parse_cap(to_cap(alert)).infos[0].areas] == ["若宮戸"]


def test_national_warning_with_tsunami_regions(schema: etree.XMLSchema) -> None:
    alert = base_alert(
        sender="jma.go.jp",
        origin="jma",
        priority=Priority.FLASH,
        kind="tsunami",
        infos=[
            Info(
                event="大津波警報",
                language="ja-JP",
                categories=["Geo"],
                urgency="Immediate",
                severity="Extreme",
                certainty="Observed",
                areas=[Area(desc="茨城県", geocodes=[(GEOCODE_JMA_TSUNAMI, "300")])],
            ),
            Info(
                event="Major tsunami warning",
                language="en-US",
                categories=["Geo"],
                areas=[Area(desc="Ibaraki", geocodes=[(GEOCODE_JMA_TSUNAMI, "300")])],
            ),
        ],
    )
    out = to_cap(alert)
    assert_valid(schema, out)
    assert [i.areas for i in parse_cap(out).infos] == [i.areas for i in alert.infos]


def test_messy_values_are_repaired_into_valid_cap(schema: etree.XMLSchema) -> None:
    alert = base_alert(
        sent=datetime(2024, 9, 10, 6, 15, 7, 123456),  # naive: taken as UTC
        status="exercise",  # type: ignore[arg-type]
        scope="public",
        codes=["", "JP"],
        infos=[
            Info(
                event="flood\x00 warning\x1b",
                language="ja_JP",
                categories=["safety", "Weather"],
                response_types=["evacuate", "RunAway"],
                urgency="immediate",
                severity="terrible",
                certainty="",
                web="https://example.jp/a path?q=避難",
                effective=datetime(2024, 9, 10, 6, 15, tzinfo=timezone(timedelta(hours=9, seconds=30))),
                areas=[Area(desc="x", altitude=1e-05, ceiling=float("inf"))],
            ),
            Info(event="no categories", categories=[]),
        ],
    )
    out = to_cap(alert)
    assert_valid(schema, out)
    back = parse_cap(out)
    first = back.infos[0]
    assert back.status is Status.EXERCISE and back.scope == "Public" and back.codes == ["JP"]
    assert back.sent == datetime(2024, 9, 10, 6, 15, 7, tzinfo=UTC)
    assert b"<sent>2024-09-10T06:15:07-00:00</sent>" in out
    assert first.event == "flood warning"
    assert first.language == "ja-JP"
    assert first.categories == ["Safety", "Other"]
    assert first.response_types == ["Evacuate"]
    assert (first.urgency, first.severity, first.certainty) == ("Immediate", "Unknown", "Unknown")
    assert first.web is not None and " " not in first.web
    assert first.areas[0].altitude == 1e-05 and first.areas[0].ceiling is None
    assert back.infos[1].categories == ["Other"]


def test_unknown_scope_is_refused_rather_than_published() -> None:
    with pytest.raises(InvalidInput) as caught:
        to_cap(base_alert(scope="Internal"))
    assert "scope" in caught.value.detail


def test_alert_fields_override_stale_parameters_on_every_block() -> None:
    # A correction or a lift is often made by copying the earlier alert.
    alert = parse_cap(fixture("joso-evacuation-order.xml"))
    lift = copy.deepcopy(alert)
    lift.action = "lift"
    lift.shelters[0].address = "常総市新石下4310-1"
    back = parse_cap(to_cap(lift))
    for info in back.infos:
        assert info.parameter(PARAM_ACTION) == "lift"
        assert "4310-1" in next(v for k, v in info.parameters if k == PARAM_SHELTER)
    assert [i.parameter(PARAM_REASON) for i in back.infos] == ["洪水", "Flood"]  # each in its language


def test_shelters_reach_every_language_block() -> None:
    alert = base_alert(
        shelters=[Shelter(name="水海道小学校")],
        infos=[Info(event="避難指示"), Info(event="Evacuation order", language="en-US")],
    )
    back = parse_cap(to_cap(alert))
    assert all(i.parameter(PARAM_SHELTER) == '{"name":"水海道小学校","status":"open"}' for i in back.infos)


def test_alert_without_info_blocks(schema: etree.XMLSchema) -> None:
    out = to_cap(base_alert(msg_type=MsgType.ACK, references=["a,b,2024-09-10T06:15:00+09:00"]))
    assert_valid(schema, out)
    assert parse_cap(out).infos == []


@pytest.mark.parametrize(
    ("code", "geocode"),
    [
        ("08", (GEOCODE_JISX0401, "08")),
        ("08211", (GEOCODE_JISX0402, "08211")),
        ("082112", (GEOCODE_JISX0402, "08211")),  # with its check digit
        ("131016", (GEOCODE_JISX0402, "13101")),
        ("082113", (GEOCODE_DISTRICT, "082113")),  # wrong check digit: not a JIS code
        ("0821100", (GEOCODE_JMA_AREA, "0821100")),
        ("08211-wakamiyado", (GEOCODE_DISTRICT, "08211-wakamiyado")),
    ],
)
def test_district_codes_become_profile_geocodes(code: str, geocode: tuple[str, str]) -> None:
    assert district_geocode(code) == geocode


# --- refusing what is not CAP 1.2 -------------------------------------------------------------


def _mutated(replace: str, by: str, name: str = "joso-evacuation-update.xml") -> bytes:
    text = fixture(name).decode()
    assert replace in text
    return text.replace(replace, by, 1).encode()


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        ("urn:oasis:names:tc:emergency:cap:1.1", "CAP 1.1"),
        ("http://www.incident.com/cap/1.0", "CAP 1.0"),
        ("urn:example:not-cap", "urn:example:not-cap"),
    ],
)
def test_wrong_namespace(namespace: str, expected: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_cap(_mutated(CAP_NAMESPACE, namespace))
    assert expected in caught.value.detail and "1.2" in caught.value.detail


def test_no_namespace() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_cap(_mutated(f' xmlns="{CAP_NAMESPACE}"', ""))
    assert "no namespace" in caught.value.detail


def test_not_an_alert_at_all() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_cap(b'<Report xmlns="http://xml.kishou.go.jp/jmaxml1/"/>')
    assert "<Report>" in caught.value.detail


@pytest.mark.parametrize(
    ("replace", "by", "words"),
    [
        ("<identifier>JP-08211-2024-0002</identifier>", "", ["<identifier>", "missing"]),
        ("<sender>bousai@city.joso.lg.jp</sender>", "", ["<sender>", "missing"]),
        ("<areaDesc>常総市 若宮戸</areaDesc>", "", ["<areaDesc>", "Area 1 of info block 1 (ja-JP)"]),
        ("<category>Safety</category>", "", ["<category>", "Info block 1"]),
        ("<urgency>Immediate</urgency>", "", ["<urgency>"]),
        ("<status>Actual</status>", "<status>Real</status>", ["'Real'", "Actual, Exercise"]),
        ("<msgType>Update</msgType>", "<msgType>Correction</msgType>", ["<msgType>", "Update"]),
        ("<sent>2024-09-10T06:40:00+09:00</sent>", "<sent>2024-09-10T06:40:00</sent>", ["time-zone offset"]),
        ("<sent>2024-09-10T06:40:00+09:00</sent>", "<sent>2024-02-30T06:40:00+09:00</sent>", ["real date"]),
        ("<headline>", "<headLine>x</headLine><headline>", ["<headLine>", "not a CAP 1.2 element"]),
        ("<scope>Public</scope>", "<scope>Public</scope><scope>Public</scope>", ["<scope>", "only once"]),
        ("<sender>bousai@city.joso.lg.jp", "<sender>bousai city", ["<sender>", "spaces"]),
        ("<references>bousai@city.joso.lg.jp,", "<references>", ["sender,identifier,sent"]),
        ("<scope>Public</scope>", "<scope>Private</scope>", ["<addresses>"]),
        ("<value>08211</value>", "<value>08211</value><value>x</value>", ["<value>", "only once"]),
        ("<event>避難指示</event>", "<event>避難<b>指示</b></event>", ["<event>", "plain text"]),
        ('"capacity":500}', '"capacity":500', ["JP-ALERTD-SHELTER"]),
    ],
)
def test_invalid_cap_names_what_is_wrong(replace: str, by: str, words: list[str]) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_cap(_mutated(replace, by))
    assert caught.value.problem()["status"] == 422
    for word in words:
        assert word in caught.value.detail


@pytest.mark.parametrize(
    ("replace", "by", "words"),
    [
        ("36.6,140.6 36.61,140.6 36.61,140.62 36.6,140.62 36.6,140.6", "36.6,140.6 36.61,140.6 36.61,140.62",
         ["<polygon>", "not closed"]),
        ("36.65,140.58 0.5", "140.58,36.65 0.5", ["off the globe"]),
        ("36.65,140.58 0.5", "36.65,140.58", ["<circle>", "radius_km"]),
        ("<value>5</value>", "<value>6</value>", ["JP-ALERTD-LEVEL", "1 to 5"]),
        ("<value>issue</value>", "<value>hatsurei</value>", ["JP-ALERTD-ACTION"]),
    ],
)  # fmt: skip
def test_invalid_geometry_and_profile_values(replace: str, by: str, words: list[str]) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_cap(_mutated(replace, by, "landslide-polygon-circle.xml"))
    for word in words:
        assert word in caught.value.detail


@pytest.mark.parametrize("msg_type", ["Update", "Cancel"])
def test_update_and_cancel_need_references(msg_type: str) -> None:
    doc = _mutated(
        "<msgType>Alert</msgType>", f"<msgType>{msg_type}</msgType>", "landslide-polygon-circle.xml"
    )
    with pytest.raises(InvalidInput) as caught:
        parse_cap(doc)
    assert "<references>" in caught.value.detail and msg_type in caught.value.detail


def test_hostile_cap_is_refused_by_the_safe_parser() -> None:
    doc = b'<!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + fixture("system-test.xml").split(
        b"-->", 1
    )[1].replace(b"<note>", b"<note>&x;")
    with pytest.raises(HostileInput):
        parse_cap(doc)


def test_truncated_cap_is_malformed_not_invalid() -> None:
    doc = fixture("joso-evacuation-cancel.xml")
    with pytest.raises(MalformedInput) as caught:
        parse_cap(doc[: len(doc) // 2])
    assert not isinstance(caught.value, InvalidInput)
    assert "CAP message is cut off" in caught.value.detail


def test_foreign_extensions_are_ignored() -> None:
    doc = _mutated(
        "</alert>", '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo/></Signature></alert>'
    )
    assert parse_cap(doc).identifier == "JP-08211-2024-0002"


# --- round-trip properties -----------------------------------------------------------------

_TEXT_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Co"), blacklist_characters="\ufeff")
text = st.text(_TEXT_CHARS, min_size=1, max_size=30).map(str.strip).filter(bool)
maybe_text = st.none() | text
token = st.text(st.sampled_from("abcxyz0189-_.@:/避難"), min_size=1, max_size=20)
zones = st.sampled_from([UTC, JST, timezone(timedelta(hours=-5, minutes=-30)), timezone(timedelta(hours=14))])
times = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=zones).map(
    lambda d: d.replace(microsecond=0)
)
pairs = st.lists(st.tuples(text, text), max_size=3)
lat = st.floats(-90, 90, allow_nan=False).map(lambda v: round(v, 5))
lon = st.floats(-180, 180, allow_nan=False).map(lambda v: round(v, 5))
point = st.tuples(lat, lon).map(lambda p: f"{p[0]},{p[1]}")
polygon = st.lists(point, min_size=3, max_size=6).map(lambda ps: " ".join([*ps, ps[0]]))
circle = st.tuples(point, st.floats(0, 500).map(lambda r: round(r, 3))).map(lambda c: f"{c[0]} {c[1]}")
height = st.none() | st.floats(-1000, 60000).map(lambda v: round(v, 2))

areas = st.builds(
    Area,
    desc=text,
    polygons=st.lists(polygon, max_size=2),
    circles=st.lists(circle, max_size=2),
    geocodes=pairs,
    altitude=height,
    ceiling=st.none(),
)
resources = st.builds(
    Resource,
    desc=text,
    mime_type=st.sampled_from(["image/png", "application/pdf", "audio/mpeg"]),
    size=st.none() | st.integers(0, 10**9),
    uri=st.none() | st.sampled_from(["https://example.jp/a.png", "http://[::1]/x?y=1#z"]),
    digest=st.none() | st.text("0123456789abcdef", min_size=40, max_size=40),
)
infos = st.builds(
    Info,
    event=text,
    urgency=st.sampled_from(["Immediate", "Expected", "Future", "Past", "Unknown"]),
    severity=st.sampled_from(["Extreme", "Severe", "Moderate", "Minor", "Unknown"]),
    certainty=st.sampled_from(["Observed", "Likely", "Possible", "Unlikely", "Unknown"]),
    language=st.sampled_from(["ja-JP", "en-US", "zh-Hans", "pt-BR", "ko"]),
    categories=st.lists(st.sampled_from(["Geo", "Met", "Safety", "Infra", "Other"]), min_size=1, unique=True),
    response_types=st.lists(st.sampled_from(["Shelter", "Evacuate", "AllClear", "None"]), unique=True),
    audience=maybe_text,
    event_codes=pairs,
    effective=st.none() | times,
    onset=st.none() | times,
    expires=st.none() | times,
    sender_name=maybe_text,
    headline=maybe_text,
    description=maybe_text,
    instruction=maybe_text,
    web=st.none() | st.sampled_from(["https://www.city.joso.lg.jp/", "https://example.jp/避難"]),
    contact=maybe_text,
    parameters=pairs.map(lambda ps: [p for p in ps if not p[0].startswith("JP-ALERTD-")]),
    resources=st.lists(resources, max_size=2),
    areas=st.lists(areas, max_size=3),
)
reference = st.tuples(token, token, times).map(lambda r: f"{r[0].replace(',', '')},{r[1]},{r[2].isoformat()}")
alerts = st.builds(
    Alert,
    identifier=token,
    sender=token,
    sent=times,
    status=st.sampled_from(list(Status)),
    msg_type=st.sampled_from(list(MsgType)),
    scope=st.just("Public"),
    source=maybe_text,
    codes=st.lists(text, max_size=2),
    note=maybe_text,
    references=st.lists(reference, min_size=1, max_size=3),
    incidents=maybe_text,
    infos=st.lists(infos, max_size=3),
    level=st.none() | st.integers(1, 5),
    action=st.none() | st.sampled_from(["issue", "lift"]),
    kind=st.none() | st.sampled_from(["evacuation", "tsunami", "eew"]),
    shelters=st.lists(
        st.builds(Shelter, name=text, address=maybe_text, capacity=st.none() | st.integers(0, 10_000)),
        max_size=2,
    ),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alerts)
def test_any_alert_round_trips_through_valid_cap(alert: Alert) -> None:
    # Runs without the schema too (the round trip still means something); the
    # schema-only tests above say loudly when it is missing.
    schema = _schema_or_none()
    out = to_cap(alert)
    if schema is not None:
        assert_valid(schema, out)
    back = parse_cap(out)
    for name in ("identifier", "sender", "sent", "status", "msg_type", "references", "codes", "note"):
        assert getattr(back, name) == getattr(alert, name), name
    if alert.infos:  # alertd's own fields travel as <parameter>s, which live in info blocks
        assert (back.level, back.action, back.kind) == (alert.level, alert.action, alert.kind)
        assert back.shelters == alert.shelters
    assert len(back.infos) == len(alert.infos)
    for got, sent in zip(back.infos, alert.infos, strict=True):
        assert got.areas == sent.areas
        assert got.resources == sent.resources
        own = [p for p in got.parameters if not p[0].startswith("JP-ALERTD-")]
        assert own == sent.parameters
        got.parameters = sent.parameters
        got.areas = sent.areas
        assert got == sent
    assert to_cap(back) == out


junk = st.text(max_size=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk, junk, st.floats(), st.integers(-(10**30), 10**30))
def test_whatever_the_model_holds_the_output_is_schema_valid(
    anything: str, link: str, number: float, size: int
) -> None:
    schema = _schema_or_none()
    if schema is None:
        pytest.skip(f"the OASIS CAP schema is not at {CAP_XSD} (../shared/data is absent)")
    alert = base_alert(
        identifier=anything,
        note=anything,
        codes=[anything],
        references=[anything],
        incidents=anything,
        infos=[
            Info(
                event=anything,
                language=anything,
                categories=[anything],
                response_types=[anything],
                urgency=anything,
                web=link,
                event_codes=[(anything, anything)],
                parameters=[(anything, link)],
                resources=[Resource(desc=anything, mime_type=anything, uri=link, size=size)],
                areas=[
                    Area(
                        desc=anything,
                        polygons=[anything],
                        circles=[anything],
                        geocodes=[(anything, anything)],
                        altitude=number,
                        ceiling=number,
                    )
                ],
            )
        ],
        reason=anything,
        shelters=[Shelter(name=anything, address=link)],
    )
    assert_valid(schema, to_cap(alert))


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("https://example.jp/a path", "https://example.jp/a%20path"),
        ("https://example.jp/100%", "https://example.jp/100%25"),
        ("https://example.jp/#a#b", "https://example.jp/#a%23b"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ],
)
def test_links_are_repaired_not_dropped(link: str, expected: str) -> None:
    back = parse_cap(to_cap(base_alert(infos=[Info(event="x", web=link)])))
    assert back.infos[0].web == expected
