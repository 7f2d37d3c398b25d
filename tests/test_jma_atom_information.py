"""津波情報 never stands in the Atom feed: neither its first serial nor a later one (an Update).

A receiver author polling the feed saw 津波情報 entries naming 大津波警報 long after
the 解除: the first VTSE51 was left out, the later serials (Updates) were not.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import RunningEngine
from tests.jma_samples import delta_to_now, drop, shifted
from tests.support import until

# 2015-11-14 (Actual): two serials of 津波情報, the second an Update of the first.
INFO = ["38-39_02_03_250206_VTSE51.xml", "38-39_02_05_250206_VTSE51.xml"]



async def test_no_tsunami_information_serial_is_an_atom_entry(spool_engine: RunningEngine) -> None:
    engine = spool_engine
    folder = Path(os.environ["ALERTD_JMA_SPOOL"])
    delta = delta_to_now(INFO[-1])
    for name in INFO:
        drop(folder, name, shifted(name, delta))
        await until(lambda name=name: (folder / "done" / name).exists(), what=f"{name} processed")  # type: ignore[misc]

    # Moved to done/ once the core took it: one read of the alerts is enough.
    status, rows = await engine.get("/api/v1/alerts?status=all&limit=50")
    assert status == 200
    rows = [r for r in rows if r["origin"] == "jma"]
    # One alert per grade in each message; the later serial's are Updates of the first's.
    assert {r["msg_type"] for r in rows} == {"Alert", "Update"}, rows
    async with engine.http.get(f"{engine.url}/feeds/alerts.atom") as resp:
        assert resp.status == 200
        feed = await resp.text()
    assert "<entry" not in feed, feed
