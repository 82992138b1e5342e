"""The alerter: queued monitors → state per round → incidents, notifications and events.

A **round** is one scheduled time across a monitor's countries. It is judged once complete
(every expected country has a result) or **closed** (its job's expiry plus the timeout and a
grace have passed: what has not come by then never will). The expected countries are the
listed ones, or those the scheduler sent its latest round to (`round_countries`), or, when
neither is known, `DEFAULT_CHECK_COUNTRIES` of them. A round that closes with countries missing
gets a `missed` result (`expired`) stored for each, under the round's real job id (so a result
arriving even later is a duplicate); a round of the monitor's grid that the scheduler sent and
nobody reported on at all is found from the grid and gets them too. The failure share divides
by the expected countries, so a dead agent counts as not failing:

- more than `failureThreshold` of them failed → a **failing** round;
- some failed, but not that many → **degraded**; none failed → **up** (both are passing);
- none of them ran it → **missed**: neither counter moves.

An **inconclusive** result (the agent's own path explains its failure: a canary of the port, or
its resolver check, failed too) counts like a missed one: never failing, never passing, so a round
of only inconclusive countries is missed (its event names them), and a round mixing them with
real results is judged on the real ones, the inconclusive countries counting as not failing.

`downAfterRounds` failing rounds in a row open an incident (`down`); `recoverAfterRounds`
passing rounds in a row close it. Before that the monitor is `degraded`, so a flapping server
never notifies anyone. The evaluation cursor (`last_round_at`) only moves past a round once it
is judged, and rounds are judged in order, so a later round finishing first never hides an
earlier one's late results.

Queued monitors are leased (FOR UPDATE SKIP LOCKED on `alert_queue`, so replicas share the
work) and each is evaluated in one transaction that writes the new state, the incident, the
notification outbox rows and the events together; `monitor_alert_state` is locked FOR UPDATE,
so even an evaluation repeated after an expired lease runs one at a time. A monitor comes back
when its next round closes, so a round nobody ran is noticed without any result arriving.
Events are published after the commit (`publish_events`), by one replica at a time, in order.

The rounds judged feed the monitor's security posture (controller.posture.observe) in the same
transaction: findings, baseline changes, their events and notifications.

Nothing is notified while the monitor's status is `maintenance` or one of its maintenance
windows is open: state and incidents are still recorded. Once the maintenance is over, an
incident opened meanwhile and still open is notified as `down`, and one that was notified before
and recovered meanwhile sends its recovery; one never notified sends none. Disabling a monitor
closes its open incident at once (`end_reason` "monitoring disabled"), notifies nobody, and
leaves the state `unknown`.
"""

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog
from nats.js import JetStreamContext

from controller import (
    causes,
    confirm,
    login_backoff,
    maintenance,
    metrics,
    no_data,
    roundtrip_delivery,
    schedule,
)
from controller.alert_thresholds import Thresholds
from controller.db import alerts, confirmations, results
from controller.db import login_backoff as backoff_db
from controller.db import maintenance as windows_db
from controller.db.pool import Conn
from controller.db.results import ResultRow
from controller.login_backoff import HELD
from controller.notify import recipients
from controller.notify.texts import Kind, render, render_backoff
from controller.posture import observe as posture
from controller.schedule import JobIds
from shared.messages import MonitorEvent, encode
from shared.subjects import events_subject
from shared.timefmt import iso_ms, utcnow

log = structlog.get_logger(__name__)

BATCH = 100
ROWS_PER_EVALUATION = 5000
CLOSE_GRACE = timedelta(seconds=5)
LOOKBACK = timedelta(hours=1)  # at least 3 intervals; how far back a fresh state starts
LEASE_S = 30.0  # an evaluation takes milliseconds; a crashed one is retried after this
DISABLED = "monitoring disabled"

Row = tuple[str, str | None, str]  # (country, error kind, message)


@dataclass
class Round:
    at: datetime
    jobs: dict[str, str] = field(default_factory=dict)  # country → job id of its result
    up: list[str] = field(default_factory=list)
    failures: list[Row] = field(default_factory=list)
    missed: list[Row] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # not run on purpose (results.HELD_KINDS)
    held_kinds: list[str] = field(default_factory=list)  # their error kinds

    @property
    def countries(self) -> int:
        return len(self.up) + len(self.failures) + len(self.missed) + len(self.held)

    def verdict(self, failure_threshold: float, expected: int) -> str:
        """`missed`, `failing`, `degraded` or `up`; the share is of the expected countries less
        those whose login was held back (they did not check on purpose)."""
        if not self.up and not self.failures:
            return "missed"
        held = len(self.held)
        if len(self.failures) / max(expected - held, self.countries - held) > failure_threshold:
            return "failing"
        return "degraded" if self.failures else "up"


