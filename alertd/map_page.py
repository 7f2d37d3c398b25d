"""The public map's page, rendered on the server: it works without JavaScript.

A visitor with scripts off, a screen reader, or a feature phone's browser gets the same
facts as the map — a table of the districts under an order, their level, municipality and
reason — and a legend of the 警戒レベル colours in ja, en, zh, ko and やさしい日本語. The map
(``/static/map.js`` drawing with the vendored Leaflet) is added on top when scripts run, and
refreshes the table and the map in place. Level names and reasons come from the alert text
catalogs (``alertd/texts``), so the page says a level exactly as the alerts do; the few words
of the page itself are below.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from html import escape
from typing import Any
from urllib.parse import urlencode

from alertd.messages import reason_text
from alertd.public_map import LANGUAGES
from alertd.text_catalogs import load_catalogs

LANGUAGE_NAMES = {"ja": "日本語", "en": "English", "zh": "中文", "ko": "한국어", "ja-easy": "やさしい日本語"}
HTML_LANG = {"ja": "ja", "en": "en", "zh": "zh-Hans", "ko": "ko", "ja-easy": "ja"}

UI: dict[str, dict[str, str]] = {
    "title": {"ja": "避難情報の地図", "en": "Evacuation information map", "zh": "避难信息地图",
              "ko": "대피 정보 지도", "ja-easy": "ひなんの じょうほうの ちず"},
    "intro": {"ja": "いま避難情報が出ている地区です。", "en": "Districts under an evacuation order now.",
              "zh": "目前发布避难信息的地区。", "ko": "지금 대피 정보가 발령된 지역입니다.",
              "ja-easy": "いま ひなんの じょうほうが でている ところです。"},
    "none": {"ja": "いま避難情報が出ている地区はありません。", "en": "No district is under an evacuation order now.",
             "zh": "目前没有发布避难信息的地区。", "ko": "지금 대피 정보가 발령된 지역은 없습니다.",
             "ja-easy": "いま ひなんの じょうほうが でている ところは ありません。"},
    "municipality": {"ja": "市区町村", "en": "Municipality", "zh": "市区町村", "ko": "시구정촌", "ja-easy": "まち"},
    "district": {"ja": "地区", "en": "District", "zh": "地区", "ko": "지구", "ja-easy": "ところ"},
    "level": {"ja": "警戒レベル", "en": "Alert level", "zh": "警戒等级", "ko": "경계 레벨", "ja-easy": "けいかいレベル"},
    "level_n": {"ja": "警戒レベル{n}", "en": "Alert level {n}", "zh": "警戒等级{n}", "ko": "경계 레벨 {n}",
                "ja-easy": "けいかいレベル{n}"},
    "reason": {"ja": "理由", "en": "Reason", "zh": "原因", "ko": "이유", "ja-easy": "りゆう"},
    "legend": {"ja": "凡例", "en": "Legend", "zh": "图例", "ko": "범례", "ja-easy": "いろの いみ"},
    "whole": {"ja": "全域", "en": "whole area", "zh": "全域", "ko": "전역", "ja-easy": "ぜんぶ"},
    "updated": {"ja": "更新", "en": "Updated", "zh": "更新", "ko": "갱신", "ja-easy": "こうしん"},
    "reload": {"ja": "最新の情報に更新", "en": "Reload for the latest", "zh": "刷新", "ko": "새로 고침",
               "ja-easy": "あたらしく する"},
    "map": {"ja": "地図", "en": "Map", "zh": "地图", "ko": "지도", "ja-easy": "ちず"},
    "list": {"ja": "一覧", "en": "List", "zh": "列表", "ko": "목록", "ja-easy": "リスト"},
    "language": {"ja": "言語", "en": "Language", "zh": "语言", "ko": "언어", "ja-easy": "ことば"},
    "no_boundary": {"ja": "（区域図なし：市区町村を点線で表示）", "en": "(no boundary: its municipality is outlined)",
                    "zh": "（无边界：以虚线显示市区町村）", "ko": "(경계 없음: 시구정촌을 점선으로 표시)",
                    "ja-easy": "（ちずに せんが ない ので、まちを てんせんで しめします）"},
    "Exercise": {"ja": "【訓練】これは訓練です。", "en": "[DRILL] This is a drill.", "zh": "【演习】这是演习。",
                 "ko": "[훈련] 이것은 훈련입니다.", "ja-easy": "【くんれん】これは くんれん です。"},
    "Test": {"ja": "【試験】これは試験です。", "en": "[TEST] This is a test.", "zh": "【测试】这是测试。",
             "ko": "[시험] 이것은 시험입니다.", "ja-easy": "【しけん】これは しけん です。"},
}  # fmt: skip

_CATALOGS = load_catalogs(LANGUAGES)


JST = timezone(timedelta(hours=9))


def japan_time(iso: str) -> str:
    """2026-12-01 12:29:55 JST: the clock the visitor's town runs on."""
    return f"{datetime.fromisoformat(iso).astimezone(JST):%Y-%m-%d %H:%M:%S} JST"


def level_name(level: int, lang: str) -> str:
    return str(_CATALOGS[lang]["level_name"][level])


def ui_texts(lang: str) -> dict[str, Any]:
    """The page's words and the level names in one language, for the script that refreshes it."""
    return {**{k: v[lang] for k, v in UI.items()}, "levels": {n: level_name(n, lang) for n in (3, 4, 5)}}


