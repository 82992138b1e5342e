"""Heartbeats by a time of day in a time zone (issue 83), as tables: the deadlines over DST
changes in two zones and one without DST, across UTC midnight and a month's end; and the
verdicts of `judge` with a `Schedule` (controller.arrivals.rules): up, down from the first
short cut-off, pending until a cut-off's window was watched whole, days of the week."""

from datetime import UTC, date, datetime, time, timedelta

import pytest

from controller.arrivals.rules import Rule, Schedule, judge

BERLIN, NEW_YORK, KOLKATA = "Europe/Berlin", "America/New_York", "Asia/Kolkata"


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "at", "day", "deadline"),
    [
        (BERLIN, time(6, 30), date(2026, 3, 28), utc(2026, 3, 28, 5, 30)),  # CET
        (BERLIN, time(6, 30), date(2026, 3, 29), utc(2026, 3, 29, 4, 30)),  # a day of 23 h
        (BERLIN, time(2, 30), date(2026, 3, 29), utc(2026, 3, 29, 1, 30)),  # skipped: 03:30 CEST
        (BERLIN, time(2, 30), date(2026, 10, 25), utc(2026, 10, 25, 0, 30)),  # repeated: first
        (BERLIN, time(6, 30), date(2026, 10, 25), utc(2026, 10, 25, 5, 30)),  # a day of 25 h
        (NEW_YORK, time(2, 30), date(2026, 3, 8), utc(2026, 3, 8, 7, 30)),  # skipped: 03:30 EDT
        (NEW_YORK, time(1, 30), date(2026, 11, 1), utc(2026, 11, 1, 5, 30)),  # repeated: EDT
        (NEW_YORK, time(1, 30), date(2026, 11, 2), utc(2026, 11, 2, 6, 30)),  # EST
        (NEW_YORK, time(23, 0), date(2026, 11, 30), utc(2026, 12, 1, 4, 0)),  # next UTC month
        (KOLKATA, time(6, 30), date(2026, 3, 29), utc(2026, 3, 29, 1, 0)),  # no DST: +05:30
        (KOLKATA, time(5, 0), date(2026, 12, 1), utc(2026, 11, 30, 23, 30)),  # UTC's day before
    ],
)
def test_a_days_deadline(zone: str, at: time, day: date, deadline: datetime) -> None:
    assert Schedule(at, zone).deadline(day) == deadline


def test_the_cutoffs_around_a_dst_change_are_a_day_apart_in_local_time() -> None:
    """Berlin 06:30 with 30 minutes' grace: the cut-offs back from 31 March are 07:00 local
    each day, 24 h apart in UTC except across the change (23 h)."""
    s = Schedule(time(6, 30), BERLIN)
    back = s.cutoffs_back(utc(2026, 3, 31, 6, 0), timedelta(minutes=30))
    cuts = [next(back) for _ in range(4)]
    assert cuts == [
        utc(2026, 3, 31, 5, 0),
        utc(2026, 3, 30, 5, 0),
        utc(2026, 3, 29, 5, 0),
        utc(2026, 3, 28, 6, 0),
    ]
    assert s.next_cutoff(utc(2026, 3, 28, 6, 0), timedelta(minutes=30)) == utc(2026, 3, 29, 5, 0)


DAILY = Rule(
    every=timedelta(days=1),
    grace=timedelta(minutes=30),
    schedule=Schedule(time(6, 30), BERLIN),
)
WEEKDAYS = Rule(
    every=timedelta(days=1),
    grace=timedelta(minutes=30),
    schedule=Schedule(time(6, 30), BERLIN, frozenset(range(5))),
)
WATCHED = utc(2026, 3, 20, 9, 0)  # a Friday, 10:00 in Berlin
# Each day's report at 06:00 Berlin from the 20th to the 31st, but none on the 29th (the DST
# change) nor on the 30th; one late, at 08:00 Berlin, on the 31st.
SENT = [
    datetime(2026, 3, d, 6, 0, tzinfo=UTC) - timedelta(hours=1 if d < 29 else 2)
    for d in range(21, 29)
] + [utc(2026, 3, 31, 6, 0)]


@pytest.mark.parametrize(
    ("rule", "now", "state", "late_since"),
    [
        (DAILY, utc(2026, 3, 21, 4, 0), "pending", None),  # the 20th's window not watched whole
        (DAILY, utc(2026, 3, 21, 6, 1), "up", None),  # the 21st's report, after the watch began
        (DAILY, utc(2026, 3, 28, 23, 0), "up", None),
        (DAILY, utc(2026, 3, 29, 4, 59), "up", None),  # the cut-off at 07:00 CEST not reached
        (DAILY, utc(2026, 3, 29, 5, 0), "down", utc(2026, 3, 29, 5, 0)),
        (DAILY, utc(2026, 3, 30, 5, 1), "down", utc(2026, 3, 29, 5, 0)),  # two short: one run
        (DAILY, utc(2026, 3, 31, 5, 59), "down", utc(2026, 3, 29, 5, 0)),
        (DAILY, utc(2026, 3, 31, 6, 0), "up", None),  # the late report recovers it at once
        (DAILY, utc(2026, 4, 1, 5, 1), "up", None),  # and counts for the next deadline
        (DAILY, utc(2026, 4, 2, 5, 1), "down", utc(2026, 4, 2, 5, 0)),
        (WEEKDAYS, utc(2026, 3, 29, 5, 1), "up", None),  # Sunday: no deadline; Friday's holds
        (WEEKDAYS, utc(2026, 3, 30, 5, 1), "up", None),  # Monday's window began Friday 07:00
        (WEEKDAYS, utc(2026, 3, 31, 5, 1), "down", utc(2026, 3, 31, 5, 0)),
        (WEEKDAYS, utc(2026, 3, 31, 6, 0), "up", None),  # the late one at 08:00 on Tuesday
        (WEEKDAYS, utc(2026, 4, 1, 5, 1), "up", None),
        (WEEKDAYS, utc(2026, 4, 2, 5, 1), "down", utc(2026, 4, 2, 5, 0)),
    ],
)
def test_the_verdict_by_schedule(
    rule: Rule, now: datetime, state: str, late_since: datetime | None
) -> None:
    v = judge(rule, SENT, WATCHED, now)
    assert (v.state, v.late_since) == (state, late_since), v


def test_pending_until_a_window_was_watched_whole_then_down_from_its_cut_off() -> None:
    v = judge(DAILY, [], WATCHED, utc(2026, 3, 21, 6, 1))
    assert v.state == "pending" and v.due_at == utc(2026, 3, 22, 6, 0)
    v = judge(DAILY, [], WATCHED, utc(2026, 3, 22, 6, 0))
    assert (v.state, v.late_since) == ("down", utc(2026, 3, 22, 6, 0))
    two = Rule(every=timedelta(days=1), expected=2, schedule=Schedule(time(6, 30), KOLKATA))
    one = [utc(2026, 3, 22, 0, 0)]
    assert judge(two, one, WATCHED, utc(2026, 3, 22, 1, 0)).state == "down"
    both = [utc(2026, 3, 21, 20, 0), *one]
    assert judge(two, both, WATCHED, utc(2026, 3, 22, 1, 0)).state == "up"
