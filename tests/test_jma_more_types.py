"""The JMA types of issue 13, table-driven over JMA's own samples: parse only, no engine.

Each row: a sample, what an operator must see in the alert (kind, level,
districts, the numbers people act on), and the policy's decision. Every
sample of each new type is also rendered to CAP and validated against the
OASIS schema.
"""

from __future__ import annotations

import functools

import pytest
from lxml import etree

from alertd.cap import to_cap
from alertd.jma.parse import parse_message, unsupported_reason
from alertd.jma.policy import Policy
from alertd.models import MsgType, Priority, Status
from alertd.xmlsafe import load_schema
from tests.support import CAP_XSD, JMAXML

pytestmark = pytest.mark.skipif(not JMAXML.is_dir(), reason="JMA samples not found at ../shared/data/jmaxml")

NEW_TYPES = ("VXSE51", "VXSE52", "VXSE53", "VTSE51", "VTSE52", "VFVO50", "VFVO56", "VYSE50", "VYSE60",
             "VPOA50", "VPHW50", "VPHW51", "VPFT50", "VXSUii", "VXSE44", "VXSE45")  # fmt: skip
# Parsed, but by decision no alert reaches anyone (docs/jma.md says why).
NOT_RELAYED = {"VXSE44", "VXSE45", "VXSE52"}


@pytest.fixture(scope="module")
def registry():
    from geo.registry import Registry

    return Registry.default()


def parse(name: str, registry):
    path = JMAXML / name
    return parse_message(path.read_bytes(), registry, name=path.name)


def param(alert, name: str) -> list[str]:
    return [v for k, v in alert.infos[0].parameters if k == name]


@functools.cache
def _schema() -> etree.XMLSchema | None:
    return load_schema(CAP_XSD) if CAP_XSD.exists() else None


def test_every_sample_of_the_new_types_parses_with_districts_and_valid_cap(registry) -> None:
    schema = _schema()
    with_districts: dict[str, int] = {}
    for code in NEW_TYPES:
        files = sorted(JMAXML.glob(f"*_{code}.xml"))
        assert files, code
        for path in files:
            result = parse_message(path.read_bytes(), registry, name=path.name)
            assert result.supported and result.alerts, path.name
            for alert in result.alerts:
                if schema is not None:
                    tree = etree.fromstring(to_cap(alert))
                    assert schema.validate(tree), f"{path.name}: {schema.error_log}"
                if alert.districts:
                    with_districts[code] = with_districts.get(code, 0) + 1
                elif alert.msg_type is not MsgType.CANCEL and code not in NOT_RELAYED:
                    # 遠地地震に関する情報 (a quake abroad) is the one seismic report naming no area in Japan.
                    assert alert.infos[0].parameter("JMA_TITLE") == "遠地地震に関する情報", path.name
    assert set(NEW_TYPES) - NOT_RELAYED - {"VXSE45"} <= set(with_districts)


