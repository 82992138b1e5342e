"""The look at the live controllers for the job id scheme (controller/jobs/scheme.py): the
names of the database's sessions, as PostgreSQL shows them to every session."""

import time

import asyncpg

from controller.db.pool import Conn
from controller.jobs.scheme import CONTROLLER_PREFIX, SeededGate, all_accept_seeded


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


async def look(pool: asyncpg.Pool, gate: SeededGate) -> bool:
    """One look at the live controllers, taken in by `gate`; whether it is open."""
    async with pool.acquire() as conn:
        names, own = await session_names(conn)
    return gate.look(all_accept_seeded(names, own), time.monotonic())
