"""The audit trail is one unbroken hash chain; any entry altered, removed or moved is named by seq.

Against the real Redis under a random key prefix; ``alertd audit`` runs as a
real subprocess, the way an operator or a municipality's archive job runs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from alertd.audit import AuditLog
from tests.conftest import REDIS_URL, keyed_prefix, redis_for, wipe
from tests.support import ROOT


@pytest_asyncio.fixture
async def trail() -> AsyncIterator[AuditLog]:
    prefix = keyed_prefix(f"alertd-test-{secrets.token_hex(4)}")
    client = redis_for(prefix)
    try:
        yield AuditLog(client, prefix)
    finally:
        await client.aclose()
        await wipe(prefix)


def prefix_of(trail: AuditLog) -> str:
    return trail.keys.entries.removesuffix(":audit")


async def alertd_audit(trail: AuditLog, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALERTD_REDIS_URL": REDIS_URL, "ALERTD_KEY_PREFIX": prefix_of(trail),
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "alertd", "audit", *args], env=env, capture_output=True,
        text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


async def six_entries(trail: AuditLog) -> None:
    await trail.append("admin", "user.create", "user:tanaka", {"issuer": "joso", "roles": ["operator"]})
    await trail.append(
        "anonymous", "login.failed", "user:tanaka", {"reason": "password", "address": "10.0.0.5"}
    )
    await trail.append("user:tanaka", "login", "user:tanaka", {"session": "ab12cd34ef56"})
    await trail.append("user:tanaka", "draft", "order:08211-1", {"level": 4, "districts": ["三坂町"]})
    await trail.append("user:tanaka", "send", "alert:01J", {"receivers": 12})
    await trail.append("user:tanaka", "logout", "user:tanaka", {"session": "ab12cd34ef56"})


async def test_an_intact_chain_verifies(trail: AuditLog) -> None:
    await six_entries(trail)
    done = await alertd_audit(trail, "verify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6 entries, chain intact"


async def test_an_empty_trail_verifies_and_an_unreachable_redis_is_not_called_intact(trail: AuditLog) -> None:
    done = await alertd_audit(trail, "verify")
    assert done.returncode == 0 and done.stdout.strip() == "0 entries, chain intact"
    env = {**os.environ, "ALERTD_REDIS_URL": "redis://127.0.0.1:9/0", "PYTHONPATH": str(ROOT)}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "alertd", "audit", "verify"], env=env,
                                   capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "intact" not in done.stdout + done.stderr


async def test_an_altered_entry_is_named(trail: AuditLog) -> None:
    await six_entries(trail)
    raw = await trail.redis.lindex(trail.keys.entries, 3)
    entry = json.loads(raw)
    assert entry["seq"] == 4
    entry["detail"]["level"] = 3  # someone "corrects" what was sent, keeping the old hash
    await trail.redis.lset(trail.keys.entries, 3, json.dumps(entry))
    done = await alertd_audit(trail, "verify")
    assert done.returncode == 1
    assert "seq 4" in done.stderr and "altered" in done.stderr
    # An export of a broken chain is written (it is evidence) but never passes for sound.
    done = await alertd_audit(trail, "export")
    assert done.returncode == 1 and len(done.stdout.splitlines()) == 6
    assert "not intact" in done.stderr and "seq 4" in done.stderr


async def test_an_altered_entry_with_its_hash_recomputed_breaks_the_next_link(trail: AuditLog) -> None:
    await six_entries(trail)
    entry = json.loads(await trail.redis.lindex(trail.keys.entries, 1))
    entry["detail"]["address"] = "192.0.2.1"
    body = {k: v for k, v in entry.items() if k != "hash"}
    entry["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False,
                                              separators=(",", ":")).encode()).hexdigest()  # fmt: skip
    await trail.redis.lset(trail.keys.entries, 1, json.dumps(entry))
    done = await alertd_audit(trail, "verify")
    assert done.returncode == 1 and "seq 3" in done.stderr


async def test_a_removed_entry_is_named(trail: AuditLog) -> None:
    await six_entries(trail)
    raw = await trail.redis.lindex(trail.keys.entries, 1)
    assert await trail.redis.lrem(trail.keys.entries, 1, raw) == 1  # the failed login disappears
    done = await alertd_audit(trail, "verify")
    assert done.returncode == 1
    assert "seq 2" in done.stderr and "missing" in done.stderr


async def test_removing_the_last_entries_is_seen_too(trail: AuditLog) -> None:
    await six_entries(trail)
    await trail.redis.rpop(trail.keys.entries, 2)
    done = await alertd_audit(trail, "verify")
    assert done.returncode == 1 and "seq 5" in done.stderr


async def test_reordered_entries_are_named(trail: AuditLog) -> None:
    await six_entries(trail)
    third, fourth = await trail.redis.lrange(trail.keys.entries, 2, 3)
    await trail.redis.lset(trail.keys.entries, 2, fourth)
    await trail.redis.lset(trail.keys.entries, 3, third)
    done = await alertd_audit(trail, "verify")
    assert done.returncode == 1
    assert "seq 3" in done.stderr


async def test_concurrent_appenders_keep_one_chain(trail: AuditLog) -> None:
    """Two appenders in this process (each its own connection, as two processes have) and one
    real second process, all at once: one chain, every seq once."""
    prefix = prefix_of(trail)
    second_client = redis_for(prefix)
    second = AuditLog(second_client, prefix)
    script = (
        "import asyncio\nfrom alertd.audit import AuditLog\nfrom alertd.redis_client import connect\n"
        "async def main():\n"
        f"    c = connect({REDIS_URL!r}, key_prefix={prefix!r}); log = AuditLog(c, {prefix!r})\n"
        "    for i in range(60): await log.append('issuer:joso', 'send', f'alert:p{i}')\n"
        "    await c.aclose()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, env=env, cwd=ROOT)

        async def burst(log: AuditLog, name: str) -> None:
            for i in range(60):
                await log.append(f"user:{name}", "draft", f"order:{name}-{i}")

        await asyncio.gather(burst(trail, "a"), burst(second, "b"), burst(trail, "c"))
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        await second_client.aclose()
    entries = await trail.read(0, 1000)
    assert [e["seq"] for e in entries] == list(range(1, 241))
    assert len({e["target"] for e in entries}) == 240
    done = await alertd_audit(trail, "verify")
    assert done.returncode == 0 and done.stdout.strip() == "240 entries, chain intact", done.stderr


async def test_a_new_audit_log_continues_the_chain_after_a_restart(trail: AuditLog) -> None:
    await six_entries(trail)
    client = redis_for(prefix_of(trail))
    try:
        entry = await AuditLog(client, prefix_of(trail)).append("admin", "config.reload", "config")
    finally:
        await client.aclose()
    assert entry["seq"] == 7
    assert (await alertd_audit(trail, "verify")).stdout.strip() == "7 entries, chain intact"


async def test_export_writes_json_lines_a_municipality_can_check_with_the_documented_recipe(
    trail: AuditLog, tmp_path: Path
) -> None:
    await six_entries(trail)
    done = await alertd_audit(trail, "export")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 6
    # The recipe from the README, independent of alertd's code.
    prev = "0" * 64
    for n, line in enumerate(lines, 1):
        e = json.loads(line)
        h = e.pop("hash")
        assert e["seq"] == n and e["prev"] == prev
        body = json.dumps(e, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        assert hashlib.sha256(body).hexdigest() == h
        prev = h
    assert json.loads(lines[3])["detail"]["districts"] == ["三坂町"]

    out = tmp_path / "since4.jsonl"
    done = await alertd_audit(trail, "export", "--since", "4", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert [json.loads(x)["seq"] for x in out.read_text(encoding="utf-8").splitlines()] == [5, 6]


async def test_the_trail_refuses_secrets_and_unknown_actions(trail: AuditLog) -> None:
    for detail in ({"password": "x"}, {"new_token": "x"}, {"nested": {"totp_secret": "x"}}, {"ratio": 0.5}):
        with pytest.raises(ValueError):
            await trail.append("admin", "user.create", "user:x", detail)
    with pytest.raises(ValueError):
        await trail.append("admin", "user.renamed", "user:x")
    assert await trail.read() == []