@pytest.mark.parametrize(
    ("sample", "kind", "level", "some_districts", "params", "rule", "adapters", "priority"),
    [
        # 震度速報: 震度6弱 静岡県中部/西部 … routed to the prefectures (it names no towns); radio at 5弱+.
        ("32-35_01_01_100806_VXSE51.xml", "earthquake", 4, {"22", "13", "25"},
         {"JMA_MAX_INTENSITY": ["6-"], "JMA_AREA_INTENSITY": ["6- 静岡県中部", "6- 静岡県西部"]},
         "quake-strong", {"radio", "broadcaster"}, Priority.ROUTINE),
        # 震源・震度に関する情報: the towns that observed it, hypocentre, magnitude, depth.
        ("32-35_01_03_240613_VXSE53.xml", "earthquake", 3, {"22213"},
         {"JMA_HYPOCENTER": ["駿河湾"], "JMA_MAGNITUDE": ["5.9"], "JMA_DEPTH_KM": ["10"],
          "JMA_MAX_INTENSITY": ["5-"]}, "quake-strong", {"radio"}, Priority.ROUTINE),
        # 津波情報 under 大津波警報: arrival time and height per region, flash to broadcasters.
        ("32-39_12_06_250206_VTSE51.xml", "tsunami", 5, {"tsunami:300", "08202"},
         {"JMA_TSUNAMI_REGION": ["茨城県 08:10 巨大"]}, "tsunami-information", {"broadcaster"}, Priority.FLASH),
        # 沖合の津波観測: the coasts JMA estimates for.
        ("32-39_12_05_250206_VTSE52.xml", "tsunami_info", None, {"tsunami:380"}, {}, "tsunami-offshore",
         {"broadcaster"}, Priority.FLASH),
        # 噴火警報（火口周辺） 浅間山, 噴火警戒レベル3: the four towns named.
        ("45_01_01_200522_VFVO50.xml", "volcano", 3, {"10425", "20208", "20321", "20323"},
         {"JMA_VOLCANO_LEVEL": ["3"], "JMA_VOLCANO": ["浅間山"]}, "volcano", {"signage"}, Priority.ROUTINE),
        # 噴火速報 御嶽山: flash lane, every adapter.
        ("67_01_01_140927_VFVO56.xml", "volcano", 4, {"20429", "20432", "21203"},
         {"JMA_VOLCANO": ["御嶽山"]}, "eruption", {"radio", "signage"}, Priority.FLASH),
        # 南海トラフ地震臨時情報（調査中）: the 29 都府県 of the 推進地域.
        ("74_01_02_200512_VYSE50.xml", "megaquake", 2, {"22", "39", "08"},
         {"JMA_NANKAI_KIND": ["調査中"]}, "nankai-information", {"broadcaster"}, Priority.ROUTINE),
        ("80_01_01_240821_VYSE60.xml", "megaquake", 3, {"01", "03", "12"}, {}, "nankai-advisory",
         {"signage"}, Priority.ROUTINE),
        # 記録的短時間大雨情報 for 石狩地方 and 後志地方 (一次細分区域 of a split Hokkaido 府県予報区).
        ("18_03_01_190412_VPOA50.xml", "heavy_rain", 4, {"01101", "01203"}, {}, "heavy-rain",
         {"radio"}, Priority.ROUTINE),
        ("19_08_04_250630_VPHW51.xml", "tornado", 3, {"11201"}, {}, "tornado-heat", {"signage"},
         Priority.ROUTINE),
        ("57_03_01_240401_VPFT50.xml", "heat", 3, {"11201", "11101"}, {}, "tornado-heat",
         {"isp"}, Priority.ROUTINE),
        ("91_01_01_241031_VXSUii.xml", "flood", 2, {"04421", "04424"}, {}, "advisory", {"feed"},
         Priority.ROUTINE),
    ],
)  # fmt: skip
def test_what_an_operator_sees(registry, sample, kind, level, some_districts, params, rule, adapters, priority):
    result = parse(sample, registry)
    alert = result.alerts[0]
    assert (alert.kind, alert.level) == (kind, level)
    assert some_districts <= set(alert.districts), sorted(alert.districts)[:20]
    for name, values in params.items():
        assert set(values) <= set(param(alert, name)), (name, param(alert, name))
    alert.status = Status.ACTUAL  # several samples are drills (訓練), which never reach radio or the flash lane
    decision = Policy.default().apply(alert)
    assert decision.rule == rule and decision.broadcast
    assert adapters <= set(decision.adapters) and decision.priority is priority


def test_a_split_forecast_area_is_only_its_towns(registry) -> None:
    """石狩地方 and 後志地方 are 一次細分区域 of Hokkaido's split 府県予報区: their towns, not all of 北海道."""
    heavy = parse("18_03_01_190412_VPOA50.xml", registry).alerts[0]
    assert {"01101", "01203"} <= set(heavy.districts)  # 札幌市中央区 (石狩), 小樽市 (後志)
    assert "01202" not in heavy.districts and "01204" not in heavy.districts  # not 函館市, not 旭川市
    assert "01" not in heavy.districts and len(heavy.districts) < 60


def test_intensity_thresholds_follow_the_policy(registry) -> None:
    policy = Policy.default()
    alert = parse("32-35_01_01_100806_VXSE51.xml", registry).alerts[0]
    for info in alert.infos:
        info.parameters = [(k, "3" if k == "JMA_MAX_INTENSITY" else v) for k, v in info.parameters]
    assert policy.decide(alert).rule == "quake" and "radio" not in policy.decide(alert).adapters
    for info in alert.infos:
        info.parameters = [(k, "2" if k == "JMA_MAX_INTENSITY" else v) for k, v in info.parameters]
    assert policy.decide(alert).adapters == ("feed",)


