"""What a monitor chart's time bucket draws behind the lines, as a table: every country failed
in some round of it (even with passing rounds around), only some countries failed, nothing
failed, and no round answered."""

import pytest

from controller.web.console import charts
from controller.web.console.monitor_view import failure_kind


@pytest.mark.parametrize(
    ("ups", "downs", "downs_everywhere", "kind"),
    [
        (0, 0, 0, None),  # no round answered (missed, or none ran): the line's gap says it
        (6, 0, 0, None),  # all passed
        (0, 3, 3, "down"),  # every country failed, every round
        (12, 3, 3, "down"),  # every country failed in one round, the others passed
        (4, 1, 0, "failing"),  # one country failed
        (0, 1, 1, "down"),  # the one country that answered failed (the other's round missed)
        (10, 4, 2, "down"),  # one round failed everywhere, another only somewhere
    ],
)
def test_a_buckets_band(ups: int, downs: int, downs_everywhere: int, kind: str | None) -> None:
    assert failure_kind(ups, downs, downs_everywhere) == kind


def test_each_band_kind_has_its_legend() -> None:
    assert charts.BAND_LEGENDS["down"] == "every country failed"
    assert charts.BAND_LEGENDS["failing"] == "some countries failed"
    assert set(charts.BAND_KINDS) == {"down", "failing", "incident", "maintenance"}
