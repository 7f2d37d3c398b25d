"""What the large fan-out tests share (tests/test_first_delivery.py, tests/test_lane_shards.py):
a missile exercise for Tokyo, n webhook receivers of it, and the check that each got it once."""

from __future__ import annotations

from collections import Counter

from alertd.config import Settings
from alertd.models import AdapterKind, Subscriber
from tests.conftest import RunningEngine, Sink, make_settings

MISSILE = {
    "status": "Exercise", "msg_type": "Alert", "kind": "missile", "event": "弾道ミサイル情報",
    "districts": ["13"], "headline": {"ja": "ミサイル発射（訓練）", "en": "Missile launch (exercise)"},
}  # fmt: skip


def fanout_settings(**overrides: object) -> Settings:
    """The suite's settings with a claim idle time of 30 s. A delivery's timeout is the
    receiver's (5 s) or half the claim idle time, whichever is shorter, and the suite's
    3 s made it 1.5 s: on a loaded 2-core CI machine a few of 612 requests answered by a
    sink on the test's own loop took longer, were retried, and arrived twice. That is
    at-least-once delivery doing its job, not a fan-out queued twice, which is what
    these tests are here to catch."""
    return make_settings(**{"claim_idle_s": 30.0, **overrides})


async def add_receivers(running: RunningEngine, url: str, n: int) -> None:
    """Receivers r0000… at ``url``/r/<i>, taking drills, all in Tokyo."""
    await running.engine.store.put_subscribers([
        Subscriber(id=f"r{i:04d}", adapter=AdapterKind.ISP, endpoint=f"{url}/r/{i}", districts=["13"], drills=True)
        for i in range(n)
    ])  # fmt: skip


def assert_once_each(sink: Sink, n: int) -> None:
    """Every one of the n receivers got the alert, once, under a key of its own."""
    paths = Counter(r["path"] for r in sink.received)
    keys = Counter(r["headers"]["Idempotency-Key"] for r in sink.received)
    assert set(paths) == {f"/r/{i}" for i in range(n)}, f"{n - len(paths)} receivers never got it"
    assert max(paths.values()) == 1, [p for p, c in paths.items() if c > 1][:5]
    assert len(keys) == n and max(keys.values()) == 1
