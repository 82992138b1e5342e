"""controller.scheduling.admission_ledger with preemption, on the scheduler's own state (no
I/O): a job that waited its grace is admitted at once with a request to cancel one check of the
tenant over its share; a replica counts its own preemption until the beats show it, so it never
asks twice for the same need; two replicas on the same beats ask at most once each (the bound
the architecture names), and a country two replicas over-admitted gives the excess back."""

from datetime import UTC, datetime

import msgspec

from controller.fleet.load import CountryLoad
from controller.scheduling.admission_ledger import PREEMPT_LOST_S, Admissions
from shared.messages import CheckJob, Preempt, decode_preempt, encode
from testkit.peers.jobs import make_job

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


def test_an_agent_that_carries_gets_the_job_in_the_request_never_in_jobs() -> None:
    """To an agent saying `preempt_carry` the waiting job goes inside its `Preempt` (so no job
    waiting unpulled in JOBS can take the freed slot), not to JOBS; an older agent's stays as
    before (admitted to JOBS, the request without a job)."""
    for carriers, carried in ((frozenset({"HK-a"}), True), (frozenset({"HK-b"}), False)):
        clock = Clock(HEARD_AT)
        load = msgspec.structs.replace(one_slot(), carriers=carriers)

        def loads(cc: str, load: CountryLoad = load) -> CountryLoad:
            return load

        admissions = Admissions(loads, clock)
        admissions.take([job("victim", 1)], now())
        clock.at += 2.5
        taken = admissions.retry(now())
        [asked] = taken.preempts
        assert taken.waiting == 0
        if carried:
            assert taken.admitted == [] and asked.job is not None
            assert (asked.job.job_id, asked.job.admitted) == ("job-victim-1", True)
        else:
            assert [j.job_id for j in taken.admitted] == ["job-victim-1"] and asked.job is None


def test_a_request_not_sent_gives_its_carried_job_back_to_the_waiting() -> None:
    clock = Clock(HEARD_AT)
    load = msgspec.structs.replace(one_slot(), carriers=frozenset({"HK-a"}))
    admissions = Admissions(lambda cc: load, clock)
    admissions.take([job("victim", 1)], now())
    clock.at += 2.5
    taken = admissions.retry(now())
    admissions.put_back(taken.admitted, taken.preempts)
    assert admissions.waiting() == 1
    assert admissions.retry(now()).preempts == []  # it waits its grace again
    clock.at += 2.5
    [again] = admissions.retry(now()).preempts  # then is asked again, with the same job
    assert again.job is not None and again.job.job_id == "job-victim-1"


def test_a_carried_job_round_trips_in_its_request() -> None:
    """The job inside a `Preempt` decodes as JOBS would deliver it; a request without one (an
    older controller's) still decodes."""
    carried = job("victim", 1)
    request = Preempt(country="HK", agent_id="HK-a", tenant="noisy", job=carried)
    assert decode_preempt(encode(request)).job == carried
    old = b'{"v":1,"country":"HK","agentId":"HK-a","tenant":"noisy"}'
    assert decode_preempt(old).job is None
