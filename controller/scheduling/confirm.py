"""Confirmation rounds: when a round fails, the controller checks again at once instead of
waiting for the next scheduled round. Pure rules, no I/O.

A confirmation round is a triggered round (the monitor's countries, right now) and the alerter
counts it like any other round: with `downAfterRounds` 2, a failing round and its failing
confirmation open the incident seconds after the first failure, whatever the interval. A lone
flaky country does not make a round fail (`failureThreshold`), so it is never confirmed and never
notifies; a failure the confirmation does not see again is a passing round, which ends the streak.

Sending them shares one global budget (`CONFIRM_ROUNDS_PER_MINUTE`) fairly between
organizations: requests wait in a queue, the budget is a rate (`slots`), and each free slot goes
to the organization that has had the fewest of its waiting requests served (`fair_pick`,
round-robin = max-min fairness). An organization alone gets the whole rate; while several wait,
none gets more than its share, so one organization's failures delay another's confirmation by
one slot at most, however many it asks for.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.monitors.thresholds import Thresholds

# Confirmation rounds in one failing streak at most: with `downAfterRounds` 3 both run back to
# back; a higher setting waits for scheduled rounds after them, so a monitor set to 100 rounds
# never becomes 99 checks of its target in a row.
PER_STREAK = 2


def wanted(
    verdict: str,
    consecutive_down_rounds: int,
    incident_open: bool,
    t: Thresholds,
    round_at: datetime,
    now: datetime,
    interval: timedelta,
) -> bool:
    """Whether the round just judged (`verdict`, the streak after it) asks for a confirmation
    round: it failed, the streak is short of opening an incident and has had fewer than
    `PER_STREAK` confirmations, and the round is recent (an old round judged late, after an
    outage of the controller, is left to the schedule)."""
    return (
        t.confirm_failures
        and verdict == "failing"
        and not incident_open
        and 0 < consecutive_down_rounds < t.down_after_rounds
        and consecutive_down_rounds <= PER_STREAK
        and now - round_at < interval
    )


# The global budget's burst: at most this many seconds' worth of confirmation rounds go at once,
# then one every 60 / CONFIRM_ROUNDS_PER_MINUTE seconds.
BURST_S = 5.0
# Sends counted per organization over this window to break ties between organizations.
RECENT = timedelta(minutes=1)


@dataclass(frozen=True)
class Pending:
    """A confirmation round waiting for a slot of the global budget."""

    monitor_id: int
    after_round: datetime
    organization_id: int
    requested_at: datetime


def slots(tat: datetime | None, now: datetime, per_minute: int) -> int:
    """How many confirmation rounds may go `now` within `per_minute` (GCRA, as
    `controller.monitors.limits_store.take_trigger`: `tat` is when the budget is whole again,
    `None` never
    used). Each round moves it 60 / `per_minute` s later, within `BURST_S` of now; a whole
    budget admits one round however costly. `0` per minute: none ever."""
    if per_minute <= 0:
        return 0
    cost = 60.0 / per_minute
    start = now if tat is None or tat <= now else tat
    n = math.floor(((now - start).total_seconds() + BURST_S) / cost + 1e-9)
    return max(n, 1 if start == now else 0)


def spent(tat: datetime | None, now: datetime, per_minute: int, taken: int) -> datetime:
    """The budget's `tat` after `taken` rounds went `now`."""
    start = now if tat is None or tat <= now else tat
    return start + timedelta(seconds=taken * 60.0 / per_minute)


def fair_pick(pending: Sequence[Pending], recent: Mapping[int, int], n: int) -> list[Pending]:
    """The `n` waiting rounds to send: round-robin over organizations (each one's oldest first),
    the organization with fewer rounds sent in `RECENT` first within a turn, then the older
    request. An organization alone takes every slot; one asking for more than its share
    cannot push another's first request behind its own second."""
    nth: dict[int, int] = {}
    ranked: list[tuple[int, int, datetime, int, Pending]] = []
    for p in sorted(pending, key=lambda p: (p.requested_at, p.monitor_id, p.after_round)):
        k = nth[p.organization_id] = nth.get(p.organization_id, 0) + 1
        ranked.append((k, recent.get(p.organization_id, 0), p.requested_at, len(ranked), p))
    ranked.sort(key=lambda r: r[:4])
    return [r[4] for r in ranked[: max(n, 0)]]
