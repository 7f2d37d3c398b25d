"""The operator commands against a running engine, as a desk would run them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest

from tests.conftest import MQTT_URL, REDIS_URL, RunningEngine, Sink
from tests.support import ROOT


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd", *args, cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_issue_preview_send_and_status(engine: RunningEngine, sink: Sink, tmp_path: Any) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    await engine.add_subscriber(id="portal", adapter="isp", endpoint=f"{sink.url}/p", districts=["08211"])
    env = {"ALERTD_URL": engine.url, "ALERTD_ISSUER_TOKEN": token}
    common = ("issue", "--municipality", "08211", "--level", "4", "--districts", "三坂町", "--reason", "洪水",
              "--status", "Exercise")  # fmt: skip

    outline = tmp_path / "outline.geojson"
    code, out, _ = await run(*common, "--preview", "--geojson", str(outline), env=env)
    assert code == 0
    # A short summary a desk reads at a glance, not kilobytes of GeoJSON.
    assert "PREVIEW" in out and "三坂町" in out and "receivers:  1" in out and len(out) < 2000
    assert "coordinates" not in out and outline.exists()
    code, out, _ = await run(*common, "--preview", "--json", env=env)
    preview = json.loads(out)
    assert preview["district_names"] == ["茨城県常総市三坂町"] and preview["deliveries"] == 1
    status, alerts = await engine.get("/api/v1/alerts")
    assert status == 200 and alerts == []  # a preview sends nothing

    code, out, _ = await run(*common, "--json", env=env)
    assert code == 0
    alert_id = json.loads(out)["id"]
    await engine.wait_deliveries(alert_id, {"delivered"})

    code, out, _ = await run("status", alert_id, env=env)
    assert code == 0 and "portal" in out and "delivered" in out
    # Who got it is for the issuer (and the admin), not for anyone who asks.
    code, out, err = await run("status", "--url", engine.url, alert_id, env={"ALERTD_ISSUER_TOKEN": ""})
    assert code == 2 and "portal" not in out and "token" in err and "Traceback" not in err
    code, out, _ = await run("status", "--url", engine.url, "--json")
    assert code == 0 and json.loads(out)["active"][0]["id"] == alert_id
    code, out, err = await run("status", "--url", engine.url)
    assert code == 0 and alert_id in out and "Traceback" not in err
    # A partial lift: the status lists only what still stands under the order.
    order = {"municipality": "08211", "level": 3, "action": "issue", "districts": ["若宮戸", "大輪町"], "reason": "洪水",
             "status": "Exercise"}  # fmt: skip
    status, two = await engine.post("/api/v1/evacuation-orders", token, order)
    assert status == 202, two
    status, _ = await engine.post("/api/v1/evacuation-orders", token, {**order, "action": "lift", "districts": ["若宮戸"]})
    assert status == 202
    code, out, _ = await run("status", "--url", engine.url)
    [line] = [line for line in out.splitlines() if two["id"] in line]
    assert "'08211:大輪町']" in line and "lifted: ['08211:若宮戸']" in line and line.count("若宮戸") == 1


async def test_no_engine_is_one_sentence_not_a_traceback() -> None:
    from tests.support import free_port

    url = f"http://127.0.0.1:{free_port()}"
    for args in (("status", "--url", url), ("issue", "--url", url, "--token", "x" * 20, "--municipality", "08211",
                                            "--level", "4", "--reason", "洪水", "--status", "Exercise")):  # fmt: skip
        code, _, err = await run(*args)
        assert code == 2 and "No alertd answers" in err and "Traceback" not in err, err


async def test_the_reason_is_never_filled_in_for_the_desk(engine: RunningEngine) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    code, _, err = await run("issue", "--municipality", "08211", "--level", "4", "--status", "Exercise",
                             env={"ALERTD_URL": engine.url, "ALERTD_ISSUER_TOKEN": token})  # fmt: skip
    assert code == 2 and "--reason" in err


async def test_issue_outside_jurisdiction_says_why_and_fails(engine: RunningEngine) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    env = {"ALERTD_URL": engine.url, "ALERTD_ISSUER_TOKEN": token}
    code, _, err = await run(
        "issue", "--municipality", "08220", "--level", "4", "--reason", "洪水", "--status", "Exercise", env=env
    )
    assert code == 1 and "つくば市" in err


async def test_serve_with_a_bad_configuration_says_why_and_exits(tmp_path: Any) -> None:
    """A 14-character token in the config once left 'alertd serve' hanging, half-started, silent."""
    from tests.conftest import MQTT_URL, REDIS_URL
    from tests.support import free_port

    config = tmp_path / "bad.yaml"
    config.write_text('issuers: [{id: joso, name: 常総市, token: "joso-token-t15", jurisdiction: ["08211"]}]\n',
                      encoding="utf-8")  # fmt: skip
    env = {"ALERTD_REDIS_URL": REDIS_URL, "ALERTD_MQTT_URL": MQTT_URL, "ALERTD_KEY_PREFIX": f"bad-{free_port()}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd", "serve", "--port", str(free_port()), "--config", str(config),
        cwd=ROOT, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "at least 16 characters" in err.decode()


async def test_a_desk_cancels_a_mis_sent_order_in_one_command(engine: RunningEngine) -> None:
    token = await engine.add_issuer("joso", ["08211"])
    env = {"ALERTD_URL": engine.url, "ALERTD_ISSUER_TOKEN": token}
    code, out, _ = await run("issue", "--municipality", "08211", "--level", "4", "--districts", "三坂町",
                             "--reason", "洪水", "--status", "Exercise", "--json", env=env)  # fmt: skip
    mistake = json.loads(out)["id"]
    code, out, err = await run("cancel", mistake, env=env)
    assert code == 0, err
    assert "SENT" in out and "Cancel" in out
    _status, alert = await engine.get(f"/api/v1/alerts/{mistake}")
    assert alert["state"] == "cancelled"


async def test_serve_refuses_the_examples_secrets() -> None:
    """The trial's deployment ran with ALERTD_ADMIN_TOKEN=change-me from the env example and
    the example configuration's desk tokens: exit 2, naming each, never printing one."""
    from tests.support import free_port

    env = {"ALERTD_REDIS_URL": REDIS_URL, "ALERTD_MQTT_URL": MQTT_URL, "ALERTD_KEY_PREFIX": f"ex-{free_port()}",
           "ALERTD_ADMIN_TOKEN": "change-me"}  # fmt: skip
    code, _, err = await run("serve", "--port", str(free_port()), "--config", str(ROOT / "config/alertd.example.yaml"),
                             env=env)  # fmt: skip
    assert code == 2
    assert "refusing to start with example or weak secrets" in err
    assert "ALERTD_ADMIN_TOKEN is still the example's" in err and "issuer 'joso-desk'" in err
    assert "change-me-joso-desk-token" not in err


def test_a_short_admin_token_is_refused_and_a_demo_may_run_on_the_examples_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alertd import example_secrets
    from alertd.config import Settings

    assert "ALERTD_ADMIN_TOKEN is 11 characters" in (example_secrets.refusal(Settings(admin_token="short-token"),
                                                                             None) or "")  # fmt: skip
    settings = Settings(admin_token="change-me")
    assert example_secrets.refusal(settings, None) is not None
    monkeypatch.setenv("ALERTD_ALLOW_EXAMPLE_SECRETS", "1")  # what `make demo`-style runs set
    assert example_secrets.refusal(settings, None) is None
