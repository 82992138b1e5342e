"""The notification budget's pure rules: clock-hour windows and how many new notifications fit."""

from datetime import UTC, datetime

import pytest

from controller.notify.budget import Budget, budget_of, dropped_reason, granted, window


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


@pytest.mark.parametrize(
    ("kind", "channel", "budget", "setting"),
    [
        ("down", "email", "email", "ORG_MAX_NOTIFICATIONS_PER_HOUR"),
        ("finding", "sms", "sms", "ORG_MAX_SMS_PER_HOUR"),
        ("status_update", "email", "subscribers", "ORG_MAX_SUBSCRIBER_MAILS_PER_HOUR"),
        ("status_confirm", "email", "subscribers", "ORG_MAX_SUBSCRIBER_MAILS_PER_HOUR"),
        ("down", "slack", "channels", "ORG_MAX_CHANNEL_NOTIFICATIONS_PER_HOUR"),
        ("recovered", "pagerduty", "channels", "ORG_MAX_CHANNEL_NOTIFICATIONS_PER_HOUR"),
    ],
)
def test_subscribers_and_channels_each_draw_on_their_own_budget(
    kind: str, channel: str, budget: str, setting: str
) -> None:
    b = Budget(email=10, sms=2, channels=3, subscribers=4)
    assert budget_of(kind, channel) == budget
    assert b.per_hour(budget) == {"email": 10, "sms": 2, "channels": 3, "subscribers": 4}[budget]
    assert setting in dropped_reason(budget, b.per_hour(budget), datetime(2026, 1, 1, tzinfo=UTC))
