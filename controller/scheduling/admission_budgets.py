"""What admission reserves for the planned rounds' jobs before their country's slots, each a
`RoundBudget`: a round trip's message to its mailbox and recipient domain
(controller.roundtrips.sends), a login to its account under its organization's cap
(controller.logins), the mailbox API calls of each mailbox a job calls
(`api_calls_store`), and each side check's budget (controller.sidechecks.budgets).
Admission iterates them in order and names none; a later login, when it comes due, takes
again of those a job takes as it goes (its login, its message: `Admission.admit_deferred`).

A budget's `reserve` (in the rounds' transaction) takes what the rounds' jobs need: a job it
refuses leaves its round's `jobs` for its `missed` rows, a job it lets go short is replaced (its
ask held, its calls 0). `release` gives back what jobs that will never run took of it."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from controller.db.pool import Conn
from controller.fleet.live import LiveAgents
from controller.logins import account_store as account_logins
from controller.logins import cap as login_cap
from controller.logins.backoff import CAPPED
from controller.notify.links import Links
from controller.roundtrips import rounds_store as roundtrip_rounds
from controller.roundtrips import sends as roundtrip_sends
from controller.scheduling import api_calls_store, login_cap_notice
from controller.scheduling import plan as planning
from controller.scheduling.plan import PlannedRound
from controller.settings import SchedulingSettings
from controller.sidechecks.frame import Budget
from shared.messages import FEATURE_LOOK_ONLY, CheckJob


class RoundBudget(Protocol):
    async def reserve(self, conn: Conn, rounds: Sequence[PlannedRound], now: datetime) -> None:
        """Take what the rounds' jobs (going now or logging in later) need of it."""

    async def release(self, conn: Conn, jobs: Sequence[CheckJob]) -> None:
        """Give back what `jobs`, which will never run, took of it."""


def planned(rounds: Sequence[PlannedRound]) -> list[CheckJob]:
    """The rounds' jobs going now and logging in later."""
    return [job for r in rounds for job in [*r.jobs, *(job for _, job in r.deferred)]]


@dataclass(frozen=True, slots=True)
class RoundTripMail:
    """A round trip's message: its round is held whole (into `missed`) when its mailbox or
    recipient domain may not get one now, or sent as a look where its country's agents can; a
    look whose country waits for its monitor's round in flight becomes a later login, due when
    that round ends (the awaited round's time in the round's `awaited`), unless `wait` is off
    (a later login due now: its message counted when its round went, it goes as it is)."""

    agents: LiveAgents
    mails_per_domain: int
    wait: bool = True

    async def reserve(self, conn: Conn, rounds: Sequence[PlannedRound], now: datetime) -> None:
        mailing = [
            (r, jobs)
            for r in rounds
            if (jobs := [*r.jobs, *(job for _, job in r.deferred)])
            and any(job.monitor_type == "roundtrip" for job in jobs)
        ]
        if not mailing:
            return
        held_mail, looks, waits = await roundtrip_sends.hold(
            conn,
            [(r.monitor_id, jobs) for r, jobs in mailing],
            now,
            self.mails_per_domain,
            self.agents.countries_with(FEATURE_LOOK_ONLY),
            wait=self.wait,
        )
        for r, jobs in mailing:
            r.missed += [held_mail[job.job_id] for job in jobs if job.job_id in held_mail]
            r.jobs = [looks.get(job.job_id, job) for job in r.jobs if job.job_id not in held_mail]
            r.deferred = [
                (d, looks.get(job.job_id, job))
                for d, job in r.deferred
                if job.job_id not in held_mail
            ]
            if r.account:  # only a round logging in to an account keeps later logins
                r.awaited |= _await_flights(r, waits, now)

    async def release(self, conn: Conn, jobs: Sequence[CheckJob]) -> None:
        await roundtrip_sends.not_sent(conn, jobs)


