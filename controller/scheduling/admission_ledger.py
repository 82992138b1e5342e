"""The scheduler's side of admission (controller.scheduling.admission_rules, the rules) and of
preemption (controller.scheduling.preemption): what this scheduler admitted, and the checks it
asked agents to cancel, that the agents' beats may not show yet, and the jobs waiting here for
a slot, in memory. A job waits at most until its round can no longer start in time; a replica
that dies loses its waiting jobs, whose rounds then close `expired` like any job lost in flight.

A preemption gives its slot to the waiting job it was decided for at once: to an agent that
says `preempt_carry` the job goes inside the `Preempt` request (`Preempt.job`), never to JOBS,
so no earlier-admitted job waiting unpulled in JOBS can take the freed slot; to an older agent
the job goes out `admitted` in the same pass. The cancelled check's slot counts as free here
until the beats show it (or, should the request be lost, for `PREEMPT_LOST_S`; a lost
request loses its carried job, whose round closes `expired` like any job lost in flight).
Each replica preempts only for the jobs waiting in its own memory, so replicas that decide on
the same beats cancel at most what each one's waiting tenants are owed, once per beat: beyond
the need, at most (replicas - 1) times it, and those extra slots go to organizations below
their share.
"""

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from controller.fleet.load import CountryLoad
from controller.jobs.result_kinds import SATURATED, ResultRow
from controller.scheduling import admission_rules, preemption
from controller.scheduling import rules as schedule
from controller.scheduling.admission_rules import Admission
from controller.scheduling.plan import held as missed_row
from shared.messages import CheckJob, Preempt
from shared.timefmt import parse_iso

# A job published this long before the oldest beat a country's load sums was heard is in that
# beat (agents pull within milliseconds of a publish), and one admitted this long plus its
# tenant's usual check time ago has ended: either way the beats say what holds its slot.
PULLED_WITHIN_S = 0.25
# A check this scheduler asked an agent to cancel counts as gone until a beat heard this long
# after the request shows it (the agent cancels within milliseconds, like a pull), or, when no
# beat does (the request was lost), for PREEMPT_LOST_S: then the beats' word stands again.
PREEMPT_LOST_S = 2.5
# A job admitted for a preemption is pulled only once the agent has cancelled the check, sent
# its result and freed the slot: later than a job admitted into a free slot. So it counts from
# this long after the request: a beat that shows the check gone but the job not yet pulled
# must not let the slot go to another job meanwhile. (The cancellation itself shows in the
# first beat after the request, as a pull does.)
PREEMPT_SETTLE_S = 1.0
# Waiting jobs per country and organization, at most: past it, the organization's job that
# would wait is recorded `saturated` at once. Per organization, so that one organization's
# flood of jobs never fills the room another's waiting job needs.
WAITING_PER_TENANT = 1_000


@dataclass
class Taken:
    """What a call admitted (publish now), refused (their missed rows), left waiting, and the
    checks to ask agents to cancel (publish once the admitted jobs are out), some carrying
    the job admitted for them (`Preempt.job`, not in `admitted`)."""

    admitted: list[CheckJob] = field(default_factory=list)
    preempts: list[Preempt] = field(default_factory=list)
    refused: list[ResultRow] = field(default_factory=list)
    refused_jobs: list[CheckJob] = field(default_factory=list)
    waiting: int = 0


