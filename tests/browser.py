"""A real headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium,
and a real ``alertd serve`` with boundaries, for the tests of the pages people use.

Nothing here downloads a browser or a driver: the driver is ``/usr/bin/chromedriver`` (tests/
services.sh installs both with apt-get), and Selenium Manager is told to stay offline. Every
request the page makes is in Chrome's performance log, so a test can say that none went to
another host; axe-core (vendored in tests/vendor) is injected into the page under test.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import ADMIN_TOKEN, MQTT_URL, REDIS_URL
from tests.support import GEO, ROOT, free_port

T = TypeVar("T")
CHROMEDRIVER = "/usr/bin/chromedriver"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def chromium_or_fail() -> str:
    """The browser binary; a missing one is a failure that says how to get it (never a download)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None or not Path(CHROMEDRIVER).exists():
        pytest.fail("Debian's chromium and chromium-driver are not installed: run `make test` "
                    "(tests/services.sh installs them) or `apt-get install chromium chromium-driver`")  # fmt: skip
    return binary


def start_browser(width: int = 1366, height: int = 768) -> Any:
    """Headless Chromium at a municipal PC's screen size, with every network request logged."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium_or_fail()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--lang=ja", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--metrics-recording-only"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked for since the last call (Chrome's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def foreign(urls: list[str], origin: str) -> list[str]:
    """URLs that left alertd's own origin (data: URLs are in the page itself)."""
    own = urlsplit(origin).netloc
    return [u for u in urls if not u.startswith("data:") and urlsplit(u).netloc != own]


def axe_serious(driver: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations), e => done(String(e)));"
    )
    assert isinstance(result, list), result
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result
        if v.get("impact") in ("serious", "critical")
    ]


def wait(check: Callable[[], T], what: str, timeout: float = 15.0, interval: float = 0.05) -> T:
    """``check()`` until truthy, or fail naming what did not happen (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the page may be mid-render: try again until the deadline
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s (last: {last!r})")


def click(driver: Any, selector: str, what: str) -> None:
    """Find and click, again if the element went stale in between: the console re-draws its
    lists every 10 s, and an element found just before a redraw is gone when clicked (CI
    runs met it)."""

    def clicked() -> bool:
        driver.find_element("css selector", selector).click()
        return True

    wait(clicked, what)


@dataclass
class Server:
    """``alertd serve`` in its own process, with a boundary cache of its own."""

    url: str
    token: str  # the 常総市 desk's issuer token
    prefix: str
    proc: subprocess.Popen[bytes]

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            **({"Authorization": f"Bearer {token}"} if token else {}),
            **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status, raw, got = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            status, raw, got = err.code, err.read(), dict(err.headers)
        text = raw.decode("utf-8")
        return status, (json.loads(text) if text and "json" in got.get("Content-Type", "") else text), got

    def order(self, **fields: Any) -> dict[str, Any]:
        body = {"municipality": "08211", "level": 4, "action": "issue", "districts": ["三坂町"],
                "reason": "洪水", "status": "Actual", **fields}  # fmt: skip
        status, answer, _ = self.call("POST", "/api/v1/evacuation-orders", body, token=self.token)
        assert status == 202, answer
        return dict(answer)


def add_drawn_district(server: Server, name: str) -> None:
    """A district the desk drew itself (it has a boundary, so it can be picked on the map)."""
    import shapely
    import shapely.geometry

    _, town, _ = server.call("GET", "/api/v1/boundaries?area=08211")
    outline = shapely.geometry.shape(town["features"][0]["geometry"])
    point = outline.representative_point()
    box = shapely.box(point.x - 0.004, point.y - 0.003, point.x + 0.004, point.y + 0.003).intersection(outline)
    body = {"municipality": "08211", "name": name, "geometry": shapely.geometry.mapping(box)}
    status, answer, _ = server.call("POST", "/api/v1/districts", body, token=server.token)
    assert status == 201, answer


_GEO_CACHE: list[Path] = []


def geo_cache(path: Path) -> Path:
    """Ibaraki's municipalities, imported the way `alertd geo import` does (about 3 s), once
    per test session: every server reads the same cache (a desk's drawn districts live in Redis)."""
    from geo.importer import import_boundaries

    source = GEO / "ibaraki-municipalities.geojson"
    if not source.exists():
        pytest.skip(f"boundary data absent from {GEO}")
    if not _GEO_CACHE:
        import_boundaries([source], path)
        _GEO_CACHE.append(path)
    return _GEO_CACHE[0]


def serve(tmp: Path, config: dict[str, Any], port: int | None = None) -> Iterator[Server]:
    """Run ``alertd serve`` (desk and public on one port) until the generator is closed."""
    from tests.conftest import wipe

    prefix = f"alertd-test-{secrets.token_hex(4)}"
    seed = tmp / "seed.yaml"
    seed.write_text(yaml.safe_dump(config, allow_unicode=True))
    port = port or free_port()
    env = {**os.environ, "ALERTD_REDIS_URL": REDIS_URL, "ALERTD_MQTT_URL": MQTT_URL, "ALERTD_ADMIN_TOKEN": ADMIN_TOKEN,
           "ALERTD_KEY_PREFIX": prefix, "ALERTD_TOPIC_PREFIX": f"{prefix}/alerts/v1", "ALERTD_CONFIG": str(seed),
           "ALERTD_GEO_CACHE": str(geo_cache(tmp / "geo")), "ALERTD_LOG_LEVEL": "WARNING",
           "ALERTD_RETRY_BASE_S": "0.1", "ALERTD_RETRY_MAX_S": "1"}  # fmt: skip
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "alertd", "serve", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    token = next(i["token"] for i in config["issuers"] if i["id"] == "joso")
    server = Server(f"http://127.0.0.1:{port}", token, prefix, proc)

    def healthy() -> bool:
        assert proc.poll() is None, f"alertd serve exited: {(tmp / 'serve.log').read_text()[-2000:]}"
        try:
            return server.call("GET", "/healthz")[0] == 200
        except OSError:
            return False

    try:
        wait(healthy, "alertd serve to answer /healthz", timeout=30)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        import asyncio

        asyncio.run(wipe(prefix))


class FleetThread:
    """The drills' simulated receivers (a webhook portal, an MQTT loudspeaker gateway …) on an
    event loop of their own: the browser tests are synchronous, and the receivers must keep
    answering and confirming while Selenium waits."""

    def __init__(self, specs: list[Any], engine_url: str) -> None:
        import asyncio
        import threading

        from alertd.drills.receivers import Fleet

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fleet", daemon=True)
        self.thread.start()
        self.fleet = Fleet(specs, engine_url, MQTT_URL)
        asyncio.run_coroutine_threadsafe(self.fleet.start(), self.loop).result(20)

    def subscribers(self) -> list[dict[str, Any]]:
        return self.fleet.subscriber_bodies()

    def stop(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.fleet.stop(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