@dataclass(frozen=True, slots=True)
class LoginCap:
    """Each login to an account, taken from its allowance under its organization's cap
    (LOGIN_CAP_PER_ACCOUNT); one over it is not sent but recorded `login_capped` and told to
    the owners. A login taken counts until its job settles, sent or not: nothing to release.
    A round whose monitor is gone meanwhile (no cap) logs in to nothing: its jobs go nowhere."""

    links: Links
    default_countries: int
    ceiling: int  # LOGIN_CAP_PER_ACCOUNT
    trigger_burst: int

    async def reserve(self, conn: Conn, rounds: Sequence[PlannedRound], now: datetime) -> None:
        wanted = [(r, job) for r in rounds if r.account for job in r.jobs]
        caps = await self.caps(conn, [r.monitor_id for r, _ in wanted])
        gone = {r.monitor_id for r, _ in wanted if r.monitor_id not in caps}
        for r in rounds:
            if r.monitor_id in gone:
                r.jobs, r.deferred = [], []
        wanted = [(r, job) for r, job in wanted if r.monitor_id not in gone]
        allowed = await account_logins.take(
            conn,
            [planning.login(job, r.account or "", r.legs, caps[r.monitor_id]) for r, job in wanted],
            now,
        )
        for (r, job), ok in zip(wanted, allowed, strict=True):
            if not ok:
                r.jobs.remove(job)
                cap = caps[r.monitor_id][1]
                r.missed.append(planning.held(job, CAPPED, planning.capped_why(cap, self.ceiling)))
                await login_cap_notice.reached(conn, r.monitor_id, cap, now, self.links)

    async def release(self, conn: Conn, jobs: Sequence[CheckJob]) -> None:
        return None

    async def caps(self, conn: Conn, monitor_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Per monitor: its organization and the cap of its account's logins (login_cap)."""
        if not monitor_ids:
            return {}
        need = await account_logins.need(
            conn, sorted(set(monitor_ids)), self.default_countries, self.trigger_burst
        )
        return {m: (org, login_cap.cap(n, self.ceiling)) for m, (org, _, n) in need.items()}


@dataclass(frozen=True, slots=True)
class ApiCalls:
    """The mailbox API calls (Graph) and quota units (Gmail) of each mailbox a job calls
    (`api_calls_store`): a job that does not fit goes with none (its agent ends it
    `inconclusive`, throttled, unsent)."""

    settings: SchedulingSettings

    async def reserve(self, conn: Conn, rounds: Sequence[PlannedRound], now: datetime) -> None:
        await api_calls_store.reserve(conn, rounds, now, self.settings)

    async def release(self, conn: Conn, jobs: Sequence[CheckJob]) -> None:
        await api_calls_store.release(conn, jobs)


@dataclass(frozen=True, slots=True)
class SideCheckBudget:
    """A side check's budget (controller.sidechecks.frame.Budget): a job it has no room for
    goes with that side check's ask held."""

    budget: Budget
    settings: SchedulingSettings

    async def reserve(self, conn: Conn, rounds: Sequence[PlannedRound], now: datetime) -> None:
        held = await self.budget.reserve(conn, planned(rounds), now, self.settings)
        if held:
            for r in rounds:
                r.jobs = [held.get(job.job_id, job) for job in r.jobs]
                r.deferred = [(d, held.get(job.job_id, job)) for d, job in r.deferred]

    async def release(self, conn: Conn, jobs: Sequence[CheckJob]) -> None:
        await self.budget.release(conn, jobs)


async def reserve_all(
    budgets: Sequence[RoundBudget], conn: Conn, rounds: Sequence[PlannedRound], now: datetime
) -> list[CheckJob]:
    """Each budget in turn takes what the rounds' jobs left by those before it need; a job one
    refuses gives back what the budgets before it gave it. Return the jobs refused."""
    refused_all: list[CheckJob] = []
    for n, budget in enumerate(budgets):
        before = planned(rounds)
        await budget.reserve(conn, rounds, now)
        kept = {job.job_id for job in planned(rounds)}
        refused = [job for job in before if job.job_id not in kept]
        if refused:
            await release_all(budgets[:n], conn, refused)
        refused_all += refused
    return refused_all


async def release_all(budgets: Sequence[RoundBudget], conn: Conn, jobs: Sequence[CheckJob]) -> None:
    """Give back what `jobs`, which will never run, took of every budget."""
    if jobs:
        for budget in budgets:
            await budget.release(conn, jobs)


def _await_flights(
    r: PlannedRound, waits: Mapping[str, roundtrip_rounds.Flight], now: datetime
) -> dict[str, datetime]:
    """Move the round's looks that wait for their monitor's round in flight to its later
    logins, each due when that round ends (or later, as its login was); return the awaited
    round's scheduled time by job id."""

    def until(job: CheckJob) -> float:
        return max(0.0, (waits[job.job_id].ends_at - now).total_seconds())

    later = [(until(job), job) for job in r.jobs if job.job_id in waits]
    r.jobs = [job for job in r.jobs if job.job_id not in waits]
    r.deferred = [
        (max(d, until(job)) if job.job_id in waits else d, job) for d, job in r.deferred
    ] + later
    return {
        job.job_id: waits[job.job_id].scheduled_at for _, job in r.deferred if job.job_id in waits
    }
