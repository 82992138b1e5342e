"""Each organization's hourly readiness DNS budget per country, as tables: what an hour's
rounds are charged, when a round is held and until when, and a batch's ledger (another
organization, another country, the next hour: each its own)."""

from datetime import UTC, datetime

import pytest

from controller.sidechecks.readiness.budget import Ledger, Spend, charged, held, hour_of
from shared.sidechecks.readiness import QUERIES_MAX, Readiness, bounded

AT = datetime(2026, 11, 27, 10, 41, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spend", "expected"),
    [
        (Spend(), 0),
        (Spend(asked=1), QUERIES_MAX),  # asked, not back: its most
        (Spend(asked=1, settled=1, spent=12), 12),  # back: what it spent
        (Spend(asked=3, settled=1, spent=44), 44 + 2 * QUERIES_MAX),
        (Spend(asked=1, settled=2, spent=20), 20),  # more settled than asked: never less
    ],
)
def test_what_an_hours_rounds_are_charged(spend: Spend, expected: int) -> None:
    assert charged(spend) == expected


@pytest.mark.parametrize(
    ("spend", "budget", "asked"),
    [
        (Spend(), 80, True),  # room for exactly one round
        (Spend(), 79, False),
        (Spend(asked=4, settled=4, spent=320), 400, True),  # 320 + 80 = 400
        (Spend(asked=4, settled=4, spent=321), 400, False),
        (Spend(asked=5), 400, False),  # five in flight reserve it all
        (Spend(asked=5, settled=5, spent=60), 400, True),  # they came back small
    ],
)
def test_a_round_is_asked_while_one_more_fits(spend: Spend, budget: int, asked: bool) -> None:
    why = held(spend, budget, "DE", AT)
    assert (why is None) is asked
    if why is not None:
        assert why == (
            "this organization's DNS budget for readiness in DE is spent until 11:00 UTC"
            f" ({budget} queries an hour)"
        )


def test_the_hour_is_the_clock_hour_in_utc() -> None:
    assert hour_of(AT) == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert held(Spend(asked=99), 80, "DE", datetime(2026, 11, 27, 23, 59, tzinfo=UTC)) == (
        "this organization's DNS budget for readiness in DE is spent until 00:00 UTC"
        " (80 queries an hour)"
    )


def test_a_batch_counts_its_own_rounds_per_organization_country_and_hour() -> None:
    ledger = Ledger(budget=200, spends={(1, "DE", hour_of(AT)): Spend(asked=1, settled=1)})
    assert ledger.take(1, "DE", AT) is None  # 0 + 80
    assert ledger.take(1, "DE", AT) is None  # 160
    assert ledger.take(1, "DE", AT) is not None  # 240 > 200: held
    assert ledger.take(2, "DE", AT) is None  # another organization: its own
    assert ledger.take(1, "FR", AT) is None  # another country: its own
    next_hour = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
    assert ledger.take(1, "DE", next_hour) is None  # the hour rolled: asked again
    assert ledger.taken[(1, "DE", hour_of(AT))] == 2  # a held round takes nothing


@pytest.mark.parametrize(("said", "kept"), [(10**9, QUERIES_MAX), (-5, 0), (44, 44)])
def test_an_agent_reports_at_most_a_rounds_most(said: int, kept: int) -> None:
    """What an agent says it spent is cut to [0, QUERIES_MAX] before it is counted: a lying
    agent can charge its own country's rounds at most what they reserved anyway."""
    assert bounded(Readiness(domain="example.test", queries=said)).queries == kept
