"""The controller's pool names its PostgreSQL sessions (`application_name`), unless the URL
names them itself; the job id scheme's gate reads those names (controller.jobs.scheme)."""

import asyncpg

from controller.db.pool import create_pool
from controller.jobs import scheme_store
from controller.jobs.scheme import SeededGate
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
    assert await _session_names(database_url, database_url) == {
        "mailprobe controller ingester ids2"
    }


async def test_a_name_the_url_gives_is_kept(database_url: str) -> None:
    url = f"{database_url}{'&' if '?' in database_url else '?'}application_name=ops-replica-7"
    assert await _session_names(database_url, url) == {"ops-replica-7"}


async def test_the_job_id_scheme_waits_for_every_older_controller_to_leave(
    database_url: str,
) -> None:
    """The gate looks at the sessions PostgreSQL shows: seeded ids while only controllers that
    accept them are connected, keyed ids again as soon as an older one connects."""
    new = await create_pool(database_url, 2, application_name=application_name(frozenset({"api"})))
    old: asyncpg.Pool | None = None
    gate = SeededGate(open_after_s=0)
    try:
        assert await scheme_store.look(new, gate) is True
        old = await create_pool(database_url, 2, application_name="mailprobe controller ingester")
        async with old.acquire():
            assert await scheme_store.look(new, gate) is False
            assert gate() is False
        async with new.acquire() as conn:
            pids = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                "mailprobe controller ingester",
            )
            await old.close()  # the older controller stops (its pool would reconnect)
            for r in pids:  # returns once the backend has exited, if it has not yet
                await conn.fetchval("SELECT pg_terminate_backend($1, 30000)", r["pid"])
        assert await scheme_store.look(new, gate) is True
    finally:
        if old is not None and not old.is_closing():
            old.terminate()
        await new.close()


async def test_a_controller_whose_url_names_its_sessions_makes_keyed_ids(
    database_url: str,
) -> None:
    url = f"{database_url}{'&' if '?' in database_url else '?'}application_name=ops-replica-7"
    pool = await create_pool(url, 2, application_name=application_name(frozenset({"api"})))
    try:
        assert await scheme_store.look(pool, SeededGate(open_after_s=0)) is False
    finally:
        await pool.close()
