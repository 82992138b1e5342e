"""The agent's slots and fair queue: which jobs run, which wait, and whose they are.

At most `capacity` checks run at once; jobs taken beyond the free slots (up to `lookahead`
more) wait in per-tenant lanes (agent.fair_queue: the tenant holding fewest slots served first,
then the one whose checks held them least lately, then round robin), and a tenant at its share
of the slots (`tenant_share`) waits while another tenant's job does. Jobs carried by `Preempt`
requests (agent.carried) take the next free slots, ahead of any pulled job (at most `capacity`
of them wait). A check is over, and gives back its slot and its tenant's share, once its result
is in the hand-off (`free(task, storing=True)`); its job is still held until it is settled.
Each tenant's held jobs and slot-seconds go to the heartbeat (agent.tenant_loads).
"""

import asyncio
from collections.abc import Callable, Coroutine

import msgspec
import structlog

from agent import metrics
from agent.bundles import Delivery
from agent.carried import CarriedJob
from agent.fair_queue import FairQueue
from agent.tenant_loads import TenantUsage
from shared.clock import Clock
from shared.messages import CheckJob, Preempt, TenantLoad, decode_job

log = structlog.get_logger(__name__)
# An agent that took an `admitted` job this recently pulls for its free slots only.
ADMITTED_FRESH_S = 60.0


