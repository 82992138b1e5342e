"""How a batch of results moves a (monitor, country) state is one SQL function
(`country_state_moved`, migration 0110), asked by both statements that move a state (the results
store's batch statement, and its statement for a state another transaction made meanwhile).
Held here to a table of cases against real PostgreSQL (it has no Python twin: no Python moves a
state), and checked inlined: no call of it is left in either statement's plan."""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from controller.db.pool import Conn
from controller.ingest import store as results

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

# The state before: a run of 4 successes, checked at T0, its latest full row at T0 - 1 min.
STATE = {
    "last_scheduled_at": T0,
    "last_checked_at": T0,
    "consecutive_failures": 0,
    "consecutive_successes": 4,
    "detail_at": T0 - MIN,
    "detail_tag": 7,
}
# A batch of one routine success a minute later, whose full row is older than the state's.
MOVE = {
    "status": "up",
    "scheduled_at": T0 + MIN,
    "checked_at": T0 + MIN,
    "add_fail": 0,
    "reset_fail": True,
    "add_succ": 1,
    "reset_succ": False,
    "detail_at": None,
    "detail_tag": None,
}

# (what differs from STATE, what differs from MOVE, what the state becomes: its columns asked)
CASES: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    # a success adds to the run of successes; the state's full row stays
    ({}, {}, {"moves": True, "consecutive_successes": 5, "detail_at": T0 - MIN}),
    # a batch older than the state moves nothing
    ({}, {"scheduled_at": T0 - MIN}, {"moves": False}),
    # the same round again (a result replacing the controller's own row) moves it
    ({}, {"scheduled_at": T0}, {"moves": True, "last_scheduled_at": T0}),
    # a run of 2 failures ends the successes
    (
        {},
        {"status": "down", "add_fail": 2, "reset_fail": False, "add_succ": 0, "reset_succ": True},
        {"consecutive_failures": 2, "consecutive_successes": 0, "last_status": "down"},
    ),
    # failures add to failures, a batch without a success resets nothing
    (
        {"consecutive_failures": 3, "consecutive_successes": 0},
        {"status": "down", "add_fail": 1, "reset_fail": False, "add_succ": 0, "reset_succ": True},
        {"consecutive_failures": 4, "consecutive_successes": 0},
    ),
    # a batch that failed, then succeeded twice: the successes at its end start a new run
    (
        {"consecutive_failures": 0, "consecutive_successes": 9},
        {"add_fail": 0, "reset_fail": True, "add_succ": 2, "reset_succ": True},
        {"consecutive_failures": 0, "consecutive_successes": 2},
    ),
    # a missed round: neither counter moves, nor the time of the latest check
    (
        {},
        {"status": "missed", "checked_at": None, "reset_fail": False, "add_succ": 0},
        {"consecutive_successes": 4, "last_checked_at": T0, "last_status": "missed"},
    ),
    # the time of the latest check only grows (a late result of an earlier check)
    ({}, {"checked_at": T0 - MIN}, {"last_checked_at": T0}),
    # a state never checked takes the batch's
    ({"last_checked_at": None}, {}, {"last_checked_at": T0 + MIN}),
    # a newer full row is where the next compact rows point
    ({}, {"detail_at": T0 + MIN, "detail_tag": 3}, {"detail_at": T0 + MIN, "detail_tag": 3}),
    # an older one is not
    ({}, {"detail_at": T0 - 2 * MIN, "detail_tag": 3}, {"detail_at": T0 - MIN, "detail_tag": 7}),
    # a state without a full row takes the batch's
    (
        {"detail_at": None, "detail_tag": None},
        {"detail_at": T0 - 2 * MIN, "detail_tag": 3},
        {"detail_at": T0 - 2 * MIN, "detail_tag": 3},
    ),
]

