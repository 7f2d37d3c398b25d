"""National flash (issue 12): one J-Alert-style missile alert to all 47 prefectures.

The receivers a nationwide J-Alert reaches:
  - one webhook per municipality: 1,741 (every 市町村 and Tokyo's 23 特別区 —
    the registry's municipalities less the six Northern Territories villages,
    which have no office to receive anything), on the ``radio`` adapter, the
    municipal gateway that starts the loudspeakers (同報系防災行政無線);
  - 1,400 broadcaster and portal endpoints (L-Alert has about 1,400
    conveyors), alternately ``broadcaster`` (CAP) and ``isp`` (JSON); one in
    ten takes the whole country, the others one prefecture each;
  - the MQTT feed on every municipality topic the engine publishes to (1,747:
    the engine's own count, Northern Territories included).

The alert names the 47 prefecture codes (the JSON intake has no single
"all of Japan" code; the router matches every subscriber inside them). It runs
on an engine of its own — own key prefix, own subscribers, own topic prefix
``bench/<run>/national`` — so none of the main phases' 3,000 subscribers get
it, and no other deployment on the broker sees its messages.

Reported over ``--runs`` fan-outs (after one warm-up that is not): first and
last webhook receipt after the POST, the feed's publishes as the sink counted
them and the last of them, and alertd's own accepted → delivered per adapter.
J-Alert, for comparison, takes 1–2 s from the government to the municipal
receivers (issue 12's figure); the target here is the last of 3,141 within 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from alertd.broker import Broker
from alertd.feed import clear_retained
from simulations.bench_common import (
    OUT_DIR,
    BenchRun,
    FanoutRun,
    expires_iso,
    le,
    p,
    rel,
    row,
    summarize_runs,
    wait_idle,
)

if TYPE_CHECKING:
    from geo.registry import Registry

TARGET_NATIONAL_LAST_P99_MS = 1000.0
TARGET_NATIONAL_FIRST_P99_MS = 50.0
JALERT = "J-Alert 1–2 s"
NATIONAL_SHARE = 10  # one conveyor in ten takes the whole country (a network, a national portal)


def feed_root(run_id: str) -> str:
    """The national engine's MQTT topic prefix; the sink subscribes ``<root>/+/+``."""
    return f"bench/{run_id}/national"


@dataclass
class Population:
    prefectures: list[str]
    municipalities: list[str]  # one webhook each
    feed_topics: int  # municipality topics the feed publishes the alert to
    seed: dict[str, Any]

    @property
    def webhooks(self) -> int:
        return len(self.seed["subscribers"])


def plan(registry: Registry, sink_url: str, token: str, conveyors: int) -> Population:
    from geo.tables import NORTHERN_TERRITORIES

    prefectures = sorted(d.code for d in registry.prefectures())
    municipalities = sorted(
        m.code
        for m in registry.municipalities()
        if m.level == "municipality" and m.code not in NORTHERN_TERRITORIES
    )
    # What alertd.feed.municipalities_of gives a prefecture-wide alert: each prefecture's towns.
    feed_topics = sum(
        1 for pref in prefectures for c in registry.children(pref) if c.level in ("municipality", "ward")
    )
    subs: list[dict[str, Any]] = [
        {"id": f"m{code}", "adapter": "radio", "endpoint": f"{sink_url}/n/m/{code}", "districts": [code],
         "secret": f"bench-town-{code}", "timeout_s": 5.0, "drills": True}
        for code in municipalities
    ]  # fmt: skip
    for i in range(conveyors):
        whole = i % NATIONAL_SHARE == 0
        subs.append({
            "id": f"c{i}", "adapter": "broadcaster" if i % 2 else "isp", "endpoint": f"{sink_url}/n/c/{i}",
            "districts": prefectures if whole else [prefectures[i % len(prefectures)]],
            "secret": f"bench-conveyor-{i:05d}", "timeout_s": 5.0, "drills": True,
        })  # fmt: skip
    issuers = [
        {"id": "bench-national", "name": "全国瞬時警報システム(bench)", "token": token, "national": True}
    ]
    return Population(prefectures, municipalities, feed_topics, {"issuers": issuers, "subscribers": subs})


