"""`monitors.rounds_since` (migration 0008: from when the alerter counts a grid round nobody ran
as missed) against real PostgreSQL: set when a monitor's first due time is planned and when its
interval or enablement changes, left alone by the scheduler's round updates, which do not call
its triggers' functions at all (migration 0042: one PL/pgSQL call per monitor and round); alike
whether the due time is moved by this release (`due_move`, migration 0128, with
`monitors.next_due_at` kept for a previous release or not) or written to `monitors` (a previous
release's scheduler, an operator's SQL)."""

import uuid
from datetime import datetime, timedelta

import asyncpg
import httpx
import pytest

from controller.db.pool import Conn
from controller.monitors.store import DUE_AT
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import Tenant

T0 = datetime(2026, 1, 1, tzinfo=utcnow().tzinfo)

# (what the update of `monitors` sets, the due time moved to, whether `rounds_since` moves and to
# what: "due" the due time set, "now" the write's `updated_at` (the transaction's time here),
# None unchanged), in order on one
# monitor. The API clears the due time through `monitors` (a change of interval or status).
STEPS: list[tuple[str, str | None, str | None]] = [
    ("", "$2::timestamptz", "due"),  # first planned: the grid starts at its first due time
    ("", "$2::timestamptz + interval '10 s'", None),  # a round: nothing moves
    ("round_countries = ARRAY['DE']", "$2::timestamptz + interval '20 s'", None),
    ("check_interval = 120, next_due_at = NULL", None, "now"),  # a new interval: planned anew
    ("", "$2::timestamptz + interval '1 min'", "due"),
    ("status = 'maintenance'", None, None),  # in maintenance, not disabled: the grid goes on
    ("status = 'disabled', next_due_at = NULL", None, "now"),
    ("status = 'active'", None, "now"),
    ("", "$2::timestamptz + interval '2 min'", "due"),
    ("name = 'renamed'", None, None),
]
# The functions of the rule: a change of interval or enablement (`monitors`' trigger), a first
# due time (`monitor_due`'s, migration 0128).
RULE = ("monitors_rounds_since", "monitor_due_first")


async def _calls(conn: Conn) -> int:
    """Calls of the rule's functions this session has not yet reported to the statistics
    (those of this transaction among them)."""
    n: int | None = await conn.fetchval(
        "SELECT sum(pg_stat_get_xact_function_calls(f::regproc)) FROM unnest($1::text[]) f",
        list(RULE),
    )
    return n or 0


async def _step(
    conn: Conn, public_id: uuid.UUID, step: tuple[str, str | None], due: datetime, via: str
) -> None:
    """One step: `monitors` updated, the due time moved by `via`: `due_move` (this release's
    scheduler, with `monitors.next_due_at` kept or not: `due_move` or `due_move_unmirrored`) or
    `monitors` (a previous release's scheduler, an operator's SQL)."""
    change, moved = step
    if via == "monitors" and moved is not None:
        change = ", ".join(c for c in (change, f"next_due_at = {moved}") if c)
        moved = None
    if change:
        await conn.execute(
            # As the product writes a monitor: `updated_at` with it, the write's instant the
            # trigger takes (here the transaction's time).
            f"UPDATE monitors SET {change}, updated_at = now() WHERE public_id = $1"
            + ("" if "$2" in change else " AND $2::timestamptz IS NOT NULL"),
            public_id,
            due,
        )
    if moved is not None:
        if via == "due_move_unmirrored":  # every controller of this release: seeded ids
            await conn.execute("UPDATE job_id_scheme SET seeded_from = now()")
        await conn.execute(
            "SELECT due_move(ARRAY[(SELECT id FROM monitors WHERE public_id = $1)],"
            f" ARRAY[{moved}])",
            public_id,
            due,
        )
        if via == "due_move_unmirrored":  # seen by no other session
            await conn.execute("UPDATE job_id_scheme SET seeded_from = NULL")


@pytest.mark.parametrize("via", ["due_move", "due_move_unmirrored", "monitors"])
async def test_rounds_since_moves_on_a_first_plan_or_a_change_and_rounds_never_call_it(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool, via: str
) -> None:
    monitor = await create(api, org)
    public_id = uuid.UUID(monitor["publicId"])
    async with pipe_pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET next_due_at = NULL, status = 'active' WHERE public_id = $1",
            public_id,
        )
        for i, (change, moved, moves) in enumerate(STEPS):
            due = T0 + timedelta(hours=i)
            async with conn.transaction():
                await conn.execute("SET LOCAL track_functions = 'pl'")
                before = await conn.fetchval(
                    "SELECT rounds_since FROM monitors WHERE public_id = $1", public_id
                )
                now = await conn.fetchval("SELECT now()")
                called = await _calls(conn)
                await _step(conn, public_id, (change, moved), due, via)
                row = await conn.fetchrow(
                    f"SELECT rounds_since, {DUE_AT} FROM monitors WHERE public_id = $1",
                    public_id,
                )
                assert row is not None
                after, planned = row
                calls = await _calls(conn) - called
            expected = {"due": planned, "now": now, None: before}[moves]
            assert after == expected, (change, moved, after, expected)
            # The functions run only where they have something to do.
            assert calls == (0 if moves is None else 1), (change, moved, calls)
