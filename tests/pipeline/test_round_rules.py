"""A monitor's round rules are decided once each in SQL (migration 0053) and once in Python,
and the two agree on every case of one table, run against real PostgreSQL:

- `round_expected` and `rules.expected_countries`: how many countries a round expects (the
  listed ones, else the latest round's, an empty list saying nothing, else
  DEFAULT_CHECK_COUNTRIES, whatever it is set to: 1, 2, 7);
- `checked_from` and `rules.checked_from`: which countries' states are shown (those countries,
  any while they are unknown), asked of countries in and out of both lists;
- `planned_countries` and `schedule.planned_countries`: how many countries a round is planned
  for (what its checks cost);
- `round_closes_after` and `rules.closes_at`: when a round closes, at every interval and
  timeout a monitor may have (the expiry's cap at 840 s on either side of it)."""

from datetime import UTC, datetime

import asyncpg
import pytest

from controller.alerting import rules
from controller.monitors import validation
from controller.scheduling import rules as schedule

# (listed, latest round's)
LISTS: list[tuple[list[str] | None, list[str] | None]] = [
    (None, None),
    (None, []),
    ([], None),
    ([], []),
    (["DE"], None),
    (["DE", "US"], ["FR"]),
    (None, ["FR", "NL", "PL"]),
    ([], ["FR"]),
    (["US"], []),
    (["DE", "FR"], ["US", "DE"]),
]
DEFAULTS = [1, 2, 7]


@pytest.mark.parametrize(("allowed", "latest"), LISTS)
async def test_the_countries_a_round_expects(
    pool: asyncpg.Pool, allowed: list[str] | None, latest: list[str] | None
) -> None:
    async with pool.acquire() as conn:
        for default in DEFAULTS:
            count = await conn.fetchval(
                "SELECT round_expected($1, $2, $3)", allowed, latest, default
            )
            assert count == rules.expected_countries(allowed, latest, default)[1]
            planned = await conn.fetchval("SELECT planned_countries($1, $2)", allowed, default)
            assert planned == schedule.planned_countries(allowed, default)
        for country in ("DE", "FR", "US", "JP"):
            shown = await conn.fetchval("SELECT checked_from($1, $2, $3)", allowed, latest, country)
            assert shown is rules.checked_from(allowed, latest, country)


ROUNDS = [
    (validation.CHECK_INTERVAL_MIN, validation.TIMEOUT_MIN),
    (60, 30),
    (300, 300),
    (839, 1),
    (840, 30),
    (841, 30),
    (3_600, validation.TIMEOUT_MAX),
    (validation.CHECK_INTERVAL_MAX, validation.TIMEOUT_MAX),
]


@pytest.mark.parametrize(("interval", "timeout_s"), ROUNDS)
async def test_when_a_round_closes(pool: asyncpg.Pool, interval: int, timeout_s: int) -> None:
    at = datetime(2026, 3, 29, 0, 59, 30, tzinfo=UTC)
    async with pool.acquire() as conn:
        closes = await conn.fetchval(
            "SELECT $1::timestamptz + round_closes_after($2, $3)", at, interval, timeout_s
        )
    assert closes == rules.closes_at(at, interval, timeout_s)
    # what the close adds to the job's settling: the grace, nothing else
    assert closes - schedule.settles_at(at, interval, timeout_s) == rules.CLOSE_GRACE


@pytest.mark.parametrize(
    "call",
    [
        "round_expected(m.allowed_country_codes, m.round_countries, $1)",
        "checked_from(m.allowed_country_codes, m.round_countries, 'DE')",
        "planned_countries(m.allowed_country_codes, $1)",
        "round_closes_after(m.check_interval, m.timeout_seconds)",
        "login_account(m.type, m.hostname, m.config)",
        "login_legs(m.type, m.hostname, m.config)",
        "login_need(login_legs(m.type, m.hostname, m.config), 2, m.check_interval, $1)",
    ],
)
async def test_the_planner_inlines_each_function(pool: asyncpg.Pool, call: str) -> None:
    """The statements on the ingester's and the scheduler's paths call these functions per
    row: inlined, each costs what the expression it stands for costs (no function call left
    in the plan, even in a generic one)."""
    name = call.split("(", 1)[0]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE inlined(int) AS SELECT {call} FROM monitors m")
        plan = await conn.fetchval("EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE inlined(2)")
        await conn.execute("DEALLOCATE inlined")
    assert any(column in plan for column in ("allowed_country_codes", "check_interval", "config"))
    assert name not in plan and "login_legs" not in plan, plan
