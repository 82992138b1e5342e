"""Room for a report's rows in its domain's stored rows (controller/reports/room.py), as a
table."""

from datetime import date

import pytest

from controller.reports.room import days_to_drop

D = [date(2026, 11, n) for n in range(1, 8)]


@pytest.mark.parametrize(
    ("days", "day", "need", "dropped"),
    [
        ([(D[0], 5), (D[1], 5)], D[3], 0, []),
        ([(D[1], 5), (D[0], 5)], D[3], 3, [D[0]]),  # oldest first, whatever the order given
        ([(D[0], 5), (D[1], 5)], D[3], 6, [D[0], D[1]]),
        ([(D[0], 5), (D[1], 5)], D[3], 11, None),  # not enough even with every older day gone
        ([(D[0], 5), (D[3], 5)], D[3], 6, None),  # the report's own day never goes
        ([(D[3], 5)], D[3], 1, None),  # its day is the oldest: refused
        ([(D[3], 5)], D[1], 1, None),  # a newer day never goes for an older report
        ([(D[0], 1), (D[1], 9), (D[2], 5)], D[4], 2, [D[0], D[1]]),
    ],
)
def test_the_oldest_days_before_the_reports_go_until_it_fits(
    days: list[tuple[date, int]], day: date, need: int, dropped: list[date] | None
) -> None:
    assert days_to_drop(days, day, need) == dropped
