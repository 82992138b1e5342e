"""`monitors.rounds_since` (migration 0008: from when the alerter counts a grid round nobody ran
as missed) against real PostgreSQL: set when a monitor's first due time is planned and when its
interval or enablement changes, left alone by the scheduler's round updates, which do not call
its trigger's function at all (migration 0042: one PL/pgSQL call per monitor and round)."""

import uuid
from datetime import datetime, timedelta

import asyncpg
import httpx

from controller.db.pool import Conn
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import Tenant

T0 = datetime(2026, 1, 1, tzinfo=utcnow().tzinfo)

# (what the update sets, whether `rounds_since` moves and to what: "due" the due time it sets,
# "now" the transaction's time, None unchanged), in order on one monitor.
STEPS: list[tuple[str, str | None]] = [
    (
        "next_due_at = $2::timestamptz",
        "due",
    ),  # first planned: the grid starts at its first due time
    ("next_due_at = $2::timestamptz + interval '10 s'", None),  # a round: nothing moves
    ("next_due_at = $2::timestamptz + interval '20 s', round_countries = ARRAY['DE']", None),
    ("check_interval = 120, next_due_at = NULL", "now"),  # a new interval: planned anew
    ("next_due_at = $2::timestamptz + interval '1 min'", "due"),
    ("status = 'maintenance'", None),  # in maintenance, not disabled: the grid goes on
    ("status = 'disabled', next_due_at = NULL", "now"),
    ("status = 'active'", "now"),
    ("next_due_at = $2::timestamptz + interval '2 min'", "due"),
    ("name = 'renamed'", None),
]


async def _calls(conn: Conn) -> int:
    """Calls of the trigger's function this session has not yet reported to the statistics
    (those of this transaction among them)."""
    n: int | None = await conn.fetchval(
        "SELECT pg_stat_get_xact_function_calls('monitors_rounds_since'::regproc)"
    )
    return n or 0


async def test_rounds_since_moves_on_a_first_plan_or_a_change_and_rounds_never_call_it(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool
) -> None:
    monitor = await create(api, org)
    public_id = uuid.UUID(monitor["publicId"])
    async with pipe_pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET next_due_at = NULL, status = 'active' WHERE public_id = $1",
            public_id,
        )
        for i, (change, moves) in enumerate(STEPS):
            due = T0 + timedelta(hours=i)
            async with conn.transaction():
                await conn.execute("SET LOCAL track_functions = 'pl'")
                before = await conn.fetchval(
                    "SELECT rounds_since FROM monitors WHERE public_id = $1", public_id
                )
                now = await conn.fetchval("SELECT now()")
                called = await _calls(conn)
                await conn.execute(
                    f"UPDATE monitors SET {change} WHERE public_id = $1"
                    + ("" if "$2" in change else " AND $2::timestamptz IS NOT NULL"),
                    public_id,
                    due,
                )
                row = await conn.fetchrow(
                    "SELECT rounds_since, next_due_at FROM monitors WHERE public_id = $1",
                    public_id,
                )
                assert row is not None
                after, planned = row
                calls = await _calls(conn) - called
            expected = {"due": planned, "now": now, None: before}[moves]
            assert after == expected, (change, after, expected)
            # The function runs only where it has something to do.
            assert calls == (0 if moves is None else 1), (change, calls)
