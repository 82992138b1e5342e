"""The order of a round's logins to one account (`plan.space_logins`): one job now, the
others `login_spacing_s` apart, and a different country first from one round to the next."""

from datetime import UTC, datetime, timedelta

from controller.scheduling.plan import PlannedRound, space_logins
from testkit.peers.jobs import make_job

COUNTRIES = ["DE", "FR", "US", "JP", "BR"]


def first_and_rest(at: datetime, spacing_s: float = 5) -> tuple[str, list[tuple[float, str]]]:
    plan = PlannedRound(
        1, at, None, COUNTRIES, [make_job("smtp", 25, country=cc) for cc in COUNTRIES]
    )
    space_logins(plan, 60, spacing_s)
    (first,) = plan.jobs
    return first.country, [(delay, job.country) for delay, job in plan.deferred]


def test_one_login_now_the_others_spaced_and_a_different_country_first_each_round() -> None:
    at = datetime(2026, 1, 1, 12, 0, 7, tzinfo=UTC)
    first, rest = first_and_rest(at)
    assert [delay for delay, _ in rest] == [5, 10, 15, 20]
    assert sorted([first, *(cc for _, cc in rest)]) == sorted(COUNTRIES)
    firsts = {first_and_rest(at + timedelta(minutes=n))[0] for n in range(5)}
    assert firsts == set(COUNTRIES)  # every country leads once in five rounds


def test_no_spacing_sends_every_login_at_once() -> None:
    plan = PlannedRound(1, datetime(2026, 1, 1, tzinfo=UTC), None, COUNTRIES)
    plan.jobs = [make_job("smtp", 25, country=cc) for cc in COUNTRIES]
    space_logins(plan, 60, 0)
    assert [j.country for j in plan.jobs] == COUNTRIES and plan.deferred == []
