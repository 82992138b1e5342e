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
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

State = Literal["pending", "up", "down"]


@dataclass(frozen=True, slots=True)
class Rule:
    every: timedelta
    grace: timedelta = timedelta(0)
    expected: int = 1
    sender: str = ""
    subject: str = ""

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