def test_the_forecast_grade_eew_is_parsed_but_never_broadcast(registry) -> None:
    for name in ("36_01_01_240613_VXSE44.xml",):
        result = parse(name, registry)
        assert result.supported and result.alerts[0].kind == "eew_forecast"
        assert not Policy.default().decide(result.alerts[0]).broadcast


def test_a_nankai_warning_goes_on_the_flash_lane(registry) -> None:
    warning = next(
        r for r in (parse(p.name, registry) for p in sorted(JMAXML.glob("*_VYSE50.xml")))
        if r.alerts[0].infos[0].parameter("JMA_NANKAI_KIND") == "巨大地震警戒"
    )
    decision = Policy.default().decide(warning.alerts[0])
    assert (decision.rule, decision.priority, decision.scope) == ("nankai-warning", Priority.FLASH, "prefecture")
    assert "radio" in decision.adapters


def test_unsupported_types_say_why(registry) -> None:
    for name, words in (("01_01_01_091210_VGSK50.xml", "not for public alerting"),
                        ("15_02_01_091210_VPWW50.xml", "replaced by VPWW54")):  # fmt: skip
        result = parse(name, registry)
        assert not result.supported and words in (result.reason or "")
    assert "季節観測" in unsupported_reason("VGSK50") and "天気概況" in unsupported_reason("VPFG50")


def test_an_earthquake_report_reads_naturally_in_every_language(registry) -> None:
    from alertd import messages

    alert = parse("32-35_01_01_100806_VXSE51.xml", registry).alerts[0]
    for info in alert.infos:
        info.parameters = [(k, v) for k, v in info.parameters if k not in ("JMA_MAX_INTENSITY", "JMA_AREA_INTENSITY")]
        info.parameters += [("JMA_MAX_INTENSITY", "5+"), ("JMA_AREA_INTENSITY", "5+ 茨城県南部"),
                            ("JMA_AREA_INTENSITY", "4 栃木県南部")]  # fmt: skip
    headlines = {lang: messages.message(alert, lang).headline for lang in messages.LANGUAGES}
    assert headlines["ja"] == "震度5強 茨城県南部"
    assert headlines["en"] == "Seismic intensity 5 Upper in southern Ibaraki"
    assert headlines["ko"] == "진도 5강 이바라키현 남부"
    assert headlines["zh"] == "震度5强 茨城県南部"
    assert headlines["ja-easy"] == "しんど5きょう 茨城県南部"
    en = messages.message(alert, "en")
    assert "Intensity 4: southern Tochigi." in en.body and en.source == "template"


@pytest.mark.parametrize(
    ("sample", "ja", "en"),
    [
        ("45_01_01_200522_VFVO50.xml", "浅間山 噴火警戒レベル3", "Volcanic alert level 3: Asamayama (浅間山)"),
        ("67_01_01_140927_VFVO56.xml", "噴火速報 御嶽山", "Eruption: Ontakesan (御嶽山)"),
        ("74_01_02_200512_VYSE50.xml", "南海トラフ地震臨時情報（調査中）", "Nankai Trough: unusual activity under investigation"),
        ("18_03_01_190412_VPOA50.xml", "記録的短時間大雨情報", "Record short-term heavy rain"),
        ("19_08_04_250630_VPHW51.xml", "竜巻注意情報", "Tornado alert"),
        ("57_03_01_240401_VPFT50.xml", "熱中症警戒アラート", "Heatstroke alert"),
    ],
)  # fmt: skip
def test_every_new_kind_has_its_own_words(registry, sample, ja, en) -> None:
    from alertd import messages

    alert = parse(sample, registry).alerts[0]
    for lang in messages.LANGUAGES:
        assert messages.message(alert, lang).source == "template", (sample, lang)
    assert messages.message(alert, "ja").headline.endswith(ja)
    assert messages.message(alert, "en").headline.endswith(en)


def test_a_volcano_warning_lifted_is_a_lift_that_says_the_level_left(registry) -> None:
    from alertd import messages

    alert = parse("45_03_01_200731_VFVO50.xml", registry).alerts[0]  # 草津白根山 噴火予報：警報解除
    assert (alert.action, alert.level, alert.infos[0].parameter("JMA_VOLCANO_LEVEL")) == ("lift", None, "1")
    assert Policy.default().decide(alert).rule == "lift"
    ja = messages.message(alert, "ja")
    assert ja.headline.endswith("噴火警報解除") and "噴火警戒レベルは1になりました" in ja.body
