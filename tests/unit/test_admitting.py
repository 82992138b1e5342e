"""controller.scheduling.admitting with preemption, on the scheduler's own state (no I/O): a job
that waited its grace is admitted at once with a request to cancel one check of the tenant over
its share; a replica counts its own preemption until the beats show it, so it never asks twice
for the same need; two replicas on the same beats ask at most once each (the bound the
architecture names), and a country two replicas over-admitted gives the excess back."""

from datetime import UTC, datetime

from controller.fleet.load import CountryLoad
from controller.scheduling.admitting import PREEMPT_LOST_S, Admissions
from shared.messages import CheckJob
from tests.peers.jobs import make_job

HEARD_AT = 100.0


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def job(tenant: str, n: int) -> CheckJob:
    return make_job(
        "smtp", 25, job_id=f"job-{tenant}-{n}", tenant=tenant, country="HK", timeout=3.0
    )


def one_slot(heard_at: float = HEARD_AT) -> CountryLoad:
    """A country of one slot that Noisy's hanging check holds."""
    return CountryLoad(1, {"noisy": 1}, {"noisy": 20.0}, heard_at, {}, {"noisy": {"HK-a": 1}})


def now() -> datetime:
    return datetime.now(UTC)


def test_a_job_that_waited_its_grace_takes_the_slot_back_once() -> None:
    clock = Clock(HEARD_AT)
    load = one_slot()
    admissions = Admissions(lambda cc: load, clock)
    first = admissions.take([job("victim", 1)], now())
    assert (first.admitted, first.preempts, first.waiting) == ([], [], 1)
    clock.at += 1.0
    assert admissions.retry(now()).preempts == []  # within the grace: it waits
    clock.at += 1.5
    taken = admissions.retry(now())
    assert [j.job_id for j in taken.admitted] == ["job-victim-1"] and taken.waiting == 0
    [asked] = taken.preempts
    assert (asked.country, asked.agent_id, asked.tenant, asked.held, asked.share) == (
        "HK",
        "HK-a",
        "noisy",
        1,
        0.5,
    )
    # The beats do not show it yet: the slot counts as the victim's, so the victim's next job
    # waits, and no second check is asked for.
    clock.at += 0.5
    assert admissions.take([job("victim", 2)], now()).waiting == 1
    clock.at += 2.5
    assert admissions.retry(now()).preempts == []


def test_a_lost_request_is_forgotten_and_the_beats_word_stands_again() -> None:
    clock = Clock(HEARD_AT)
    load = one_slot()
    admissions = Admissions(lambda cc: load, clock)
    admissions.take([job("victim", 1)], now())
    clock.at += 2.5
    assert len(admissions.retry(now()).preempts) == 1
    # No beat ever showed the cancelled check (the request was lost): past PREEMPT_LOST_S and
    # the admitted job's slot time, Noisy holds its slot again as the beats say.
    clock.at += PREEMPT_LOST_S + 3.5
    admissions.take([job("victim", 2)], now())
    clock.at += 2.5
    assert len(admissions.retry(now()).preempts) == 1


def test_two_replicas_on_the_same_beats_ask_at_most_once_each() -> None:
    """Victim is owed 2 of 4 slots; each replica holds one of its waiting jobs: two checks are
    cancelled in all, one each, never more than each replica's own need."""
    clock = Clock(HEARD_AT)
    load = CountryLoad(4, {"noisy": 4}, {"noisy": 90.0}, HEARD_AT, {}, {"noisy": {"HK-a": 4}})
    replicas = [Admissions(lambda cc: load, clock) for _ in range(2)]
    for i, replica in enumerate(replicas):
        replica.take([job("victim", i)], now())
    clock.at += 2.5
    asked = [replica.retry(now()).preempts for replica in replicas]
    assert [len(a) for a in asked] == [1, 1]
    clock.at += 0.2
    assert [replica.retry(now()).preempts for replica in replicas] == [[], []]


def test_a_country_two_replicas_over_admitted_gives_the_excess_back() -> None:
    """5 held of 4 slots (two replicas admitted into the same slot): the tenant over its share
    loses one to the job owed a slot."""
    clock = Clock(HEARD_AT)
    load = CountryLoad(4, {"noisy": 5}, {"noisy": 90.0}, HEARD_AT, {}, {"noisy": {"HK-a": 5}})
    admissions = Admissions(lambda cc: load, clock)
    admissions.take([job("victim", 1)], now())
    clock.at += 2.5
    [asked] = admissions.retry(now()).preempts
    assert (asked.tenant, asked.held) == ("noisy", 5)


def test_no_preempt_capable_agent_no_request() -> None:
    clock = Clock(HEARD_AT)
    load = CountryLoad(1, {"noisy": 1}, {"noisy": 20.0}, HEARD_AT)
    admissions = Admissions(lambda cc: load, clock)
    admissions.take([job("victim", 1)], now())
    clock.at += 2.5
    taken = admissions.retry(now())
    assert (taken.admitted, taken.preempts, taken.waiting) == ([], [], 1)


def test_the_slot_taken_back_stays_the_waiting_jobs_until_the_agent_could_free_it() -> None:
    """The agent cancels, reports and pulls within a beat; the beats sent meanwhile show Noisy's
    check gone but the victim's job not yet pulled: Noisy's next job must not take that slot,
    or it would stand in JOBS before the victim's (a one-slot country at the issue's size lost
    a victim round so)."""
    clock = Clock(HEARD_AT)
    views = [one_slot()]
    admissions = Admissions(lambda cc: views[-1], clock)
    admissions.take([job("victim", 1)], now())
    clock.at += 2.5
    assert len(admissions.retry(now()).preempts) == 1
    asked_at = clock.at
    admissions.take([job("noisy", 9)], now())
    # A beat sent just before the agent cancelled, then one with the check gone and the
    # victim's job not yet pulled.
    for beat_at, held in ((asked_at + 0.3, {"noisy": 1}), (asked_at + 0.9, {})):
        clock.at = beat_at + 0.05
        views.append(CountryLoad(1, held, {"noisy": 22.0}, beat_at, {}, {}))
        taken = admissions.retry(now())
        assert (taken.admitted, taken.waiting) == ([], 1), beat_at
