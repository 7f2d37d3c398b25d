"""A drill never touches a real alert: JMA Exercise and Actual telegrams are separate stories.

A municipality runs its 南海トラフ drill with the same telegrams (訓練) while the
real trough may be under 巨大地震警戒: the drill's 調査終了 must not lift the real
警戒, and the real 警戒 must not come out as an Update of the drill's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alertd.cap import parse_cap
from tests.conftest import RunningEngine
from tests.jma_samples import delta_to_now, drop, shifted
from tests.support import until

NANKAI_INVESTIGATING = "74_01_01_200512_VYSE50.xml"  # 南海トラフ地震臨時情報（調査中）
NANKAI_WARNING = "74_01_04_200512_VYSE50.xml"  # 南海トラフ地震臨時情報（巨大地震警戒）
NANKAI_ENDED = "74_01_07_200512_VYSE50.xml"  # 南海トラフ地震臨時情報（調査終了）
DRILL = "訓練"



async def _alerts(engine: RunningEngine, **query: str) -> list[dict[str, Any]]:
    qs = "&".join(f"{k}={v}" for k, v in {"limit": "200", "status": "all", **query}.items())
    status, rows = await engine.get(f"/api/v1/alerts?{qs}")
    assert status == 200
    return [r for r in rows if r["origin"] == "jma"]


async def _processed(folder: Path, n: int) -> bool:
    """The drop folder has moved ``n`` files to done/ or rejected/ (reasons beside them excluded)."""
    moved = [p for sub in ("done", "rejected") if (folder / sub).is_dir() for p in (folder / sub).iterdir()
             if p.suffix == ".xml"]  # fmt: skip
    return len(moved) >= n


async def test_a_drill_nankai_sequence_neither_updates_nor_lifts_the_real_warning(
    spool_engine: RunningEngine,
) -> None:
    engine = spool_engine
    folder = Path(os.environ["ALERTD_JMA_SPOOL"])
    delta = delta_to_now(NANKAI_ENDED)
    steps = [
        ("drill-investigating.xml", NANKAI_INVESTIGATING, DRILL),
        ("drill-warning.xml", NANKAI_WARNING, DRILL),
        ("actual-warning.xml", NANKAI_WARNING, None),
        ("drill-ended.xml", NANKAI_ENDED, DRILL),
    ]
    for n, (name, sample, status) in enumerate(steps, 1):
        drop(folder, name, shifted(sample, delta, status=status))
        await until(lambda n=n: _processed(folder, n), what=f"{name} to be processed")  # type: ignore[misc]
    assert sorted(p.name for p in (folder / "done").iterdir() if p.suffix == ".xml") == sorted(s[0] for s in steps)

    rows = await _alerts(engine)
    actual = [r for r in rows if r["status"] == "Actual"]
    assert len(actual) == 1, actual
    real = actual[0]
    # The real 警戒 is news, not an Update of the drill's 警戒, and references nothing.
    assert real["msg_type"] == "Alert" and not real.get("references"), real
    # After the drill's 調査終了 the real 巨大地震警戒 still stands in the Actual in-force view.
    in_force = await _alerts(engine, active="true", status="Actual")
    assert [r["id"] for r in in_force] == [real["id"]]
    # The drill's own story went on: its 調査終了 ended the drill's 警戒, not the real one.
    drills = [r for r in rows if r["status"] == "Exercise"]
    ended = [r for r in drills if r["msg_type"] == "Update" and r["references"]]
    assert ended and all(real["identifier"] not in ref for r in ended for ref in r["references"])

    # JMA's own description reads word for word like the real one: a drill's says so first.
    async with engine.http.get(f"{engine.url}/api/v1/alerts/{ended[0]['id']}.cap") as resp:
        assert resp.status == 200
        cap = parse_cap(await resp.read())
    ja = cap.info_for("ja")
    assert ja is not None and (ja.description or "").startswith("これは訓練です。"), ja.description
    async with engine.http.get(f"{engine.url}/api/v1/alerts/{real['id']}.cap") as resp:
        real_ja = parse_cap(await resp.read()).info_for("ja")
    assert real_ja is not None and "訓練" not in (real_ja.description or "")

    # The second guard, for every origin: the core refuses an Exercise that references an Actual alert.
    joso = await engine.add_issuer("joso", ["08211"])
    status, order = await engine.post("/api/v1/alerts", joso, {"status": "Actual", "event": "避難指示", "level": 4,
                                                               "districts": ["08211"]})  # fmt: skip
    assert status == 202, order
    drill_cancel = {"status": "Exercise", "event": "避難指示", "msg_type": "Cancel", "references": [order["id"]]}
    status, problem = await engine.post("/api/v1/alerts", joso, drill_cancel)
    assert status == 409 and "only change alerts of its own status" in problem["detail"], problem
    assert order["id"] in {r["id"] for r in await _alerts_any(engine, active="true", status="Actual")}


async def _alerts_any(engine: RunningEngine, **query: str) -> list[dict[str, Any]]:
    qs = "&".join(f"{k}={v}" for k, v in {"limit": "200", **query}.items())
    status, rows = await engine.get(f"/api/v1/alerts?{qs}")
    assert status == 200
    return list(rows)
