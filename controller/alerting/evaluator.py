"""The alerter (the evaluator): queued monitors → rounds → `judge` → state, incidents,
notifications and events written in one transaction. What the rounds mean is decided by the
pure core, controller.alerting.rules (verdicts, streaks, incidents, notices, maintenance,
back-off, confirmation); this module reads what it needs, calls `judge` and applies its effects.

A **round** is one scheduled time across a monitor's countries. It is judged once complete
(every expected country has a result) or **closed** (its job's expiry plus the timeout and a
grace have passed: what has not come by then never will). The expected countries are the
listed ones, or those the scheduler sent its latest round to (`round_countries`), or, when
neither is known, `DEFAULT_CHECK_COUNTRIES` of them. A round that closes with countries missing
gets a `missed` result (`expired`) stored for each, under the round's real job id (so a result
arriving even later is a duplicate); a round of the monitor's grid that the scheduler sent and
nobody reported on at all is found from the grid and gets them too. The evaluation cursor
(`last_round_at`) only moves past a round once it is judged, and rounds are judged in order, so
a later round finishing first never hides an earlier one's late results; a late real result
replacing an `expired` row of a round judged already is replayed (`judge`'s `revised`).

Queued monitors are leased (FOR UPDATE SKIP LOCKED on `alert_queue`, so replicas share the
work) and judged a batch at a time (`evaluate_batch`): the batch's reads are a few statements
for all of them, the routine monitors (controller.alerting.batch) are written together, and
every other one is evaluated (`evaluate`) in a savepoint, writing the new state, the incident,
the notification outbox rows and the events together; one that stores `expired` results is
evaluated alone after the batch commits. `monitor_alert_state` is locked FOR UPDATE (a batch's
rows in monitor_id order: docs/architecture.md has the lock order), so even an evaluation
repeated after an expired lease runs one at a time. A monitor comes back
when its next round closes, so a round nobody ran is noticed without any result arriving.
Events are published after the commit (`publish_events`), by one replica at a time, in order.

The rounds judged feed the monitor's security posture (controller.posture.observe) in the same
transaction: findings, baseline changes, their events and notifications.
"""

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg
import msgspec
import structlog
from nats.js import JetStreamContext

from controller.alerting import batch, flows, no_data
from controller.alerting import flow_store as flow_db
from controller.alerting import incident_store as incident_db
from controller.alerting import state_store as alert_state
from controller.alerting.rules import (
    NEW_INCIDENT,
    AlertState,
    BackoffChanged,
    ConfirmationWanted,
    DeliveryObserved,
    Effect,
    Held,
    IncidentClosed,
    IncidentOpened,
    JudgedMonitor,
    JudgedRound,
    Known,
    Notice,
    Policy,
    Replayed,
    StateChanged,
    closes_at,
    expected_countries,
    judge,
    rounds,
)
from controller.db.pool import Conn, plan_generically
from controller.ingest import alert_queue_store as alert_queue
from controller.ingest import record
from controller.jobs.result_kinds import ResultRow
from controller.jobs.rules import JobIds
from controller.logins import backoff as login_backoff
from controller.logins import backoff_store as backoff_db
from controller.monitors.store import Monitor, MonitorConfigError, WatchedMonitor
from controller.monitors.thresholds import Thresholds
from controller.notify import entry as notify_entry
from controller.notify import events_store as events_db
from controller.notify import evidence_store as evidence_db
from controller.notify import maintenance, recipients
from controller.notify.entry import Source, notify
from controller.notify.flow_texts import Part, evidence_facts, flow_facts, render_flow
from controller.notify.incident import Incident
from controller.notify.links import NO_LINKS, Links
from controller.notify.texts import Kind, render, render_backoff
from controller.observability import metrics
from controller.posture import observe as posture
from controller.posture import rules as posture_rules
from controller.posture import store as posture_db
from controller.roundtrips import delivery as roundtrip_delivery
from controller.scheduling import confirm_store as confirmations
from controller.scheduling import rules as schedule
from controller.scheduling.rules import LOOKBACK
from shared.loop import run_every
from shared.messages import MonitorEvent, encode
from shared.subjects import events_subject
from shared.timefmt import iso_ms, utcnow

log = structlog.get_logger(__name__)

BATCH = 400
# Connections one pass evaluates its leased monitors on at once, each lane a batch of its own
# (one transaction): the monitors that are not routine cost a dozen round trips each, which
# one connection would wait out one after the other. A routine batch costs the same eight
# statements whatever its size, so a lane takes at least LANE_MIN monitors.
LANES = 4
LANE_MIN = 50
ROWS_PER_EVALUATION = 5000
LEASE_S = 30.0  # an evaluation takes milliseconds; a crashed one is retried after this
MS = timedelta(milliseconds=1)
# Replicas' passes drift apart (shared.loop.run_every), so each leases about half the queue.
JITTER = 0.5


