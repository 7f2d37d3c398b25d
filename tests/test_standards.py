"""CAP 1.2 in and out over HTTP, the Atom pull feed, and the JMA feed through the whole engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from lxml import etree

from alertd.cap import parse_cap, to_cap
from alertd.drills.jma_replay import report_time, shift
from alertd.models import utcnow
from tests.conftest import RunningEngine, Sink, make_settings, start_engine, stop_engine
from tests.support import ROOT, free_port, shared_data

CAP_FIXTURES = ROOT / "tests" / "fixtures" / "cap"


@pytest.fixture(scope="module")
def cap_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(shared_data("cap", "CAP-v1.2.xsd"))))


async def test_cap_in_is_geocoded_delivered_and_served_back_as_valid_cap(
    engine: RunningEngine, sink: Sink, cap_schema: etree.XMLSchema
) -> None:
    # The fixture is a 2024 document; bring its times to now so it has not expired.
    sent = parse_cap((CAP_FIXTURES / "joso-evacuation-order.xml").read_bytes())
    sent.sent = utcnow().replace(microsecond=0)
    for info in sent.infos:
        info.effective, info.onset, info.expires = sent.sent, None, sent.sent + timedelta(hours=6)
    raw = to_cap(sent)
    sent = parse_cap(raw)
    # The city's own CAP sender, registered to its issuer (a sender names one issuer).
    token = await engine.add_issuer("joso", ["08211"], senders=[sent.sender])
    await engine.add_subscriber(id="tv", adapter="broadcaster", endpoint=f"{sink.url}/tv", districts=["08"])
    status, answer = await engine.post(
        "/api/v1/alerts", token, raw, headers={"Content-Type": "application/cap+xml"}
    )
    assert status == 202, answer
    assert answer["districts"] and all(d.startswith("08211") for d in answer["districts"])
    await sink.wait_for(1)
    pushed = sink.at("/tv")[0]["body"]
    cap_schema.assertValid(etree.fromstring(pushed))

    status, served = await engine.get(f"/api/v1/alerts/{answer['id']}.cap")
    assert status == 200
    doc = etree.fromstring(served.encode("utf-8"))
    cap_schema.assertValid(doc)
    back = parse_cap(served.encode("utf-8"))
    assert (back.identifier, back.sender, back.sent, back.status, back.msg_type) == (
        sent.identifier, sent.sender, sent.sent, sent.status, sent.msg_type,
    )  # fmt: skip
    assert [i.language for i in back.infos] == [i.language for i in sent.infos]
    assert [len(i.areas) for i in back.infos] == [len(i.areas) for i in sent.infos]

    # Sending the same CAP again (same sender and identifier) is recognised, not re-sent.
    status, again = await engine.post(
        "/api/v1/alerts", token, raw, headers={"Content-Type": "application/cap+xml"}
    )
    assert (status, again) == (202, answer)


async def test_desk_order_and_test_message_come_out_as_valid_cap(
    engine: RunningEngine, cap_schema: etree.XMLSchema
) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    order = {"municipality": "08211", "level": 5, "action": "issue", "districts": ["三坂町"], "reason": "洪水",
             "status": "Exercise", "shelters": [{"name": "石下総合体育館", "capacity": 400}]}  # fmt: skip
    status, answer = await engine.post("/api/v1/evacuation-orders", token, order)
    assert status == 202 and answer["priority"] == "flash"  # 緊急安全確保 takes the priority lane
    status, served = await engine.get(f"/api/v1/alerts/{answer['id']}.cap")
    doc = etree.fromstring(served.encode("utf-8"))
    cap_schema.assertValid(doc)
    ns = {"c": "urn:oasis:names:tc:emergency:cap:1.2"}
    assert doc.findtext("c:status", namespaces=ns) == "Exercise"
    assert sorted(doc.xpath("c:info/c:language/text()", namespaces=ns)) == ["en-US", "ja-JP"]
    params = dict(zip(doc.xpath("c:info[1]/c:parameter/c:valueName/text()", namespaces=ns),
                      doc.xpath("c:info[1]/c:parameter/c:value/text()", namespaces=ns), strict=True))  # fmt: skip
    assert params["JP-ALERTD-LEVEL"] == "5"


async def test_atom_feed_lists_alerts_in_force_with_etag(engine: RunningEngine) -> None:
    token = await engine.add_issuer("pref", ["08"])
    order = {
        "municipality": "08211",
        "level": 4,
        "action": "issue",
        "districts": ["all"],
        "reason": "洪水",
        "status": "Actual",  # the feed is Actual unless ?status= says otherwise
    }
    status, answer = await engine.post("/api/v1/evacuation-orders", token, order)
    assert status == 202
    async with engine.http.get(f"{engine.url}/feeds/alerts.atom?municipality=08211") as resp:
        assert resp.status == 200 and resp.content_type == "application/atom+xml"
        etag = resp.headers["ETag"]
        feed = etree.fromstring(await resp.read())
    atom = {"a": "http://www.w3.org/2005/Atom"}
    links = feed.xpath("a:entry/a:link/@href", namespaces=atom)
    assert links == [f"{engine.url}/api/v1/alerts/{answer['id']}.cap"]
    async with engine.http.get(
        f"{engine.url}/feeds/alerts.atom?municipality=08211", headers={"If-None-Match": etag}
    ) as resp:
        assert resp.status == 304
    async with engine.http.get(f"{engine.url}/feeds/alerts.atom?municipality=13101") as resp:
        other = etree.fromstring(await resp.read())
        assert other.xpath("a:entry", namespaces=atom) == []
        assert resp.headers["ETag"] != etag

    # A new alert changes the feed, so the old ETag no longer matches.
    status, _ = await engine.post("/api/v1/evacuation-orders", token, {**order, "municipality": "08220"})
    async with engine.http.get(
        f"{engine.url}/feeds/alerts.atom?prefecture=08", headers={"If-None-Match": etag}
    ) as resp:
        assert resp.status == 200
        assert len(etree.fromstring(await resp.read()).xpath("a:entry", namespaces=atom)) == 2


# --- the JMA feed, end to end --------------------------------------------------------------
EEW_FILE = "37_01_02_240613_VXSE43.xml"




def shift_to_now(text: str) -> str:
    """Move every time in a sample message by the same amount, so its report time is now.

    Samples are years old, and alertd rightly refuses to send what has already expired.
    """
    return shift(text, datetime.now(UTC) - report_time(text)).decode("utf-8")


@pytest_asyncio.fixture
async def jma_feed() -> AsyncIterator[str]:
    path: Path = shared_data("jmaxml", EEW_FILE)
    text = path.read_text(encoding="utf-8")
    title = text.split("<Title>", 1)[1].split("</Title>", 1)[0]
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    async def feed(request: web.Request) -> web.Response:
        body = (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            "<title>eqvol</title><id>urn:test:eqvol</id><updated>2024-06-13T00:00:00Z</updated>"
            f"<entry><title>{escape(title)}</title><id>urn:test:{EEW_FILE}</id><updated>2024-06-13T00:00:00Z</updated>"
            f'<link type="application/xml" href="{base}/data/{EEW_FILE}"/></entry></feed>'
        )
        return web.Response(body=body.encode(), content_type="application/atom+xml", headers={"ETag": '"v1"'})

    async def data(request: web.Request) -> web.Response:
        return web.Response(
            body=shift_to_now(path.read_text(encoding="utf-8")).encode(), content_type="application/xml"
        )

    app = web.Application()
    app.router.add_get("/feed/eqvol.xml", feed)
    app.router.add_get("/data/{name}", data)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"{base}/feed"
    await runner.cleanup()


async def test_jma_eew_from_the_feed_reaches_radio_and_tv_through_the_flash_lane(
    sink: Sink, jma_feed: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ALERTD_JMA_FEED_BASE", jma_feed)
    monkeypatch.setenv("ALERTD_JMA_FEEDS", "eqvol")
    # Subscribers come from the config file, so they exist before the first poll.
    subs = [
        {"id": sid, "adapter": adapter, "endpoint": f"{sink.url}/{sid}", "districts": [district]}
        for sid, adapter, district in (("radio-kochi", "radio", "39201"), ("tv-kochi", "broadcaster", "39"),
                                       ("sign-kochi", "signage", "39201"), ("radio-tokyo", "radio", "13101"))
    ]  # fmt: skip
    seed = tmp_path / "seed.yaml"
    seed.write_text(yaml.safe_dump({"subscribers": subs}), encoding="utf-8")
    running = await start_engine(make_settings(seed_file=str(seed)))
    try:
        await sink.wait_for(2, timeout=20)
        status, alerts = await running.get("/api/v1/alerts")
        assert status == 200
        eew = next(a for a in alerts if a["kind"] == "eew")
        await running.wait_settled(eew["id"])  # before looking at who else got it
        got = sorted({r["path"] for r in sink.received})
        # The policy sends EEW to radio and broadcasters of the affected prefectures only.
        assert got == ["/radio-kochi", "/tv-kochi"]
        assert eew["priority"] == "flash" and eew["origin"] == "jma" and eew["status"] == "Actual"
        script = json.loads(sink.at("/radio-kochi")[0]["body"])
        assert "緊急地震速報" in script["text"]
    finally:
        await stop_engine(running)