def rounds(rows: Sequence[Any]) -> list[Round]:
    """Results (oldest first) grouped by scheduled time."""
    found: list[Round] = []
    for row in rows:
        if not found or found[-1].at != row["scheduled_at"]:
            found.append(Round(row["scheduled_at"]))
        r = found[-1]
        r.jobs[row["country"]] = row["job_id"]
        if row["status"] == "up":
            r.up.append(row["country"])
        elif row["status"] == "down":
            r.failures.append((row["country"], row["error_kind"], row["message"]))
        elif row["error_kind"] in results.HELD_KINDS:
            r.held.append(row["country"])
            r.held_kinds.append(row["error_kind"])
        else:  # missed, or inconclusive: neither failing nor passing
            r.missed.append((row["country"], row["error_kind"], row["message"]))
    return found


def grid_rounds(monitor: Any, after: datetime, until: datetime) -> list[datetime]:
    """The scheduled times in (`after`, `until`] of the rounds the scheduler has sent on the
    monitor's grid (those before its next due time, from its current grid's first)."""
    next_due: datetime | None = monitor["next_due_at"]
    if next_due is None:
        return []
    interval: int = monitor["check_interval"]
    phase = schedule.phase_ms(str(monitor["public_id"]), interval)
    start = max(after, monitor["rounds_since"] - timedelta(milliseconds=1))
    found = []
    at = schedule.next_due(phase, interval, start)
    while at < next_due and at <= until:
        found.append(at)
        at += timedelta(seconds=interval)
    return found


def _latest_run(judged: Sequence[tuple[Round, str]]) -> list[tuple[Round, str]]:
    """The latest run of failing, or of passing (`up`, `degraded`), rounds, oldest first; missed
    rounds neither end nor extend a run, as in `AlertState.step`."""
    run: list[tuple[Round, str]] = []
    for r, verdict in reversed(judged):
        if verdict == "missed":
            continue
        if run and (verdict == "failing") != (run[0][1] == "failing"):
            break
        run.insert(0, (r, verdict))
    return run


@dataclass
class AlertState:
    """The monitor's alert state as plain fields (one row of `monitor_alert_state`)."""

    state: str = "unknown"
    consecutive_down_rounds: int = 0
    consecutive_up_rounds: int = 0
    down_since: datetime | None = None
    up_since: datetime | None = None
    last_round_at: datetime | None = None
    open_incident_id: int | None = None
    last_notified_at: datetime | None = None
    missed_rounds: int = 0  # the run of missed rounds (`no_data.Run`)
    missed_since: datetime | None = None

    def step(
        self,
        verdict: str,
        at: datetime,
        t: Thresholds,
        data: no_data.Kind | None = None,
        no_data_after: timedelta | None = None,
    ) -> str | None:
        """Move by one round; return `open`, `close` or `no_data` (close it for lack of data,
        `no_data.closes`) when the incident should change. `data`: the round's `no_data.kind`
        (by default `no_data` when missed); `no_data_after`: INCIDENT_NO_DATA_CLOSE_MINUTES."""
        self.last_round_at = at
        run = no_data.Run(self.missed_rounds, self.missed_since).after(
            data or ("no_data" if verdict == "missed" else "data"), at
        )
        self.missed_rounds, self.missed_since = run.rounds, run.since
        if verdict == "missed":
            if self.open_incident_id is None:
                self.state = "missed"
            elif no_data.closes(run, at, no_data_after):
                self.state = "missed"
                self.consecutive_down_rounds, self.down_since = 0, None
                self.consecutive_up_rounds, self.up_since = 0, None
                return "no_data"
            return None
        if verdict == "failing":
            if self.consecutive_down_rounds == 0:
                self.down_since = at
            self.consecutive_down_rounds += 1
            self.consecutive_up_rounds, self.up_since = 0, None
            if self.open_incident_id is not None:
                return None
            if self.consecutive_down_rounds >= t.down_after_rounds:
                self.state = "down"
                return "open"
            self.state = "degraded"
            return None
        if self.consecutive_up_rounds == 0:
            self.up_since = at
        self.consecutive_up_rounds += 1
        self.consecutive_down_rounds, self.down_since = 0, None
        if self.open_incident_id is not None:
            if self.consecutive_up_rounds < t.recover_after_rounds:
                return None
            self.state = verdict
            return "close"
        self.state = verdict
        return None


