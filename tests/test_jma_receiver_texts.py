"""What a broadcaster's receiver shows of JMA samples (issue 13): parse and render only, no engine."""

from __future__ import annotations

import pytest

from alertd import messages
from alertd.cap import parse_cap, to_cap
from alertd.jma.parse import ParseResult, parse_message
from tests.support import JMAXML

pytestmark = pytest.mark.skipif(not JMAXML.is_dir(), reason="JMA samples not found at ../shared/data/jmaxml")


@pytest.fixture(scope="module")
def registry():
    from geo.registry import Registry

    return Registry.default()


def parse(name: str, registry) -> ParseResult:
    return parse_message((JMAXML / name).read_bytes(), registry, name=name)


def test_each_tsunami_grade_describes_itself_and_only_the_gravest_carries_jma_headline(registry) -> None:
    by_event = {a.event: a for a in parse("32-39_11_02_250206_VTSE41.xml", registry).alerts}
    advisory = by_event["津波注意報"].infos[0].description or ""
    assert "大津波警報" not in advisory and "東日本大震災" not in advisory, advisory
    assert advisory.startswith("津波注意報：") and "静岡県" in advisory
    major = by_event["大津波警報"].infos[0].description or ""
    assert "東日本大震災クラスの津波が来襲します。" in major and "宮城県" in major
    # The 解除 message: 「津波注意報を解除しました。」 belongs to the lift, not to the 津波予報 beside it.
    by_event = {a.event: a for a in parse("32-39_11_13_250206_VTSE41.xml", registry).alerts}
    assert "解除しました" in (by_event["津波注意報解除"].infos[0].description or "")
    assert "解除" not in (by_event["津波予報（若干の海面変動）"].infos[0].description or "")


def test_an_eruption_report_cancellation_names_its_volcano_on_every_channel(registry) -> None:
    (alert,) = parse("67_01_04_140927_VFVO56.xml", registry).alerts
    assert messages.message(alert, "ja").body.startswith("先ほどの「噴火速報 御嶽山」は取り消されました。")
    for lang in messages.LANGUAGES:
        assert "御嶽山" in messages.message(alert, lang).body, lang
    alert.references = ["jma@alertd,jma-VFVO56-earlier,2014-09-27T12:00:00+09:00"]  # as ingest links it
    cap = parse_cap(to_cap(alert))
    en = cap.info_for("en")
    assert en is not None and "御嶽山" in (en.headline or "") and "previous report" not in (en.headline or "")


def test_an_old_sample_is_replayed_now_as_a_drill_into_the_drop_folder(tmp_path, registry) -> None:
    from datetime import UTC, datetime, timedelta

    from alertd.jma.cli import main

    name = "32-39_11_02_250206_VTSE41.xml"
    assert main(["shift", str(JMAXML / name), "--to", str(tmp_path), "--drill"]) == 0
    (written,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    data = written.read_bytes()
    assert "<Status>訓練</Status>" in data.decode("utf-8")
    result = parse_message(data, registry, name=written.name)
    assert result.header is not None and result.header.status.value == "Exercise"
    # Sent just now (Control/DateTime, never in the future); its report time a minute before.
    assert result.header.control_time <= datetime.now(UTC)
    assert abs(datetime.now(UTC) - result.header.report_time) < timedelta(minutes=2)


@pytest.mark.parametrize(
    ("sample", "category", "certainty"),
    [
        ("32-35_01_01_100806_VXSE51.xml", "Geo", "Observed"),  # 震度速報: shaking that was measured
        ("67_01_01_140927_VFVO56.xml", "Geo", "Likely"),  # 噴火速報
        ("74_01_04_200512_VYSE50.xml", "Geo", "Likely"),  # 南海トラフ地震臨時情報（巨大地震警戒）
    ],
)
def test_cap_for_broadcasters_says_geo_observed_and_english_in_english(registry, sample, category, certainty) -> None:
    from lxml import etree

    from alertd.xmlsafe import load_schema
    from tests.support import CAP_XSD

    alert = parse(sample, registry).alerts[0]
    document = to_cap(alert)
    load_schema(CAP_XSD).assertValid(etree.fromstring(document))
    cap = parse_cap(document)
    ja, en = cap.info_for("ja"), cap.info_for("en")
    assert ja is not None and en is not None
    assert (ja.categories, ja.certainty) == ([category], certainty)
    reason = en.parameter("JP-ALERTD-REASON") or ""
    assert reason.isascii() and reason, reason
    # A 震度 report asks nobody to evacuate: no evacuation level for it in the profile.
    if alert.kind == "earthquake":
        assert ja.parameter("JP-ALERTD-LEVEL") is None and ja.parameter("JMA_MAX_INTENSITY") == "6-"


def test_english_texts_use_jma_english_intensities_and_romanised_names(registry) -> None:
    quake = messages.message(parse("32-35_07_06_240613_VXSE53.xml", registry).alerts[0], "en")
    assert quake.headline == "Seismic intensity 6 Lower in Izu (伊豆) in Shizuoka and other areas", quake.headline
    assert "Intensity 5 Upper: eastern Shizuoka." in quake.body
    assert "The epicentre was Suruga Bay (駿河湾)." in quake.body
    eruption = messages.message(parse("67_01_01_140927_VFVO56.xml", registry).alerts[0], "en")
    assert eruption.body.startswith("Ontakesan (御嶽山) has erupted."), eruption.body
    # Japanese keeps JMA's words.
    assert "御嶽山で噴火が発生しました" in messages.message(parse("67_01_01_140927_VFVO56.xml", registry).alerts[0], "ja").body


def test_cell_broadcast_says_the_hazard_first_and_english_in_gsm7(registry) -> None:
    from adapters.cbc import _GSM7, CbcAdapter
    from alertd.models import AdapterKind, MsgType, Status, Subscriber

    alert = parse("74_01_04_200512_VYSE50.xml", registry).alerts[0]  # 南海トラフ地震臨時情報（巨大地震警戒）
    alert.status, alert.msg_type = Status.EXERCISE, MsgType.UPDATE
    alert.references = ["jma@alertd,jma-VYSE50-earlier,2020-05-12T12:00:00+09:00"]
    subscriber = Subscriber(id="cbc", adapter=AdapterKind.CBC, endpoint="http://127.0.0.1:9/cbc", districts=["22"])
    cap = parse_cap(CbcAdapter().render(alert, subscriber).body)
    ja, en = cap.info_for("ja"), cap.info_for("en")
    assert ja is not None and en is not None
    assert ja.parameter("CMAMtext") == "南海トラフ巨大地震警戒(訓練)"
    eruption = parse("67_01_01_140927_VFVO56.xml", registry).alerts[0]
    en = parse_cap(CbcAdapter().render(eruption, subscriber).body).info_for("en")
    assert en is not None
    short, long = en.parameter("CMAMtext") or "", en.parameter("CMAMlongtext") or ""
    assert short.startswith("Eruption: Ontakesan") and "Ontakesan has erupted" in long
    assert set(short + long) <= _GSM7, set(short + long) - _GSM7
