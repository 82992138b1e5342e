"""Versioned SQL migrations, applied in order under an advisory lock (safe with replicas), then
the repeatable definitions of views and functions (controller/db/repeatable.py)."""

from collections.abc import Sequence
from importlib import resources

import asyncpg
import structlog

from controller.db import repeatable

log = structlog.get_logger(__name__)

# Any constant shared by every replica; pg_advisory_xact_lock serialises concurrent migrators.
_LOCK_ID = 0x6D61696C70726F62  # "mailprob"


def migrations() -> list[tuple[str, str]]:
    folder = resources.files("controller.db") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text()) for p in files]


async def migrate(
    conn: asyncpg.Connection, *, definitions: Sequence[repeatable.Definition] | None = None
) -> list[str]:
    """Apply the migrations not applied yet, then the definitions whose text changed (all of
    them after a migration); return the migrations' names. `definitions` defaults to the files
    under controller/db/definitions; an empty list applies none."""
    order = repeatable.load() if definitions is None else definitions
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migrations():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            log.info("migration applied", version=version)
            applied_now.append(version)
        if order:
            await repeatable.apply(conn, order, everything=bool(applied_now))
    return applied_now
