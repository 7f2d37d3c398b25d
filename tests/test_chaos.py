"""The short versions of ``make chaos`` (simulations/chaos.py): each scenario starts its own
servers on free loopback ports, breaks one for real (kill -9), and counts what arrived.

The scenarios are the same functions ``make chaos`` runs, at smaller sizes, so what the
README quotes and what CI checks cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulations import chaos
from simulations.faults import SmallDisk
from tests.conftest import MQTT_URL, REDIS_URL

SHARED = chaos.Shared(REDIS_URL, MQTT_URL)


def assert_survived(row: chaos.Row) -> None:
    assert row.offered > 0, "nothing was offered: the scenario proves nothing"
    assert not row.failed_checks(), f"{row.scenario}: {row.failed_checks()} ({row.notes})"
    assert row.lost == 0, f"{row.scenario}: {row.lost} of {row.offered} accepted deliveries never arrived"
    assert row.duplicated == 0, (
        f"{row.scenario}: {row.duplicated} deliveries arrived under two idempotency keys"
    )


async def test_redis_killed_mid_fanout_and_restarted_from_its_aof_loses_nothing(tmp_path: Path) -> None:
    row = await chaos.redis_kill(SHARED, chaos.SHORT["redis-kill"], tmp_path)
    assert_survived(row)
    assert row.notes["delivered_before_kill"] < row.offered, "the fan-out ended before the kill"
    assert row.checks["order during outage: 503"] and row.checks["/healthz 503 naming Redis"]


async def test_broker_killed_during_a_feed_burst_loses_nothing_and_states_come_back(tmp_path: Path) -> None:
    row = await chaos.broker_kill(SHARED, chaos.SHORT["broker-kill"], tmp_path)
    assert_survived(row)
    assert row.notes["mqtt"]["received"] == row.notes["mqtt"]["offered"]
    assert row.checks["webhooks delivered while the broker was down"]
    assert row.checks["retained state of every town back on a new broker"], row.notes["retained_states_back"]


async def test_a_fifth_of_the_endpoints_bad_barely_slows_the_healthy_ones(tmp_path: Path) -> None:
    row = await chaos.bad_endpoints(SHARED, chaos.SHORT["bad-endpoints"], tmp_path)
    assert_survived(row)
    assert row.checks["breaker state in /metrics"]
    ends = row.notes["end_states"]
    assert ends["flip"] == {
        "delivered": chaos.SHORT["bad-endpoints"].endpoints // 25
    }  # 500 then 200: delivered
    for kind in ("refused", "hang", "late", "cut"):
        assert set(ends[kind]) <= {"failed", "expired"}, (kind, ends[kind])


async def test_workers_killed_again_and_again_deliver_everything_once_per_key(tmp_path: Path) -> None:
    row = await chaos.engine_kills(SHARED, chaos.SHORT["engine-kills"], tmp_path)
    assert_survived(row)  # duplicated == 0: every repeat carried the key of the first
    assert any(n < row.offered for n in row.notes["delivered_at_each_kill"]), "no kill landed mid fan-out"


async def test_with_every_webhook_down_and_no_boundaries_gateways_still_get_alerts_by_code_and_name(
    tmp_path: Path,
) -> None:
    row = await chaos.degraded(SHARED, chaos.SHORT["degraded"], tmp_path)
    assert_survived(row)
    assert "no municipal boundaries" in row.notes["polygon_refusal"]["detail"]


async def test_the_redis_master_killed_mid_fanout_sentinel_promotes_the_replica_and_nothing_accepted_is_lost(
    tmp_path: Path,
) -> None:
    row = await chaos.sentinel_failover(SHARED, chaos.SHORT["sentinel-failover"], tmp_path)
    assert_survived(row)
    assert row.checks["the sentinels promoted the replica"]
    assert row.notes["delivered_before_kill"] < row.offered, "the fan-out ended before the kill"


async def test_redis_disk_full_mid_fanout_refuses_new_orders_and_still_delivers_the_accepted_ones(
    tmp_path: Path,
) -> None:
    try:
        SmallDisk(64).mount().close()
    except OSError as exc:
        pytest.skip(f"a full disk cannot be made here: {exc}")
    row = await chaos.redis_full(SHARED, chaos.SHORT["redis-full"], tmp_path)
    assert_survived(row)
    assert row.notes["delivered_while_full"] > 0, "nothing was left to deliver when the disk filled"
    assert row.notes["repeats_while_full"] == 0, (
        "processes sharing the lanes sent the same job while Redis could not write"
    )


async def test_the_master_of_alertds_cluster_slot_killed_mid_fanout_its_replica_takes_over_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    row = await chaos.cluster_failover(SHARED, chaos.SHORT["cluster-failover"], tmp_path)
    assert_survived(row)  # every 202'd alert still there, every delivery arrived and recorded, none twice
    assert row.checks["the cluster promoted the slot's replica"]
    assert row.notes["delivered_before_kill"] < row.offered, "the fan-out ended before the kill"
    # The desk was told to come back, never given a 500: every refusal a 503 with Retry-After.
    assert row.notes["refusals_during_failover"].get("503", 0) > 0, "no order met the failover"
    assert row.checks["refusals during the failover are 503"] and row.checks["every 503 had Retry-After"]
    assert row.notes["http_500s"] == 0
    # alertd followed the new master by itself: healthy again, no process restarted.
    assert row.checks["/healthz 200 again without a restart"]
    assert row.checks["no alertd process exited or was restarted"]


async def test_the_master_of_a_lane_shard_killed_mid_fanout_the_desk_goes_on_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    # Three lane shards, one per master; the master killed holds shard 1's lanes and records,
    # not the alerts (alertd/shards.py).
    row = await chaos.cluster_shard_failover(SHARED, chaos.SHORT["cluster-shard-failover"], tmp_path)
    assert_survived(row)  # every 202'd alert still there, every delivery arrived and recorded, none twice
    assert row.checks["the cluster promoted the slot's replica"]
    assert row.notes["delivered_before_kill"] < row.offered, "the fan-out ended before the kill"
    assert row.notes["http_500s"] == 0
    assert row.checks["every 503 had Retry-After"]
    # The alerts' own master lived: an order sent after the kill was accepted before the
    # shard's replica had even been promoted.
    assert row.latency["kill_to_first_202_ms"] is not None and row.latency["kill_to_promoted_ms"] is not None
    assert row.latency["kill_to_first_202_ms"] < row.latency["kill_to_promoted_ms"], row.latency
    # /healthz named the shard whose Redis was away, and said alerts were still accepted.
    assert any("lane shard 1" in cause and "still accepted" in cause
               for cause in row.notes["healthz_during_failover"]), row.notes["healthz_during_failover"]
    assert row.checks["/healthz 200 again without a restart"]
    assert row.checks["no alertd process exited or was restarted"]
