"""Maintenance, decided once for every notice: whether a monitor is in maintenance at a given
time (`quiet`: its status `maintenance`, or one of its maintenance windows open), and which
notices maintenance holds back (`held`). Pure.

One-off windows cover [starts_at, ends_at). Weekly windows open every ISO weekday (1 = Monday)
at a wall-clock time in their IANA time zone and stay open for their duration (up to a week),
so a window from Sunday 23:00 for 3 hours is still open early on Monday.

What maintenance holds back is never queued (controller.notify.entry `notify`): outage notices
(down, reminder, recovered, no data), findings (posture, certificate expiry, blocklists) and two
account notices (logins backed off, round trips not delivered). Those with a state to move wait
for the end of maintenance and are told then (an incident's down and held recovery:
controller.alerting.rules; a back-off, a delivery back-off, a certificate expiry threshold:
their callers ask `quiet` before marking them told); a finding is recorded and shown, not told.
Report findings (the world's senders saw them, not our checks), login caps and refused OAuth2
tokens (someone must act on the account), and notices about no monitor (subscribers, owners,
fleet) go out in maintenance too.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime, time, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec

from controller.notify.sources import Source

# What maintenance holds back, per source: None every kind of notice of it, else those kinds.
HELD: Mapping[Source, frozenset[str] | None] = {
    Source.OUTAGE: None,
    Source.FINDING: None,
    Source.ACCOUNT: frozenset({"credentials", "delivery"}),
}
MAINTENANCE = "maintenance"  # the monitor status that holds notices back


def held(source: Source, kind: str) -> bool:
    """Whether a notice of `kind` from `source` waits while its monitor is in maintenance."""
    if source not in HELD:
        return False
    kinds = HELD[source]
    return kinds is None or kind in kinds


class Window(msgspec.Struct, kw_only=True, frozen=True):
    """When a maintenance window is open: `once` over [starts_at, ends_at), or `weekly`."""

    kind: str
    starts_at: datetime | None
    ends_at: datetime | None
    weekday: int | None
    start_time: time | None
    duration_minutes: int | None
    timezone: str | None


class StoredWindow(Window, kw_only=True, frozen=True):
    """A window as stored, with whom it covers (`monitor_id` or `customer_id`), as the API
    shows it (controller.notify.maintenance_store)."""

    id: int
    public_id: UUID
    organization_id: int
    monitor_id: int | None
    customer_id: int | None
    note: str
    created_at: datetime
    monitor_public_id: UUID | None
    customer_public_id: UUID | None


def weekly_open(weekday: int, start: time, minutes: int, tz: str, at: datetime) -> bool:
    local = at.astimezone(ZoneInfo(tz))
    days_back = (local.isoweekday() - weekday) % 7
    for back in (days_back, days_back + 7):
        day = (local - timedelta(days=back)).date()
        opened = datetime.combine(day, start, tzinfo=ZoneInfo(tz))
        if opened <= local < opened + timedelta(minutes=minutes):
            return True
    return False


def is_open(window: Window, at: datetime) -> bool:
    w = window
    if w.kind == "once":
        return w.starts_at is not None and w.ends_at is not None and w.starts_at <= at < w.ends_at
    if w.weekday is None or w.start_time is None or w.duration_minutes is None or not w.timezone:
        return False  # the table's check constraint keeps a weekly window whole
    return weekly_open(w.weekday, w.start_time, w.duration_minutes, w.timezone, at)


def any_open(windows: Iterable[Window], at: datetime) -> bool:
    return any(is_open(w, at) for w in windows)


def quiet(status: str, windows: Iterable[Window], at: datetime) -> bool:
    """Whether a monitor of `status`, covered by `windows` (its own and its customer's), is in
    maintenance at `at`: nobody is told what `held` names."""
    return status == MAINTENANCE or any_open(windows, at)


def current_or_next(window: Window, at: datetime) -> tuple[datetime, datetime] | None:
    """The opening of `window` in progress at `at`, else its next one; None once a one-off
    window is over."""
    w = window
    if w.kind == "once":
        if w.starts_at is None or w.ends_at is None:
            return None
        return (w.starts_at, w.ends_at) if w.ends_at > at else None
    if w.weekday is None or w.start_time is None or w.duration_minutes is None or not w.timezone:
        return None
    tz = ZoneInfo(w.timezone)
    local = at.astimezone(tz)
    span = timedelta(minutes=w.duration_minutes)
    days_back = (local.isoweekday() - w.weekday) % 7
    for back in (days_back + 7, days_back, days_back - 7):
        day = (local - timedelta(days=back)).date()
        opened = datetime.combine(day, w.start_time, tzinfo=tz)
        if opened + span > local:
            return opened, opened + span
    return None
