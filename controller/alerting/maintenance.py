"""Whether a maintenance window is open at a given time.

One-off windows cover [starts_at, ends_at). Weekly windows open every ISO weekday (1 = Monday)
at a wall-clock time in their IANA time zone and stay open for their duration (up to a week),
so a window from Sunday 23:00 for 3 hours is still open early on Monday.
"""

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo


def weekly_open(weekday: int, start: time, minutes: int, tz: str, at: datetime) -> bool:
    local = at.astimezone(ZoneInfo(tz))
    days_back = (local.isoweekday() - weekday) % 7
    for back in (days_back, days_back + 7):
        day = (local - timedelta(days=back)).date()
        opened = datetime.combine(day, start, tzinfo=ZoneInfo(tz))
        if opened <= local < opened + timedelta(minutes=minutes):
            return True
    return False


def is_open(window: Any, at: datetime) -> bool:
    """`window`: a `maintenance_windows` row (or anything with its keys)."""
    if window["kind"] == "once":
        return bool(window["starts_at"] <= at < window["ends_at"])
    return weekly_open(
        window["weekday"], window["start_time"], window["duration_minutes"], window["timezone"], at
    )


def any_open(windows: Iterable[Any], at: datetime) -> bool:
    return any(is_open(w, at) for w in windows)


def current_or_next(window: Any, at: datetime) -> tuple[datetime, datetime] | None:
    """The opening of `window` in progress at `at`, else its next one; None once a one-off
    window is over."""
    if window["kind"] == "once":
        start, end = window["starts_at"], window["ends_at"]
        return (start, end) if end > at else None
    tz = ZoneInfo(window["timezone"])
    local = at.astimezone(tz)
    span = timedelta(minutes=window["duration_minutes"])
    days_back = (local.isoweekday() - window["weekday"]) % 7
    for back in (days_back + 7, days_back, days_back - 7):
        day = (local - timedelta(days=back)).date()
        opened = datetime.combine(day, window["start_time"], tzinfo=tz)
        if opened + span > local:
            return opened, opened + span
    return None
