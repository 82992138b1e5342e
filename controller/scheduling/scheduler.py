"""The scheduler: due monitors → one check job per country on `mon.jobs.CC`.

Three parts, each with its own collaborators, wired by the composition root
(controller.runtime.pipeline): the planner (controller.scheduling.planner: claimed monitors →
their rounds, with the live countries and the OAuth2 tokens), admission
(controller.scheduling.admission: what of the rounds may go now: round-trip caps, login caps,
country slots) and the publisher (controller.scheduling.publisher: the jobs out to NATS, the
rounds that went nowhere recorded). This worker drives them: it claims the monitors, passes
them through the three, and moves their due times. A config with credentials is sealed to the
job's country: the job carries it as `sealedConfig`, its `config` is the type's default, and a
country without a public key gets no job, only a `no_seal_key` round: credentials never go out
in clear.

Each batch is claimed in a transaction (`SKIP LOCKED`, so replicas share the work), its jobs are
published with `Nats-Msg-Id` = job id and their acks awaited, then the monitors' next due times
are written and the transaction commits. A crash before the commit leaves the monitors due: the
next claim republishes the same job ids and JetStream drops the duplicates. A monitor whose
OAuth2 token is being fetched is left due meanwhile (`Planner.ready_tokens`); the round it
delays is sent late, or recorded `overdue`, or `oauth2_token` when no token came, as rounds are.
"""

import asyncio
import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg
import structlog

from controller.db.pool import Conn
from controller.ingest import alert_queue_store as alert_queue
from controller.monitors import limits_store as limits
from controller.monitors.store import WatchedMonitor
from controller.observability import metrics
from controller.roundtrips import rounds_store as roundtrip_rounds
from controller.scheduling import confirm_store as confirmations
from controller.scheduling import deferred_store as deferred
from controller.scheduling import due_store as due
from controller.scheduling import plan as planning
from controller.scheduling import rules as schedule
from controller.scheduling.admission import Admission
from controller.scheduling.due_store import Unplanned, monitor_of
from controller.scheduling.plan import PlannedRound
from controller.scheduling.planner import Planner
from controller.scheduling.publisher import JobPublisher
from controller.settings import FairUseSettings, SchedulingSettings
from shared.loop import run_every
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

IDLE_MAX_S = 0.5
# While jobs wait for a slot, a pass comes at least this often to give them the slots freed.
WAITING_RETRY_S = 0.2
PLAN_EVERY_S = 0.5
# A pass's due rounds end after this long even when more are due (the next pass follows at
# once): a scheduler behind its rounds still plans new monitors, sends confirmation rounds and
# deferred logins, and sees a stop, between batches.
PASS_MAX_S = 1.0


class PassDone(NamedTuple):
    """What a pass did: jobs published, the earliest due time of a monitor or deferred login
    left (None: none), and whether a monitor waits to be planned (`due.Waiting.unplanned`)."""

    jobs: int
    earliest: datetime | None
    unplanned: bool


class Scheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        planner: Planner,
        admission: Admission,
        publisher: JobPublisher,
        *,
        scheduling: SchedulingSettings,
        fair_use: FairUseSettings,
        clock: Callable[[], datetime],
    ) -> None:
        """`scheduling`: SCHEDULER_BATCH (monitors claimed at once), SCHEDULER_GATHER_SECONDS,
        CONFIRM_ROUNDS_PER_MINUTE; `fair_use`: DEFAULT_CHECK_COUNTRIES and
        ORG_MAX_CHECKS_PER_MINUTE, the trigger allowance a new monitor's first round draws
        on."""
        self._pool = pool
        self.planner = planner
        self.admission = admission
        self.publisher = publisher
        self._default_countries = fair_use.default_check_countries
        self._batch = scheduling.scheduler_batch
        self._gather_s = scheduling.scheduler_gather_seconds
        self._checks_per_minute = fair_use.org_max_checks_per_minute
        self._confirm_per_minute = scheduling.confirm_rounds_per_minute
        self._clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        """Schedule until `stop` is set; errors are logged and retried, never fatal.

        Passes are spaced by `schedule.pass_spacing`: each has a fixed cost (its transaction,
        the publish flush, and the wake-ups its jobs set off at the agents, the ingester and the
        alerter), so at a rate of jobs falling due where a pass per due monitor would spend more
        on that than on the jobs, a pass waits (at most `gather_s`) to carry about
        `schedule.PASS_JOBS` jobs (the wait drawn between half and all of that, so replicas
        share what falls due); a round then starts up to `gather_s` after its due time, and its
        results keep the due time. At high rates passes are full anyway and come every
        `MIN_PASS_S`. New monitors are planned when a pass's closing statement found some
        waiting (`due.Waiting.unplanned`), at most about every `PLAN_EVERY_S` (drawn between half
        and 1.5 times it), on a clock of their own (a pass follows at once when one was planned):
        neither may keep a replica's phase, which would give it a fixed share of what falls due
        (and of new monitors' first rounds). A pass claims confirmation
        rounds and deferred logins only when the statement closing its due rounds says some
        wait (`due.moved`, or `due.waiting` when it claimed none), which also says when the
        next pass is due: a routine pass is its due rounds' transaction. A pass before the
        earliest due time the last one saw, or after one that saw none, claims nothing
        (`schedule.nothing_due`) and only asks that statement again, which sees any due time
        moved earlier since (planning forces a full pass at once; a finished token fetch or a
        due time set elsewhere is claimed by the pass after, at most one pass's spacing
        later).
        """
        log.info("scheduler started", batch=self._batch, gather_s=self._gather_s)
        loop = asyncio.get_running_loop()
        plan_at = pass_at = loop.time()
        last_start: float | None = None
        unplanned = True  # until a pass's closing statement says
        # What the last pass saw waiting; None: nothing known (no pass yet, or planning since).
        seen: PassDone | None = None

        async def one_pass() -> float:
            nonlocal plan_at, pass_at, last_start, unplanned, seen
            started = loop.time()
            if unplanned and started >= plan_at:
                plan_at = started + PLAN_EVERY_S * random.uniform(0.5, 1.5)
                unplanned = False
                if await self.plan_new():
                    pass_at = started  # a new monitor's first round goes at once
                    seen = None
            if started >= pass_at:
                done = await self.run_pass(
                    nothing_due=seen is not None
                    and schedule.nothing_due(seen.earliest, self._clock())
                )
                unplanned, seen = done.unplanned, done
                since = 0.0 if last_start is None else started - last_start
                last_start = started
                spacing = schedule.pass_spacing(done.jobs, since, self._gather_s, random.random())
                pass_at = max(started + spacing, loop.time() + self._idle_s(done.earliest))
            wake_at = min(pass_at, plan_at) if unplanned else pass_at
            return max(0.0, wake_at - loop.time())

        try:
            await run_every(1.0, one_pass, name="scheduler", stop=stop)  # 1 s after a failed pass
        finally:
            await self.planner.close()

    async def run_pass(self, *, nothing_due: bool = False) -> PassDone:
        """A pass's work after planning new monitors: every due round, then the confirmation
        rounds and deferred logins, each only when the statement closing the due rounds says
        some wait. Jobs waiting for a slot are asked again first: a country with no round
        falling due would otherwise never publish them, nor record them `saturated` once too
        late. `nothing_due`: no monitor can be due yet (the caller knows the earliest due time),
        so none is claimed; only what waits, and when, is asked."""
        sent = await self.run_waiting()
        waiting = None
        if not nothing_due:
            count, waiting = await self._due_rounds(PASS_MAX_S)
            sent += count
        if waiting is None:
            async with self._pool.acquire() as conn:
                waiting = await due.waiting(conn, self._clock(), self.planner.fetching())
        if not (waiting.confirmations or waiting.deferred):
            return PassDone(sent, waiting.earliest, waiting.unplanned)
        if waiting.confirmations:
            sent += await self.run_confirmations()
        if waiting.deferred:
            sent += await self.run_deferred()
        async with self._pool.acquire() as conn:
            earliest = await due.earliest_work(conn, self.planner.fetching())
        return PassDone(sent, earliest, waiting.unplanned)

    def _idle_s(self, earliest: datetime | None) -> float:
        """Seconds until `earliest` (the earliest due monitor or deferred login), capped so new
        monitors are seen soon."""
        most = WAITING_RETRY_S if self.admission.waiting() else IDLE_MAX_S
        if earliest is None:
            return most
        return min(most, max(0.0, (earliest - self._clock()).total_seconds()))

    async def tick(self) -> int:
        """One pass: give new monitors a due time, then run every due round, confirmation round
        and spaced login; return jobs sent."""
        await self.plan_new()
        sent = await self.run_waiting() + await self.run_due()
        return sent + await self.run_confirmations() + await self.run_deferred()

    async def run_waiting(self) -> int:
        """Publish the jobs waiting for a slot that their country has room for now, and record
        `saturated` those that can no longer start in time; return jobs sent."""
        if not self.admission.waiting():
            return 0
        taken = self.admission.retry(self._clock())
        try:
            await self.publisher.publish(taken.admitted)
        except BaseException:
            self.admission.put_back(taken.admitted, taken.preempts)  # a later pass's
            raise
        await self.publisher.preempt(taken.preempts)
        if taken.refused:
            async with self._pool.acquire() as conn, conn.transaction():
                await self.admission.release(conn, taken.refused_jobs)
                await self.publisher.record(conn, taken.refused, now=self._clock())
            self.publisher.recorded(taken.refused)
        return len(taken.admitted)

    async def run_due(self, max_s: float | None = None) -> int:
        """Run every round due now, a batch at a time, or those `max_s` seconds of batches
        reach; return jobs sent. Nothing while the live agents view is warming up: a country
        missing from it may have agents, so its rounds stay due until the view is complete
        instead of being recorded `no_agent`."""
        sent, _ = await self._due_rounds(max_s)
        return sent

    async def _due_rounds(self, max_s: float | None) -> tuple[int, due.Waiting | None]:
        """`run_due`, and what the last batch's closing statement said waits (`due.moved`;
        None when no batch claimed a monitor)."""
        if not self.planner.is_warm():
            return 0, None
        loop = asyncio.get_running_loop()
        until = None if max_s is None else loop.time() + max_s
        sent = 0
        while True:
            # Each batch's own time: after an outage a pass takes long, and a round planned
            # with a stale clock could be sent already over.
            count, full, waiting = await self._run_batch(self._clock())
            sent += count
            if not full or (until is not None and loop.time() >= until):
                return sent, waiting

    async def run_confirmations(self) -> int:
        """Send the confirmation rounds the alerter asked for (`controller.scheduling.confirm`):
        a round of each monitor from all its countries now, as a triggered round; return jobs
        sent. Nothing while the live agents view warms up (the requests wait)."""
        if not self.planner.is_warm():
            return 0
        await self.planner.refresh_keys()
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await confirmations.claim(
                conn, self._clock(), self._confirm_per_minute, self._batch, self.planner.fetching()
            )
            if claimed.expired:
                metrics.confirmation("capped", claimed.expired)
                log.warning(
                    "confirmation rounds not sent: no slot of CONFIRM_ROUNDS_PER_MINUTE within"
                    " their monitor's interval",
                    rounds=claimed.expired,
                )
            asked = claimed.rounds
            if not asked:
                return 0
            monitors = await due.monitors(conn, sorted({m for m, _ in asked}))
            now = self._clock()
            tokens, waiting = await self.planner.ready_tokens(conn, monitors, now)
            if waiting:  # asked again once their tokens are fetched
                await confirmations.give_back(conn, [a for a in asked if a[0] in waiting])
                monitors = [m for m in monitors if monitor_of(m).id not in waiting]
            plans = await self.planner.confirmation_rounds(conn, monitors, asked, tokens, now)
            jobs = await self._send(conn, plans, now)
            missed = [row for p in plans for row in p.missed]
            await self.publisher.record(conn, missed, now=self._clock())
        metrics.confirmation("sent", len(plans))
        self.publisher.recorded(missed)
        log.info("confirmation rounds sent", monitors=len(plans), jobs=jobs)
        return jobs

    async def _send(self, conn: Conn, rounds: Sequence[PlannedRound], now: datetime) -> int:
        """Publish what admission lets go of the rounds' jobs now (`Admission.admit`: what it
        holds goes into their `missed`) and keep their later logins for `run_deferred`; return
        jobs published."""
        admitted = await self.admission.admit(conn, rounds, now)
        await self.publisher.publish(admitted.jobs)
        await self.publisher.went(conn, rounds, now)
        await self.publisher.preempt(admitted.preempts)
        if admitted.earlier:
            await self.publisher.record(conn, admitted.earlier, now=self._clock())
            self.publisher.recorded(admitted.earlier)
        await due.dns_asked(conn, [r.monitor_id for r in rounds if r.dns_round and r.jobs], now)
        for r in rounds:
            if r.deferred and r.account:
                at = [(now + timedelta(seconds=delay), job) for delay, job in r.deferred]
                await deferred.add(conn, r.monitor_id, r.account, at, admitted.awaited)
        return len(admitted.jobs)

    async def run_deferred(self) -> int:
        """Publish the later logins of rounds that are due now, as admission lets them go
        (`Admission.admit_deferred`), recording those it holds; return jobs sent."""
        sent = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                claimed = await deferred.claim(conn, self._clock(), self._batch)
                if not claimed:
                    return sent
                now = self._clock()
                admitted, held, answered = await self.admission.admit_deferred(conn, claimed, now)
                await self.publisher.publish(admitted.jobs)
                await self.publisher.preempt(admitted.preempts)
                await self.publisher.record(conn, held, answered, now=self._clock())
            sent += len(admitted.jobs)
            if held or answered:
                log.info("deferred logins not sent", jobs=len(held) + len(answered))

    async def plan_new(self) -> int:
        """First due time of monitors that have none: now for one that never ran (a new
        monitor's first check should not wait up to an interval) while its organization's
        trigger allowance has room, else the first grid point after now."""
        planned = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                new = await due.claim_unplanned(conn, self._batch, self._default_countries)
                if not new:
                    return planned
                # Allowances are taken in organization order: two replicas planning monitors of
                # the same organizations lock their rows in one order, never each other's.
                new.sort(key=lambda m: m.organization_id)
                now = self._clock()
                at_once = schedule.round_time(now)
                nexts = [
                    at_once
                    if m.never_run and await self._first_round_allowed(conn, m, now)
                    else planning.grid_after(str(m.public_id), m.check_interval, now)
                    for m in new
                ]
                await due.set_next_due(conn, [m.id for m in new], nexts)
            planned += len(new)

    async def _first_round_allowed(self, conn: Conn, monitor: Unplanned, now: datetime) -> bool:
        """Whether a new monitor's first round may go at once: it draws on its organization's
        allowance for triggered checks, as a trigger-check does. Otherwise creating and deleting
        a monitor of every country was a trigger-check without a limit (hundreds of checks of
        one target a second)."""
        per_check = 60.0 / self._checks_per_minute
        cost = monitor.countries * per_check
        return not await limits.take_trigger(
            conn, "organizations", monitor.organization_id, cost, 60.0, now
        )

    async def _run_batch(self, now: datetime) -> tuple[int, bool, due.Waiting | None]:
        """One claim's rounds: jobs sent, whether the claim was full, and what waits after it
        (None: nothing was claimed)."""
        await self.planner.refresh_keys()
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await due.claim_due(conn, now, self._batch, self.planner.fetching())
            if not claimed:
                return 0, False, None
            tokens, waiting = await self.planner.ready_tokens(conn, claimed, now)
            planned = [m for m in claimed if monitor_of(m).id not in waiting]
            rounds = await self.planner.rounds(planned, now, tokens=tokens)
            jobs = await self._send(conn, rounds, now)
            after = await due.moved(
                conn,
                [r.monitor_id for r in rounds],
                [r.next_due for r in rounds],
                [",".join(r.countries) if r.countries else None for r in rounds],
                self._clock(),
                self.planner.fetching(),
            )
            missed = [row for r in rounds for row in r.missed]
            await self.publisher.record(conn, missed, now=self._clock())
        if not rounds:
            return 0, len(claimed) == self._batch, after
        late = (self._clock() - min(r.scheduled_at for r in rounds)).total_seconds()
        metrics.rounds_scheduled([r.scheduled_at for r in rounds], self._clock())
        self.publisher.recorded(missed)
        log.info(
            "round batch",
            monitors=len(claimed),
            jobs=jobs,
            missed=len(missed),
            oldest_late_s=round(late, 3),
        )
        return jobs, len(claimed) == self._batch, after

    async def trigger(self, monitor_id: int) -> PlannedRound | None:
        """A round now from all the monitor's countries; None when the monitor is gone. A
        monitor none of whose rounds has gone yet gets it as its first round
        (`due.take_first_round`): a "Check now" right after creating one sends one round, not
        this one and the first round `plan_new` would send besides, which it holds back while
        it plans (`due.hold_first_round`). A round trip's round in
        flight is joined instead (`joined`, nothing sent: `roundtrip_rounds.in_flight`).
        Right after (re)connecting, it waits for the live agents view (AgentsUnknownError if
        that takes too long) rather than record countries `no_agent` that may have agents."""
        await self.planner.until_warm()
        await self.planner.refresh_keys()
        async with self._pool.acquire() as conn:
            claimed = await due.monitor(conn, monitor_id)
            if claimed is None:
                return None
            monitor = monitor_of(claimed)
            went = (
                claimed.rounds.countries
                if isinstance(claimed, WatchedMonitor)
                else claimed.round_countries
            )
            if went is None:
                grid = planning.grid_after_first(
                    str(monitor.public_id), monitor.check_interval, self._clock()
                )
                await due.hold_first_round(conn, monitor.id, grid)
        now = self._clock()
        plan = await self.planner.triggered_round(claimed, now)
        async with self._pool.acquire() as conn:
            # Off its grid: the settled monitor's routine rounds no longer move its due time
            # on past this one (ingest.alert_queue_store.push_settled). Alone, before the round's
            # rows.
            await alert_queue.unwatch(conn, monitor.id)
            async with conn.transaction():
                if monitor.type == "roundtrip" and (
                    joined := await roundtrip_rounds.in_flight(conn, monitor.id, self._clock())
                ):
                    log.info(
                        "round trip in flight joined",
                        monitor_id=str(monitor.public_id),
                        scheduled_at=iso_ms(joined.scheduled_at),
                    )
                    return PlannedRound(monitor.id, joined.scheduled_at, None, joined=joined)
                first = bool(plan.countries) and await due.take_first_round(
                    conn,
                    plan.monitor_id,
                    planning.grid_after_first(str(monitor.public_id), monitor.check_interval, now),
                    plan.countries,
                )
                await self._send(conn, [plan], self._clock())
                await self.publisher.record(conn, plan.missed, now=self._clock())
        self.publisher.recorded(plan.missed)
        log.info(
            "round triggered",
            monitor_id=str(monitor.public_id),
            jobs=len(plan.jobs),
            first_round=first,
        )
        return plan