class Slots:
    """`capacity` check slots of country `country`'s agent: `start(msg)` is the check a job
    runs, in a task of its own; `wake` is set whenever a slot frees; `stopping` set, no check
    starts any more."""

    def __init__(
        self,
        capacity: int,
        country: str,
        *,
        tenant_share: float,
        lookahead: int | None,
        start: Callable[[Delivery], Coroutine[object, None, None]],
        stopping: asyncio.Event,
        wake: asyncio.Event,
        counters: metrics.AgentMetrics,
        clock: Clock,
    ) -> None:
        if capacity < 1:
            raise ValueError("concurrency must be at least 1")
        if lookahead is not None and lookahead < 0:
            raise ValueError("lookahead must not be negative")
        self.capacity = capacity
        self._country = country
        self._start = start
        self._stopping = stopping
        self._wake = wake
        self._metrics = counters
        self._clock = clock
        # Jobs taken and not settled, each with when it arrived (monotonic time), in arrival order
        # (which held_since relies on): those running (at most `capacity`, with their tenant) and
        # those waiting for a slot, un-started, in their tenant's lane. Only start_waiting()
        # moves a job from one to the other.
        self._tasks: dict[asyncio.Task[None], tuple[Delivery, float, str]] = {}
        self._waiting: FairQueue[tuple[Delivery, float]] = FairQueue(capacity, tenant_share)
        self._held: dict[str, int] = {}  # running checks by tenant
        # The tasks whose check is over and whose result waits in the hand-off to be stored,
        # each with its job and when that arrived: held, no slot.
        self._storing: dict[asyncio.Task[None], tuple[Delivery, float]] = {}
        self._usage = TenantUsage()  # slot-seconds by tenant, for the heartbeat
        self._started: dict[asyncio.Task[None], float] = {}  # monotonic time each check started
        # Tasks in their check (after the hand-back rules, before the result is published),
        # with their tenant and when the check started: what `preempt` may cancel.
        self._checking: dict[asyncio.Task[None], tuple[str, float]] = {}
        self._preempting: dict[asyncio.Task[None], tuple[Preempt, float]] = {}
        # Jobs carried by `Preempt` requests, not started yet (at most `capacity`): they take
        # the next free slots, before any job of `_waiting`.
        self._carried: list[tuple[Delivery, float, str]] = []
        # Jobs taken beyond the free slots, so that other tenants' jobs behind one tenant's
        # flood are seen: taken from the other agents of the country, so bounded.
        self.lookahead = capacity if lookahead is None else lookahead
        self._admitted_at: float | None = None  # monotonic time an `admitted` job last came

    @property
    def in_flight(self) -> int:
        """Checks running now: never more than `capacity`."""
        return len(self._tasks)

    @property
    def waiting(self) -> int:
        """Jobs taken but not started, for lack of a free slot."""
        return len(self._waiting)

    @property
    def storing(self) -> int:
        """Jobs whose check is over and whose result is in the hand-off, not stored yet."""
        return len(self._storing)

    @property
    def tenant_cap(self) -> int:
        return self._waiting.cap

    @property
    def held_by_tenant(self) -> dict[str, int]:
        """Checks running now, by tenant."""
        return dict(self._held)

    @property
    def waiting_by_tenant(self) -> dict[str, int]:
        """Jobs taken but not started, by tenant."""
        return self._waiting.counts()

    def tenant_loads(self) -> list[TenantLoad]:
        """Each tenant's jobs held here (running or waiting) and its recent slot-seconds, for
        the heartbeat (agent.tenant_loads)."""
        self._usage.sample(self._clock.monotonic())
        held = self._waiting.counts()
        for _, _, tenant in self._carried:
            held[tenant] = held.get(tenant, 0) + 1
        for tenant, n in self._held.items():
            held[tenant] = held.get(tenant, 0) + n
        return self._usage.loads(held)

    def room(self) -> int:
        """How many more jobs this agent may hold: running and waiting ones count alike, those
        whose results wait in the hand-off not at all (bounded there, holding no slot). While
        the controller admits this country's jobs (they came `admitted` lately), for the free
        slots only: each was published for a free slot of the country, maybe another agent's."""
        lookahead = self.lookahead
        if (
            self._admitted_at is not None
            and self._clock.monotonic() - self._admitted_at < ADMITTED_FRESH_S
        ):
            lookahead = 0
        return (
            self.capacity + lookahead - len(self._tasks) - len(self._waiting) - len(self._carried)
        )

    def queue(self, jobs: list[Delivery]) -> None:
        """Put `jobs` in their tenants' lanes, then start what the free slots take."""
        now = self._clock.monotonic()
        for job in jobs:
            tenant, admitted = _lane_of(job)
            if admitted:
                self._admitted_at = now
            self._waiting.push(tenant, (job, now))
        self.start_waiting()

    def start_waiting(self) -> None:
        """Start waiting jobs while a slot is free, the next one as agent.fair_queue says: the
        only place a check starts, so at most `capacity` run, however the jobs arrived. A job
        that waited past its life ends `expired` when its turn comes (run_check), never as a
        check started too late."""
        while len(self._tasks) < self.capacity:
            if self._stopping.is_set():
                return  # handed back by the worker's stop
            if self._carried:
                msg, arrived, tenant = self._carried.pop(0)
            elif (picked := self._waiting.pop(self._held, self._usage.usage)) is not None:
                tenant, (msg, arrived) = picked
            else:
                return
            task = asyncio.create_task(self._start(msg))
            self._tasks[task] = (msg, arrived, tenant)
            self._held[tenant] = self._held.get(tenant, 0) + 1
            now = self._clock.monotonic()
            self._started[task] = now
            self._usage.started(tenant, now)
            self._metrics.in_flight.inc()
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.free(task)
        self._storing.pop(task, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("check_task_crashed", error=repr(exc))

    def free(self, task: asyncio.Task[None], *, storing: bool = False) -> None:
        """`task`'s check is over: its slot and its tenant's share go back and the next
        waiting job starts. With `storing`, its job stays held until its result is stored."""
        if (taken := self._tasks.pop(task, None)) is None:
            return
        msg, arrived, tenant = taken
        if storing:
            self._storing[task] = (msg, arrived)
        self._held[tenant] -= 1
        if not self._held[tenant]:
            del self._held[tenant]
        started = self._started.pop(task)
        self._usage.ended(tenant, started, self._clock.monotonic())
        self._metrics.in_flight.dec()
        self.start_waiting()
        self._wake.set()

    def held_tasks(self) -> set[asyncio.Task[None]]:
        """The tasks of jobs held here that started: running, or waiting for their store."""
        return {*self._tasks, *self._storing}

    def unstarted(self) -> list[Delivery]:
        """Take out every job that has not started (carried, then waiting): for a hand-back."""
        jobs = [msg for msg, _, _ in self._carried]
        self._carried.clear()
        if self._waiting:
            jobs += [msg for msg, _ in self._waiting.clear()]
        return jobs

    def job_of(self, task: asyncio.Task[None]) -> Delivery:
        """The job `task` runs (in a slot) or waits to settle (its result in the hand-off)."""
        if (taken := self._tasks.get(task)) is not None:
            return taken[0]
        return self._storing[task][0]

    def held_since(self, cutoff: float) -> list[Delivery]:
        """The jobs held here that arrived at or before `cutoff` (monotonic time): running,
        waiting for a slot, or waiting for their result's store. The running ones and each lane
        of waiting ones are in arrival order, so only the old ones are visited; those storing
        are few (the hand-off's bound) and visited all."""
        held: list[Delivery] = []
        running = ((msg, arrived) for msg, arrived, _ in self._tasks.values())
        for jobs in (running, *self._waiting.lanes()):
            for msg, arrived in jobs:
                if arrived > cutoff:
                    break
                held.append(msg)
        held += [msg for msg, arrived in self._storing.values() if arrived <= cutoff]
        return held

    def checking(self, task: asyncio.Task[None], tenant: str) -> None:
        """`task` is in its check for `tenant` from now: `preempt` may cancel it."""
        self._checking[task] = (tenant, self._clock.monotonic())

    def checked(self, task: asyncio.Task[None]) -> None:
        """`task`'s check is over (its result not yet published): no `preempt` cancels it."""
        self._checking.pop(task, None)

    def preempted(self, task: asyncio.Task[None]) -> tuple[Preempt, float] | None:
        """The `Preempt` request that cancelled `task`'s check, and when that check started
        (monotonic time); None when none did."""
        return self._preempting.pop(task, None)

    def preempt(self, request: Preempt) -> bool:
        """Cancel the longest-running check of `request.tenant` here (its result `preempted`),
        and queue the job the request carries for the next free slot, ahead of pulled ones;
        False when none of its checks runs here (nothing is cancelled)."""
        cancelled = self._cancel_longest(request)
        if request.job is not None:
            self._carry(request.job, cancelled)
        return cancelled

    def _carry(self, job: CheckJob, cancelled: bool) -> None:
        """Queue `job`, carried by a `Preempt`, first for the next free slot (at most
        `capacity` wait); it starts now if a slot is free."""
        if self._stopping.is_set() or len(self._carried) >= self.capacity:
            log.warning("carried_job_dropped", job_id=job.job_id, tenant=job.tenant)
            return
        now = self._clock.monotonic()
        self._carried.append((CarriedJob(job, self._country, self._clock.now()), now, job.tenant))
        log.info("carried_job_queued", job_id=job.job_id, tenant=job.tenant, cancelled=cancelled)
        self.start_waiting()

    def _cancel_longest(self, request: Preempt) -> bool:
        running = [
            (at, task)
            for task, (tenant, at) in self._checking.items()
            if tenant == request.tenant and task not in self._preempting
        ]
        if not running:
            log.info("preempt_found_no_check", tenant=request.tenant)
            return False
        at, task = min(running, key=lambda pair: pair[0])
        self._preempting[task] = (request, at)
        task.cancel()
        return True


def _lane_of(msg: Delivery) -> tuple[str, bool]:
    """The job's tenant lane and whether it was `admitted`; a message that is not a job goes
    to the `""` lane, where the worker terms it with a log line."""
    try:
        job = decode_job(msg.data)
    except msgspec.DecodeError:
        return "", False
    return job.tenant, job.admitted
