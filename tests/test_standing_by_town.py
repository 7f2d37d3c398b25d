"""Which alerts in force a town's state names (the retained state message, the desk's
in-force model): those with a district in the town, the town itself, or covering it, oldest
first; never a neighbour's, and never one whose district the registry does not know."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alertd.inforce import Standing
from alertd.store import StandingByTown
from geo.registry import Registry
from tests.support import make_alert

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def standing(alert_id: str, districts: list[str], minutes: int) -> Standing:
    return Standing(make_alert(id=alert_id, districts=districts, sent=T0 + timedelta(minutes=minutes)))


def test_a_town_gets_its_own_its_districts_and_its_prefectures_alerts_and_no_neighbours() -> None:
    registry = Registry.default()
    alerts = [
        standing("ibaraki-wide", ["08"], 0),
        standing("joso-town", ["08211"], 1),
        standing("joso-district", ["08211:若宮戸"], 2),
        standing("tsukuba", ["08220"], 3),
        standing("unknown", ["99999"], 4),
        standing("two-towns", ["08220", "08211:三坂町"], 5),
        standing("yokohama-city", ["14100"], 6),
        standing("naka-ward", ["14104"], 7),
    ]
    by_town = StandingByTown(alerts, registry)

    def ids(town: str) -> list[str]:
        return [s.alert.id for s in by_town.in_town(town)]

    assert ids("08211") == ["ibaraki-wide", "joso-town", "joso-district", "two-towns"]
    assert ids("08220") == ["ibaraki-wide", "tsukuba", "two-towns"]
    assert ids("08201") == ["ibaraki-wide"]  # 水戸市: only what covers the whole prefecture
    # A ward is in its city: the city's order covers it, a ward's order is the city's too.
    assert ids("14104") == ["yokohama-city", "naka-ward"]
    assert ids("14100") == ["yokohama-city", "naka-ward"]
    assert ids("14101") == ["yokohama-city"]
    assert ids("13101") == []
    assert ids("00000") == []  # a town the registry does not know: nothing, and no error
