"""What a receiver relies on to trust a delivery: signatures, fresh per attempt, and the retry contract."""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
from typing import Any

from aiohttp import web

from adapters.signing import SIGNATURE_HEADER, HmacKey, sign, verify
from tests.conftest import RunningEngine
from tests.support import ROOT, free_port

SECRET = "broadcaster-secret-0123456789"
ORDER = {"municipality": "08211", "level": 4, "action": "issue", "districts": ["all"], "reason": "洪水",
         "status": "Exercise"}  # fmt: skip


class Receiver:
    """A broadcaster's receiver: answers each attempt from a script of statuses, records every request."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.url = ""
        self.runner: web.AppRunner | None = None

    async def handler(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append({"headers": dict(request.headers), "body": body})
        self.arrived.set()
        status = self.statuses[len(self.requests) - 1] if len(self.requests) <= len(self.statuses) else 200
        return web.Response(status=status)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handler)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/cap"
        return self

    async def wait_for(self, n: int, timeout: float = 15) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.requests) < n:
            assert loop.time() < deadline, f"{len(self.requests)} of {n} requests arrived"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), deadline - loop.time())
            except TimeoutError:
                pass

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def checks(request: dict[str, Any], secret: str = SECRET) -> bool:
    h = request["headers"]
    return verify(secret, h[SIGNATURE_HEADER], h["Idempotency-Key"], h["X-Alertd-Alert-Id"], request["body"])


async def test_a_broadcaster_with_a_secret_gets_signed_cap_signed_afresh_on_each_attempt(engine: RunningEngine) -> None:
    receiver = await Receiver([503]).start()  # the first attempt fails, the retry is taken
    try:
        token = await engine.add_issuer("joso", ["08211"])
        await engine.add_subscriber(id="tv", adapter="broadcaster", endpoint=receiver.url, districts=["08211"],
                                    secret=SECRET)  # fmt: skip
        status, _ = await engine.post("/api/v1/evacuation-orders", token, ORDER)
        assert status == 202
        await receiver.wait_for(2)
        first, retry = receiver.requests[:2]
        assert b"urn:oasis:names:tc:emergency:cap:1.2" in first["body"]
        assert checks(first) and checks(retry)
        assert first["headers"][SIGNATURE_HEADER] != retry["headers"][SIGNATURE_HEADER]  # a fresh t
        t = [int(re.search(r"t=(\d+)", r["headers"][SIGNATURE_HEADER]).group(1)) for r in (first, retry)]  # type: ignore[union-attr]
        assert t[1] > t[0]
        # The key a receiver deduplicates on, and the alert id, are covered: swap one and it fails.
        forged = {**retry, "headers": {**retry["headers"], "Idempotency-Key": "0" * 32}}
        assert not checks(forged)
        assert not checks(retry, secret="another-secret-0123456789")
    finally:
        await receiver.stop()


async def test_a_409_to_a_retry_counts_as_delivered(engine: RunningEngine) -> None:
    # The first attempt reached the receiver but its answer was lost (503 here); the
    # receiver then says "already have it" to the retry. That is a delivery, not a failure.
    receiver = await Receiver([503, 409]).start()
    try:
        token = await engine.add_issuer("joso", ["08211"])
        await engine.add_subscriber(id="tv", adapter="broadcaster", endpoint=receiver.url, districts=["08211"])
        _status, answer = await engine.post("/api/v1/evacuation-orders", token, ORDER)
        rows = await engine.wait_deliveries(answer["id"], {"delivered", "failed"})
        assert rows[0]["state"] == "delivered" and rows[0]["attempts"] == 2, rows
    finally:
        await receiver.stop()


async def test_rotating_a_secret_stops_the_old_one_at_once(engine: RunningEngine) -> None:
    receiver = await Receiver([]).start()
    try:
        token = await engine.add_issuer("joso", ["08211"])
        await engine.add_subscriber(id="portal", adapter="isp", endpoint=receiver.url, districts=["08211"],
                                    secret=SECRET)  # fmt: skip
        new_secret = "rotated-secret-9876543210"
        async with engine.http.patch(f"{engine.url}/api/v1/subscribers/portal", json={"secret": new_secret},
                                     headers=engine.admin) as resp:  # fmt: skip
            assert resp.status == 200
            assert (await resp.json())["secret"] == "***"
        _status, _ = await engine.post("/api/v1/evacuation-orders", token, ORDER)
        await receiver.wait_for(1)
        assert checks(receiver.requests[0], new_secret) and not checks(receiver.requests[0], SECRET)
    finally:
        await receiver.stop()


def test_the_readme_test_vector_is_what_alertd_computes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    vector = re.search(r"<!-- signature test vector -->(.*?)<!-- /signature test vector -->", readme, re.S)
    assert vector, "the README has no signature test vector"
    text = vector.group(1)
    secret = re.search(r"secret: `([^`]+)`", text).group(1)  # type: ignore[union-attr]
    t = int(re.search(r"t: `(\d+)`", text).group(1))  # type: ignore[union-attr]
    key = re.search(r"Idempotency-Key: `([^`]+)`", text).group(1)  # type: ignore[union-attr]
    alert_id = re.search(r"X-Alertd-Alert-Id: `([^`]+)`", text).group(1)  # type: ignore[union-attr]
    body = re.search(r"body: `([^`]+)`", text).group(1).encode()  # type: ignore[union-attr]
    header = re.search(r"X-Alertd-Signature: `([^`]+)`", text).group(1)  # type: ignore[union-attr]
    assert sign(secret, t, key, alert_id, body) == header


def test_the_hmac_alertd_computes_is_the_standard_one_for_any_key_and_message() -> None:
    # alertd hashes a key's pads once (adapters.signing.HmacKey); a receiver checks with its
    # language's own HMAC-SHA256, so the two must agree for every key length, short and long.
    for key_len in (0, 1, 32, 63, 64, 65, 200):
        key = secrets.token_bytes(key_len)
        for message in (b"", b"01a2358b54a9c9b2325670/portal", secrets.token_bytes(5000)):
            assert HmacKey(key).digest(message) == hmac.digest(key, message, "sha256"), (key_len, len(message))
