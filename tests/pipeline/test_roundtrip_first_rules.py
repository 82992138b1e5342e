"""A round trip's first minutes (issue 66) are decided once each in SQL (migration 0100) and
once in Python, and the two agree on every case of one table, against real PostgreSQL:

- `roundtrip_in_flight` and `rules.in_flight`: a round is in flight before it ends while some
  of its countries has no result of it (a check-now then joins it);
- `roundtrip_arrived` and `rules.arrived`: which results show the message arrived (they
  confirm the mailbox for the caps before the alerter judges their round)."""

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from controller.roundtrips import rules

T0 = datetime(2030, 1, 1, tzinfo=UTC)
ENDS = T0 + timedelta(seconds=20)

# (countries, answered, at)
FLIGHTS: list[tuple[list[str], list[str], datetime]] = [
    (["DE", "US"], [], T0),
    (["DE", "US"], ["DE"], T0),
    (["DE", "US"], ["US", "DE"], T0),
    (["DE", "US"], ["DE", "US", "FR"], T0),
    (["DE", "US"], ["FR"], T0),
    (["DE"], [], ENDS - timedelta(milliseconds=1)),
    (["DE"], [], ENDS),
    (["DE"], [], ENDS + timedelta(minutes=10)),
    (["DE", "US"], ["DE"], ENDS),
    ([], [], T0),
]


@pytest.mark.parametrize(("countries", "answered", "at"), FLIGHTS)
async def test_sql_and_python_agree_on_a_round_in_flight(
    pool: asyncpg.Pool, countries: list[str], answered: list[str], at: datetime
) -> None:
    in_sql = await pool.fetchval(
        "SELECT roundtrip_in_flight($1, $2, $3, $4)", countries, answered, ENDS, at
    )
    assert in_sql is rules.in_flight(countries, answered, ENDS, at)


def test_the_flights_table_has_both_answers() -> None:
    assert {rules.in_flight(c, a, ENDS, at) for c, a, at in FLIGHTS} == {True, False}


# (status, error kind)
RESULTS: list[tuple[str, str | None]] = [
    ("up", None),
    ("down", "spam"),
    ("down", "slow_delivery"),
    ("down", "not_delivered"),
    ("down", "refused"),
    ("missed", "mailbox_unconfirmed"),
    ("missed", "delivery_backoff"),
    ("missed", "expired"),
    ("inconclusive", "timeout"),
    ("down", None),
]


@pytest.mark.parametrize(("status", "kind"), RESULTS)
async def test_sql_and_python_agree_on_a_message_that_arrived(
    pool: asyncpg.Pool, status: str, kind: str | None
) -> None:
    in_sql = await pool.fetchval("SELECT roundtrip_arrived($1, $2)", status, kind)
    assert in_sql is rules.arrived(status, kind)
    assert in_sql is (status == "up" or kind in ("spam", "slow_delivery"))
