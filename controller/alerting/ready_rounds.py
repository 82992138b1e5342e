"""Which of a monitor's rounds the alerter may judge now, and when to come back: pure rules over
what the evaluator (controller.alerting.evaluator) read, no I/O.

A round is ready once complete (every expected country has a result) or **closed** (its job's
expiry plus the timeout and a grace have passed: what has not come by then never will). A round
that closes with countries missing gets an `expired` result for each (`ReadyRounds.plan`'s
`fills`, stored by the evaluator), under the round's real job id (of the scheme, keyed or
seeded, its other countries' ids were made with, else the one `seeded_from` gives its time:
controller.jobs.scheme), so a result arriving even later is a
duplicate; a round of the monitor's grid that the scheduler sent and nobody reported on at all
is found from the grid (`grid_rounds`) and gets them too. Rounds are ready in order, up to the
first still open one, whose close is when to come back.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import structlog

from controller.alerting import state_store as alert_state
from controller.alerting.rules import AlertState, JudgedRound, closes_at, expected_countries, rounds
from controller.jobs.result_kinds import ResultRow
from controller.jobs.rules import JobIds, is_seeded
from controller.monitors.store import Monitor, WatchedMonitor
from controller.posture import observe as posture
from controller.scheduling import rules as schedule
from controller.scheduling.rules import LOOKBACK
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

ROWS_PER_EVALUATION = 5000
MS = timedelta(milliseconds=1)


class Plan(NamedTuple):
    """`ReadyRounds.plan`: the rounds ready to judge and what goes with them."""

    ready: list[JudgedRound]
    due: datetime | None  # when to come back (None: when the next round closes)
    watch: datetime | None  # the open round whose close `due` is, when `due` is one
    fills: list[ResultRow]  # `expired` results to store
    cut_short: bool  # the results read reached the limit
    read: posture.Read | None  # the results read, for posture (when they are all there were)


def grid_rounds(w: WatchedMonitor, after: datetime, until: datetime) -> list[datetime]:
    """The scheduled times in (`after`, `until`] of the rounds the scheduler has sent on the
    monitor's grid (those before its next due time, from its current grid's first round:
    `first_grid_round` of its first due time)."""
    next_due = w.monitor.next_due_at
    if next_due is None:
        return []
    interval = w.monitor.check_interval
    phase = schedule.phase_ms(str(w.monitor.public_id), interval)
    first = schedule.first_grid_round(phase, interval, w.rounds.since)
    found = []
    at = max(schedule.next_due(phase, interval, after), first)
    while at < next_due and at <= until:
        found.append(at)
        at += timedelta(seconds=interval)
    return found


def after(w: WatchedMonitor, s: AlertState, now: datetime) -> datetime:
    """Where the results to judge start: the cursor, or a lookback for a fresh state."""
    interval = timedelta(seconds=w.monitor.check_interval)
    return s.last_round_at or now - max(LOOKBACK, 3 * interval)


def closes(monitor: Monitor, at: datetime) -> datetime:
    """When the round scheduled at `at` closes: nothing it has not got by then will come."""
    return closes_at(at, monitor.check_interval, monitor.timeout_seconds)


def come_back(w: WatchedMonitor, s: AlertState, now: datetime) -> tuple[datetime, datetime | None]:
    """When the round after the last judged one closes (at least an interval from now), so a
    round nobody reports on is judged all the same; and that round (None when the time is an
    interval from now instead)."""
    interval = w.monitor.check_interval
    phase = schedule.phase_ms(str(w.monitor.public_id), interval)
    start = max(s.last_round_at or now, w.rounds.since)
    at = max(
        schedule.next_due(phase, interval, start),
        schedule.first_grid_round(phase, interval, w.rounds.since),
    )
    closing = closes(w.monitor, at)
    at_least = now + timedelta(seconds=interval)
    return (closing, at) if closing >= at_least else (at_least, None)


def _on_grid(w: WatchedMonitor, at: datetime) -> datetime | None:
    """`at` when it is a round of the monitor's grid (not a triggered one), else None."""
    interval = w.monitor.check_interval
    phase = schedule.phase_ms(str(w.monitor.public_id), interval)
    return at if schedule.next_due(phase, interval, at - MS) == at else None


