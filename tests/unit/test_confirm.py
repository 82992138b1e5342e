"""When the alerter asks for a confirmation round (`controller.confirm.wanted`), as a table."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.confirm import wanted
from controller.db.alerts import Thresholds

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
ON, OFF = Thresholds(), Thresholds(confirm_failures=False)
THREE = Thresholds(down_after_rounds=3)
HUNDRED = Thresholds(down_after_rounds=100)


@pytest.mark.parametrize(
    ("verdict", "down_rounds", "incident_open", "t", "age", "expected", "why"),
    [
        ("failing", 1, False, ON, timedelta(seconds=2), True, "first failing round: confirm"),
        ("failing", 1, False, OFF, timedelta(seconds=2), False, "confirmation switched off"),
        ("degraded", 0, False, ON, timedelta(seconds=2), False, "a lone country: no"),
        ("up", 0, False, ON, timedelta(seconds=2), False, "passing round"),
        ("missed", 0, False, ON, timedelta(seconds=2), False, "nobody ran it"),
        ("failing", 2, False, ON, timedelta(seconds=2), False, "the streak is down already"),
        ("failing", 2, False, THREE, timedelta(seconds=2), True, "3 rounds: confirm again"),
        ("failing", 3, True, THREE, timedelta(seconds=2), False, "incident open"),
        ("failing", 2, False, HUNDRED, timedelta(seconds=2), True, "second confirmation"),
        ("failing", 3, False, HUNDRED, timedelta(seconds=2), False, "two per streak at most"),
        ("failing", 1, True, ON, timedelta(seconds=2), False, "incident open (held over)"),
        ("failing", 1, False, ON, MINUTE, False, "an old round judged late: leave to schedule"),
        ("failing", 1, False, ON, MINUTE - timedelta(seconds=1), True, "still within interval"),
    ],
)
def test_confirmation_is_wanted_for_a_recent_failing_round_short_of_an_incident(
    verdict: str,
    down_rounds: int,
    incident_open: bool,
    t: Thresholds,
    age: timedelta,
    expected: bool,
    why: str,
) -> None:
    assert wanted(verdict, down_rounds, incident_open, t, NOW - age, NOW, MINUTE) is expected, why
