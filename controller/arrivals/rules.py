"""Heartbeat monitors' verdict: mail matching a sender and a subject must arrive `expected`
times every `every`, with `grace` to spare. Pure: the caller gives the matching arrivals' times
and "now" (the alerter's clock), never the wall.

| situation at `now` | state | `late_since` |
| --- | --- | --- |
| before `watched_from + every + grace` (a new monitor, one enabled again) | `pending` | none |
| at least `expected` arrivals in the last `every + grace` | `up` | none |
| fewer | `down` | when the count fell short (`expected`-th newest arrival + every + grace) |

Without `expected` arrivals ever, `late_since` is `watched_from` + every + grace.
`due_at`: when the verdict turns to `down` if nothing else arrives (the judge's next look);
for `down`, None (only an arrival moves it). An arrival's match: `sender` and `subject` each a
case-insensitive substring of the arrival's From (or MAIL FROM) and Subject; "" matches any.

A `Schedule` instead ("by 06:30 each day, or on these days, in this time zone"): each deadline's
cut-off is the deadline plus grace; the arrivals between the previous cut-off and this one count
for it (a mail after a cut-off counts for the next deadline, as a late ping does in
Healthchecks.io's cron checks).

| situation at `now` | state | `late_since` |
| --- | --- | --- |
| `expected` arrivals since the last cut-off (and since `watched_from`) | `up` | none |
| `expected` arrivals in the last cut-off's window (since `watched_from`) | `up` | none |
| fewer, in a window watched whole | `down` | the first cut-off of the run of short ones |
| fewer, before any window was watched whole (a new monitor, one enabled again) | `pending` | none |

A local time a DST change skips is shifted forward by the gap (02:30 becomes 03:30 that day);
one it repeats is taken at its first occurrence (zoneinfo's `fold=0`). `due_at`: the next
cut-off while `up` or `pending`.
"""

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

State = Literal["pending", "up", "down"]
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How many short cut-offs back a `down` verdict looks for when the run began.
RUN_MAX: Final = 400


@dataclass(frozen=True, slots=True)
class Schedule:
    """Mail by `at` (local time) on each of `days` (0 Monday … 6 Sunday; all when empty) in
    the IANA time zone `zone`."""

    at: time
    zone: str
    days: frozenset[int] = frozenset()

    def deadline(self, day: date) -> datetime:
        """`day`'s deadline as a UTC instant (a skipped time shifted by the gap, a repeated
        one at its first occurrence)."""
        local = datetime.combine(day, self.at, tzinfo=ZoneInfo(self.zone))
        return local.astimezone(UTC)

    def _on(self, day: date) -> bool:
        return not self.days or day.weekday() in self.days

    def cutoffs_back(self, before: datetime, grace: timedelta) -> Iterator[datetime]:
        """The cut-offs (deadline + grace) at or before `before`, newest first."""
        day = (before - grace).astimezone(ZoneInfo(self.zone)).date() + timedelta(days=1)
        while True:
            if self._on(day) and (cut := self.deadline(day) + grace) <= before:
                yield cut
            day -= timedelta(days=1)

    def next_cutoff(self, after: datetime, grace: timedelta) -> datetime:
        """The first cut-off after `after`."""
        day = (after - grace).astimezone(ZoneInfo(self.zone)).date() - timedelta(days=1)
        while True:
            if self._on(day) and (cut := self.deadline(day) + grace) > after:
                return cut
            day += timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Rule:
    every: timedelta
    grace: timedelta = timedelta(0)
    expected: int = 1
    sender: str = ""
    subject: str = ""
    schedule: Schedule | None = None  # by a time of day instead of every `every`

    def __post_init__(self) -> None:
        if self.every <= timedelta(0) or self.grace < timedelta(0) or self.expected < 1:
            raise ValueError("every must be positive, grace not negative, expected at least 1")

    @property
    def span(self) -> timedelta:
        return self.every + self.grace

    def matches(self, header_from: str, mail_from: str, subject: str) -> bool:
        sender = self.sender.lower()
        sender_ok = not sender or sender in header_from.lower() or sender in mail_from.lower()
        return sender_ok and (not self.subject or self.subject.lower() in subject.lower())


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    count: int
    late_since: datetime | None = None
    due_at: datetime | None = None


def judge(
    rule: Rule, arrivals: Sequence[datetime], watched_from: datetime, now: datetime
) -> Verdict:
    """The verdict at `now` from the matching arrivals' times (any order; those after `now`
    are not yet known and ignored)."""
    if rule.schedule is not None:
        return _by_schedule(rule, rule.schedule, arrivals, watched_from, now)
    known = sorted((a for a in arrivals if a <= now), reverse=True)
    count = sum(1 for a in known if a > now - rule.span)
    if now < watched_from + rule.span and count < rule.expected:
        return Verdict("pending", count, due_at=watched_from + rule.span)
    if count >= rule.expected:
        return Verdict("up", count, due_at=known[rule.expected - 1] + rule.span)
    short_from = (
        known[rule.expected - 1] + rule.span
        if len(known) >= rule.expected
        else watched_from + rule.span
    )
    return Verdict("down", count, late_since=max(short_from, watched_from + rule.span))


def _by_schedule(
    rule: Rule,
    schedule: Schedule,
    arrivals: Sequence[datetime],
    watched_from: datetime,
    now: datetime,
) -> Verdict:
    known = sorted(a for a in arrivals if a <= now)

    def within(start: datetime, end: datetime) -> int:
        """The arrivals after `start` (and `watched_from`) up to `end`: two bisections, so the
        walk back a run of short cut-offs costs no scan of every arrival per cut-off."""
        start = max(start, watched_from)
        return max(0, bisect_right(known, end) - bisect_right(known, start))

    following = schedule.next_cutoff(now, rule.grace)
    back = schedule.cutoffs_back(now, rule.grace)
    last = next(back)
    before = next(back)
    since = within(last, now)
    if since >= rule.expected:
        return Verdict("up", since, due_at=following)
    count = within(before, last)
    if count >= rule.expected:
        return Verdict("up", count, due_at=following)
    if before < watched_from:
        return Verdict("pending", since, due_at=following)
    late_since = last
    for _ in range(RUN_MAX):  # walk back the run of short cut-offs watched whole
        earlier = next(back)
        if earlier < watched_from or within(earlier, before) >= rule.expected:
            break
        late_since, before = before, earlier
    return Verdict("down", count, late_since=late_since)
