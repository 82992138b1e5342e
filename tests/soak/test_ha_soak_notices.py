"""The HA campaign's notice figures (testkit.campaigns.ha_soak.HaFigures): a fault with a real
outage owes exactly one `down` and one `recovered` notice, a fault without one owes none; anything
else is missed or doubled, and a missed target."""

import pytest

from testkit.campaigns.ha_soak import HaFigures
from testkit.campaigns.soak_figures import Figures


@pytest.mark.parametrize(
    ("outage", "notices", "wrong"),
    [
        (True, {"down": 1, "recovered": 1}, (0, 0)),
        (True, {"down": 1}, (1, 0)),
        (True, {}, (2, 0)),
        (True, {"down": 2, "recovered": 1}, (0, 1)),
        (True, {"down": 1, "recovered": 1, "reminder": 1}, (0, 1)),
        (False, {}, (0, 0)),
        (False, {"down": 1, "recovered": 1}, (0, 2)),
    ],
)
def test_notices_missed_and_doubled(
    outage: bool, notices: dict[str, int], wrong: tuple[int, int]
) -> None:
    h = HaFigures(Figures("fault", expected=10, stored=10), outage, notices)
    assert h.notices_wrong == wrong
    assert ("notices missed" in h.misses(200)) == bool(wrong[0])
    assert ("notices doubled" in h.misses(200)) == bool(wrong[1])


def test_the_outage_monitors_lost_and_doubled_cells_count_with_the_healthy_ones() -> None:
    h = HaFigures(Figures("fault", expected=10, missing=1, dropped=1, duplicated=1), False)
    h.outage_lost, h.outage_doubled = 2, 1
    assert (h.lost, h.doubled) == (4, 2)
    assert {"results lost", "stored twice"} <= set(h.misses(200))
