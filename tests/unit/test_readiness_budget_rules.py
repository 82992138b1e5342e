"""Each organization's hourly readiness DNS budget per country, as tables: the hour a round is
counted in, why a held round is held and until when, and what an agent may report. Which
rounds are asked is the SQL function's rule, tabled on PostgreSQL
(tests/alerting/test_readiness_turns.py)."""

from datetime import UTC, datetime

import pytest

from controller.sidechecks.readiness.budget import Outcome, why_held
from shared.sidechecks.readiness import QUERIES_MAX, Readiness, bounded
from shared.timefmt import utc_hour

AT = datetime(2026, 11, 27, 10, 41, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("outcome", "at", "why"),
    [
        ("asked", AT, None),
        (
            "spent",
            AT,
            "this organization's DNS budget for readiness in DE is spent until 11:00 UTC"
            " (400 queries an hour)",
        ),
        (
            "turn",
            AT,
            "this organization's DNS budget for readiness in DE is kept until 11:00 UTC for its"
            " monitors waiting longer (400 queries an hour)",
        ),
        (
            "spent",
            datetime(2026, 11, 27, 23, 59, tzinfo=UTC),
            "this organization's DNS budget for readiness in DE is spent until 00:00 UTC"
            " (400 queries an hour)",
        ),
    ],
)
def test_why_a_round_is_held_and_until_when(outcome: Outcome, at: datetime, why: str) -> None:
    assert why_held(outcome, 400, "DE", at) == why


def test_the_hour_is_the_clock_hour_in_utc() -> None:
    assert utc_hour(AT) == datetime(2026, 11, 27, 10, tzinfo=UTC)


@pytest.mark.parametrize(("said", "kept"), [(10**9, QUERIES_MAX), (-5, 0), (44, 44)])
def test_an_agent_reports_at_most_a_rounds_most(said: int, kept: int) -> None:
    """What an agent says it spent is cut to [0, QUERIES_MAX] before it is counted: a lying
    agent can charge its own country's rounds at most what they reserved anyway."""
    assert bounded(Readiness(domain="example.test", queries=said)).queries == kept
