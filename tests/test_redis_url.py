"""ALERTD_REDIS_URL's Sentinel form is read as documented, and a wrong one is refused in a sentence."""

from __future__ import annotations

import pytest

from alertd.redis_client import SentinelUrl, is_sentinel


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
