"""The evaluator: queued monitors → rounds → `judge` → state, incidents, notifications and
events written in one transaction. What the rounds mean is decided by the pure core,
controller.alerting.rules (verdicts, streaks, incidents, notices, maintenance, back-off,
confirmation); this module reads what it needs, asks which rounds are ready
(controller.alerting.ready_rounds), calls `judge` and has its effects written
(controller.alerting.effects).

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
the notification outbox rows and the events together. Those whose closed rounds want `expired`
results have them stored after the batch commits, all in one transaction (`_fill`), and are
judged by a second batch pass. `monitor_alert_state` is locked FOR UPDATE (a batch's
rows in monitor_id order: docs/architecture.md has the lock order), so even an evaluation
repeated after an expired lease runs one at a time. A monitor comes back
when its next round closes, so a round nobody ran is noticed without any result arriving.
Events are published after the commit (controller.alerting.event_publisher), by one replica at
a time, in order.

The rounds judged feed the monitor's security posture (controller.posture.observe) in the same
transaction: findings, baseline changes, their events and notifications.
"""

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import asyncpg
import structlog

from controller.alerting import batch, no_data
from controller.alerting import incident_store as incident_db
from controller.alerting import ready_rounds as ready_
from controller.alerting import state_store as alert_state
from controller.alerting.effects import Effects
from controller.alerting.ready_rounds import ROWS_PER_EVALUATION, ReadyRounds
from controller.alerting.rules import (
    NEW_INCIDENT,
    AlertState,
    Held,
    JudgedMonitor,
    JudgedRound,
    Known,
    Policy,
    judge,
    rounds,
)
from controller.db.pool import Conn, plan_generically
from controller.ingest import alert_queue_store as alert_queue
from controller.ingest import record
from controller.monitors.store import Monitor, MonitorConfigError, WatchedMonitor
from controller.monitors.thresholds import Thresholds
from controller.notify import entry as notify_entry
from controller.notify import maintenance
from controller.notify.incident import Incident
from controller.observability import metrics
from controller.posture import observe as posture
from controller.posture import rules as posture_rules
from controller.posture import store as posture_db
from controller.scheduling.rules import LOOKBACK
from shared.guards import BrokenInvariant

log = structlog.get_logger(__name__)

BATCH = 400
# Connections one pass evaluates its leased monitors on at once, each lane a batch of its own
# (one transaction): the monitors that are not routine cost a dozen round trips each, which
# one connection would wait out one after the other. A routine batch costs the same eight
# statements whatever its size, so a lane takes at least LANE_MIN monitors.
LANES = 4
LANE_MIN = 50
LEASE_S = 30.0  # an evaluation takes milliseconds; a crashed one is retried after this


class FillsWanted(Exception):
    """An evaluation not allowed to store `expired` results (`Evaluator.evaluate`'s `fills`)
    found closed rounds that want them."""


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