_CALL = """
SELECT (m).* FROM (SELECT country_state_moved(
    ROW(s.*)::monitor_country_state,
    ROW(1, 'DE', $9, NULL, '', $10, 'job', $11, $12, $13, $14, $15, $16, $17, NULL, NULL, NULL,
        NULL)::country_state_move) AS m
    FROM (SELECT 1::bigint AS monitor_id, 'DE'::text AS country, 'up'::text AS last_status,
        NULL::text AS last_error_kind, ''::text AS last_message,
        $1::timestamptz AS last_scheduled_at, 'job0'::text AS last_job_id,
        $3::int AS consecutive_failures, $4::int AS consecutive_successes,
        now() AS updated_at, $2::timestamptz AS last_checked_at,
        $5::timestamptz AS detail_at, $6::smallint AS detail_tag, NULL::uuid AS detail_facts,
        $7::float8 AS last_response_time_ms, $8::float8[] AS last_phases_ms,
        NULL::text AS last_cert_not_after) s) x
"""


async def _columns(conn: Conn) -> list[str]:
    """The table's columns in order, as the call above spells a row of it."""
    rows = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'monitor_country_state'::regclass"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    )
    return [r["attname"] for r in rows]


@pytest.mark.parametrize(("state", "move", "after"), CASES)
async def test_a_batch_moves_a_state_as_the_rule_says(
    pool: asyncpg.Pool, state: dict[str, Any], move: dict[str, Any], after: dict[str, Any]
) -> None:
    s, u = {**STATE, **state}, {**MOVE, **move}
    async with pool.acquire() as conn:
        assert await _columns(conn) == [
            "monitor_id", "country", "last_status", "last_error_kind", "last_message",
            "last_scheduled_at", "last_job_id", "consecutive_failures",
            "consecutive_successes", "updated_at", "last_checked_at", "detail_at", "detail_tag",
            "detail_facts", "last_response_time_ms", "last_phases_ms", "last_cert_not_after",
        ]  # fmt: skip
        got = await conn.fetchrow(
            _CALL,
            s["last_scheduled_at"],
            s["last_checked_at"],
            s["consecutive_failures"],
            s["consecutive_successes"],
            s["detail_at"],
            s["detail_tag"],
            None,
            None,
            u["status"],
            u["scheduled_at"],
            u["checked_at"],
            u["add_fail"],
            u["reset_fail"],
            u["add_succ"],
            u["reset_succ"],
            u["detail_at"],
            u["detail_tag"],
        )
    assert got is not None
    assert {k: got[k] for k in after} == after
    if got["moves"]:
        assert (got["last_status"], got["last_scheduled_at"]) == (u["status"], u["scheduled_at"])


def _statements() -> list[tuple[str, str, list[str]]]:
    """Both statements that move a state, with their parameters' types: the batch, the time
    before which a result may be packed (the batch statements) and the writer's clock."""
    return [
        ("batch", results._INSERT, ["text", "timestamptz", "timestamptz"]),
        ("batch once", results._ONCE, ["text", "timestamptz", "timestamptz"]),
        ("lost", results._UPDATE_STATE, ["text", "timestamptz"]),
    ]


@pytest.mark.parametrize(("name", "sql", "types"), _statements())
async def test_both_statements_inline_the_rule(
    pool: asyncpg.Pool, name: str, sql: str, types: list[str]
) -> None:
    """Each statement calls the function, and the planner inlines it: no call is left in the
    plan, even in a generic one, so the rule costs what its expressions cost."""
    assert "country_state_moved(" in sql
    assert "country_state_moved" not in await _plan(pool, sql, types), name
    # The check sees a call left in: the same function with a setting of its own is not inlined.
    alter = "ALTER FUNCTION country_state_moved(monitor_country_state, country_state_move)"
    assert "country_state_moved" in await _plan(pool, sql, types, f"{alter} SET work_mem = '8MB'")


async def _plan(pool: asyncpg.Pool, sql: str, types: list[str], before: str = "") -> str:
    """The statement's generic plan, in a transaction rolled back (with `before` run first)."""
    args = ["'[]'"] + ["now()"] * (len(types) - 1)
    async with pool.acquire() as conn:
        tr = conn.transaction()
        await tr.start()
        try:
            if before:
                await conn.execute(before)
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE moving({', '.join(types)}) AS {sql}")
            plan: str = await conn.fetchval(
                f"EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE moving({', '.join(args)})"
            )
        finally:
            await tr.rollback()
            # A prepared statement outlives the rollback: the pooled connection drops it.
            if await conn.fetchval("SELECT 1 FROM pg_prepared_statements WHERE name = 'moving'"):
                await conn.execute("DEALLOCATE moving")
    assert "consecutive_failures" in plan
    return plan
