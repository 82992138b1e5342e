"""The scheduler's admission: what of the planned jobs may go now.

A job goes when each budget (`admission_budgets`, in order: a round trip's message, a login
under its organization's cap, the mailbox API calls, each side check's) lets it, and when its
country has a slot for it (`admission_ledger.Admissions`, the rules in `admission_rules` and
`preemption`: it waits for one in memory, takes one back from the organization most over its
share, or is recorded `saturated`). What is held goes into its round's `missed` rows; a job
given up gives back what every budget gave it (`release`). A later login, when due, takes
again of the same budgets its login and its message (`admit_deferred`).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from controller.db.pool import Conn
from controller.fleet.live import LiveAgents
from controller.jobs.result_kinds import ResultRow
from controller.logins.backoff import HELD
from controller.notify.links import NO_LINKS, Links
from controller.roundtrips import rounds_store as roundtrip_rounds
from controller.roundtrips import sends as roundtrip_sends
from controller.scheduling import plan as planning
from controller.scheduling.admission_budgets import (
    ApiCalls,
    LoginCap,
    RoundBudget,
    RoundTripMail,
    SideCheckBudget,
    release_all,
    reserve_all,
)
from controller.scheduling.admission_ledger import Admissions, Taken
from controller.scheduling.deferred_store import DeferredJob
from controller.scheduling.plan import PlannedRound
from controller.settings import SchedulingSettings
from controller.sidechecks.budgets import BUDGETS
from shared.messages import CheckJob, Preempt
from shared.timefmt import parse_iso

_DEFAULT_SCHEDULING = SchedulingSettings()


class Admitted(NamedTuple):
    """What goes of the rounds' jobs and of those waiting for a slot: the jobs to publish now,
    the `saturated` rows of earlier rounds' waiting jobs that can no longer start (to record),
    the checks to cancel for waiting jobs (sent once the jobs are out), and the round trips'
    looks moved to their round's later logins to wait for their monitor's round in flight (the
    awaited round's scheduled time by job id)."""

    jobs: list[CheckJob]
    earlier: list[ResultRow]
    preempts: list[Preempt]
    awaited: dict[str, datetime]


class Admission:
    def __init__(
        self,
        agents: LiveAgents,
        links: Links = NO_LINKS,
        *,
        default_countries: int = 2,
        login_cap: int = 1000,
        trigger_burst: int = 3,
        mails_per_domain: int = 60,
        budgets: SchedulingSettings = _DEFAULT_SCHEDULING,
    ) -> None:
        """`agents`: the live agents view (their slots and features); `links`: where the
        owners' login cap notice points them; `login_cap`: LOGIN_CAP_PER_ACCOUNT, the ceiling
        per organization and account; `mails_per_domain`: ROUNDTRIP_MAILS_PER_DOMAIN_PER_MINUTE;
        `budgets`: the settings the side checks' budgets read (READINESS_QUERIES_PER_HOUR...)."""
        self._logins = LoginCap(links, default_countries, login_cap, trigger_burst)
        # In order: a job one refuses gives back what those before it gave it.
        self._budgets: tuple[RoundBudget, ...] = (
            RoundTripMail(agents, mails_per_domain),
            self._logins,
            ApiCalls(budgets),
            *(SideCheckBudget(b, budgets) for b in BUDGETS.values()),
        )
        # What a later login takes again when it comes due (it holds the others since its
        # round was planned): its login, then its message, counted when its round went.
        self._due: tuple[RoundBudget, ...] = (
            self._logins,
            RoundTripMail(agents, mails_per_domain, wait=False),
        )
        self._ledger = Admissions(agents.load, agents.now)

    def waiting(self) -> int:
        """Jobs waiting for a slot."""
        return self._ledger.waiting()

    def retry(self, now: datetime) -> Taken:
        """Decide every job waiting for a slot again (a pass's first step)."""
        return self._ledger.retry(now)

    def put_back(self, jobs: Sequence[CheckJob], preempts: Sequence[Preempt]) -> None:
        """Jobs admitted that could not be published: they wait again (`Admissions.put_back`)."""
        self._ledger.put_back(jobs, preempts)

    async def release(self, conn: Conn, jobs: Sequence[CheckJob]) -> None:
        """Give back what jobs that will never run (refused a slot) took of every budget."""
        await release_all(self._budgets, conn, jobs)

    async def admit(self, conn: Conn, rounds: Sequence[PlannedRound], now: datetime) -> Admitted:
        """In the rounds' transaction: each budget in turn (`reserve_all`: what one holds goes
        into its round's `missed`, what one lets go short goes with its ask held or its calls
        0), then the country slots; a job given up is recorded in its round's `missed`
        (`saturated`) and gives back what every budget gave it, one waiting for a slot goes out
        with a later pass. A round trip's round is held or sent whole, its later logins with
        it; a look whose country waits for its monitor's round in flight becomes a later login,
        due when that round ends."""
        await reserve_all(self._budgets, conn, rounds, now)
        awaited = {job_id: at for r in rounds for job_id, at in r.awaited.items()}
        taken = self._ledger.take([job for r in rounds for job in r.jobs], now)
        refused = {row.job_id: row for row in taken.refused}
        if refused:
            for r in rounds:
                r.missed += [refused.pop(job.job_id) for job in r.jobs if job.job_id in refused]
        await self.release(conn, taken.refused_jobs)
        return Admitted(taken.admitted, list(refused.values()), taken.preempts, awaited)

    async def admit_deferred(
        self, conn: Conn, claimed: Sequence[DeferredJob], now: datetime
    ) -> tuple[Admitted, list[ResultRow], list[ResultRow]]:
        """In their transaction: what goes of the later logins due now (`Admitted`, its
        `earlier` empty); the rows of those held (to record as missed): one whose round has had
        a login rejected meanwhile (`auth_backoff`: the account is not tried again), one over
        the login cap, one whose round trip's message may not go now, one its country refuses;
        and the looks whose awaited round found their message (each its `up` row from that
        finding, to record as answered)."""
        answered = await _answered(conn, claimed)
        claimed = [d for d in claimed if d.job.job_id not in answered]
        due = [
            PlannedRound(
                d.monitor_id, now, None, jobs=[d.job], account=d.account, legs=planning.legs(d.job)
            )
            for d in claimed
            if not d.rejected
        ]
        refused = await reserve_all(self._due, conn, due, now)
        taken = self._ledger.take([job for r in due for job in r.jobs], now)
        rejected = [d.job for d in claimed if d.rejected]
        await self.release(conn, rejected + refused + taken.refused_jobs)
        why = "an earlier login of this round was rejected: not tried again"
        held = [planning.held(d.job, HELD, why) for d in claimed if d.rejected]
        held += [row for r in due for row in r.missed]
        held += taken.refused
        return Admitted(taken.admitted, [], taken.preempts, {}), held, list(answered.values())


async def _answered(conn: Conn, claimed: Sequence[DeferredJob]) -> dict[str, ResultRow]:
    """The looks among `claimed` whose awaited round found its message in their country, each
    as its `up` row from that finding (`roundtrip_sends.answer`): not sent, no login."""
    looks = [
        roundtrip_rounds.Awaited(
            d.job.job_id, d.monitor_id, d.job.country, d.after_round, parse_iso(d.job.scheduled_at)
        )
        for d in claimed
        if d.after_round is not None and not d.rejected
    ]
    found = await roundtrip_rounds.found(conn, looks)
    return {
        d.job.job_id: roundtrip_sends.answer(d.job, found[d.job.job_id])
        for d in claimed
        if d.job.job_id in found
    }
