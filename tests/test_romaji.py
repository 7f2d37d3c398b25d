"""Place names a visitor who cannot read kanji can read, in the texts alertd sends in en and ko."""

from __future__ import annotations

import pytest

from alertd import messages
from alertd.romaji import hiragana, romanise
from geo.registry import Registry
from tests.support import make_alert


@pytest.mark.parametrize(("name", "kana", "written"), [
    ("三坂町", "ミサカマチ", "Misaka-machi"), ("常総市", "ジョウソウシ", "Joso-shi"), ("若宮戸", "ワカミヤド", "Wakamiyado"),
    ("大洗町", "オオアライマチ", "Oarai-machi"), ("東海村", "トウカイムラ", "Tokai-mura"), ("新宿区", "シンジュクク", "Shinjuku-ku"),
    ("上三坂", None, None),  # no reading: alertd never guesses one from the kanji
])  # fmt: skip
def test_names_are_written_as_road_signs_write_them(name: str, kana: str | None, written: str | None) -> None:
    assert romanise(name, kana) == written


def test_easy_japanese_reads_kana_as_hiragana() -> None:
    assert hiragana("ミサカマチ") == "みさかまち" and hiragana(None) is None


def test_en_and_ko_texts_name_places_romanised_and_the_loudspeaker_reads_them_without_kanji() -> None:
    Registry.default()  # the texts name places through the registry this process loads
    alert = make_alert(districts=["08211:三坂町", "08211:若宮戸"], municipality="08211", level=4, action="issue",
                       kind="evacuation", reason="洪水")  # fmt: skip
    en = messages.message(alert, "en")
    assert "Misaka-machi (三坂町), Wakamiyado (若宮戸) in Joso-shi (常総市)" in en.body
    assert "Misaka-machi, Wakamiyado in Joso-shi" in en.spoken and "三坂町" not in en.spoken
    assert "Joso-shi (常総市)" in messages.message(alert, "ko").body
    ja = messages.message(alert, "ja")
    assert "三坂町、若宮戸" in ja.body and "Misaka" not in ja.body  # Japanese readers read the kanji
    assert "Misaka" not in messages.message(alert, "zh").body  # and so do Chinese readers


def test_a_lift_names_its_districts_romanised_in_en_and_ko_and_the_town_as_the_whole_area() -> None:
    """The trial's lift read "Lifted in Joso-shi (常総市): … for 三坂町": the districts a lift ends
    (and those it leaves standing) were named in kanji only, and the town's own 全域 as "常総市"."""
    Registry.default()
    alert = make_alert(districts=["08211"], municipality="08211", level=4, action="lift", kind="evacuation",
                       reason="洪水")  # fmt: skip
    # As alertd.orders builds a lift: what it ended and what still stands, by district name.
    alert.ended = [{"level": 4, "districts": ["三坂町", "若宮戸"]}, {"level": 3, "districts": ["常総市"]}]
    alert.remaining = [{"level": 4, "districts": ["本石下"]}]
    en = messages.message(alert, "en")
    assert "for Misaka-machi (三坂町), Wakamiyado (若宮戸)" in en.body, en.body
    assert "evacuate for the whole area" in en.body and "for 常総市" not in en.body, en.body
    assert "in force in Motoishige (本石下)" in en.body, en.body
    assert "Misaka-machi, Wakamiyado" in en.spoken and "三坂町" not in en.spoken
    ko = messages.message(alert, "ko").body
    assert "Misaka-machi (三坂町), Wakamiyado (若宮戸)의" in ko and "Motoishige (本石下)" in ko, ko
    ja = messages.message(alert, "ja").body
    assert "三坂町、若宮戸の警戒レベル4" in ja and "全域の警戒レベル3" in ja and "Misaka" not in ja, ja
