"""The JMA-warning-to-alertd-level table, in one place (mirrored in docs/jma.md).

alertd.level is the 警戒レベル a warning corresponds to (警戒レベル相当), so a
subscriber's ``min_level`` means the same for a JMA warning as for a
municipal evacuation order. Where JMA names the level itself (the R06
system's レベル２…レベル５ prefixes) that number wins; elsewhere the
H27-system equivalences that JMA publishes are used, and warnings that are
not part of the 警戒レベル scheme (暴風, 波浪, 大雪 …) are placed by grade:
特別警報 5, 警報 3, 注意報 2.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# 気象警報・注意報 phenomena, in the order longest-first so 暴風雪 wins over 暴風.
PHENOMENA_EN = {
    "土砂災害": "landslide",
    "暴風雪": "snowstorm",
    "大雨": "heavy rain",
    "洪水": "flood",
    "暴風": "storm",
    "大雪": "heavy snow",
    "波浪": "high waves",
    "高潮": "storm surge",
    "強風": "gale",
    "風雪": "wind and snow",
    "雷": "thunderstorm",
    "融雪": "snowmelt",
    "濃霧": "dense fog",
    "乾燥": "dry air",
    "なだれ": "avalanche",
    "低温": "low temperature",
    "霜": "frost",
    "着氷": "icing",
    "着雪": "snow accretion",
}

# H27 警報 that JMA equates with 警戒レベル4 rather than 3.
_H27_LEVEL4_WARNINGS = {"高潮警報"}

_LEVEL_PREFIX = re.compile(r"^レベル(\d)")


def normalize(name: str) -> str:
    """JMA writes digits full-width (レベル４); NFKC makes them comparable."""
    return unicodedata.normalize("NFKC", name).strip()


@dataclass(frozen=True)
class WarningClass:
    kind: str  # special_warning | warning | advisory
    level: int
    phenomenon: str
    english: str


def classify_warning(name: str) -> WarningClass | None:
    """A 気象警報・注意報 kind name → kind, level and English name; None if it is not one."""
    norm = normalize(name)
    level: int | None = None
    m = _LEVEL_PREFIX.match(norm)
    rest = norm
    if m:
        level = int(m.group(1))
        rest = norm[m.end() :]
    if rest.endswith("特別警報"):
        kind, grade, grade_en, default = "special_warning", "特別警報", "emergency warning", 5
    elif rest.endswith("危険警報"):
        kind, grade, grade_en, default = "warning", "危険警報", "danger warning", 4
    elif rest.endswith("警報"):
        kind, grade, grade_en, default = "warning", "警報", "warning", 3
        if rest in _H27_LEVEL4_WARNINGS:
            default = 4
    elif rest.endswith("注意報"):
        kind, grade, grade_en, default = "advisory", "注意報", "advisory", 2
    else:
        return None
    phenomenon = rest[: -len(grade)]
    english_phenomenon = PHENOMENA_EN.get(phenomenon, phenomenon)
    english = f"{english_phenomenon} {grade_en}".capitalize()
    if level is not None:
        english = f"Level {level} {english[0].lower()}{english[1:]}"
    return WarningClass(
        kind=kind, level=level if level is not None else default, phenomenon=phenomenon, english=english
    )


@dataclass(frozen=True)
class TsunamiGrade:
    """One 津波予報区 item of a VTSE41 read as alertd sees it.

    ``level`` is the grade in force after this message (None for a lift);
    ``lifted_level`` is the grade a lift ends, so a lift can say what it lifts
    and be routed as far as the warning it ends went.
    """

    action: str  # issue | lift
    level: int | None
    lifted_level: int | None
    event: str
    english: str


# Grade names by alertd level; JMA writes the kind names below (with "：発表"
# appended in the message that first issues or upgrades a region).
TSUNAMI_EVENTS: dict[int, tuple[str, str]] = {
    5: ("大津波警報", "Major tsunami warning"),
    4: ("津波警報", "Tsunami warning"),
    2: ("津波注意報", "Tsunami advisory"),
    1: ("津波予報（若干の海面変動）", "Tsunami forecast (slight sea-level change)"),
}
TSUNAMI_LIFT_EVENTS: dict[int, tuple[str, str]] = {
    5: ("大津波警報解除", "Major tsunami warning lifted"),
    4: ("津波警報解除", "Tsunami warning lifted"),
    2: ("津波注意報解除", "Tsunami advisory lifted"),
    1: ("津波予報（若干の海面変動）終了", "Tsunami forecast (slight sea-level change) ended"),
}


def tsunami_level(name: str) -> int | None:
    """The alertd level of a tsunami kind name (大津波警報 5, 津波警報 4, 津波注意報 2, 津波予報 1).

    None for 津波なし, 解除 and anything unknown. Matching is on the grade word
    at the start of the name, not a substring anywhere, so 大津波警報 never
    reads as 津波警報 and a title listing several grades is not a grade.
    """
    norm = normalize(name).split("：", 1)[0].split(":", 1)[0]
    if norm.startswith("大津波警報"):
        return 5
    if norm.startswith("津波警報"):
        return 4
    if norm.startswith("津波注意報"):
        return 2
    if norm.startswith("津波予報"):
        return 1
    return None


def tsunami_item(name: str, last_kind: str = "") -> TsunamiGrade | None:
    """A VTSE41 item's Kind (and LastKind) → what it means; None for 津波なし or unknown.

    A 解除 lifts the grade LastKind names (警報解除 alone means 津波警報). A
    津波予報（若干の海面変動） whose LastKind is a 注意報 or a 警報 is how JMA
    lifts those: it is a lift of that grade, not a new level-1 forecast.
    """
    norm = normalize(name)
    last = tsunami_level(last_kind) if last_kind else None
    if "解除" in norm:
        lifted = last if last is not None and last >= 2 else (2 if "注意報" in norm else 4)
        event, english = TSUNAMI_LIFT_EVENTS[lifted]
        return TsunamiGrade("lift", None, lifted, event, english)
    level = tsunami_level(norm)
    if level is None:
        return None
    if level == 1 and last is not None and last >= 2:
        event, english = TSUNAMI_LIFT_EVENTS[last]
        return TsunamiGrade("lift", None, last, event, english)
    event, english = TSUNAMI_EVENTS[level]
    return TsunamiGrade("issue", level, None, event, english)


def flood_grade(name: str) -> tuple[str, int | None, str] | None:
    """A 指定河川洪水予報 kind name → (action, level, English); None if unrecognised."""
    norm = normalize(name)
    m = _LEVEL_PREFIX.match(norm)
    explicit = int(m.group(1)) if m else None
    if "解除" in norm:
        return ("lift", None, "River flood information lifted")
    for word, level, english in (
        ("氾濫発生情報", 5, "River flooding occurring"),
        ("氾濫危険情報", 4, "River flood danger"),
        ("氾濫警戒情報", 3, "River flood warning"),
        ("氾濫注意情報", 2, "River flood advisory"),
    ):
        if word in norm:
            return ("issue", explicit or level, english)
    r06 = flood_level(norm)
    if r06 is not None:
        return ("issue", explicit or r06[0], r06[1])
    return None


# 震度 as JMA writes it, in increasing order, for the EEW special-warning test.
INTENSITIES = ["0", "1", "2", "3", "4", "5-", "5+", "6-", "6+", "7"]


def eew_level(max_from: str) -> int:
    """緊急地震速報（警報）: level 5 when 震度6弱 or more is forecast.

    By law (気象業務法) an EEW forecasting 震度6弱 or more *is* a 特別警報;
    any other EEW warning still calls for immediate action, hence 4.
    """
    if max_from in INTENSITIES and INTENSITIES.index(max_from) >= INTENSITIES.index("6-"):
        return 5
    return 4


def intensity_level(max_int: str) -> int | None:
    """Observed maximum 震度 → alertd level, so a subscriber's ``min_level`` filters earthquake reports sensibly.

    震度 is not a 警戒レベル: an observed shaking report asks nobody to evacuate.
    It is placed by what it means for a desk: 6弱 or more (collapse, fires,
    a 災害対策本部) 4; 5弱/5強 (damage likely, the municipality's first response)
    3; 4 (felt by all, little damage) 2; 3 or less 1. The policy's thresholds
    are on the 震度 itself (``min_intensity``), not on this level.
    """
    if max_int not in INTENSITIES:
        return None
    i = INTENSITIES.index(max_int)
    if i >= INTENSITIES.index("6-"):
        return 4
    if i >= INTENSITIES.index("5-"):
        return 3
    if i >= INTENSITIES.index("4"):
        return 2
    return 1


def flood_level(name: str) -> tuple[int, str] | None:
    """R06 river names (レベル２氾濫注意報 … レベル５氾濫特別警報) → (level, English), longest word first."""
    norm = normalize(name)
    for word, level, english in (
        ("氾濫特別警報", 5, "River flood emergency warning"),
        ("氾濫危険警報", 4, "River flood danger warning"),
        ("氾濫警報", 3, "River flood warning"),
        ("氾濫注意報", 2, "River flood advisory"),
    ):
        if word in norm:
            return level, english
    return None
