"""Apprise subscribers (X, LINE, Slack… relays): Apprise's json:// target posting to a local sink,
and each service's text limit as Apprise states it."""

from __future__ import annotations

import json

import apprise

from adapters.relay import fit, weight
from tests.conftest import RunningEngine, Sink
from tests.support import until

ORDER = {
    "municipality": "08211", "level": 4, "action": "issue", "districts": ["三坂町"], "reason": "洪水",
    "status": "Exercise",
}  # fmt: skip


async def test_an_order_reaches_the_relay_and_the_delivery_says_what_apprise_reported(
    engine: RunningEngine, sink: Sink
) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    endpoint = sink.url.replace("http://", "json://") + "/relay?apikey=k3y-value"
    shown = await engine.add_subscriber(id="joso-x", adapter="apprise", endpoint=endpoint, districts=["08211"])
    assert "k3y-value" not in shown["endpoint"]
    status, answer = await engine.post("/api/v1/evacuation-orders", token, ORDER)
    assert status == 202, answer

    await sink.wait_for(1)
    posted = json.loads(sink.at("/relay")[0]["body"])
    assert "避難指示" in posted["title"] and "三坂町" in posted["message"]
    assert "Evacuation" in posted["message"]  # English after the Japanese: it fits in JSON's 32,768
    rows = await engine.wait_deliveries(answer["id"], {"delivered"})
    assert rows[0]["report"].startswith("Apprise JSON: ") and "Sent JSON POST notification" in rows[0]["report"]


async def test_a_relay_that_answers_500_is_retried_with_apprises_words_in_the_error(
    engine: RunningEngine, sink: Sink
) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    sink.status["/down"] = 500
    await engine.add_subscriber(id="joso-line", adapter="apprise", districts=["08211"],
                                endpoint=sink.url.replace("http://", "json://") + "/down")  # fmt: skip
    status, answer = await engine.post("/api/v1/evacuation-orders", token, ORDER)
    assert status == 202, answer

    async def failed_once() -> list[dict[str, str]] | None:
        rows = [r for r in await engine.deliveries(answer["id"]) if r["adapter"] == "apprise"]
        return rows if rows and rows[0]["attempts"] >= 1 and rows[0]["last_error"] else None

    rows = await until(failed_once, what="a failed attempt recorded for the relay")
    assert rows[0]["state"] in ("queued", "sent")  # retried, not failed: the service may come back
    assert "Apprise JSON" in rows[0]["last_error"] and "500" in rows[0]["last_error"]


async def test_an_address_apprise_does_not_know_is_a_422_naming_the_scheme(engine: RunningEngine) -> None:
    body = {"id": "r", "adapter": "apprise", "endpoint": "bogus://x/y", "districts": ["08211"]}
    status, problem = await engine.post("/api/v1/subscribers", engine.admin["Authorization"][7:], body)
    assert status == 422 and "'bogus'" in problem["detail"] and "Apprise" in problem["detail"]


def test_texts_are_cut_to_each_services_limit() -> None:
    long_ja = "常総市に避難指示を発令しました。" * 40
    sections = [long_ja, "Evacuation order\n" + "Evacuate now. " * 60]
    x = apprise.Apprise.instantiate("x://ckey/csecret/akey/asecret?mode=tweet")
    title, body = fit("【警戒レベル4】避難指示", sections, body_max=x.body_maxlen, title_max=x.title_maxlen,
                      service=type(x).__name__)  # fmt: skip
    # X has no title: the headline leads the body, and CJK counts double in its 280.
    assert title == "" and body.startswith("【警戒レベル4】避難指示")
    assert weight(body, "NotifyTwitter") <= 280 and body.endswith("。")
    slack = apprise.Apprise.instantiate("slack://T1/B1/C1")
    title, body = fit("【警戒レベル4】" + "避難指示" * 100, sections, body_max=slack.body_maxlen,
                      title_max=slack.title_maxlen, service=type(slack).__name__)  # fmt: skip
    assert len(title) <= slack.title_maxlen and "Evacuate now." in body  # both languages fit Slack's 35,000
