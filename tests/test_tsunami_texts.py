"""Every tsunami text states the grade of its own items, never the message title's.

Walks every official VTSE41 sample and every grade item in it; for each alert
checks the radio script, each signage line in every language and the CAP
headline against the grade an independent reading of the items gives.
The unedited sample 32-39_11_06 turned all four grades into 大津波警報.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from adapters.radio import RadioAdapter
from adapters.signage import SignageAdapter
from alertd.cap import parse_cap, to_cap
from alertd.jma.parse import parse_message
from alertd.models import AdapterKind, Alert, Status, Subscriber
from tests.support import JMAXML

LANGS = ["ja", "en", "zh", "ko", "ja-easy"]

pytestmark = pytest.mark.skipif(not JMAXML.is_dir(), reason="JMA samples not found at ../shared/data/jmaxml")

# The oracle: written out here, not imported, so a mistake in the parser's table shows.
TITLES = {
    "major": {"ja": "大津波警報", "en": "Major Tsunami Warning", "zh": "大海啸警报", "ko": "대형 쓰나미 경보",
              "ja-easy": "おおつなみけいほう"},
    "warning": {"ja": "津波警報", "en": "Tsunami Warning", "zh": "海啸警报", "ko": "쓰나미 경보",
                "ja-easy": "つなみけいほう"},
    "advisory": {"ja": "津波注意報", "en": "Tsunami Advisory", "zh": "海啸注意报", "ko": "쓰나미 주의보",
                 "ja-easy": "つなみちゅういほう"},
    "forecast": {"ja": "津波予報", "en": "Tsunami Forecast", "zh": "海啸预报", "ko": "쓰나미 예보",
                 "ja-easy": "つなみよほう"},
}  # fmt: skip
# A lift's headline is its marker and the grade it lifts.
LIFT = {"ja": "【解除】{t}", "en": "[LIFTED] {t}", "zh": "【解除】{t}", "ko": "[해제] {t}", "ja-easy": "【かいじょ】{t}"}
SPOKEN_JA = {"major": "大津波警報。大津波警報。", "warning": "津波警報。津波警報。", "advisory": "津波注意報。",
             "forecast": "津波予報。"}  # fmt: skip
CAP_JA = {"major": "大津波警報", "warning": "津波警報", "advisory": "津波注意報", "forecast": "津波予報（若干の海面変動）"}
CAP_EN = {"major": "Major tsunami warning", "warning": "Tsunami warning", "advisory": "Tsunami advisory",
          "forecast": "Tsunami forecast (slight sea-level change)"}  # fmt: skip
LEVEL = {"major": 5, "warning": 4, "advisory": 2, "forecast": 1}
# Instructions that belong to one grade only: a 津波警報 must never tell people merely to leave the water.
BODY_JA = {"major": "巨大な津波", "warning": "高台や津波避難ビル", "advisory": "海の中にいる人は", "forecast": "被害の心配はありません"}


def grade_of(kind: str) -> str | None:
    for prefix, grade in (("大津波警報", "major"), ("津波警報", "warning"), ("津波注意報", "advisory"),
                          ("津波予報", "forecast")):  # fmt: skip
        if kind.startswith(prefix):
            return grade
    return None


def expected(kind: str, last: str) -> tuple[str, str] | None:
    """(action, grade) of one item: a 解除, or a 津波予報 after a 注意報/警報, lifts the earlier grade."""
    previous = grade_of(last)
    if "解除" in kind:
        return ("lift", previous if previous not in (None, "forecast") else
                ("advisory" if "注意報" in kind else "warning"))  # fmt: skip
    grade = grade_of(kind)
    if grade is None:
        return None
    if grade == "forecast" and previous in ("major", "warning", "advisory"):
        return ("lift", previous)
    return ("issue", grade)


def items(path: Path) -> dict[str, tuple[str, str]]:
    root = etree.parse(str(path)).getroot()
    out = {}
    for item in root.iterfind(".//{*}Body/{*}Tsunami/{*}Forecast/{*}Item"):
        got = expected(item.findtext("{*}Category/{*}Kind/{*}Name") or "",
                       item.findtext("{*}Category/{*}LastKind/{*}Name") or "")  # fmt: skip
        if got is not None:
            out[item.findtext("{*}Area/{*}Code") or ""] = got
    return out


@pytest.fixture(scope="module")
def registry():
    from geo.registry import Registry

    return Registry.default()


def subscriber(kind: AdapterKind) -> Subscriber:
    return Subscriber(id="s", adapter=kind, endpoint="http://127.0.0.1/x", districts=["08202"], languages=LANGS)


def regions(alert: Alert) -> set[str]:
    return {v for a in alert.infos[0].areas for k, v in a.geocodes if k == "JP-JMA-TSUNAMI"}


def check(alert: Alert, action: str, grade: str) -> None:
    status_ja = "これは訓練です。" if alert.status is Status.EXERCISE else ""
    assert alert.action == action
    assert alert.level == (LEVEL[grade] if action == "issue" else None)
    # Radio: the three Japanese readings name the grade first, with that grade's instruction.
    script = json.loads(RadioAdapter().render(alert, subscriber(AdapterKind.RADIO)).body)
    readings = script["text"].split("\n")[1:4]
    for reading in readings:
        if action == "issue":
            assert reading.startswith(status_ja + SPOKEN_JA[grade]), reading
            others = [text for g, text in BODY_JA.items() if g != grade]
            assert BODY_JA[grade] in reading and not any(o in reading for o in others), reading
        else:
            # A lift says so first (the loudspeaker cannot show 【解除】), then what it lifts.
            assert reading.startswith(status_ja + "解除のお知らせです。" + TITLES[grade]["ja"] + " 解除。"), reading
    # Signage: every language's headline is exactly its grade (or its lift).
    doc = json.loads(SignageAdapter().render(alert, subscriber(AdapterKind.SIGNAGE)).body)
    for lang in LANGS:
        headline = doc["lines"][lang]["headline"]
        title = TITLES[grade][lang] if action == "issue" else LIFT[lang].format(t=TITLES[grade][lang])
        marker = {"ja": "【訓練】", "en": "[DRILL] ", "zh": "【演习】", "ko": "[훈련] ", "ja-easy": "【くんれん】"}
        assert headline == (marker[lang] if alert.status is Status.EXERCISE else "") + title, (lang, headline)
    # CAP: the headline of each info block is the grade of this alert's items, not Head/Title.
    cap = parse_cap(to_cap(alert))
    ja, en = cap.info_for("ja-JP"), cap.info_for("en-US")
    assert ja is not None and en is not None
    if action == "issue":
        assert (ja.headline, en.headline) == (CAP_JA[grade], CAP_EN[grade])
    else:
        assert ja.headline is not None and ja.headline.startswith(TITLES[grade]["ja"]) and "解除" in ja.headline
        assert en.headline is not None and "lifted" in en.headline
    if action == "lift":
        assert ja.parameter("LIFTED_LEVEL") == str(LEVEL[grade])


def test_every_vtse41_sample_and_grade(registry) -> None:
    files = sorted(JMAXML.glob("*_VTSE41.xml"))
    assert len(files) == 13
    checked: set[tuple[str, str]] = set()
    for path in files:
        by_region = items(path)
        result = parse_message(path.read_bytes(), registry, name=path.name)
        seen_regions: set[str] = set()
        for alert in result.alerts:
            if alert.msg_type.value == "Cancel":
                continue
            alert.id = "a-1"
            grades = {by_region[r] for r in regions(alert)}
            assert len(grades) == 1, (path.name, alert.event, grades)  # one grade per alert
            (action, grade) = grades.pop()
            check(alert, action, grade)
            checked.add((action, grade))
            seen_regions |= regions(alert)
        assert seen_regions == set(by_region), path.name  # every item is in some alert
    assert checked == {("issue", "major"), ("issue", "warning"), ("issue", "advisory"), ("issue", "forecast"),
                       ("lift", "major"), ("lift", "warning"), ("lift", "advisory")}  # fmt: skip


def test_the_unedited_2011_sample_keeps_its_four_grades(registry) -> None:
    result = parse_message((JMAXML / "32-39_11_06_250206_VTSE41.xml").read_bytes(), registry)
    spoken = {}
    for alert in result.alerts:
        alert.id = "a-1"
        script = json.loads(RadioAdapter().render(alert, subscriber(AdapterKind.RADIO)).body)
        spoken[alert.level] = script["text"].split("\n")[1]
    assert spoken[5].startswith("大津波警報。")
    assert spoken[4].startswith("津波警報。") and "海の中にいる人は" not in spoken[4]
    assert spoken[2].startswith("津波注意報。")
    assert spoken[1].startswith("津波予報。")