async def national_run(bench: BenchRun, url: str, pop: Population, label: str) -> FanoutRun:
    """One national alert: every webhook receipt and the feed's publishes, as the sink saw them."""
    t0, answer = await bench.post_flash(label, url=url, districts=pop.prefectures)
    alert_id, n = answer["id"], int(answer["deliveries"])
    feed_key = feed_root(bench.run_id)
    await bench.wait_count(alert_id, n, 30)
    await bench.wait_count(feed_key, pop.feed_topics, 10)
    times = await bench.take(alert_id)
    feed = await bench.take(feed_key)
    feed_first, feed_last = rel(feed, t0)
    return FanoutRun(t0, times, n, {
        "alert_id": alert_id, "accepted_ms": answer["accepted_ms"],
        "feed_received": len(feed), "feed_expected": pop.feed_topics, "feed_first_ms": feed_first,
        "feed_last_ms": feed_last if len(feed) >= pop.feed_topics else None,
    })  # fmt: skip


async def engine_side(bench: BenchRun, url: str, run: FanoutRun) -> None:
    """alertd's own accepted → delivered for a run, by receiver kind. Read after all the runs:
    listing 3,142 deliveries costs the engine more than a little, and must not fall inside a
    run (or its profile)."""
    lat = await bench.engine_latencies(run.extra["alert_id"], run.expected + 1, timeout=30, url=url)
    conveyors = lat.get("broadcaster", []) + lat.get("isp", [])
    run.extra.update({
        "engine_municipal_p99_ms": p(lat.get("radio", []), 99), "engine_conveyor_p99_ms": p(conveyors, 99),
        "engine_p99_ms": p(lat.get("radio", []) + conveyors, 99), "engine_feed_ms": (lat.get("feed") or [None])[0],
    })  # fmt: skip


async def end_drill(bench: BenchRun, url: str, pop: Population, run: FanoutRun) -> None:
    """Cancel a run's alert (訓練終了) and wait until the cancel has reached every webhook and topic.

    Without it every run would leave one more national alert in force, and each
    municipality's retained state — republished for all 1,747 towns by every run —
    would list one more alert than the run before: runs would not be alike, and a real
    country has one missile alert in force, not five."""
    assert bench.http is not None
    body = {
        "identifier": f"bench-{bench.run_id}-national-end-{run.extra['alert_id']}", "status": "Exercise",
        "msg_type": "Cancel", "kind": "missile", "references": [run.extra["alert_id"]],
        "districts": pop.prefectures, "expires": expires_iso(),
    }  # fmt: skip
    headers = {"Authorization": f"Bearer {bench.national_token}"}
    async with bench.http.post(f"{url}/api/v1/alerts", json=body, headers=headers) as resp:
        answer = await resp.json()
        if resp.status != 202:
            raise RuntimeError(f"alertd refused the national cancel: {resp.status} {answer}")
    await bench.wait_count(answer["id"], int(answer["deliveries"]), 30)
    await bench.wait_count(feed_root(bench.run_id), pop.feed_topics, 10)
    await bench.take(answer["id"])
    await bench.take(feed_root(bench.run_id))


async def phase_national(bench: BenchRun) -> None:
    from geo.registry import Registry

    o = bench.o
    bench.say("national: planning 47 prefectures' receivers")
    reg = await asyncio.to_thread(Registry.default)
    pop = plan(reg, bench.sink_url, bench.national_token, o.national_conveyors)
    seed = OUT_DIR / f"seed-{bench.run_id}-national.yaml"
    await asyncio.to_thread(seed.write_text, yaml.safe_dump(pop.seed, allow_unicode=True))
    bench.say(f"national: starting an engine with {pop.webhooks} subscribers")
    engine = await bench.start_engine(
        seed, prefix=f"{bench.prefix}-national", log=OUT_DIR / "alertd-national.log",
        env={"ALERTD_TOPIC_PREFIX": feed_root(bench.run_id)},
    )  # fmt: skip
    runs: list[FanoutRun] = []
    try:
        bench.say("national warm-up")
        await end_drill(bench, engine.url, pop, await national_run(bench, engine.url, pop, "national-warmup"))

        async def measured() -> None:
            for i in range(o.runs):
                bench.say(
                    f"national run {i + 1}/{o.runs}: {pop.webhooks} webhooks + {pop.feed_topics} topics"
                )
                # The previous cancel's retained states (1,747 of them) go out before the next run.
                await wait_idle(engine.proc.pid, 20)
                runs.append(await national_run(bench, engine.url, pop, f"national{i}"))
                await end_drill(bench, engine.url, pop, runs[-1])

        await bench.profiled("national", measured, pid=engine.proc.pid)
        for run in runs:
            await engine_side(bench, engine.url, run)
    finally:
        await bench.stop_engine(engine)
        await asyncio.to_thread(seed.unlink, True)
        with contextlib.suppress(Exception):  # the states expire by themselves anyway (10 minutes)
            await clear_retained(Broker.parse(o.mqtt_url), {feed_root(bench.run_id)})
    bench.results["national"] = summarize_national(runs, pop)


