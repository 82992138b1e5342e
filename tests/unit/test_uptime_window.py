"""The window a page's uptime really covers (controller.web.console.uptime_bars.covered_since):
"since 27 Nov" for a monitor younger than the window, "over 90 days" otherwise."""

from datetime import date

import pytest

from controller.web.console.uptime_bars import covered_since, since_label

TODAY = date(2026, 11, 27)


@pytest.mark.parametrize(
    ("days", "since"),
    [
        ({}, None),  # no data: "no data", no window
        ({TODAY: (14, 1)}, TODAY),  # checked today only
        ({date(2026, 11, 20): (0, 0), TODAY: (3, 0)}, TODAY),  # a day without rounds counts not
        ({date(2026, 11, 1): (10, 0), TODAY: (3, 0)}, date(2026, 11, 1)),
        ({date(2026, 8, 30): (10, 0), TODAY: (3, 0)}, None),  # the window's first day: all of it
        ({date(2026, 8, 1): (10, 0), date(2026, 10, 1): (1, 0)}, date(2026, 10, 1)),  # before it
    ],
)
def test_covered_since(days: dict[date, tuple[int, int]], since: date | None) -> None:
    assert covered_since(days, TODAY, 90) == since


def test_since_label() -> None:
    assert since_label(date(2026, 11, 27)) == "27 Nov"
    assert since_label(date(2026, 3, 4)) == "4 Mar"
