"""A clock that skips the waits nobody works through, for tests whose subject is time (rounds,
confirmations, recoveries) beside real agents, mail servers, PostgreSQL and NATS (issue 79).

`SkippingClock` is the wall (and `time.monotonic`) plus an offset that only grows: while a
check runs it passes as the wall does, so an agent's timeouts and a server's answers keep
their real lengths; `skip` jumps both readings over a wait. Every part that decides is given
it: the scheduler, the ingester, the alerter, the API and the agents.

`Stepper` runs the scheduler's and the alerter's passes itself, one step at a time (their own
loops do not run): a pass of each. When neither had work and a published job has no stored
result yet (`CountingPublisher`; a deleted monitor's job is owed none), the step waits in real
time for one, or for the next due time to come; when nothing runs, it moves the clock to the
next instant something is due (a monitor's round, a spaced login, an alert queue row, an open
flow incident), never past it, so nothing is claimed late. The due times are read once every
published job's result is stored (a result queues its monitor's judging as it is stored). A
confirmation round asked and not sent yet is due now: the clock does not move while one
waits. `until` steps until a check holds, bounded in the clock's seconds: the rules' bounds,
not a loaded host's.

A check-now through the API publishes outside the steps: its jobs are counted and the next step
waits for their results. A test calls it between steps (the API answers once they are
published), so no step skips over a job being sent."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, TypeVar

import asyncpg
import structlog
from nats.js import JetStreamContext

from controller.alerting.alerter import Alerter
from controller.fleet.live import LiveAgents
from controller.jobs.asks_seal import AskSeals
from controller.scheduling.publisher import JobPublisher
from controller.scheduling.scheduler import Scheduler
from controller.secrets.seal_keys import CountryKeys
from shared.messages import CheckJob

T = TypeVar("T")
log = structlog.get_logger()


class SkippingClock:
    """The wall and monotonic clocks, `skipped` seconds ahead (`skip` adds to it)."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.skipped)

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def skip(self, seconds: float) -> None:
        """Both readings jump `seconds` forward (never back)."""
        if seconds < 0:
            raise ValueError("a skipping clock moves forward only")
        self.skipped += seconds


class CountingPublisher(JobPublisher):
    """The scheduler's publisher, remembering the id of every job it published."""

    def __init__(
        self,
        js: JetStreamContext,
        agents: LiveAgents,
        keys: CountryKeys,
        asks: AskSeals,
        *,
        default_countries: int = 2,
    ) -> None:
        super().__init__(js, agents, keys, asks, default_countries=default_countries)
        self.published: dict[str, str] = {}  # job id → its monitor's public id

    async def publish(self, jobs: Sequence[CheckJob]) -> None:
        self.published.update((job.job_id, job.monitor_id) for job in jobs)
        await super().publish(jobs)


class _Waits(NamedTuple):
    """The alerter's next work (its queue's earliest row, an open flow incident's due time),
    and whether confirmation rounds were asked and not sent: the scheduler's loop tries those
    again within its idle wait (a slot of their budget, the live agents view warm, an OAuth2
    token fetched), so no step skips past them."""

    queue: datetime | None
    flows: datetime | None
    confirming: bool


class Stepper:
    """The scheduler's and the alerter's passes, stepped on `clock` (see the module)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: SkippingClock,
        scheduler: Scheduler,
        publisher: CountingPublisher,
        alerter: Alerter,
        *,
        settle_s: float = 30.0,
        max_skip_s: float = 60.0,
    ) -> None:
        """`settle_s`: real seconds a published job may take to have its result stored;
        `max_skip_s`: the longest jump of one step."""
        self.pool = pool
        self.clock = clock
        self.scheduler = scheduler
        self.publisher = publisher
        self.alerter = alerter
        self.settle_s = settle_s
        self.max_skip_s = max_skip_s
        self.steps = 0
        # Whether the steps run the alerter: off where a test judges nothing, as a controller
        # without the alerter role (the test may call `alerter.burst()` itself).
        self.judging = True
        self._stored: set[str] = set()
        self._lock = asyncio.Lock()
        scheduler.publisher = publisher

    async def _stored_now(self) -> set[str]:
        """The published jobs still owed a stored result, after reading which are stored (or
        of a monitor deleted since: the ingester drops its result)."""
        if waiting := self.publisher.published.keys() - self._stored:
            jobs = sorted(waiting)
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT j.job_id FROM unnest($1::text[], $2::text[]) AS j(job_id, monitor)"
                    " WHERE EXISTS (SELECT 1 FROM check_results r WHERE r.job_id = j.job_id)"
                    " OR NOT EXISTS (SELECT 1 FROM monitors m WHERE m.public_id::text = j.monitor)",
                    jobs,
                    [self.publisher.published[j] for j in jobs],
                )
            self._stored.update(r["job_id"] for r in rows)
        return self.publisher.published.keys() - self._stored

    async def _in_flight(self, due: datetime | None) -> None:
        """Wait in real time while jobs run: until a result is stored (for the alerter), every
        job has its result, or something falls `due`."""
        deadline = time.monotonic() + self.settle_s
        stored = len(self._stored)
        while await self._stored_now():
            if len(self._stored) > stored or (due is not None and self.clock.now() >= due):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs without a stored result after {self.settle_s} s")
            await asyncio.sleep(0.02)

    async def step(self) -> None:
        """One pass of each part; when none had work, the wall passes while jobs run, else the
        clock moves to the next due time."""
        async with self._lock:
            self.steps += 1
            planned = await self.scheduler.plan_new()
            done = await self.scheduler.run_pass()
            evaluated = await self.alerter.burst() if self.judging else 0
            if planned or done.jobs or evaluated:
                return
            in_flight = await self._stored_now()
            # Read after the results: a result stored before queues its monitor's judging.
            waits = await self._waits()
            alerter_due = (waits.queue, waits.flows) if self.judging else ()
            due = min((t for t in (done.earliest, *alerter_due) if t), default=None)
            if in_flight:
                await self._in_flight(due)
                return
            if waits.confirming:
                await asyncio.sleep(0.01)  # asked, not sent yet: the wall moves on
                return
            wait = (due - self.clock.now()).total_seconds() if due else self.max_skip_s
            if wait > 0:
                skipped = min(wait, self.max_skip_s)
                log.debug(
                    "clock skipped",
                    seconds=round(skipped, 3),
                    now=self.clock.now().isoformat(),
                    rounds=str(done.earliest),
                    queue=str(waits.queue),
                    flows=str(waits.flows),
                )
                self.clock.skip(skipped)
            else:
                await asyncio.sleep(0.01)  # due now: the wall moves on

    async def _waits(self) -> _Waits:
        """What waits outside the scheduler's due times, in one statement (`_Waits`)."""
        row = await self.pool.fetchrow(
            "SELECT (SELECT min(due_at) FROM alert_queue) AS queue,"
            " (SELECT min(due_at) FROM flow_incidents WHERE ended_at IS NULL) AS flows,"
            " EXISTS (SELECT 1 FROM confirmation_rounds WHERE sent_at IS NULL) AS confirming"
        )
        assert row is not None
        return _Waits(row["queue"], row["flows"], row["confirming"])

    async def until(self, what: str, check: Callable[[], Awaitable[T | None]], within: float) -> T:
        """Step until `await check()` is truthy (returned); fail once `within` seconds of the
        clock have passed."""
        deadline = self.clock.now() + timedelta(seconds=within)
        while not (got := await check()):
            assert self.clock.now() < deadline, f"{what}: not within {within} s of the clock"
            await self.step()
        return got