class ReadyRounds:
    """The rounds to judge, with the scheduler's job ids (for the `expired` results of rounds
    nobody ran) and DEFAULT_CHECK_COUNTRIES (how many countries a round without a list
    expects)."""

    def __init__(self, job_ids: JobIds, *, default_countries: int = 2) -> None:
        self._job_ids = job_ids
        self.default_countries = default_countries

    def plan(
        self,
        w: WatchedMonitor,
        s: AlertState,
        now: datetime,
        start: datetime,
        read: alert_state.ResultsAfter,
    ) -> Plan:
        """The rounds after the cursor (`start`, from `after`) ready to judge, in order, up to
        the first still open one (the closed ones' missing countries filled with `expired`
        rows, to store); when to come back for that one (None: when the next round closes);
        and the results read, for posture (None when they are not all the results after the
        cursor: none yet, cut short, or `expired` rows to store, a late real result may have
        come meanwhile)."""
        monitor = w.monitor
        interval = timedelta(seconds=monitor.check_interval)
        horizon = now - max(LOOKBACK, 3 * interval)
        rows = read.rows
        found = rounds(rows)
        due: datetime | None = None
        watch: datetime | None = None
        until = now
        cut_short = len(rows) >= ROWS_PER_EVALUATION
        if cut_short and len(found) > 1:
            found.pop()  # may be cut short; read again at once
            until, due = found[-1].at, now
        expected, count = expected_countries(
            monitor.allowed_country_codes, w.rounds.countries, self.default_countries
        )
        if expected is not None:
            known = {r.at for r in found}
            found += [
                JudgedRound(at)
                for at in grid_rounds(w, max(start, horizon), until)
                if at not in known
            ]
            found.sort(key=lambda r: r.at)
        ready: list[JudgedRound] = []
        fills: list[ResultRow] = []
        for r in found:
            if r.countries < count:
                closing = closes(monitor, r.at)
                if now < closing:
                    due, watch = closing, _on_grid(w, r.at)
                    break
                fills += self._expire(monitor, r, expected, closing)
            ready.append(r)
        whole = s.last_round_at is not None and not cut_short and not fills
        return Plan(
            ready,
            due,
            watch,
            fills,
            cut_short,
            posture.Read(start, read.facts) if whole else None,
        )

    def _expire(
        self, monitor: Monitor, r: JudgedRound, expected: Sequence[str] | None, closing: datetime
    ) -> list[ResultRow]:
        """`expired` results for the expected countries missing from closed round `r` (added to
        it); none when the round went elsewhere (its countries are not the expected ones)."""
        if expected is None or not set(r.jobs) <= set(expected):
            return []
        public_id = str(monitor.public_id)
        triggered = any(
            self._job_ids.make(public_id, cc, r.at, trigger=True) == job
            for cc, job in r.jobs.items()
        )
        # Under the scheme the round was sent with, as its other countries' ids say
        # (`seeded_from` may have been cleared since); when none came back, as `seeded_from`
        # says for its time, as the scheduler's did.
        seeded = any(is_seeded(job) for job in r.jobs.values()) if r.jobs else None
        message = f"no result by {iso_ms(closing)}: the check did not run in time"
        fills = []
        for cc in sorted(set(expected) - set(r.jobs)):
            job_id = self._job_ids.make(public_id, cc, r.at, trigger=triggered, seeded=seeded)
            fills.append(
                ResultRow.missed(
                    monitor.public_id, monitor.type, cc, job_id, r.at, "expired", message
                )
            )
            r.jobs[cc] = job_id
            r.missed.append((cc, "expired", message))
        if fills:
            log.info(
                "round closed without results",
                monitor_id=public_id,
                scheduled_at=iso_ms(r.at),
                countries=[f.country for f in fills],
            )
        return fills