def _legend() -> str:
    head = "".join(f'<th scope="col" lang="{HTML_LANG[lang]}">{escape(LANGUAGE_NAMES[lang])}</th>' for lang in LANGUAGES)
    rows = []
    for level in (5, 4, 3):
        cells = "".join(f'<td lang="{HTML_LANG[lang]}">{escape(level_name(level, lang))}</td>' for lang in LANGUAGES)
        rows.append(f'<tr><th scope="row"><span class="swatch lv{level}" aria-hidden="true"></span>'
                    f"{level}</th>{cells}</tr>")  # fmt: skip
    table = f"<table class=legend><thead><tr><th scope=col>Lv</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    # The dashed grey line on the map: a 町域 alertd has no boundary for, shown by its town's
    # outline. Said in every language, so nobody reads the whole town as under the order.
    notes = "".join(f'<li lang="{HTML_LANG[lang]}"><span class="swatch approximate" aria-hidden="true"></span>'
                    f'{escape(UI["no_boundary"][lang])}</li>' for lang in LANGUAGES)  # fmt: skip
    return f'{table}<ul class="legend-note">{notes}</ul>'



# Languages whose readers may not read kanji: the romanised name comes first.
ROMAJI_FIRST = ("en", "ko")


def place(name: str, romaji: str | None, kana: str | None, lang: str) -> str:
    """A place as a reader of ``lang`` reads it: Misaka-machi (三坂町) in en and ko,
    三坂町（みさかまち） in やさしい日本語, 三坂町 in ja and zh."""
    if lang in ROMAJI_FIRST and romaji:
        return f"{romaji} ({name})"
    if lang == "ja-easy" and kana:
        return f"{name}（{kana}）"
    return name


def _rows(collection: dict[str, Any], lang: str) -> str:
    rows = []
    for feature in collection["features"]:
        p = feature["properties"]
        town = place(p["municipality_name"], p.get("municipality_romaji"), p.get("municipality_kana"), lang)
        name = UI["whole"][lang] if p["whole_municipality"] else place(p["name"], p.get("name_romaji"), p.get("name_kana"), lang)
        note = "" if p["has_boundary"] or p["whole_municipality"] else f' <small>{escape(UI["no_boundary"][lang])}</small>'
        reason = reason_text(p["reason"], lang) or ""
        level = p["level"]
        rows.append(
            f'<tr data-code="{escape(p["code"])}"><td>{escape(town)}</td><td>{escape(name)}{note}</td>'
            f'<td><span class="swatch lv{level}" aria-hidden="true"></span>{escape(UI["level_n"][lang].format(n=level))} '
            f"{escape(level_name(level, lang))}</td><td>{escape(reason)}</td></tr>"
        )
    return "".join(rows)


def render(collection: dict[str, Any], lang: str, status: str, areas: list[str]) -> bytes:
    """The whole page. ``areas``: the prefectures whose municipalities make the base map."""
    t = {k: v[lang] for k, v in UI.items()}
    query = {"status": status} if status != "Actual" else {}
    switcher = " | ".join(
        f'<a href="?{escape(urlencode({**query, "lang": code}))}" lang="{HTML_LANG[code]}"'
        + (' aria-current="true"' if code == lang else "") + f">{escape(LANGUAGE_NAMES[code])}</a>"
        for code in LANGUAGES
    )  # fmt: skip
    banner = f'<p class="banner" role="alert">{escape(t[status])}</p>' if status in ("Exercise", "Test") else ""
    has_rows = bool(collection["features"])
    # With nothing in force the table is hidden, caption and all: "districts under an order now"
    # above an empty table contradicted the "no district" line just before it.
    table = (
        f'<table class="orders" id="orders"{"" if has_rows else " hidden"}><caption>{escape(t["intro"])}</caption><thead><tr>'
        f'<th scope="col">{escape(t["municipality"])}</th><th scope="col">{escape(t["district"])}</th>'
        f'<th scope="col">{escape(t["level"])}</th><th scope="col">{escape(t["reason"])}</th></tr></thead>'
        f'<tbody>{_rows(collection, lang)}</tbody></table>'
    )  # fmt: skip
    none = f'<p id="none"{"" if not has_rows else " hidden"}>{escape(t["none"])}</p>'
    # Inside a script element "</" must not appear: escape it in the JSON.
    texts = json.dumps(ui_texts(lang), ensure_ascii=False).replace("</", "<\\/")
    page = f"""<!doctype html>
<html lang="{HTML_LANG[lang]}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(t["title"])}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/vendor/leaflet.css">
<link rel="stylesheet" href="/static/map.css">
</head>
<body data-lang="{escape(lang)}" data-status="{escape(status)}" data-areas="{escape(",".join(areas))}">
<header>
<h1>{escape(t["title"])}</h1>
<nav aria-label="{escape(t["language"])}">{switcher}</nav>
</header>
<main>
{banner}
<section aria-labelledby="map-heading" class="map-section">
<h2 id="map-heading">{escape(t["map"])}</h2>
<div id="map" class="map" role="region" aria-label="{escape(t["map"])}"></div>
</section>
<section aria-labelledby="list-heading">
<h2 id="list-heading">{escape(t["list"])}</h2>
{none}
{table}
<p class="updated"><span id="updated" aria-live="polite">{escape(t["updated"])}: <time datetime="{escape(collection["updated"])}">{escape(japan_time(collection["updated"]))}</time></span>
<a href="">{escape(t["reload"])}</a></p>
</section>
<section aria-labelledby="legend-heading">
<h2 id="legend-heading">{escape(t["legend"])}</h2>
{_legend()}
</section>
</main>
<script type="application/json" id="texts">{texts}</script>
<script src="/static/vendor/leaflet.js"></script>
<script src="/static/map.js"></script>
</body>
</html>
"""
    return page.encode("utf-8")
