"""ALERTD_REDIS_URL's Sentinel and Cluster forms are read as documented, and a wrong one is refused in a sentence."""

from __future__ import annotations

import pytest

from alertd.redis_client import ClusterUrl, SentinelUrl, has_replicas, is_cluster, is_sentinel, key_root


def test_the_sentinel_form_names_every_sentinel_the_master_and_the_database() -> None:
    url = "redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380,10.0.0.3/alertd-master/2"
    target = SentinelUrl.parse(url)
    assert is_sentinel(url)
    assert target.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)]
    assert (target.service, target.db, target.password) == ("alertd-master", 2, "s3cret")
    assert "s3cret" not in repr(target)
    assert SentinelUrl.parse("redis+sentinel://127.0.0.1:26379/mymaster").db == 0
    assert not is_sentinel("redis://127.0.0.1:6379/0")


@pytest.mark.parametrize("url", [
    "redis+sentinel://127.0.0.1:26379",  # no master name
    "redis+sentinel://127.0.0.1:26379/mymaster/zero",
    "redis+sentinel://127.0.0.1:port/mymaster/0",
    "redis+sentinel://127.0.0.1:26379/a/0/extra",
])  # fmt: skip
def test_a_sentinel_url_without_a_master_or_with_a_bad_number_says_how_it_must_look(url: str) -> None:
    with pytest.raises(ValueError, match=r"redis\+sentinel://host:26379,host:26380/mastername/0"):
        SentinelUrl.parse(url)


def test_the_cluster_form_names_its_nodes_and_makes_every_key_share_one_slot() -> None:
    url = "redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001"
    target = ClusterUrl.parse(url)
    assert is_cluster(url) and has_replicas(url) and not is_sentinel(url)
    assert target.nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert target.password == "s3cret" and "s3cret" not in repr(target)
    assert ClusterUrl.parse("redis+cluster://127.0.0.1:7000/0").nodes == [("127.0.0.1", 7000)]
    # Every key starts with the hash tag on a cluster, and keeps its old name elsewhere.
    assert key_root("alertd", url) == "{alertd}"
    assert key_root("{alertd}", url) == "{alertd}"  # a worker handed the tagged prefix
    assert key_root("alertd", "redis://127.0.0.1:6379/0") == "alertd"
    assert not has_replicas("redis://127.0.0.1:6379/0")


@pytest.mark.parametrize("url", [
    "redis+cluster://127.0.0.1",  # no port
    "redis+cluster://127.0.0.1:7000/1",  # a cluster has only database 0
    "redis+cluster://127.0.0.1:port",
])  # fmt: skip
def test_a_cluster_url_without_ports_or_with_a_database_says_how_it_must_look(url: str) -> None:
    with pytest.raises(ValueError, match=r"redis\+cluster://host:7000,host:7001,host:7002"):
        ClusterUrl.parse(url)


async def test_commands_packed_by_hiredis_round_trip_every_type_alertd_writes() -> None:
    """The C serializer alertd swaps in must write what redis-py's own would: text in
    Japanese, bytes, ints, floats, commands with a space in their name, and a big batch
    in one transaction; a value Redis cannot take is refused as redis-py refuses it."""
    import secrets

    from redis.exceptions import DataError

    from alertd.redis_client import connect

    client = connect("redis://127.0.0.1:6379/0")
    key = f"alertd-test-pack-{secrets.token_hex(4)}"
    try:
        assert client.connection_pool.connection_class.__name__.startswith("Hiredis")
        await client.hset(key, mapping={"名前": "避難指示", "b": b"\x00\xff", "n": 7, "f": 0.1})
        assert await client.hgetall(key) == {"名前".encode(): "避難指示".encode(), b"b": b"\x00\xff",
                                             b"n": b"7", b"f": b"0.1"}  # fmt: skip
        assert isinstance(await client.execute_command("CONFIG GET", "maxmemory"), list | dict)
        async with client.pipeline(transaction=True) as pipe:
            for i in range(2000):
                pipe.hset(key, f"s{i}|state", "delivered")
            await pipe.execute()
        assert await client.hlen(key) == 4 + 2000
        with pytest.raises(DataError):
            await client.set(key, None)  # type: ignore[arg-type]
    finally:
        await client.delete(key)
        await client.aclose()