class FillsWanted(Exception):
    """An evaluation not allowed to store `expired` results (`Alerter.evaluate`'s `fills`)
    found closed rounds that want them."""


class Plan(NamedTuple):
    """`Alerter._plan`: the rounds ready to judge and what goes with them."""

    ready: list[JudgedRound]
    due: datetime | None  # when to come back (None: when the next round closes)
    watch: datetime | None  # the open round whose close `due` is, when `due` is one
    fills: list[ResultRow]  # `expired` results to store
    cut_short: bool  # the results read reached the limit
    read: posture.Read | None  # the results read, for posture (when they are all there were)


class _Missing:
    """A leased monitor the batch did not find (gone)."""


MISSING = _Missing()
# A routine monitor's state, when to come back, its posture's move, whether its next routine
# rounds may wait for that (`batch.settled`), and the round whose close that is (`Plan.watch`).
Routine = tuple[AlertState, datetime, posture.CursorMove, bool, datetime | None]


def _failed(monitor_id: int) -> None:
    log.error(
        "evaluation failed; retried when its lease ends",
        monitor=monitor_id,
        retry_in_s=LEASE_S,
        exc_info=True,
    )


async def _evidence(conn: Conn, flow_id: int) -> list[str]:
    """The findings attached to the flow incident, as its notices list them."""
    return [f"{e.summary} ({e.source})" for e in await evidence_db.of_flows(conn, [flow_id])]


def _outage(monitor: Monitor, incident: Incident) -> flows.Outage:
    return flows.Outage(
        flows.Dependent.of(monitor),
        incident.started_at,
        incident.cause_kind,
        frozenset(incident.countries),
        tuple(incident.messages),
    )