class Evaluator:
    """Leases queued monitors and judges them: which rounds are ready from `rounds`, what they
    mean from `judge` under `policy`, their effects written by `effects`; `batch`: monitors
    leased a pass at most."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        rounds: ReadyRounds,
        effects: Effects,
        *,
        policy: Policy,
        batch: int = BATCH,
        clock: Callable[[], datetime],
    ) -> None:
        self._pool = pool
        self._rounds = rounds
        self._effects = effects
        self._policy = policy
        self._default_countries = rounds.default_countries
        self.batch = batch
        self._clock = clock

    async def evaluate_due(self) -> int:
        """Lease one batch of queued monitors and evaluate each in its own transaction; return
        how many. A failed evaluation is logged and retried when its lease ends; it never stops
        the others."""
        now = self._clock()
        async with self._pool.acquire() as conn:  # one statement: its own transaction
            leased = await alert_queue.claim(conn, now, self.batch, LEASE_S)
        count = min(LANES, -(-len(leased) // LANE_MIN))
        lanes = [leased[n::count] for n in range(count)]
        await asyncio.gather(*(self._evaluate_lane(lane, now) for lane in lanes))
        return len(leased)

    async def _evaluate_lane(self, leased: Sequence[alert_queue.Lease], now: datetime) -> None:
        """Evaluate `leased` on one connection: a batch pass in one transaction; for those it
        left because their closed rounds want `expired` results, those results stored for all
        of them in one transaction (`_fill`) and a second batch pass over them; then, each in
        its own transaction, those still left (they create their state row, or a pass failed).
        When a batch's transaction fails as a whole, every monitor of it is evaluated alone.
        Every transaction runs on generic plans (`plan_generically`): each evaluation reads its
        monitor's recent results at least once."""
        async with self._pool.acquire() as conn:
            alone = await self._batch_pass(conn, leased, now)
            filled = await self._fill(conn, alone, now) if alone else set()
            if filled:
                again = [lease for lease in alone if lease.monitor_id in filled]
                alone = [lease for lease in alone if lease.monitor_id not in filled]
                alone += await self._batch_pass(conn, again, now)
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

    async def _batch_pass(
        self, conn: Conn, leased: Sequence[alert_queue.Lease], now: datetime
    ) -> list[alert_queue.Lease]:
        """`evaluate_batch` in a transaction of its own; every one of `leased` left alone when
        that transaction fails."""
        try:
            async with conn.transaction():
                await plan_generically(conn)
                return await self.evaluate_batch(conn, leased, now)
        except Exception:
            log.error("batch evaluation failed; evaluated one by one", exc_info=True)
            return list(leased)

    async def _fill(
        self, conn: Conn, leased: Sequence[alert_queue.Lease], now: datetime
    ) -> set[int]:
        """Store, in one transaction, the `expired` results the closed rounds of `leased` want
        (`ReadyRounds.plan`'s fills, as `evaluate` would store them one monitor at a time);
        return the monitors that wanted some. Their state rows are locked first, in
        monitor_id order, as `evaluate` locks its one; a monitor with no state row yet, or
        disabled, is left to `evaluate`. On a failure nothing is stored and the monitors are
        evaluated alone."""
        try:
            async with conn.transaction():
                await plan_generically(conn)
                got = await alert_state.batch_inputs(conn, [x.monitor_id for x in leased], now)
                judged = {
                    i: g
                    for i, g in got.items()
                    if isinstance(g, alert_state.Inputs) and g.watched.monitor.status != "disabled"
                }
                after = {i: ready_.after(g.watched, g.state, now) for i, g in judged.items()}
                reads = await alert_state.batch_results_after(conn, after, ROWS_PER_EVALUATION, now)
                fills = {
                    i: self._rounds.plan(g.watched, g.state, now, after[i], reads[i]).fills
                    for i, g in judged.items()
                }
                wanted = [r for rows in fills.values() for r in rows]
                if wanted:
                    await record.expired(conn, wanted, self._default_countries, now)
        except Exception:
            log.error("storing expired results failed; evaluated one by one", exc_info=True)
            return set()
        return {i for i, rows in fills.items() if rows}

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
        got = await alert_state.batch_inputs(conn, list(by_id), now)
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
                {i: ready_.after(g.watched, g.state, now) for i, g in judged.items()},
                ROWS_PER_EVALUATION,
                now,
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
            if isinstance(g, _Missing):
                raise BrokenInvariant(
                    "evaluator.Evaluator.evaluate_batch: expected not isinstance(g, _Missing)"
                )
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
        await alert_state.save_batch(conn, states, releases, now)
        await posture_db.save_cursors(conn, moves, now)
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
        after = ready_.after(w, s, now)
        plan = self._rounds.plan(w, s, now, after, read)
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
        due, watch = (plan.due, plan.watch) if plan.due else ready_.come_back(w, new, now)
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
            got = await alert_state.inputs(conn, monitor_id, now)
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
            if current is None:
                raise BrokenInvariant("evaluator.Evaluator._evaluate: current is unset")
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
        opened = await self._effects.apply(conn, monitor, judged.effects, incidents, now, quiet)
        if s.open_incident_id == NEW_INCIDENT:
            s.open_incident_id = opened
        if not disabled:
            await self._effects.posture(conn, monitor, s, quiet, t, read, now)
            due = due or ready_.come_back(w, s, now)[0]
        changed_at = now if s.state != before else None
        release = None if lease is None else (lease, due)
        await alert_state.save_state(conn, monitor_id, s, changed_at, release, now=now)
        return due, True

    async def _ready(
        self, conn: Conn, w: WatchedMonitor, s: AlertState, now: datetime, fills: bool = True
    ) -> tuple[list[JudgedRound], datetime | None, posture.Read | None]:
        """The rounds after the cursor ready to judge (`_plan`), the closed ones' missing
        countries stored as `expired` rows (FillsWanted instead when not `fills`); when to
        come back; the results read, for posture."""
        after = ready_.after(w, s, now)
        read = await alert_state.results_after(conn, w.monitor.id, after, ROWS_PER_EVALUATION, now)
        plan = self._rounds.plan(w, s, now, after, read)
        if plan.fills and not fills:
            raise FillsWanted(w.monitor.id)
        await record.expired(conn, plan.fills, self._default_countries, now)
        return plan.ready, plan.due, plan.read

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

    @staticmethod
    async def _quiet(conn: Conn, monitor: Monitor, now: datetime, windows: bool) -> bool:
        """No notifications: the monitor is in maintenance (`windows`: any cover it)."""
        return await notify_entry.in_maintenance(conn, monitor, now, windows=windows)
