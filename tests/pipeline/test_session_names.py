"""The controller's pool names its PostgreSQL sessions (`application_name`), unless the URL
names them itself."""

import asyncpg

from controller.db.pool import create_pool
from controller.runtime.serve import application_name


async def _session_names(database_url: str, url: str) -> set[str]:
    """The names PostgreSQL shows for the sessions of a pool on `url` made as `serve` makes its
    own (an ingester's)."""
    pool = await create_pool(url, 2, application_name=application_name(frozenset({"ingester"})))
    try:
        async with pool.acquire() as a, pool.acquire() as b:
            pids = [await c.fetchval("SELECT pg_backend_pid()") for c in (a, b)]
            watcher = await asyncpg.connect(database_url)
            try:
                rows = await watcher.fetch(
                    "SELECT application_name FROM pg_stat_activity WHERE pid = ANY($1::int[])",
                    pids,
                )
            finally:
                await watcher.close()
    finally:
        await pool.close()
    assert len(rows) == 2
    return {r[0] for r in rows}


async def test_the_pool_names_its_sessions_by_the_roles(database_url: str) -> None:
    assert await _session_names(database_url, database_url) == {"mailprobe controller ingester"}


async def test_a_name_the_url_gives_is_kept(database_url: str) -> None:
    url = f"{database_url}{'&' if '?' in database_url else '?'}application_name=ops-replica-7"
    assert await _session_names(database_url, url) == {"ops-replica-7"}