_STATE_FIELDS = tuple(AlertState.__dataclass_fields__)


class Alerter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        job_ids: JobIds,
        *,
        default_countries: int = 2,
        reminder_minutes: int = 60,
        confirm_per_minute: int = 600,
        checks_per_minute: int = 2000,
        login_backoff_max_minutes: int = 360,
        no_data_close_minutes: int = 60,
        interval_s: float = 1.0,
        batch: int = BATCH,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`job_ids`: the scheduler's, for the `expired` results of rounds nobody ran."""
        self._pool = pool
        self._js = js
        self._job_ids = job_ids
        self._default_countries = default_countries
        self._reminder = timedelta(minutes=reminder_minutes) if reminder_minutes else None
        self._confirm_per_minute = confirm_per_minute
        self._checks_per_minute = checks_per_minute  # ORG_MAX_CHECKS_PER_MINUTE
        self._login_cap = timedelta(minutes=login_backoff_max_minutes)
        self._no_data_after = (
            timedelta(minutes=no_data_close_minutes) if no_data_close_minutes else None
        )
        self._interval_s = interval_s
        self._batch = batch
        self._clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate and publish until `stop` is set; errors are logged and retried."""
        log.info("alerter started")
        while not stop.is_set():
            busy = False
            try:
                busy = await self.evaluate_due() == self._batch
                await self.publish_events()
            except Exception:
                log.exception("alerter pass failed; retrying")
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._interval_s)

    async def burst(self) -> int:
        """Evaluate everything due and publish the events; return monitors evaluated (tests)."""
        total = 0
        while count := await self.evaluate_due():
            total += count
        await self.publish_events()
        return total

    async def evaluate_due(self) -> int:
        """Lease one batch of queued monitors and evaluate each in its own transaction; return
        how many. A failed evaluation is logged and retried when its lease ends; it never stops
        the others."""
        now = self._clock()
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                leased = await alerts.claim(conn, now, self._batch, LEASE_S)
            for monitor_id, lease, revised_from in leased:
                try:
                    async with conn.transaction():
                        due = await self.evaluate(conn, monitor_id, now, revised_from)
                        await alerts.release(conn, monitor_id, lease, due)
                except Exception:
                    log.error(
                        "evaluation failed; retried when its lease ends",
                        monitor=monitor_id,
                        retry_in_s=LEASE_S,
                        exc_info=True,
                    )
        return len(leased)

    async def evaluate(
        self, conn: Conn, monitor_id: int, now: datetime, revised_from: datetime | None = None
    ) -> datetime | None:
        """Move one monitor over its complete and closed rounds; return when to come back (its
        next round closes), or None (gone or disabled). `revised_from`: the earliest round
        whose result a late real one replaced (`_revise`)."""
        monitor = await alerts.monitor(conn, monitor_id)
        if monitor is None:
            return None
        row = await alerts.state(conn, monitor_id)
        s = AlertState(**{name: row[name] for name in _STATE_FIELDS})
        before = s.state
        quiet = await self._quiet(conn, monitor, now)
        if not quiet:
            for incident in await alerts.held_recoveries(conn, monitor_id):
                closed = no_data.closed_for_lack_of_data(incident["end_reason"])
                kind: Kind = "no_data" if closed else "recovered"
                await self._notify(conn, monitor, incident, kind, now, s)
        due: datetime | None = None
        if monitor["status"] == "disabled":
            await self._disable(conn, monitor, s, now)
        else:
            if revised_from is not None:
                await self._revise(conn, monitor, s, revised_from, now, quiet)
            due = await self._judge(conn, monitor, s, now, quiet)
            if s.open_incident_id is not None and not quiet:
                await self._remind(conn, monitor, s, now)
            await self._posture(conn, monitor, s, quiet)
        await alerts.save_state(
            conn,
            monitor_id,
            {name: getattr(s, name) for name in _STATE_FIELDS}
            | ({"changed_at": now} if s.state != before else {}),
        )
        return due

    @staticmethod
    async def _posture(conn: Conn, monitor: Any, s: AlertState, quiet: bool) -> None:
        """Feed the rounds just judged (complete or closed: their results are final) to the
        monitor's posture, in a savepoint: a posture failure is logged and retried at the next
        evaluation, and never holds back the monitor's alerting."""
        try:
            async with conn.transaction():
                await posture.observe(conn, monitor, s.last_round_at, s.state, quiet)
        except Exception:
            log.exception("posture evaluation failed", monitor_id=str(monitor["public_id"]))

    def _expected(self, monitor: Any) -> tuple[list[str] | None, int]:
        """The countries a round goes to (None when unknown) and how many."""
        countries: list[str] | None = monitor["allowed_country_codes"] or monitor["round_countries"]
        return countries, len(countries) if countries else self._default_countries

    @staticmethod
    def _closes(monitor: Any, at: datetime) -> datetime:
        """When the round scheduled at `at` closes: nothing it has not got by then will come."""
        timeout = timedelta(seconds=monitor["timeout_seconds"])
        return schedule.expires_at(at, monitor["check_interval"]) + timeout + CLOSE_GRACE

    async def _judge(
        self, conn: Conn, monitor: Any, s: AlertState, now: datetime, quiet: bool
    ) -> datetime:
        """Judge the rounds after the cursor in order, up to the first still open one; return
        when to come back."""
        interval = timedelta(seconds=monitor["check_interval"])
        horizon = now - max(LOOKBACK, 3 * interval)
        after = s.last_round_at or horizon
        rows = await alerts.results_after(conn, monitor["id"], after, ROWS_PER_EVALUATION)
        found = rounds(rows)
        due: datetime | None = None
        until = now
        if len(rows) == ROWS_PER_EVALUATION and len(found) > 1:
            found.pop()  # may be cut short; read again at once
            until, due = found[-1].at, now
        expected, count = self._expected(monitor)
        if expected is not None:
            known = {r.at for r in found}
            found += [
                Round(at)
                for at in grid_rounds(monitor, max(after, horizon), until)
                if at not in known
            ]
            found.sort(key=lambda r: r.at)
        t = await alerts.thresholds(conn, monitor["id"], monitor["organization_id"])
        judged: list[Round] = []
        fills: list[ResultRow] = []
        for r in found:
            if r.countries < count:
                closes = self._closes(monitor, r.at)
                if now < closes:
                    due = closes
                    break
                fills += self._expire(monitor, r, expected, closes)
            judged.append(r)
        await results.store(conn, fills)
        verdict = ""
        backoff = before = await backoff_db.get(conn, monitor["id"])
        for r in judged:
            previous = s.state
            verdict = r.verdict(t.failure_threshold, count)
            backoff = login_backoff.after_round(
                backoff, [k for _, k, _ in r.failures], bool(r.up), r.at, interval, self._login_cap
            )
            data = no_data.kind(verdict, [k for _, k, _ in r.missed], r.held_kinds)
            action = s.step(verdict, r.at, t, data, self._no_data_after)
            ended = await self._act(conn, monitor, s, r, action, now, quiet)
            if s.state != previous:
                seen = r.missed if s.state == "missed" else r.failures
                cause = causes.describe(seen)[1] if s.state != "up" and seen else ""
                cause = ended or cause
                countries = [c for c, _, _ in seen]
                await self._event(conn, monitor, previous, s.state, r.at, countries, cause)
        if monitor["type"] == "roundtrip" and judged:
            delivered = [(r.at, bool(r.up), [k for _, k, _ in r.failures]) for r in judged]
            await roundtrip_delivery.observe(conn, monitor, delivered, quiet)
        if backoff != before:
            await self._back_off(conn, monitor, backoff, judged[-1], now, quiet)
        # No confirmation while logins are held: it would only be another round of wrong logins.
        if (
            backoff is None
            and judged
            and self._confirm_per_minute > 0
            and confirm.wanted(
                verdict,
                s.consecutive_down_rounds,
                s.open_incident_id is not None,
                t,
                judged[-1].at,
                now,
                interval,
            )
        ):
            await self._confirm(conn, monitor, judged[-1], now)
        return due or self._come_back(monitor, s, now)

    async def _back_off(
        self,
        conn: Conn,
        monitor: Any,
        b: login_backoff.Backoff | None,
        r: Round,
        now: datetime,
        quiet: bool,
    ) -> None:
        """Store the back-off of logins; tell the owner once per back-off (unless notifications
        are held: then when the next rejected round is judged outside the quiet)."""
        public_id = str(monitor["public_id"])
        if b is None:
            log.info("logins resumed", monitor_id=public_id)
        else:
            log.warning(
                "credentials rejected: logins backed off",
                monitor_id=public_id,
                failures=b.failures,
                retry_at=iso_ms(b.retry_at),
            )
            if not b.notified and not quiet:
                await self._notify_backoff(conn, monitor, b, r, now)
                b = dataclasses.replace(b, notified=True)
        metrics.login_backoff("resumed" if b is None else "backed_off")
        await backoff_db.put(conn, monitor["id"], b)

    async def _notify_backoff(
        self, conn: Conn, monitor: Any, b: login_backoff.Backoff, r: Round, now: datetime
    ) -> None:
        texts = render_backoff(
            monitor, [c for c, k, _ in r.failures if k == login_backoff.AUTH], b, self._login_cap
        )
        key = f"login-backoff:{monitor['id']}:{iso_ms(b.since)}"
        notes = recipients.to_recipients("credentials", monitor, texts, key)
        await alerts.enqueue(conn, monitor["id"], None, notes)
        log.info(
            "notification queued",
            monitor_id=str(monitor["public_id"]),
            kind="credentials",
            channels=[n.channel for n in notes],
        )

    async def _confirm(self, conn: Conn, monitor: Any, r: Round, now: datetime) -> None:
        """Ask the scheduler for a confirmation round of failing round `r`, within the
        organization's allowance for triggered checks (as a trigger-check draws on it); the
        scheduler sends it when the global budget has a slot for its organization."""
        public_id = str(monitor["public_id"])
        countries = monitor["allowed_country_codes"]
        cost_s = (
            (len(countries) if countries else self._default_countries)
            * 60.0
            / self._checks_per_minute
        )
        outcome = await confirmations.request(
            conn,
            monitor["id"],
            r.at,
            now,
            monitor["organization_id"],
            cost_s,
        )
        if outcome == "asked":
            return
        metrics.confirmation(outcome)
        if outcome == "requested":
            log.info(
                "confirmation round requested",
                monitor_id=public_id,
                failing_round=iso_ms(r.at),
                countries=[c for c, _, _ in r.failures],
            )
        else:
            log.warning(
                "confirmation round not sent: the organization's triggered checks"
                " (ORG_MAX_CHECKS_PER_MINUTE) are used up",
                monitor_id=public_id,
                failing_round=iso_ms(r.at),
                per_minute=self._checks_per_minute,
            )

    async def _revise(
        self,
        conn: Conn,
        monitor: Any,
        s: AlertState,
        revised_from: datetime,
        now: datetime,
        quiet: bool,
    ) -> None:
        """A real result replaced the `expired` row of a round judged already (it came after the
        round closed): recount the runs of failing and passing rounds up to the cursor with it,
        and act on the corrected state as of now. Incidents are opened or closed only as the
        corrected latest run says now; what was notified for earlier rounds stays as it was."""
        if s.last_round_at is None or revised_from > s.last_round_at:
            return  # not judged yet: `_judge` sees the real result anyway
        window = max(LOOKBACK, 3 * timedelta(seconds=monitor["check_interval"]))
        rows = await alerts.results_before(
            conn, monitor["id"], revised_from - window, s.last_round_at, ROWS_PER_EVALUATION
        )
        t = await alerts.thresholds(conn, monitor["id"], monitor["organization_id"])
        count = self._expected(monitor)[1]
        judged = [(r, r.verdict(t.failure_threshold, count)) for r in rounds(rows)]
        run = _latest_run(judged)
        if not run:
            return
        failing = run[-1][1] == "failing"
        if len(run) < len([v for _, v in judged if v != "missed"]) or failing != (
            s.consecutive_down_rounds > 0
        ):
            # The run starts inside the window (or changed kind): its length is known.
            n = len(run)
        else:  # the whole window is one run, as before: it may be longer than the window
            n = max(len(run), s.consecutive_down_rounds or s.consecutive_up_rounds)
        previous = s.state
        last, verdict = run[-1]
        action = None
        if failing:
            s.consecutive_down_rounds, s.consecutive_up_rounds = n, 0
            s.down_since, s.up_since = run[0][0].at, None
            if s.open_incident_id is None:
                action = "open" if n >= t.down_after_rounds else None
                s.state = "down" if action else "degraded"
        else:
            s.consecutive_up_rounds, s.consecutive_down_rounds = n, 0
            s.up_since, s.down_since = run[0][0].at, None
            if s.open_incident_id is not None and n >= t.recover_after_rounds:
                action, s.state = "close", verdict
            elif s.open_incident_id is None:
                s.state = verdict
        if s.open_incident_id is None and judged[-1][1] == "missed" and action is None:
            s.state = "missed"  # the latest round still ran nowhere
        missed = no_data.Run()
        for r, v in judged:
            missed = missed.after(no_data.kind(v, [k for _, k, _ in r.missed], r.held_kinds), r.at)
        s.missed_rounds, s.missed_since = missed.rounds, missed.since
        await self._act(conn, monitor, s, last, action, now, quiet)
        log.info(
            "rounds judged again with a late result",
            monitor_id=str(monitor["public_id"]),
            revised_from=iso_ms(revised_from),
            state=s.state,
            previous=previous,
        )
        if s.state != previous:
            seen = last.failures if failing else []
            cause = causes.describe(seen)[1] if seen else ""
            await self._event(
                conn, monitor, previous, s.state, last.at, [c for c, _, _ in seen], cause
            )

    def _come_back(self, monitor: Any, s: AlertState, now: datetime) -> datetime:
        """When the round after the last judged one closes (at least an interval from now), so
        a round nobody reports on is judged all the same."""
        interval: int = monitor["check_interval"]
        phase = schedule.phase_ms(str(monitor["public_id"]), interval)
        start = max(s.last_round_at or now, monitor["rounds_since"])
        closes = self._closes(monitor, schedule.next_due(phase, interval, start))
        return max(closes, now + timedelta(seconds=interval))

    def _expire(
        self, monitor: Any, r: Round, expected: Sequence[str] | None, closes: datetime
    ) -> list[ResultRow]:
        """`expired` results for the expected countries missing from closed round `r` (added to
        it); none when the round went elsewhere (its countries are not the expected ones)."""
        if expected is None or not set(r.jobs) <= set(expected):
            return []
        public_id = str(monitor["public_id"])
        triggered = any(
            self._job_ids.make(public_id, cc, r.at, trigger=True) == job
            for cc, job in r.jobs.items()
        )
        message = f"no result by {iso_ms(closes)}: the check did not run in time"
        fills = []
        for cc in sorted(set(expected) - set(r.jobs)):
            job_id = self._job_ids.make(public_id, cc, r.at, trigger=triggered)
            fills.append(ResultRow.missed(monitor, cc, job_id, r.at, "expired", message))
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

    async def _act(
        self,
        conn: Conn,
        monitor: Any,
        s: AlertState,
        r: Round,
        action: str | None,
        now: datetime,
        quiet: bool,
    ) -> str:
        """Open or close the incident as the round's step said, and queue who hears of it;
        return the end reason of an incident closed for lack of data (else "")."""
        if action == "open":
            kind, text = causes.describe(r.failures)
            incident = await alerts.open_incident(
                conn,
                monitor["id"],
                s.down_since or r.at,
                kind,
                text,
                [c for c, _, _ in r.failures],
            )
            s.open_incident_id = incident["id"]
            if not quiet:
                await self._notify(conn, monitor, incident, "down", now, s)
        elif action == "close" and s.open_incident_id is not None:
            incident = await alerts.close_incident(
                conn, s.open_incident_id, s.up_since or r.at, hold_recovery=quiet
            )
            s.open_incident_id = None
            if incident["notified"] and not quiet:
                await self._notify(conn, monitor, incident, "recovered", now, s)
        elif action == "no_data" and s.open_incident_id is not None:
            since = s.missed_since or r.at
            unheld: list[Row] = [
                (c, k, "") for c, k in zip(r.held, r.held_kinds, strict=True) if k != HELD
            ]
            why = causes.describe(r.missed + unheld)[1] if r.missed or unheld else ""
            reason = no_data.reason(since, s.missed_rounds, why)
            incident = await alerts.close_incident(
                conn, s.open_incident_id, since, reason=reason, hold_recovery=quiet
            )
            s.open_incident_id = None
            log.warning(
                "incident closed for lack of data",
                monitor_id=str(monitor["public_id"]),
                incident_id=incident["id"],
                missed_rounds=s.missed_rounds,
                no_data_since=iso_ms(since),
            )
            if incident["notified"] and not quiet:
                await self._notify(conn, monitor, incident, "no_data", now, s)
            return reason
        return ""

    async def _disable(self, conn: Conn, monitor: Any, s: AlertState, now: datetime) -> None:
        """A disabled monitor: its open incident closes now, silently; the state is `unknown`;
        rounds before now are over (the cursor moves to now)."""
        if s.open_incident_id is not None:
            await alerts.close_incident(conn, s.open_incident_id, now, reason=DISABLED)
            log.info("incident closed", monitor_id=str(monitor["public_id"]), reason=DISABLED)
        previous = s.state
        fresh = AlertState(last_round_at=now, last_notified_at=s.last_notified_at)
        for name in _STATE_FIELDS:
            setattr(s, name, getattr(fresh, name))
        if previous != s.state:
            await self._event(conn, monitor, previous, s.state, now, [], DISABLED)

    async def _quiet(self, conn: Conn, monitor: Any, now: datetime) -> bool:
        """No notifications: status `maintenance`, or a maintenance window is open."""
        if monitor["status"] == "maintenance":
            return True
        windows = await windows_db.for_monitor(conn, monitor["id"], monitor["customer_id"])
        return maintenance.any_open(windows, now)

    async def _remind(self, conn: Conn, monitor: Any, s: AlertState, now: datetime) -> None:
        """A down notice not sent yet (opened in maintenance), or a reminder when it is due."""
        assert s.open_incident_id is not None
        incident = await alerts.incident(conn, s.open_incident_id)
        assert incident is not None
        if not incident["notified"]:
            await self._notify(conn, monitor, incident, "down", now, s)
        elif (
            self._reminder is not None
            and s.last_notified_at is not None
            and now - s.last_notified_at >= self._reminder
        ):
            await self._notify(conn, monitor, incident, "reminder", now, s)

    async def _notify(
        self, conn: Conn, monitor: Any, incident: Any, kind: Kind, now: datetime, s: AlertState
    ) -> None:
        """Queue one notification per recipient the monitor has, whatever channels this
        process can send: a replica that has the channel sends it."""
        texts = render(kind, monitor, incident, now)
        reminders = incident["reminders"] + (kind == "reminder")
        tag = f"{kind}-{reminders}" if kind == "reminder" else kind
        key = f"incident:{incident['id']}:{tag}"
        notes = recipients.to_recipients(kind, monitor, texts, key)
        await alerts.enqueue(conn, monitor["id"], incident["id"], notes)
        if kind not in ("recovered", "no_data"):
            await alerts.set_incident_notified(conn, incident["id"], reminders)
            s.last_notified_at = now
        log.info(
            "notification queued",
            monitor_id=str(monitor["public_id"]),
            kind=kind,
            channels=[n.channel for n in notes],
        )

    async def _event(
        self,
        conn: Conn,
        monitor: Any,
        previous: str,
        state: str,
        at: datetime,
        countries: list[str],
        cause: str,
    ) -> None:
        public_id = str(monitor["public_id"])
        stamp = iso_ms(at)
        event = MonitorEvent(
            monitor_id=public_id,
            state=state,
            previous_state=None if previous == "unknown" else previous,
            at=stamp,
            countries=sorted(countries),
            cause=cause,
        )
        await alerts.add_event(
            conn, events_subject(public_id), f"{public_id}:{stamp}:{state}", encode(event)
        )
        log.info("monitor state changed", monitor_id=public_id, state=state, previous=previous)

    async def publish_events(self) -> int:
        """Publish the state changes written so far, oldest first, one replica at a time
        (Nats-Msg-Id makes a retry harmless); return how many."""
        published = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await alerts.claim_events(conn, self._batch)
                if not rows:
                    return published
                for row in rows:
                    await self._js.publish(
                        row["subject"],
                        bytes(row["payload"]),
                        headers={"Nats-Msg-Id": row["msg_id"]},
                    )
                await alerts.delete_events(conn, [r["id"] for r in rows])
            published += len(rows)
