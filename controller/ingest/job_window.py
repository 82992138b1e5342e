"""When a result's check may have run, pure: within its job's window (issue 78). A job is
delivered at most `JOBS_MAX_AGE_S` after its scheduled time (JOBS drops it then), runs at most
the longest timeout and the agent's side check grace, and an agent's clock may differ from the
controller's by `SKEW`; so a result started or finished outside [scheduled - SKEW, scheduled +
LATE] says a time no check of that job had. Its times are clamped into the window (`clamp`), so
no agent can date facts in the future (an answer kept fresh for ever) or the past."""

from datetime import datetime, timedelta
from typing import Final, NamedTuple

from controller.monitors.validation import TIMEOUT_MAX
from shared.streams import JOBS_MAX_AGE_S

# How far an agent's clock may be from the controller's, either way.
SKEW: Final = timedelta(seconds=60)
# The agent's side checks' time after the core check (agent.worker SIDE_CHECK_GRACE_S is 15 s).
SIDE_GRACE: Final = timedelta(seconds=60)
LATE: Final = timedelta(seconds=JOBS_MAX_AGE_S + TIMEOUT_MAX) + SIDE_GRACE + SKEW


class Times(NamedTuple):
    """A result's times as stored, and which of them were moved into the window."""

    started_at: datetime
    finished_at: datetime
    clamped: tuple[str, ...]


def clamp(scheduled_at: datetime, started_at: datetime, finished_at: datetime) -> Times:
    """`started_at` and `finished_at` within [scheduled_at - SKEW, scheduled_at + LATE], and
    the finish not before the start; `clamped` names those that moved (`startedAt`,
    `finishedAt`)."""
    low, high = scheduled_at - SKEW, scheduled_at + LATE
    start = min(max(started_at, low), high)
    finish = min(max(finished_at, start), high)
    moved = tuple(
        name
        for name, was, now in (
            ("startedAt", started_at, start),
            ("finishedAt", finished_at, finish),
        )
        if was != now
    )
    return Times(start, finish, moved)
