"""Maintenance, decided once for every notice (controller.notify.maintenance): which notices it
holds back, per source and kind, and whether a monitor is in maintenance."""

from datetime import UTC, datetime, time

import pytest

from controller.notify.maintenance import Window, held, quiet
from controller.notify.sources import Source


@pytest.mark.parametrize(
    ("source", "kind", "expected"),
    [
        # Outage notices: held, and told once maintenance is over (controller.alerting.rules).
        (Source.OUTAGE, "down", True),
        (Source.OUTAGE, "reminder", True),
        (Source.OUTAGE, "recovered", True),
        (Source.OUTAGE, "no_data", True),
        # Findings of our own checks (posture, expiry, blocklists): held.
        (Source.FINDING, "finding", True),
        (Source.FINDING, "cert_expiry", True),
        # The world's reports are not our checks: told in maintenance too.
        (Source.REPORT, "finding", False),
        # Account: back-off and delivery wait; a login cap or a refused token is told at once.
        (Source.ACCOUNT, "credentials", True),
        (Source.ACCOUNT, "delivery", True),
        (Source.ACCOUNT, "login_cap", False),
        (Source.ACCOUNT, "oauth2_token", False),
        # About no monitor, or the owners' budget notice: never held.
        (Source.SUBSCRIBERS, "status_update", False),
        (Source.SUBSCRIBERS, "status_confirm", False),
        (Source.OWNERS, "held_back", False),
        (Source.FLEET, "finding", False),
    ],
)
def test_what_maintenance_holds_back(source: Source, kind: str, expected: bool) -> None:
    assert held(source, kind) is expected


AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday
ONCE_OPEN = Window(
    kind="once",
    starts_at=datetime(2026, 3, 2, 11, tzinfo=UTC),
    ends_at=datetime(2026, 3, 2, 13, tzinfo=UTC),
    weekday=None,
    start_time=None,
    duration_minutes=None,
    timezone=None,
)
ONCE_ENDED = Window(
    kind="once",
    starts_at=datetime(2026, 3, 2, 10, tzinfo=UTC),
    ends_at=AT,  # [starts_at, ends_at): over at its end
    weekday=None,
    start_time=None,
    duration_minutes=None,
    timezone=None,
)
WEEKLY_OPEN = Window(
    kind="weekly",
    starts_at=None,
    ends_at=None,
    weekday=1,
    start_time=time(12, 30),
    duration_minutes=60,
    timezone="Europe/Berlin",  # 12:30 CET is 11:30 UTC
)


@pytest.mark.parametrize(
    ("status", "windows", "expected"),
    [
        ("active", (), False),
        ("maintenance", (), True),
        ("maintenance", (ONCE_ENDED,), True),
        ("active", (ONCE_OPEN,), True),
        ("active", (ONCE_ENDED,), False),
        ("active", (ONCE_ENDED, WEEKLY_OPEN), True),
        ("disabled", (), False),
    ],
)
def test_in_maintenance_by_status_or_an_open_window(
    status: str, windows: tuple[Window, ...], expected: bool
) -> None:
    assert quiet(status, windows, AT) is expected
