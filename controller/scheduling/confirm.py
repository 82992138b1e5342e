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

**The same server's other monitors.** A monitor's first failing round of a run also asks a
confirmation round of each of its siblings (`confirm_store.siblings`: its customer's monitors on
the same host name, any port or protocol, declaring one another in `dependsOn`, or whose recent
results connected to an address its did; at most
`SIBLINGS_MAX`, each within its organization's allowance and the global budget as above): an
outage of the server is seen on all its services within seconds, so the incident's first notice
can say which are down (`controller.alerting.flows.first_now`). A passing round of a monitor
whose incident is open is confirmed too (`wanted_back`), and asks the same of its siblings with
an incident open: a server's return is told within one round of it.
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


def wanted_back(
    verdict: str,
    consecutive_up_rounds: int,
    incident_open: bool,
    t: Thresholds,
    round_at: datetime,
    now: datetime,
    interval: timedelta,
) -> bool:
    """Whether the round just judged asks for a confirmation round of its recovery: it passed
    (`up` or `degraded`) while the monitor's incident is open, the run of passing rounds is
    short of closing it and has had fewer than `PER_STREAK` confirmations, and the round is
    recent."""
    return (
        t.confirm_failures
        and verdict in ("up", "degraded")
        and incident_open
        and 0 < consecutive_up_rounds < t.recover_after_rounds
        and consecutive_up_rounds <= PER_STREAK
        and now - round_at < interval
    )


# The other monitors on a host checked at once when one of them starts failing (or passing
# again) at most: a host carries a handful of services, never hundreds.
SIBLINGS_MAX = 20


# A monitor whose `alert_queue` row is due within this long is still being judged: results
# waiting, leased by an alerter (`controller.alerting.evaluator.LEASE_S`), or a round of its
# closing.
JUDGING = timedelta(seconds=30)


def with_siblings(
    verdict: str,
    run: int,
    t: Thresholds,
    round_at: datetime,
    now: datetime,
    interval: timedelta,
) -> bool:
    """Whether the round just judged (`verdict`, the `run` of failing or passing rounds it
    ends) checks the host's other monitors too: confirmations on, a round that ran, the first
    round of its run (so a run asks for them once, and a sibling's run started by that check
    does not ask again), and recent. The caller asks it of a failing round outside an incident
    (or one opening it), and of a passing round whose recovery is confirmed (`wanted_back`) or
    closed the incident."""
    return t.confirm_failures and verdict != "missed" and run == 1 and now - round_at < interval


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