class Admissions:
    """Admission state of one scheduler: `load(cc)` is the live view's (None: admit all),
    `now()` its clock."""

    def __init__(
        self,
        load: Callable[[str], CountryLoad | None],
        now: Callable[[], float],
    ) -> None:
        self._load = load
        self._now = now
        # By country: (admitted at, tenant, counted until) of jobs the beats may not show yet.
        self._admitted: dict[str, list[tuple[float, str, float]]] = {}
        # By country: (asked at, tenant, counted until, agent) of checks this scheduler asked
        # agents to cancel, which the beats may not show gone yet.
        self._preempted: dict[str, list[tuple[float, str, float, str]]] = {}
        self._waiting: dict[str, list[CheckJob]] = {}
        self._since: dict[str, float] = {}  # by job id: when a waiting job first waited

    def waiting(self) -> int:
        return sum(len(jobs) for jobs in self._waiting.values())

    def take(self, jobs: Sequence[CheckJob], at: datetime) -> Taken:
        """Decide `jobs` (new ones) and every job waiting in their countries, at `at`."""
        by_country: dict[str, list[CheckJob]] = {}
        for job in jobs:
            by_country.setdefault(job.country, []).append(job)
        return self._decide(by_country, at)

    def retry(self, at: datetime) -> Taken:
        """Decide every waiting job again (a pass's first step)."""
        return self._decide({cc: [] for cc in self._waiting}, at)

    def put_back(self, jobs: Sequence[CheckJob], preempts: Sequence[Preempt] = ()) -> None:
        """Jobs admitted that could not be published (NATS away), and the preemptions decided
        with them, not sent: the jobs wait again, first in their countries, and are asked again
        at the next pass while they can still start; the checks count as held again."""
        jobs = [*jobs, *(p.job for p in preempts if p.job is not None)]
        for p in preempts:
            asked = self._preempted.get(p.country, [])
            for i in range(len(asked) - 1, -1, -1):
                if asked[i][1] == p.tenant and asked[i][3] == p.agent_id:
                    del asked[i]
                    break
        for job in reversed(jobs):
            self._waiting.setdefault(job.country, []).insert(0, job)
            own = self._admitted.get(job.country, [])
            for i in range(len(own) - 1, -1, -1):  # the slot it was counted in is free again
                if own[i][1] == job.tenant:
                    del own[i]
                    break

    def _decide(self, by_country: dict[str, list[CheckJob]], at: datetime) -> Taken:
        taken = Taken()
        for cc, new in by_country.items():
            asking = self._waiting.pop(cc, []) + new
            load = self._load(cc)
            if load is None:
                taken.admitted += asking
                continue
            load = self._with_own(cc, load)
            if admission_rules.fits_all(load, len(asking)):
                now = self._now()
                for job in asking:
                    self._admit(cc, load, job, taken, now)
                continue
            decisions = admission_rules.decide(
                load, [job.tenant for job in asking], [job.timeout_seconds for job in asking]
            )
            still: list[CheckJob] = []
            waiting: Counter[str] = Counter()
            admitted: Counter[str] = Counter()
            now = self._now()
            for job, decision in zip(asking, decisions, strict=True):
                if decision.admission is Admission.ADMIT:
                    self._admit(cc, load, job, taken, now)
                    admitted[job.tenant] += 1
                elif not _can_start(job, at) or waiting[job.tenant] >= WAITING_PER_TENANT:
                    taken.refused.append(
                        missed_row(job, SATURATED, admission_rules.saturated_why(cc, decision))
                    )
                    taken.refused_jobs.append(job)
                    self._since.pop(job.job_id, None)
                else:
                    still.append(job)
                    waiting[job.tenant] += 1
                    self._since.setdefault(job.job_id, now)
            if still and load.holders:
                still = self._preempt(cc, load, admitted, still, taken, now)
            if still:
                self._waiting[cc] = still
            taken.waiting += len(still)
        return taken

    def _admit(
        self,
        cc: str,
        load: CountryLoad,
        job: CheckJob,
        taken: Taken,
        now: float,
        settle: float = 0,
        carried: bool = False,
    ) -> None:
        """Admit `job` now (to JOBS, or `carried` in a `Preempt`); it counts as held from
        `now + settle` (PREEMPT_SETTLE_S for a job admitted for a preemption) until the beats
        show it or its slot time has passed."""
        job.admitted = True  # the agents pull for their free slots only
        if not carried:
            taken.admitted.append(job)
        at = now + settle
        until = at + admission_rules.holds_for(load, job) + PULLED_WITHIN_S
        self._admitted.setdefault(cc, []).append((at, job.tenant, until))
        self._since.pop(job.job_id, None)

    def _preempt(
        self,
        cc: str,
        load: CountryLoad,
        admitted: Counter[str],
        still: list[CheckJob],
        taken: Taken,
        now: float,
    ) -> list[CheckJob]:
        """The jobs of `still` left waiting once those owed a slot that another organization
        holds beyond its share have it (preemption.preemptions): each such job is admitted now,
        and the check to cancel for it goes in `taken.preempts`."""
        held = Counter(load.held)
        held.update(admitted)
        waiters = [
            preemption.Waiter(
                job.tenant,
                job.timeout_seconds,
                now - self._since.get(job.job_id, now),
                preemption.grace_s(_start_window_s(job)),
            )
            for job in still
        ]
        decided = preemption.preemptions(msgspec.structs.replace(load, held=dict(held)), waiters)
        if not decided:
            return still
        for p in decided:
            job = still[p.waiter]
            carried = p.agent_id in load.carriers
            self._admit(cc, load, job, taken, now, PREEMPT_SETTLE_S, carried)
            self._preempted.setdefault(cc, []).append(
                (now, p.tenant, now + PREEMPT_LOST_S, p.agent_id)
            )
            taken.preempts.append(
                Preempt(
                    country=cc,
                    agent_id=p.agent_id,
                    tenant=p.tenant,
                    held=p.held,
                    share=p.share,
                    capacity=load.capacity,
                    job=job if carried else None,
                )
            )
        given = {p.waiter for p in decided}
        return [job for i, job in enumerate(still) if i not in given]

    def _with_own(self, cc: str, load: CountryLoad) -> CountryLoad:
        """`load` with the jobs this scheduler admitted, and without the checks it asked
        agents to cancel, since its beats were sent."""
        seen_by = load.heard_at - PULLED_WITHIN_S
        now = self._now()
        own = [a for a in self._admitted.get(cc, []) if a[0] > seen_by and a[2] > now]
        gone = [a for a in self._preempted.get(cc, []) if a[0] > seen_by and a[2] > now]
        if own:
            self._admitted[cc] = own
        else:
            self._admitted.pop(cc, None)
        if gone:
            self._preempted[cc] = gone
        else:
            self._preempted.pop(cc, None)
        if not own and not gone:
            return load
        held = dict(load.held)
        for _, tenant, _ in own:
            held[tenant] = held.get(tenant, 0) + 1
        if not gone:
            return msgspec.structs.replace(load, held=held)
        holders = {t: dict(agents) for t, agents in load.holders.items()}
        for _, tenant, _, agent in gone:
            held[tenant] = max(0, held.get(tenant, 0) - 1)
            agents = holders.get(tenant, {})
            if agents.get(agent, 0) > 0:
                agents[agent] -= 1
        return msgspec.structs.replace(load, held=held, holders=holders)


def _can_start(job: CheckJob, at: datetime) -> bool:
    return schedule.can_start(*_times(job.scheduled_at, job.expires_at), at)


def _start_window_s(job: CheckJob) -> float:
    return schedule.start_window(*_times(job.scheduled_at, job.expires_at)).total_seconds()


# A waiting job's times are asked for on every pass (WAITING_RETRY_S) until it starts or is
# refused; jobs of a round share them. Bounded like the waiting jobs per organization.
@functools.lru_cache(maxsize=WAITING_PER_TENANT * 4)
def _times(scheduled_at: str, expires_at: str) -> tuple[datetime, datetime]:
    return parse_iso(scheduled_at), parse_iso(expires_at)
