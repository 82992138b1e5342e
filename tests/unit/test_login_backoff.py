"""Logins never lock the account: the back-off after rejected credentials and who may log in,
as tables (`controller.logins.backoff`)."""

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from controller.logins.backoff import Backoff, after_round, logins

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
CAP = timedelta(minutes=30)
FIRST = Backoff(1, T0, T0 + 2 * MIN)


@pytest.mark.parametrize(
    ("before", "kinds", "logged_in", "at", "after", "why"),
    [
        (None, ["auth", "auth"], False, T0, FIRST, "first rejected round: wait 2 intervals"),
        (None, ["timeout"], False, T0, None, "other failures start nothing"),
        (None, ["basic_auth_disabled"], False, T0, FIRST, "a password the server takes no more"),
        (None, [], True, T0, None, "a login"),
        (FIRST, ["auth"], False, T0 + 2 * MIN, Backoff(2, T0, T0 + 6 * MIN), "then 4"),
        (
            Backoff(4, T0, T0 + 30 * MIN, True),
            ["auth"],
            False,
            T0 + 30 * MIN,
            Backoff(5, T0, T0 + 60 * MIN, True),
            "32 intervals capped at 30 minutes; still notified",
        ),
        (FIRST, ["timeout"], False, T0 + 2 * MIN, FIRST, "a timeout neither ends nor extends it"),
        (FIRST, ["auth"], True, T0 + 2 * MIN, None, "some country logged in: over"),
        (FIRST, [], False, T0 + MIN, FIRST, "a round of held logins changes nothing"),
    ],
)
def test_rejected_rounds_back_logins_off_exponentially_up_to_the_cap(
    before: Backoff | None,
    kinds: list[str],
    logged_in: bool,
    at: datetime,
    after: Backoff | None,
    why: str,
) -> None:
    assert after_round(before, kinds, logged_in, at, MIN, CAP) == after, why


@pytest.mark.parametrize(
    ("failures", "retry_at", "at", "expected", "why"),
    [
        (0, None, T0, ["DE", "FR", "US"], "no back-off: every country"),
        (1, T0 + 2 * MIN, T0 + MIN, [], "before the retry: nobody"),
        (1, T0 + 2 * MIN, T0 + 2 * MIN, ["FR"], "at the retry: one country"),
        (2, T0 + 6 * MIN, T0 + 6 * MIN, ["US"], "the next retry: another one"),
        (1, T0 + 2 * MIN, T0 + 3 * MIN, ["US"], "a retry with no verdict: the next country"),
        (1, T0 + 2 * MIN, T0 + 4 * MIN, ["DE"], "and the next, round the countries"),
    ],
)
def test_under_a_back_off_one_country_logs_in_once_the_retry_is_due(
    failures: int, retry_at: datetime | None, at: datetime, expected: list[str], why: str
) -> None:
    assert logins(failures, retry_at, at, ["DE", "FR", "US"], MIN) == expected, why


def _history(
    countries: list[str], dead: str, outage_rounds: int, interval: timedelta, cap: timedelta
) -> tuple[int | None, int]:
    """The planner's `logins` and the alerter's `after_round` over the rounds of a monitor
    checked from `countries` every `interval`: the account's server rejects every login for
    `outage_rounds` rounds (an auth backend down), then takes them; `dead`'s checks never
    reach the server (its agents gone, its path cut). The round the back-off ended (None: it
    never did within the rounds simulated), and the first round at or after its retry once the
    server took logins again."""
    b: Backoff | None = None
    due = outage_rounds
    rounds = outage_rounds + 4 * (int(cap / interval) + 2) + 4 * len(countries)
    for n in range(rounds):
        at = T0 + n * interval
        if n == outage_rounds and b is not None:
            due = max(n, math.ceil((b.retry_at - T0) / interval))
        who = logins(b.failures, b.retry_at, at, countries, interval) if b else countries
        kinds = ["timeout" if cc == dead else "auth" for cc in who if n < outage_rounds]
        kinds += ["timeout" for cc in who if n >= outage_rounds and cc == dead]
        up = n >= outage_rounds and any(cc != dead for cc in who)
        b = after_round(b, kinds, up, at, interval, cap)
        if b is None and n >= outage_rounds:
            return n, due
    return None, due


def test_a_back_off_ends_once_logins_are_taken_whichever_country_cannot_reach_the_server() -> None:
    """The back-off is the budget of a rejected login: once the server takes logins again, it
    ends within a round per country after its retry is due, even when the country whose turn
    it is cannot reach the server (a country of one: nothing can be done there)."""
    for seed in range(40):
        rng = random.Random(seed)
        countries = ["DE", "FR", "US", "SG", "BR"][: rng.randint(2, 5)]
        dead = rng.choice(countries)
        interval = timedelta(seconds=rng.choice((30, 60, 300, 3600)))
        cap = timedelta(minutes=rng.choice((1, 30, 360, 10_080)))
        outage = rng.randint(1, 8)
        ended, due = _history(countries, dead, outage, interval, cap)
        bound = due + len(countries) - 1
        print(
            f"seed={seed} countries={len(countries)} dead={dead} interval={interval}"
            f" cap={cap} outage_rounds={outage} ended_at_round={ended} bound={bound}"
        )
        assert ended is not None and ended <= bound, f"seed {seed}: the back-off stranded"
