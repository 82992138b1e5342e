"""The job id scheme's looks and row (controller/jobs/scheme.py): the names of the database's
sessions, as PostgreSQL shows them to every session, and `job_id_scheme.seeded_from`
(migration 0123), the one fact every process's ids follow."""

from datetime import datetime

import asyncpg

from controller.db.pool import Conn
from controller.jobs.scheme import CONTROLLER_PREFIX, LEAD_S, Move, SeededGate, all_accept_seeded
from shared.clock import Clock


async def session_names(conn: Conn) -> tuple[list[str], str]:
    """The names of the other sessions of this database named as controllers, and this one's."""
    found = await conn.fetch(
        "SELECT application_name FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND starts_with(application_name, $1)",
        CONTROLLER_PREFIX,
    )
    own: str = await conn.fetchval("SELECT current_setting('application_name')")
    return [r["application_name"] for r in found], own


async def seeded_from(
    conn: Conn, move: Move = None, now: datetime | None = None
) -> datetime | None:
    """`seeded_from` after `move`: "open" sets it to `now` plus LEAD_S when it is NULL (a value
    already set stays, so rounds already seeded stay so), "close" clears it."""
    if move == "open":
        if now is None:
            raise ValueError("seeded_from: opening needs the instant it opens at")
        await conn.execute(
            "UPDATE job_id_scheme SET seeded_from = $2::timestamptz + make_interval(secs => $1)"
            " WHERE seeded_from IS NULL",
            LEAD_S,
            now,
        )
    elif move == "close":
        await conn.execute(
            "UPDATE job_id_scheme SET seeded_from = NULL WHERE seeded_from IS NOT NULL"
        )
    found: datetime | None = await conn.fetchval("SELECT seeded_from FROM job_id_scheme")
    return found


async def read(pool: asyncpg.Pool, gate: SeededGate) -> datetime | None:
    """`gate` given `seeded_from` as it stands (a process's start: no look yet); a process that
    may not make seeded ids (`allowed` False) clears it first."""
    async with pool.acquire() as conn:
        gate.seeded_from = await seeded_from(conn, None if gate.allowed else "close")
    return gate.seeded_from


async def look(pool: asyncpg.Pool, gate: SeededGate, clock: Clock) -> datetime | None:
    """One look at the live controllers, taken in by `gate` at `clock`'s monotonic time, and
    the row moved as it asks (opened a lead after `clock`'s instant); `seeded_from` as it then
    stands (also kept in `gate`)."""
    async with pool.acquire() as conn:
        names, own = await session_names(conn)
        move = gate.look(all_accept_seeded(names, own), clock.monotonic())
        gate.seeded_from = await seeded_from(conn, move, clock.now())
    return gate.seeded_from
