"""The order of a round's logins to one account (`Scheduler._space_logins`): one job now, the
others `login_spacing_s` apart, and a different country first from one round to the next."""

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from controller.scheduling.scheduler import PlannedRound, Scheduler
from controller.secrets.box import SecretBox, generate_key
from controller.secrets.seal_keys import CountryKeys
from tests.peers.jobs import make_job

COUNTRIES = ["DE", "FR", "US", "JP", "BR"]


def first_and_rest(scheduler: Scheduler, at: datetime) -> tuple[str, list[tuple[float, str]]]:
    plan = PlannedRound(
        1, at, None, COUNTRIES, [make_job("smtp", 25, country=cc) for cc in COUNTRIES]
    )
    scheduler._space_logins(plan, 60)
    (first,) = plan.jobs
    return first.country, [(delay, job.country) for delay, job in plan.deferred]


def test_one_login_now_the_others_spaced_and_a_different_country_first_each_round() -> None:
    none = cast(Any, None)
    scheduler = Scheduler(
        none, none, none, SecretBox(generate_key()), CountryKeys(None), login_spacing_s=5
    )
    at = datetime(2026, 1, 1, 12, 0, 7, tzinfo=UTC)
    first, rest = first_and_rest(scheduler, at)
    assert [delay for delay, _ in rest] == [5, 10, 15, 20]
    assert sorted([first, *(cc for _, cc in rest)]) == sorted(COUNTRIES)
    firsts = {first_and_rest(scheduler, at + timedelta(minutes=n))[0] for n in range(5)}
    assert firsts == set(COUNTRIES)  # every country leads once in five rounds
