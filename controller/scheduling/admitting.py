"""The scheduler's side of admission (controller.scheduling.admission, the rules): what this
scheduler admitted that the agents' beats may not show yet, and the jobs waiting here for a
slot, in memory. A job waits at most until its round can no longer start in time; a replica
that dies loses its waiting jobs, whose rounds then close `expired` like any job lost in flight.
"""

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from controller.fleet.load import CountryLoad
from controller.jobs.result_kinds import SATURATED, ResultRow
from controller.scheduling import admission
from controller.scheduling import rules as schedule
from controller.scheduling.admission import Admission
from controller.scheduling.plan import held as missed_row
from shared.messages import CheckJob
from shared.timefmt import parse_iso

# A job published this long before the oldest beat a country's load sums was heard is in that
# beat (agents pull within milliseconds of a publish), and one admitted this long plus its
# tenant's usual check time ago has ended: either way the beats say what holds its slot.
PULLED_WITHIN_S = 0.25
# Waiting jobs per country and organization, at most: past it, the organization's job that
# would wait is recorded `saturated` at once. Per organization, so that one organization's
# flood of jobs never fills the room another's waiting job needs.
WAITING_PER_TENANT = 1_000


@dataclass
class Taken:
    """What a call admitted (publish now), refused (their missed rows) and left waiting."""

    admitted: list[CheckJob] = field(default_factory=list)
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
        self._waiting: dict[str, list[CheckJob]] = {}

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

    def put_back(self, jobs: Sequence[CheckJob]) -> None:
        """Jobs admitted that could not be published (NATS away): they wait again, first in
        their countries, and are asked again at the next pass while they can still start."""
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
            decisions = admission.decide(
                load, [job.tenant for job in asking], [job.timeout_seconds for job in asking]
            )
            still: list[CheckJob] = []
            waiting: Counter[str] = Counter()
            now = self._now()
            for job, decision in zip(asking, decisions, strict=True):
                if decision.admission is Admission.ADMIT:
                    job.admitted = True  # the agents pull for their free slots only
                    taken.admitted.append(job)
                    until = now + admission.holds_for(load, job) + PULLED_WITHIN_S
                    self._admitted.setdefault(cc, []).append((now, job.tenant, until))
                elif not _can_start(job, at) or waiting[job.tenant] >= WAITING_PER_TENANT:
                    taken.refused.append(
                        missed_row(job, SATURATED, admission.saturated_why(cc, decision))
                    )
                    taken.refused_jobs.append(job)
                else:
                    still.append(job)
                    waiting[job.tenant] += 1
            if still:
                self._waiting[cc] = still
            taken.waiting += len(still)
        return taken

    def _with_own(self, cc: str, load: CountryLoad) -> CountryLoad:
        """`load` with the jobs this scheduler admitted since its beats were sent."""
        seen_by = load.heard_at - PULLED_WITHIN_S
        now = self._now()
        own = [a for a in self._admitted.get(cc, []) if a[0] > seen_by and a[2] > now]
        if not own:
            self._admitted.pop(cc, None)
            return load
        self._admitted[cc] = own
        held = dict(load.held)
        for _, tenant, _ in own:
            held[tenant] = held.get(tenant, 0) + 1
        return msgspec.structs.replace(load, held=held)


def _can_start(job: CheckJob, at: datetime) -> bool:
    return schedule.can_start(parse_iso(job.scheduled_at), parse_iso(job.expires_at), at)
