"""The notification budgets' pure rules: which budget a notification draws on (its source and
channel family), clock-hour windows and how many new notifications fit."""

from datetime import UTC, datetime

import pytest

from controller.notify.budget import (
    Budget,
    Pot,
    budget_of,
    charged,
    dropped_reason,
    granted,
    window,
)
from controller.notify.sources import Source


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
    outage_email, outage_sms = Pot(Source.OUTAGE, "email"), Pot(Source.OUTAGE, "sms")
    assert (b.per_hour(outage_email), b.per_hour(outage_sms)) == (10, 2)
    start = datetime(2026, 1, 1, 7, tzinfo=UTC)
    reason = dropped_reason(outage_sms, 2, start)
    assert "ORG_MAX_SMS_PER_HOUR" in reason and "2026-01-01T08:00:00" in reason
    assert dropped_reason(outage_email, 10, start) == (
        "not sent: your organization's budget of 10 e-mail notifications an hour"
        " (ORG_MAX_NOTIFICATIONS_PER_HOUR) was used up; it is whole again at"
        " 2026-01-01T08:00:00.000Z"
    )


B = Budget(email=10, sms=2, channels=3, subscribers=4, finding=5, report=6, account=7, fleet=8)


@pytest.mark.parametrize(
    ("source", "channel", "pot", "per_hour", "setting", "what"),
    [
        # Outage notices keep the budgets (and words) they had, per family.
        (Source.OUTAGE, "email", "outage:email", 10, "ORG_MAX_NOTIFICATIONS_PER_HOUR", "e-mail"),
        (Source.OUTAGE, "sms", "outage:sms", 2, "ORG_MAX_SMS_PER_HOUR", "SMS"),
        (
            Source.OUTAGE,
            "slack",
            "outage:channels",
            3,
            "ORG_MAX_CHANNEL_NOTIFICATIONS_PER_HOUR",
            "channel",
        ),
        (
            Source.OUTAGE,
            "pagerduty",
            "outage:channels",
            3,
            "ORG_MAX_CHANNEL_NOTIFICATIONS_PER_HOUR",
            "channel",
        ),
        # Every other source has its own, per family; its SMS never past ORG_MAX_SMS_PER_HOUR.
        (
            Source.FINDING,
            "email",
            "finding:email",
            5,
            "ORG_MAX_FINDING_NOTIFICATIONS_PER_HOUR",
            "finding e-mail",
        ),
        (
            Source.FINDING,
            "sms",
            "finding:sms",
            2,
            "ORG_MAX_FINDING_NOTIFICATIONS_PER_HOUR, at most ORG_MAX_SMS_PER_HOUR",
            "finding SMS",
        ),
        (
            Source.FINDING,
            "webhook",
            "finding:channels",
            5,
            "ORG_MAX_FINDING_NOTIFICATIONS_PER_HOUR",
            "finding channel",
        ),
        (
            Source.REPORT,
            "email",
            "report:email",
            6,
            "ORG_MAX_REPORT_NOTIFICATIONS_PER_HOUR",
            "report finding e-mail",
        ),
        (
            Source.REPORT,
            "telegram",
            "report:channels",
            6,
            "ORG_MAX_REPORT_NOTIFICATIONS_PER_HOUR",
            "report finding channel",
        ),
        (
            Source.ACCOUNT,
            "email",
            "account:email",
            7,
            "ORG_MAX_ACCOUNT_NOTIFICATIONS_PER_HOUR",
            "account e-mail",
        ),
        (
            Source.FLEET,
            "apprise",
            "fleet:channels",
            8,
            "ORG_MAX_FLEET_NOTIFICATIONS_PER_HOUR",
            "fleet channel",
        ),
        (
            Source.SUBSCRIBERS,
            "email",
            "subscribers:email",
            4,
            "ORG_MAX_SUBSCRIBER_MAILS_PER_HOUR",
            "subscriber e-mail",
        ),
    ],
)
def test_each_source_draws_on_its_own_budget_per_family(
    source: Source, channel: str, pot: str, per_hour: int, setting: str, what: str
) -> None:
    got = budget_of(source, channel)
    assert f"{got.source}:{got.family}" == pot
    assert B.per_hour(got) == per_hour
    reason = dropped_reason(got, per_hour, datetime(2026, 1, 1, tzinfo=UTC))
    assert f"of {per_hour} {what} notifications an hour ({setting})" in reason
    assert charged(source)


def test_no_other_source_shares_the_outage_budgets() -> None:
    outage = {budget_of(Source.OUTAGE, c) for c in ("email", "sms", "slack")}
    others = {
        budget_of(s, c)
        for s in Source
        if s is not Source.OUTAGE
        for c in ("email", "sms", "slack", "webhook")
    }
    assert len(outage) == 3 and not outage & others


def test_the_owners_notice_is_outside_every_budget() -> None:
    assert [s for s in Source if not charged(s)] == [Source.OWNERS]