def grid_rounds(w: WatchedMonitor, after: datetime, until: datetime) -> list[datetime]:
    """The scheduled times in (`after`, `until`] of the rounds the scheduler has sent on the
    monitor's grid (those before its next due time, from its current grid's first)."""
    next_due = w.monitor.next_due_at
    if next_due is None:
        return []
    interval = w.monitor.check_interval
    phase = schedule.phase_ms(str(w.monitor.public_id), interval)
    start = max(after, w.rounds.since - timedelta(milliseconds=1))
    found = []
    at = schedule.next_due(phase, interval, start)
    while at < next_due and at <= until:
        found.append(at)
        at += timedelta(seconds=interval)
    return found


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
        group_wait_s: float = 0,
        group_interval_s: float = 0,
        interval_s: float = 1.0,
        batch: int = BATCH,
        links: Links = NO_LINKS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`job_ids`: the scheduler's, for the `expired` results of rounds nobody ran;
        `links`: where notices point (PUBLIC_URL)."""
        self._pool = pool
        self._links = links
        self._js = js
        self._job_ids = job_ids
        self._default_countries = default_countries
        self._policy = Policy(
            reminder=timedelta(minutes=reminder_minutes) if reminder_minutes else None,
            no_data_after=(
                timedelta(minutes=no_data_close_minutes) if no_data_close_minutes else None
            ),
            login_backoff_max=timedelta(minutes=login_backoff_max_minutes),
            confirm=confirm_per_minute > 0,
        )
        self._timing = flows.Timing(
            timedelta(seconds=group_wait_s), timedelta(seconds=group_interval_s)
        )
        self._checks_per_minute = checks_per_minute  # ORG_MAX_CHECKS_PER_MINUTE
        self._interval_s = interval_s
        self._batch = batch
        self._clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate and publish until `stop` is set; errors are logged and retried."""
        log.info("alerter started")

        async def one_pass() -> float | None:
            busy = await self.evaluate_due() == self._batch
            await self.send_due_flows()
            await self.publish_events()
            return 0 if busy else None

        await run_every(self._interval_s, one_pass, name="alerter", stop=stop, jitter=JITTER)

    async def burst(self) -> int:
        """Evaluate everything due and publish the events; return monitors evaluated (tests)."""
        total = 0
        while count := await self.evaluate_due():
            total += count
        await self.send_due_flows()
        await self.publish_events()
        return total

    async def evaluate_due(self) -> int:
        """Lease one batch of queued monitors and evaluate each in its own transaction; return
        how many. A failed evaluation is logged and retried when its lease ends; it never stops
        the others."""
        now = self._clock()
        async with self._pool.acquire() as conn:  # one statement: its own transaction
            leased = await alert_queue.claim(conn, now, self._batch, LEASE_S)
        count = min(LANES, -(-len(leased) // LANE_MIN))
        lanes = [leased[n::count] for n in range(count)]
        await asyncio.gather(*(self._evaluate_lane(lane, now) for lane in lanes))
        return len(leased)

    async def _evaluate_lane(self, leased: Sequence[alert_queue.Lease], now: datetime) -> None:
        """Evaluate `leased` on one connection: a batch pass in one transaction, then, each in
        its own transaction, those the batch left alone (they store `expired` results or
        create their state row). When the batch's transaction fails as a whole, every monitor
        of it is evaluated alone. Every transaction runs on generic plans (`plan_generically`):
        each evaluation reads its monitor's recent results at least once."""
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await plan_generically(conn)
                    alone = await self.evaluate_batch(conn, leased, now)
            except Exception:
                log.error("batch evaluation failed; evaluated one by one", exc_info=True)
                alone = list(leased)
            for lease in alone:
                try:
                    async with conn.transaction():
                        await plan_generically(conn)
                        await self.evaluate(
                            conn, lease.monitor_id, now, lease.revised_from, lease=lease.lease
                        )
                    metrics.alert_evaluated()
                except Exception:
                    _failed(lease.monitor_id)

    async def evaluate_batch(
        self, conn: Conn, leased: Sequence[alert_queue.Lease], now: datetime
    ) -> list[alert_queue.Lease]:
        """Evaluate `leased` in the caller's transaction: read every monitor's inputs, results
        and posture in three statements (the state rows locked in monitor_id order), judge
        each with the pure rules, write the routine ones' states, releases and posture cursors
        in two statements (`batch.path`), and evaluate the others fully, each in a savepoint
        (a failure is logged and retried when its lease ends). Return those left to evaluate
        alone after the commit."""
        by_id = {lease.monitor_id: lease for lease in leased}
        got = await alert_state.batch_inputs(conn, list(by_id))
        judged = {
            i: g
            for i, g in got.items()
            if isinstance(g, alert_state.Inputs)
            and batch.judged_in_batch(g, by_id[i].revised_from is not None)
        }
        reads = {}
        if judged:
            reads = await alert_state.batch_results_after(
                conn,
                {i: self._after(g.watched, g.state, now) for i, g in judged.items()},
                ROWS_PER_EVALUATION,
            )
        known = await posture_db.known_batch(conn, list(judged)) if judged else {}
        states: dict[int, AlertState] = {}
        releases: list[alert_state.Release] = []
        moves: list[tuple[int, datetime, dict[posture_rules.Key, int]]] = []
        full: list[alert_queue.Lease] = []
        alone: list[alert_queue.Lease] = []
        for monitor_id, lease in sorted(by_id.items()):
            g = got.get(monitor_id, MISSING)
            if g is MISSING:  # gone: the full path forgets its queue row
                full.append(lease)
                continue
            assert not isinstance(g, _Missing)
            inputs = judged.get(monitor_id)
            if inputs is None:
                way = batch.path(g, lease.revised_from is not None)
            else:
                way, routine = self._judge_routine(
                    inputs, reads[monitor_id], known[monitor_id], now
                )
                if routine is not None:
                    state, back, move, settled, watch = routine
                    states[monitor_id] = state
                    step = inputs.watched.monitor.check_interval
                    releases.append(
                        alert_state.Release(monitor_id, lease.lease, back, settled, watch, step)
                    )
                    if move.last_round_at is not None:
                        moves.append((monitor_id, move.last_round_at, move.streaks))
                    continue
            (alone if way == "alone" else full).append(lease)
        # Every queue row of the batch locked at once, in order: the releases below then wait
        # on no ingester (`alert_queue.lock_queued`).
        await alert_queue.lock_queued(conn, [lease.monitor_id for lease in leased])
        for lease in full:
            try:
                async with conn.transaction():
                    due = await self.evaluate(
                        conn, lease.monitor_id, now, lease.revised_from, fills=False
                    )
                releases.append(alert_state.Release(lease.monitor_id, lease.lease, due))
            except FillsWanted:
                alone.append(lease)
            except Exception:
                _failed(lease.monitor_id)
        await alert_state.save_batch(conn, states, releases)
        await posture_db.save_cursors(conn, moves)
        for _ in releases:
            metrics.alert_evaluated()
        return alone

    def _judge_routine(
        self,
        got: alert_state.Inputs,
        read: alert_state.ResultsAfter,
        known: posture_db.KnownBatch,
        now: datetime,
    ) -> tuple[batch.Path, Routine | None]:
        """Judge one monitor of a batch with what the batch read: its way (`batch.path`), and
        for a routine one what to write: its state, when to come back, its posture's move."""
        w, s = got.watched, got.state
        monitor = w.monitor
        quiet = maintenance.quiet(monitor.status, (), now)  # a routine monitor has no windows
        after = self._after(w, s, now)
        plan = self._plan(w, s, now, after, read)
        if plan.fills or plan.cut_short:
            way = batch.path(got, False, fills=bool(plan.fills), cut_short=plan.cut_short)
            return way, None
        facts = JudgedMonitor.of(monitor, w.rounds, self._default_countries)
        known_ = Known(quiet, False, got.backoff, ())
        judgement = judge(facts, s, plan.ready, got.thresholds, now, known_, self._policy)
        if judgement.effects:
            return batch.path(got, False, effects=judgement.effects), None
        new = judgement.state
        move = None
        if plan.read is not None:
            move = posture.cursor_move(
                monitor,
                known.known,
                known.expiry_sent,
                new.last_round_at,
                quiet,
                got.thresholds,
                plan.read,
            )
        way = batch.path(got, False, posture=move)
        if way != "batch" or move is None:
            return way, None
        settled = batch.settled(new, got.backoff, move.streaks)
        due, watch = (plan.due, plan.watch) if plan.due else self._come_back(w, new, now)
        return way, (new, due, move, settled, watch)

    async def evaluate(
        self,
        conn: Conn,
        monitor_id: int,
        now: datetime,
        revised_from: datetime | None = None,
        *,
        lease: datetime | None = None,
        fills: bool = True,
    ) -> datetime | None:
        """Move one monitor over its complete and closed rounds; return when to come back (its
        next round closes), or None (gone or disabled). `revised_from`: the earliest round
        whose result a late real one replaced (a revision, replayed by `judge`); `lease`: its
        queue row's, released here for when to come back (`alert_queue.release`); `fills`: False
        raises FillsWanted, before storing them, when closed rounds want `expired` results."""
        due, saved = await self._evaluate(conn, monitor_id, now, revised_from, lease, fills)
        if not saved and lease is not None:
            await alert_queue.release(conn, monitor_id, lease, None)
        return due

    async def _evaluate(
        self,
        conn: Conn,
        monitor_id: int,
        now: datetime,
        revised_from: datetime | None,
        lease: datetime | None,
        fills: bool = True,
    ) -> tuple[datetime | None, bool]:
        """`evaluate`'s due time, and whether the state was saved (and the lease released
        with it)."""
        try:
            got = await alert_state.inputs(conn, monitor_id)
        except MonitorConfigError as exc:
            # Its rounds are not scheduled either (controller.scheduling skips it): nothing to
            # judge until the config is written again, which queues it afresh.
            log.error(
                "monitor config unreadable: not evaluated", monitor=monitor_id, error=str(exc)
            )
            return None, False
        if got is None:
            return None, False
        w = got.watched
        monitor = w.monitor
        s = got.state
        before = s.state
        quiet = await self._quiet(conn, monitor, now, got.windows)
        incidents: dict[int, Incident] = {}
        held: list[Held] = []
        if not quiet and got.held:
            for incident in await incident_db.held_recoveries(conn, monitor_id):
                incidents[incident.id] = incident
                held.append(Held(incident.id, no_data.closed_for_lack_of_data(incident.end_reason)))
        notified = False
        if s.open_incident_id is not None:
            current = await incident_db.incident(conn, s.open_incident_id)
            assert current is not None
            incidents[current.id] = current
            notified = current.notified
        disabled = monitor.status == "disabled"
        t, backoff = Thresholds(), None
        ready: list[JudgedRound] = []
        window: list[JudgedRound] = []
        due: datetime | None = None
        read: posture.Read | None = None
        if not disabled:
            t = got.thresholds
            if revised_from is not None:
                window = await self._window(conn, monitor, s, revised_from)
            ready, due, read = await self._ready(conn, w, s, now, fills)
            backoff = got.backoff
        known = Known(quiet, notified, backoff, tuple(held))
        facts = JudgedMonitor.of(monitor, w.rounds, self._default_countries)
        judged = judge(facts, s, ready, t, now, known, self._policy, window)
        s = judged.state
        opened = await self._apply(conn, monitor, judged.effects, incidents, now, quiet)
        if s.open_incident_id == NEW_INCIDENT:
            s.open_incident_id = opened
        if not disabled:
            await self._posture(conn, monitor, s, quiet, t, read)
            due = due or self._come_back(w, s, now)[0]
        changed_at = now if s.state != before else None
        release = None if lease is None else (lease, due)
        await alert_state.save_state(conn, monitor_id, s, changed_at, release)
        return due, True

    async def _posture(
        self,
        conn: Conn,
        monitor: Monitor,
        s: AlertState,
        quiet: bool,
        t: Thresholds,
        read: posture.Read | None,
    ) -> None:
        """Feed the rounds just judged (complete or closed: their results are final) to the
        monitor's posture, in a savepoint: a posture failure is logged and retried at the next
        evaluation, and never holds back the monitor's alerting."""
        try:
            async with conn.transaction():
                await posture.observe(
                    conn, monitor, s.last_round_at, s.state, quiet, self._links, t, read
                )
        except Exception:
            log.exception("posture evaluation failed", monitor_id=str(monitor.public_id))

    @staticmethod
    def _closes(monitor: Monitor, at: datetime) -> datetime:
        """When the round scheduled at `at` closes: nothing it has not got by then will come."""
        return closes_at(at, monitor.check_interval, monitor.timeout_seconds)

    async def _ready(
        self, conn: Conn, w: WatchedMonitor, s: AlertState, now: datetime, fills: bool = True
    ) -> tuple[list[JudgedRound], datetime | None, posture.Read | None]:
        """The rounds after the cursor ready to judge (`_plan`), the closed ones' missing
        countries stored as `expired` rows (FillsWanted instead when not `fills`); when to
        come back; the results read, for posture."""
        after = self._after(w, s, now)
        read = await alert_state.results_after(conn, w.monitor.id, after, ROWS_PER_EVALUATION)
        plan = self._plan(w, s, now, after, read)
        if plan.fills and not fills:
            raise FillsWanted(w.monitor.id)
        await record.expired(conn, plan.fills, self._default_countries)
        return plan.ready, plan.due, plan.read

    @staticmethod
    def _after(w: WatchedMonitor, s: AlertState, now: datetime) -> datetime:
        """Where the results to judge start: the cursor, or a lookback for a fresh state."""
        interval = timedelta(seconds=w.monitor.check_interval)
        return s.last_round_at or now - max(LOOKBACK, 3 * interval)

    def _plan(
        self,
        w: WatchedMonitor,
        s: AlertState,
        now: datetime,
        after: datetime,
        read: alert_state.ResultsAfter,
    ) -> "Plan":
        """The rounds after the cursor ready to judge, in order, up to the first still open one
        (the closed ones' missing countries filled with `expired` rows, to store); when to come
        back for that one (None: when the next round closes); and the results read, for posture
        (None when they are not all the results after the cursor: none yet, cut short, or
        `expired` rows to store, a late real result may have come meanwhile)."""
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
            monitor.allowed_country_codes, w.rounds.countries, self._default_countries
        )
        if expected is not None:
            known = {r.at for r in found}
            found += [
                JudgedRound(at)
                for at in grid_rounds(w, max(after, horizon), until)
                if at not in known
            ]
            found.sort(key=lambda r: r.at)
        ready: list[JudgedRound] = []
        fills: list[ResultRow] = []
        for r in found:
            if r.countries < count:
                closes = self._closes(monitor, r.at)
                if now < closes:
                    due, watch = closes, self._on_grid(w, r.at)
                    break
                fills += self._expire(monitor, r, expected, closes)
            ready.append(r)
        whole = s.last_round_at is not None and not cut_short and not fills
        return Plan(
            ready,
            due,
            watch,
            fills,
            cut_short,
            posture.Read(after, read.facts) if whole else None,
        )

    @staticmethod
    async def _window(
        conn: Conn, monitor: Monitor, s: AlertState, revised_from: datetime
    ) -> list[JudgedRound]:
        """The rounds a revision replays: a window before `revised_from` up to the cursor; none
        when that round is not judged yet (judging it forward sees the real result anyway)."""
        if s.last_round_at is None or revised_from > s.last_round_at:
            return []
        window = max(LOOKBACK, 3 * timedelta(seconds=monitor.check_interval))
        rows = await alert_state.results_before(
            conn, monitor.id, revised_from - window, s.last_round_at, ROWS_PER_EVALUATION
        )
        return rounds(rows)

    async def _apply(
        self,
        conn: Conn,
        monitor: Monitor,
        effects: Sequence[Effect],
        incidents: dict[int, Incident],
        now: datetime,
        quiet: bool,
    ) -> int | None:
        """Write what `judge` decided, in its order; return the id of the incident it opened
        (`NEW_INCIDENT`) and left open, if any. `incidents`: the rows read, by id."""
        public_id = str(monitor.public_id)
        opened: int | None = None
        if any(isinstance(e, IncidentOpened | IncidentClosed | Notice) for e in effects):
            # Before any incident row: a flow incident's writer may move other monitors' rows.
            await flow_db.lock(conn, monitor.organization_id)
        for e in effects:
            if isinstance(e, IncidentOpened):
                new = await incident_db.open_incident(
                    conn, monitor.id, e.started_at, e.cause_kind, e.cause, e.countries, e.messages
                )
                incidents[NEW_INCIDENT] = await self._join_flow(conn, monitor, new)
                opened = new.id
            elif isinstance(e, IncidentClosed):
                incident_id = opened if e.incident == NEW_INCIDENT else e.incident
                assert incident_id is not None
                closed = await incident_db.close_incident(
                    conn, incident_id, e.ended_at, reason=e.reason, hold_recovery=e.hold_recovery
                )
                incidents[e.incident] = closed
                await self._flow_closed(conn, monitor.organization_id, closed, e, now)
                if e.why == "disabled":
                    log.info("incident closed", monitor_id=public_id, reason=e.reason)
                elif e.why == "no_data":
                    log.warning(
                        "incident closed for lack of data",
                        monitor_id=public_id,
                        incident_id=incident_id,
                        missed_rounds=e.missed_rounds,
                        no_data_since=iso_ms(e.ended_at),
                    )
            elif isinstance(e, Notice):
                await self._notify(conn, monitor, incidents[e.incident], e.kind, now)
            elif isinstance(e, StateChanged):
                await self._event(
                    conn, monitor, e.previous, e.state, e.at, list(e.countries), e.cause
                )
            elif isinstance(e, BackoffChanged):
                await self._back_off(conn, monitor, e, now)
            elif isinstance(e, ConfirmationWanted):
                await self._confirm(conn, monitor, e, now)
            elif isinstance(e, DeliveryObserved):
                await roundtrip_delivery.observe(conn, monitor, e.rounds, quiet, self._links)
            elif isinstance(e, Replayed):
                log.info(
                    "rounds judged again with a late result",
                    monitor_id=public_id,
                    state=e.state,
                    previous=e.previous,
                )
        return opened

    async def _back_off(
        self, conn: Conn, monitor: Monitor, e: BackoffChanged, now: datetime
    ) -> None:
        """Store the back-off of logins; tell the owner when `judge` says so (once per back-off,
        outside maintenance)."""
        public_id = str(monitor.public_id)
        b = e.backoff
        if b is None:
            log.info("logins resumed", monitor_id=public_id)
        else:
            log.warning(
                "credentials rejected: logins backed off",
                monitor_id=public_id,
                failures=b.failures,
                retry_at=iso_ms(b.retry_at),
            )
            if e.notice:
                await self._notify_backoff(conn, monitor, b, list(e.countries))
        metrics.login_backoff("resumed" if b is None else "backed_off")
        await backoff_db.put(conn, monitor.id, b)

    async def _notify_backoff(
        self, conn: Conn, monitor: Monitor, b: login_backoff.Backoff, countries: list[str]
    ) -> None:
        texts = render_backoff(monitor, countries, b, self._policy.login_backoff_max, self._links)
        key = f"login-backoff:{monitor.id}:{iso_ms(b.since)}"
        notes = recipients.to_recipients("credentials", monitor, texts, key)
        await notify(
            conn, notify_entry.Notice(Source.ACCOUNT, monitor.organization_id, monitor, None, notes)
        )
        log.info(
            "notification queued",
            monitor_id=str(monitor.public_id),
            kind="credentials",
            channels=[n.channel for n in notes],
        )

    async def _confirm(
        self, conn: Conn, monitor: Monitor, e: ConfirmationWanted, now: datetime
    ) -> None:
        """Ask the scheduler for a confirmation round of the failing round `e.round_at`, within
        the organization's allowance for triggered checks (as a trigger-check draws on it); the
        scheduler sends it when the global budget has a slot for its organization."""
        public_id = str(monitor.public_id)
        countries = schedule.planned_countries(
            monitor.allowed_country_codes, self._default_countries
        )
        cost_s = countries * 60.0 / self._checks_per_minute
        outcome = await confirmations.request(
            conn, monitor.id, e.round_at, now, monitor.organization_id, cost_s
        )
        if outcome == "asked":
            return
        metrics.confirmation(outcome)
        if outcome == "requested":
            log.info(
                "confirmation round requested",
                monitor_id=public_id,
                failing_round=iso_ms(e.round_at),
                countries=list(e.countries),
            )
        else:
            log.warning(
                "confirmation round not sent: the organization's triggered checks"
                " (ORG_MAX_CHECKS_PER_MINUTE) are used up",
                monitor_id=public_id,
                failing_round=iso_ms(e.round_at),
                per_minute=self._checks_per_minute,
            )

    def _come_back(
        self, w: WatchedMonitor, s: AlertState, now: datetime
    ) -> tuple[datetime, datetime | None]:
        """When the round after the last judged one closes (at least an interval from now), so
        a round nobody reports on is judged all the same; and that round (None when the time
        is an interval from now instead)."""
        interval = w.monitor.check_interval
        phase = schedule.phase_ms(str(w.monitor.public_id), interval)
        start = max(s.last_round_at or now, w.rounds.since)
        at = schedule.next_due(phase, interval, start)
        closes = self._closes(w.monitor, at)
        at_least = now + timedelta(seconds=interval)
        return (closes, at) if closes >= at_least else (at_least, None)

    @staticmethod
    def _on_grid(w: WatchedMonitor, at: datetime) -> datetime | None:
        """`at` when it is a round of the monitor's grid (not a triggered one), else None."""
        interval = w.monitor.check_interval
        phase = schedule.phase_ms(str(w.monitor.public_id), interval)
        return at if schedule.next_due(phase, interval, at - MS) == at else None

    def _expire(
        self, monitor: Monitor, r: JudgedRound, expected: Sequence[str] | None, closes: datetime
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
        message = f"no result by {iso_ms(closes)}: the check did not run in time"
        fills = []
        for cc in sorted(set(expected) - set(r.jobs)):
            job_id = self._job_ids.make(public_id, cc, r.at, trigger=triggered)
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

    async def _quiet(self, conn: Conn, monitor: Monitor, now: datetime, windows: bool) -> bool:
        """No notifications: the monitor is in maintenance (`windows`: any cover it)."""
        return await notify_entry.in_maintenance(conn, monitor, now, windows=windows)

    async def _join_flow(self, conn: Conn, monitor: Monitor, incident: Incident) -> Incident:
        """The outage `incident` joins the open flow incident it is related to
        (`flows.joins`), else opens one of its own; return it with its flow incident."""
        await flow_db.lock(conn, monitor.organization_id)
        outage = _outage(monitor, incident)
        found = flows.joins(outage, await flow_db.open_flows(conn, monitor.organization_id))
        if found is None:
            flow_id = await flow_db.start(
                conn, monitor.organization_id, incident.id, incident.started_at
            )
        else:
            flow_id = found.flow.id
            await flow_db.join(conn, flow_id, incident.id)
            if found.merged:
                await flow_db.merge(conn, flow_id, [f.id for f in found.merged])
            log.info(
                "outage joined a flow incident",
                monitor_id=str(monitor.public_id),
                flow_incident=flow_id,
                relation=found.why,
                merged=len(found.merged),
            )
            metrics.flow_joined(found.why)
        return msgspec.structs.replace(incident, flow_incident_id=flow_id)

    async def _flow_closed(
        self, conn: Conn, incident_org: int, incident: Incident, e: IncidentClosed, now: datetime
    ) -> None:
        """The flow incident of the outage `incident` ends with its last open outage; told
        then when it spoke for several (a held or disabled outage's end tells nobody now)."""
        if incident.flow_incident_id is None:
            return
        await flow_db.lock(conn, incident_org)
        flow = await flow_db.state(conn, incident.flow_incident_id)
        if flow is None or flow.open or flow.ended_at is not None:
            return
        await flow_db.end(conn, flow.id, e.ended_at)
        if e.why == "disabled" or e.hold_recovery:
            return
        told = flows.tell(e.why, members=flow.members, flow_notified=flow.notified)
        if told.say == "flow":
            ended = msgspec.structs.replace(flow, ended_at=e.ended_at)
            await self._notify_flow(conn, ended, e.why, (), now)

    async def _notify(
        self, conn: Conn, monitor: Monitor, incident: Incident, kind: Kind, now: datetime
    ) -> None:
        """The notice of `kind` about the monitor's outage `incident`, as its flow incident has
        it told (`flows.tell`): as the monitor's own, as the flow incident's, in the flow
        incident's next notice (`send_flow`), or not at all."""
        flow = None
        if incident.flow_incident_id is not None:
            flow = await flow_db.state(conn, incident.flow_incident_id)
        if flow is None:
            await self._notify_monitor(conn, monitor, incident, kind, now)
            return
        changes = flows.material(
            _outage(monitor, incident), flow.monitors, flow.countries, flow.cause_kinds
        )
        reminder = self._policy.reminder
        last = flow.last_notified_at
        told = flows.tell(
            kind,
            members=flow.members,
            flow_notified=flow.notified,
            changes=changes,
            still_open=flow.open,
            reminder_due=last is None or (reminder is not None and now - last >= reminder),
        )
        if kind in ("down", "reminder"):  # owed to the flow incident from now on
            reminders = incident.reminders + (kind == "reminder")
            await incident_db.set_incident_notified(conn, incident.id, reminders)
        if told.say == "as_monitor":
            await self._notify_monitor(conn, monitor, incident, kind, now, mark=False)
            if kind == "reminder":
                await flow_db.told(conn, flow.id, kind, now)
        elif told.say == "flow":
            await self._notify_flow(conn, flow, told.kind, (), now)
            if kind == "reminder":
                await flow_db.told(conn, flow.id, kind, now)
        elif told.say == "later":
            due = flows.due(
                now,
                self._timing,
                notified=flow.notified,
                last_notified_at=flow.last_notified_at,
                due_at=flow.due_at,
            )
            await flow_db.want(conn, flow.id, due, changes)
            if due <= now:
                await self._send_flow(conn, flow.id, now)

    async def send_due_flows(self) -> int:
        """Send the flow incidents' notices that are due (`flows.due`), each in a transaction
        of its own under its organization's lock; return how many."""
        now = self._clock()
        async with self._pool.acquire() as conn:
            found = await flow_db.due(conn, now, self._batch)
            sent = 0
            for flow_id, organization_id in found:
                try:
                    async with conn.transaction():
                        await flow_db.lock(conn, organization_id)
                        sent += await self._send_flow(conn, flow_id, now)
                except Exception:
                    log.error("flow incident notice failed; retried", flow=flow_id, exc_info=True)
        return sent

    async def _send_flow(self, conn: Conn, flow_id: int, now: datetime) -> int:
        """The flow incident's due notice (`flows.when_due`), under its organization's lock;
        1 when one went out."""
        flow = await flow_db.state(conn, flow_id)
        if flow is None or flow.ended_at is not None or flow.due_at is None or flow.due_at > now:
            return 0
        found = await flow_db.members(conn, flow.id)
        if not found:  # its monitors are gone: nobody left to tell
            await flow_db.end(conn, flow.id, now)
            return 0
        told = flows.when_due(members=flow.members, notified=flow.notified)
        if told.say == "as_monitor":
            member = found[0]
            incident = await incident_db.incident(conn, member.incident_id)
            assert incident is not None
            await self._notify_monitor(conn, member.monitor, incident, "down", now, mark=False)
            kind = "down"
        else:
            changes = flow.pending if told.kind == "changed" else ()  # a first notice: all new
            await self._notify_flow(conn, flow, told.kind, changes, now)
            kind = told.kind
        await flow_db.told(conn, flow.id, kind, now)
        return 1

    async def _notify_flow(
        self,
        conn: Conn,
        flow: flow_db.FlowState,
        kind: str,
        changes: Sequence[str],
        now: datetime,
    ) -> None:
        """Queue the flow incident's notice of `kind` to every recipient of its monitors, each
        once (the dedupe key is the flow incident's, made per address and channel)."""
        members = await flow_db.members(conn, flow.id)
        if not members:
            return
        parts = [
            Part(m.monitor, m.started_at, m.ended_at, m.cause_kind, m.cause, m.countries)
            for m in members
        ]
        evidence = await _evidence(conn, flow.id)
        texts = render_flow(
            kind,
            parts,
            flow.started_at,
            flow.ended_at,
            now,
            self._links,
            changes,
            evidence,
            flow.public_id,
        )
        facts = flow_facts(flow.public_id, parts, flow.started_at, flow.ended_at, changes, evidence)
        tag = {
            "changed": f"changed-{flow.changes + 1}",
            "reminder": f"reminder-{flow.reminders + 1}",
            "recovered": "end",
            "no_data": "end",
        }.get(kind, kind)
        key = f"flow:{flow.id}:{tag}"
        outbox_kind = "down" if kind == "changed" else kind
        for m in members:
            notes = recipients.to_recipients(
                outbox_kind, m.monitor, texts, key, by_target=True, flow=facts
            )
            org = m.monitor.organization_id
            notice = notify_entry.Notice(Source.OUTAGE, org, m.monitor, m.incident_id, notes)
            await notify(conn, notice)
        log.info(
            "flow incident notice queued",
            flow_incident=str(flow.public_id),
            kind=kind,
            monitors=len(members),
            changes=list(changes),
        )

    async def _notify_monitor(
        self,
        conn: Conn,
        monitor: Monitor,
        incident: Incident,
        kind: Kind,
        now: datetime,
        *,
        mark: bool = True,
    ) -> None:
        """Queue one notification per recipient the monitor has, whatever channels this
        process can send: a replica that has the channel sends it. `mark`: record the
        incident as notified (its reminders counted)."""
        evidence: list[str] = []
        if incident.flow_incident_id is not None and kind != "down":
            evidence = await _evidence(conn, incident.flow_incident_id)
        texts = render(kind, monitor, incident, now, self._links, evidence_facts(evidence))
        reminders = incident.reminders + (kind == "reminder")
        tag = f"{kind}-{reminders}" if kind == "reminder" else kind
        key = f"incident:{incident.id}:{tag}"
        notes = recipients.to_recipients(kind, monitor, texts, key)
        await notify(
            conn,
            notify_entry.Notice(
                Source.OUTAGE, monitor.organization_id, monitor, incident.id, notes
            ),
        )
        if mark and kind not in ("recovered", "no_data"):
            await incident_db.set_incident_notified(conn, incident.id, reminders)
        log.info(
            "notification queued",
            monitor_id=str(monitor.public_id),
            kind=kind,
            channels=[n.channel for n in notes],
        )

    async def _event(
        self,
        conn: Conn,
        monitor: Monitor,
        previous: str,
        state: str,
        at: datetime,
        countries: list[str],
        cause: str,
    ) -> None:
        public_id = str(monitor.public_id)
        stamp = iso_ms(at)
        event = MonitorEvent(
            monitor_id=public_id,
            state=state,
            previous_state=None if previous == "unknown" else previous,
            at=stamp,
            countries=sorted(countries),
            cause=cause,
        )
        await events_db.add_event(
            conn, events_subject(public_id), f"{public_id}:{stamp}:{state}", encode(event)
        )
        log.info("monitor state changed", monitor_id=public_id, state=state, previous=previous)

    async def publish_events(self) -> int:
        """Publish the state changes written so far, oldest first, one replica at a time
        (Nats-Msg-Id makes a retry harmless); return how many."""
        published = 0
        async with self._pool.acquire() as conn:
            if not await events_db.events_waiting(conn):
                return published
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await events_db.claim_events(conn, self._batch)
                if not rows:
                    return published
                for e in rows:
                    await self._js.publish(e.subject, e.payload, headers={"Nats-Msg-Id": e.msg_id})
                await events_db.delete_events(conn, [e.id for e in rows])
            published += len(rows)
