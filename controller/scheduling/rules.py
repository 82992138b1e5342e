"""The scheduling grid, a round's expiry and country picks: pure functions, no I/O (a job's
id: controller.jobs.rules).

A monitor with interval I seconds is due at every instant t (epoch milliseconds) with
t ≡ phase (mod I·1000). The phase comes from a hash of the monitor's public id, so monitors created
together still spread evenly over the interval, and every replica computes the same grid.
"""

import functools
import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from controller.jobs.rules import JOB_EXPIRY_MAX

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _hash64(*parts: str) -> int:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _ms(at: datetime) -> int:
    """Milliseconds since the epoch, rounded down (`timedelta`'s fields, in integers)."""
    since = at - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1000 + since.microseconds // 1000


def _at(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def round_time(now: datetime) -> datetime:
    """A round's time when it runs `now` (a first round, a triggered one): `now` to the
    millisecond, as its jobs carry it (`scheduledAt`), so the results and the rows the
    controller writes for the round are of one round."""
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def phase_ms(monitor_public_id: str, interval_s: int) -> int:
    """Offset of the monitor's grid inside its interval, in milliseconds."""
    return _hash64("phase", monitor_public_id) % (interval_s * 1000)


def dns_due(
    monitor_public_id: str, scheduled_at: datetime, interval_s: int, dns_interval_s: int
) -> bool:
    """Whether the round at `scheduled_at` also probes the monitor's mail DNS: the first round
    of each window of `dns_interval_s` (offset by a phase of the monitor's own, so monitors'
    probes spread over the window), so one round per window, every round when checks are that
    rare. A window whose first round did not run has no probe."""
    if interval_s >= dns_interval_s:
        return True
    period = dns_interval_s * 1000
    t = _ms(scheduled_at) - _hash64("dns", monitor_public_id) % period
    return t // period != (t - interval_s * 1000) // period


def first_of_window(
    salt: str, monitor_public_id: str, scheduled_at: datetime, interval_s: int, every_s: int
) -> bool:
    """Whether the round at `scheduled_at` is the first of each window of `every_s` seconds of
    the monitor (a side check of its own cadence, `Planning.first_of`), with a phase of the
    monitor's own for `salt` (the side check's name) other than its mail DNS's, as `dns_due`
    decides for the mail DNS."""
    if interval_s >= every_s:
        return True
    period = every_s * 1000
    t = _ms(scheduled_at) - _hash64(salt, monitor_public_id) % period
    return t // period != (t - interval_s * 1000) // period


# How far back a fresh alert state starts (and at least 3 intervals); the scheduler records
# overdue rounds no further back.
LOOKBACK = timedelta(hours=1)

# A trigger-check or confirmation round resolves the mail DNS only when no round did within
# this (or within the DNS interval, when that is shorter): checking a server again and again
# does not look up its domain again and again.
TRIGGER_DNS_FLOOR = timedelta(minutes=5)


def trigger_dns(
    monitor_public_id: str,
    scheduled_at: datetime,
    interval_s: int,
    dns_interval_s: int,
    last: datetime | None,
) -> bool:
    """Whether a triggered round at `scheduled_at` also probes the mail DNS: when none has for
    `TRIGGER_DNS_FLOOR` (`last`: the last round that did, None: never), whenever it falls. A
    trigger's time is not on the monitor's grid, so whether a scheduled round "would" probe
    then says nothing; the scheduled rounds keep their own `dns_due`."""
    floor = min(TRIGGER_DNS_FLOOR, timedelta(seconds=dns_interval_s))
    return last is None or scheduled_at - last >= floor


def _last_due_ms(phase: int, interval_s: int, t: int) -> int:
    """The latest grid point at or before `t`, both in ms since the epoch."""
    return t - (t - phase) % (interval_s * 1000)


def next_due(phase: int, interval_s: int, after: datetime) -> datetime:
    """The first grid point strictly after `after`."""
    return _at(_last_due_ms(phase, interval_s, _ms(after)) + interval_s * 1000)


def last_due(phase: int, interval_s: int, at_or_before: datetime) -> datetime:
    """The latest grid point at or before `at_or_before`."""
    return _at(_last_due_ms(phase, interval_s, _ms(at_or_before)))


def first_grid_round(phase: int, interval_s: int, first: datetime) -> datetime:
    """The first round of the grid of a monitor whose first due time is `first`: `first` when
    it is on the grid (within its millisecond); after a first round sent at once off the grid,
    the first grid point more than half an interval later. A new monitor is not checked twice
    within seconds, and its first round's spaced logins do not meet the next round's."""
    t = _ms(first)
    if (t - phase) % (interval_s * 1000) == 0:
        return _at(t)
    return grid_after_round(phase, interval_s, first)


def grid_after_round(phase: int, interval_s: int, at: datetime) -> datetime:
    """The first grid point more than half an interval after a round sent at `at` off the grid
    (a monitor's first, sent at once or triggered): where its grid's rounds start."""
    return _at(_last_due_ms(phase, interval_s, _ms(at) + interval_s * 500) + interval_s * 1000)


def round_times(
    phase: int, interval_s: int, due: datetime, now: datetime
) -> tuple[datetime, datetime]:
    """(scheduled time of the round to run now, next due time) for a monitor due at `due`.

    However long the controller was away, this is one round: the latest grid point that has
    passed (never earlier than `due`), then the first grid point after `now`.
    """
    scheduled = max(due, last_due(phase, interval_s, now))
    return scheduled, next_due(phase, interval_s, now)


# A job runs only if its agent starts it before it expires; one sent with less time left than
# this (a fifth of its expiry window, at least a second) would mostly come back `expired`.
MIN_LEFT_SHARE: Final = 0.2
MIN_LEFT: Final = timedelta(seconds=1)


# A pass has a fixed cost (its transaction and statements, the publish flush, the wake-ups it
# sets off at the agents, the ingester and the alerter), so passes are spaced to carry about
# this many jobs each at the rate of jobs falling due.
PASS_JOBS = 200
MIN_PASS_S = 0.025


def pass_spacing(jobs: int, since_last_s: float, gather_s: float, draw: float = 1.0) -> float:
    """Seconds from a pass's start to the next one's: as long as `PASS_JOBS` jobs take to fall
    due at the rate of the pass that just ran (`jobs` sent, `since_last_s` after the one before
    it), at most `gather_s` (the longest a due round waits for others), then drawn between half
    and all of that (`draw` from 0 to 1, at random: replicas never stay in step, so each claims
    its share of what falls due, not the share its phase gives it), at least `MIN_PASS_S`. A
    monitor due later than that is not waited for: the scheduler sleeps until it is due."""
    most = max(MIN_PASS_S, gather_s)
    full = most if jobs <= 0 or since_last_s <= 0 else min(most, PASS_JOBS * since_last_s / jobs)
    return max(MIN_PASS_S, full * (0.5 + 0.5 * draw))


def nothing_due(earliest: datetime | None, now: datetime) -> bool:
    """Whether no monitor can be due `now`, given the earliest due time of a monitor or a
    deferred login that the last pass saw (None: it saw none). A due time moves earlier only
    when a monitor is planned, after which the caller knows nothing until a pass says."""
    return earliest is None or earliest > now


def can_run(scheduled_at: datetime, interval_s: int, now: datetime) -> bool:
    """Whether a job of the round scheduled at `scheduled_at`, sent `now`, can still run:
    `can_start` with the round's expiry (`expires_at`), i.e. sent within `start_window` of it."""
    return now - scheduled_at <= _start_window_of(interval_s)


def can_start(scheduled_at: datetime, expires: datetime, now: datetime) -> bool:
    """Whether a job of the round scheduled at `scheduled_at` that expires at `expires`, sent
    `now`, can still run: a fifth of its window, at least a second, is left."""
    return expires - now >= max(MIN_LEFT, (expires - scheduled_at) * MIN_LEFT_SHARE)


def start_window(scheduled_at: datetime, expires: datetime) -> timedelta:
    """How long after `scheduled_at` a job that expires at `expires` may still start
    (`can_start`)."""
    window = expires - scheduled_at
    return max(timedelta(0), window - max(MIN_LEFT, window * MIN_LEFT_SHARE))


def overdue_rounds(
    phase: int,
    interval_s: int,
    due: datetime,
    now: datetime,
    lookback: timedelta = LOOKBACK,
    since: datetime | None = None,
) -> tuple[list[datetime], datetime | None, datetime]:
    """(rounds that are over before they were sent, the round to send now or None, next due
    time) for a monitor due at `due`, claimed `now` (late after an outage). Each grid point from
    `due` to `now` is one round: the latest is sent when it can still run, every other is over;
    those more than `lookback` (at least 3 intervals) before `now` (a bound on how far back rows
    are written) are left out. A monitor claimed before its grid's next point after `due` (the
    routine case) has one round, `due`: worked out in integer milliseconds alone. A first round
    off the grid (`due` is `since`, the monitor's first due time: sent at once) is one round,
    and the grid goes on from `first_grid_round` (which is `grid_after_round` off the grid)."""
    if due == since and (_ms(due) - phase) % (interval_s * 1000):
        first = grid_after_round(phase, interval_s, due)
        if now < first:
            return ([], due, first) if can_run(due, interval_s, now) else ([due], None, first)
        over, run, next_at = overdue_rounds(phase, interval_s, first, now, lookback, since)
        if due >= now - max(lookback, timedelta(seconds=3 * interval_s)):
            over.insert(0, due)
        return over, run, next_at
    last = _last_due_ms(phase, interval_s, _ms(now))
    if _ms(due) >= last:
        # `due` is the latest round (`round_times`: max(due, last_due)), none is over
        next_at = _at(last + interval_s * 1000)  # `next_due(now)`
        if can_run(due, interval_s, now):
            return [], due, next_at
        return [due], None, next_at
    since = now - max(lookback, timedelta(seconds=3 * interval_s))
    scheduled, next_at = round_times(phase, interval_s, due, now)
    over = []
    at = due if due >= since else next_due(phase, interval_s, since - timedelta(milliseconds=1))
    while at < scheduled:
        over.append(at)
        at = next_due(phase, interval_s, at)
    if can_run(scheduled, interval_s, now):
        return over, scheduled, next_at
    return [*over, scheduled], None, next_at


def expires_at(scheduled_at: datetime, interval_s: int) -> datetime:
    """When a round's job goes stale: at the next round, or before JOBS drops it unrun."""
    return scheduled_at + _expiry_of(interval_s)


# Per interval (a few distinct values): what every round of that interval has the same of.
@functools.lru_cache(maxsize=1024)
def _expiry_of(interval_s: int) -> timedelta:
    return min(timedelta(seconds=interval_s), JOB_EXPIRY_MAX)


@functools.lru_cache(maxsize=1024)
def _start_window_of(interval_s: int) -> timedelta:
    return start_window(_EPOCH, _EPOCH + _expiry_of(interval_s))


def settles_at(scheduled_at: datetime, interval_s: int, timeout_s: float) -> datetime:
    """When nothing of a round's jobs can still happen: `job_settles` of its expiry."""
    return job_settles(expires_at(scheduled_at, interval_s), timeout_s)


def job_settles(expires: datetime, timeout_s: float) -> datetime:
    """When nothing of a job can still happen: its expiry (the latest an agent may start it)
    plus its timeout (the longest it runs)."""
    return expires + timedelta(seconds=timeout_s)


def planned_countries(allowed: Sequence[str] | None, default: int) -> int:
    """How many countries each round of a monitor is planned for, what its checks cost: its
    listed ones, else `default` (DEFAULT_CHECK_COUNTRIES). The twin of SQL
    `planned_countries` (migration 0053), held to it by tests/pipeline/test_round_rules.py."""
    return len(allowed) if allowed else default


def pick_countries(monitor_public_id: str, live: Iterable[str], count: int) -> list[str]:
    """`count` of the live countries, stable per monitor (rendezvous hashing): a country that
    comes or goes moves only the monitors that ranked it among their top `count`. When `count`
    takes every live country the ranking is not needed (nor hashed)."""
    live = tuple(live)
    if count >= len(live):
        return sorted(live)
    ranked = sorted(live, key=lambda cc: (_hash64("country", monitor_public_id, cc), cc))
    return sorted(ranked[-count:] if count > 0 else [])
