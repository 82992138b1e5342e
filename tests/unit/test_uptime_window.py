"""The window a page's uptime really covers (controller.statuspages.uptime_bars.covered_since):
"since 27 Nov" for a monitor younger than the window, "over 90 days" otherwise; the console's
uptime table likewise."""

from datetime import UTC, date, datetime, timedelta

import pytest

from controller.ingest.store import StateTime
from controller.statuspages.uptime_bars import covered_since, since_label
from controller.web.console.monitor_view import window_since

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


T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _told(country: str, from_minutes: int) -> StateTime:
    return StateTime(country, 60_000, 0, T0 + timedelta(minutes=from_minutes))


@pytest.mark.parametrize(
    ("times", "since"),
    [
        ([], None),  # nothing known in the window
        ([_told("DE", 0)], None),  # known from the window's start
        ([_told("DE", 25)], T0 + timedelta(minutes=25)),  # a monitor younger than the window
        ([_told("DE", 25), _told("FR", 5)], T0 + timedelta(minutes=5)),  # its first country
        ([_told("DE", 25), _told("FR", 0)], None),
    ],
)
def test_the_console_says_since_when_a_window_is_younger(
    times: list[StateTime], since: datetime | None
) -> None:
    """The console's uptime table (`monitor_view.window_since`): a window's known time starts at
    the first country's, later than the window's start only for a younger monitor."""
    assert window_since(times, T0) == since