def summarize_national(runs: list[FanoutRun], pop: Population) -> dict[str, Any]:
    s = summarize_runs(runs)
    feed_last = [r.extra["feed_last_ms"] for r in runs if r.extra["feed_last_ms"] is not None]
    engine = [r.extra["engine_p99_ms"] for r in runs if r.extra["engine_p99_ms"] is not None]
    municipal = [
        r.extra["engine_municipal_p99_ms"] for r in runs if r.extra["engine_municipal_p99_ms"] is not None
    ]
    s.update({
        "webhooks": pop.webhooks, "municipal_webhooks": len(pop.municipalities),
        "conveyors": pop.webhooks - len(pop.municipalities), "prefectures": len(pop.prefectures),
        "feed_topics": pop.feed_topics,
        "feed_received_min": min((r.extra["feed_received"] for r in runs), default=0),
        "feed_first_p50_ms": p([r.extra["feed_first_ms"] for r in runs if r.extra["feed_first_ms"] is not None], 50),
        "feed_last_p50_ms": p(feed_last, 50), "feed_last_p99_ms": p(feed_last, 99),
        "feed_per_s_p50": p([pop.feed_topics / (x / 1000) for x in feed_last if x > 0], 50),
        "engine_p99_ms_max": max(engine, default=None), "engine_municipal_p99_ms_max": max(municipal, default=None),
        "accepted_ms_p50": p([r.extra["accepted_ms"] for r in runs], 50),
        "note": (f"national: one missile alert naming {len(pop.prefectures)} prefectures to "
                 f"{len(pop.municipalities)} municipal webhooks (radio) + {pop.webhooks - len(pop.municipalities)} "
                 f"broadcaster/portal webhooks + {pop.feed_topics} feed topics, on an engine of its own; "
                 f"{len(runs)} runs after a warm-up; J-Alert reaches municipalities in 1–2 s"),
    })  # fmt: skip
    return s


def national_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    if "national" not in res:
        return []
    na = res["national"]
    n, topics = na["webhooks"], na["feed_topics"]
    return [
        row(f"national: first of {n:,} webhooks p99 (ms)", na["first_p99_ms"],
            target=f"≤ {TARGET_NATIONAL_FIRST_P99_MS:g}", met=le(na["first_p99_ms"], TARGET_NATIONAL_FIRST_P99_MS)),
        row(f"national: last of {n:,} webhooks p50 (ms)", na["last_p50_ms"]),
        row(f"national: last of {n:,} webhooks p99 (ms)", na["last_p99_ms"],
            target=f"≤ {TARGET_NATIONAL_LAST_P99_MS:g} ({JALERT})",
            met=le(na["last_p99_ms"], TARGET_NATIONAL_LAST_P99_MS)),
        row("national: HTTP deliveries/s (p50)", na["per_s_p50"]),
        row("national: accepted→delivered p99, engine (ms)", na["engine_p99_ms_max"]),
        row(f"national feed: MQTT publishes received (fewest of {topics:,})", na["feed_received_min"],
            target=f"= {topics:,}", met=na["feed_received_min"] >= topics),
        row(f"national feed: last of {topics:,} MQTT p99 (ms)", na["feed_last_p99_ms"]),
    ]  # fmt: skip
