"""Logins never lock the account: the back-off after rejected credentials and who may log in,
as tables (`controller.logins.backoff`)."""

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
        (2, T0 + 2 * MIN, T0 + 3 * MIN, ["US"], "the next retry: another one"),
    ],
)
def test_under_a_back_off_one_country_logs_in_once_the_retry_is_due(
    failures: int, retry_at: datetime | None, at: datetime, expected: list[str], why: str
) -> None:
    assert logins(failures, retry_at, at, ["DE", "FR", "US"]) == expected, why
