"""The notification budget's pure rules: clock-hour windows and how many new notifications fit."""

from datetime import UTC, datetime

import pytest

from controller.notify.budget import Budget, dropped_reason, granted, window


@pytest.mark.parametrize(
    ("used", "per_hour", "wanted", "expected"),
    [
        (0, 5, 3, 3),  # room for all
        (3, 5, 3, 2),  # the rest of the budget
        (5, 5, 1, 0),  # used up
        (7, 5, 2, 0),  # over (a budget lowered meanwhile): nothing, never negative
        (0, 1, 0, 0),
    ],
)
def test_granted(used: int, per_hour: int, wanted: int, expected: int) -> None:
    assert granted(used, per_hour, wanted) == expected


@pytest.mark.parametrize(
    ("now", "start"),
    [
        (datetime(2026, 1, 1, 7, 0, 0, tzinfo=UTC), datetime(2026, 1, 1, 7, tzinfo=UTC)),
        (datetime(2026, 1, 1, 7, 59, 59, 999999, tzinfo=UTC), datetime(2026, 1, 1, 7, tzinfo=UTC)),
    ],
)
def test_window_is_the_clock_hour(now: datetime, start: datetime) -> None:
    assert window(now) == start


def test_each_channel_has_its_budget_and_the_reason_names_its_setting() -> None:
    b = Budget(email=10, sms=2)
    assert (b.per_hour("email"), b.per_hour("sms")) == (10, 2)
    start = datetime(2026, 1, 1, 7, tzinfo=UTC)
    reason = dropped_reason("sms", 2, start)
    assert "ORG_MAX_SMS_PER_HOUR" in reason and "2026-01-01T08:00:00" in reason
    assert "ORG_MAX_NOTIFICATIONS_PER_HOUR" in dropped_reason("email", 10, start)
