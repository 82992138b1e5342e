"""The controller's pool names its PostgreSQL sessions (`application_name`), unless the URL
names them itself; the job id scheme's watch reads those names and moves `seeded_from`, which
every process's ids follow (controller.jobs.scheme)."""

from datetime import UTC, datetime, timedelta

import asyncpg

from controller.db.pool import create_pool
from controller.jobs import scheme_store
from controller.jobs.rules import JobIds, is_seeded
from controller.jobs.scheme import LEAD_S, SeededGate
from controller.runtime.serve import application_name
from shared.clock import WALL, ManualClock
from tests.conftest import scratch_database

KEY = b"k" * 32
MID = "6f1d7a52-2f43-4c2b-9b7e-0c1b2f6f5b11"


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
        "mailprobe controller ingester ids3"
    }


async def test_a_name_the_url_gives_is_kept(database_url: str) -> None:
    url = f"{database_url}{'&' if '?' in database_url else '?'}application_name=ops-replica-7"
    assert await _session_names(database_url, url) == {"ops-replica-7"}


async def _db_now(pool: asyncpg.Pool) -> datetime:
    async with pool.acquire() as conn:
        now: datetime = await conn.fetchval("SELECT now()")
    return now


async def test_the_job_id_scheme_waits_for_every_older_controller_to_leave(
    database_url: str,
) -> None:
    """The watch looks at the sessions PostgreSQL shows: `seeded_from` set a lead ahead while
    only controllers that accept seeded ids are connected, cleared as soon as an older one
    connects, set again once it has gone."""
    async with scratch_database(database_url, "mailprobe_scheme") as url:
        new = await create_pool(url, 2, application_name=application_name(frozenset({"api"})))
        old: asyncpg.Pool | None = None
        gate = SeededGate(open_after_s=0)
        try:
            before = await _db_now(new)
            since = await scheme_store.look(new, gate, clock=WALL)
            assert since is not None and since >= before + timedelta(seconds=LEAD_S)
            assert await scheme_store.look(new, gate, clock=WALL) == since  # set once, not moved on
            old = await create_pool(url, 2, application_name="mailprobe controller ingester")
            async with old.acquire():
                assert await scheme_store.look(new, gate, clock=WALL) is None
                assert gate() is None
            async with new.acquire() as conn:
                pids = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                    "mailprobe controller ingester",
                )
                await old.close()  # the older controller stops (its pool would reconnect)
                for r in pids:  # returns once the backend has exited, if it has not yet
                    await conn.fetchval("SELECT pg_terminate_backend($1, 30000)", r["pid"])
            again = await scheme_store.look(new, gate, clock=WALL)
            assert again is not None and again > since
        finally:
            if old is not None and not old.is_closing():
                old.terminate()
            await new.close()


async def test_two_processes_name_a_round_alike_when_one_has_just_restarted(
    database_url: str,
) -> None:
    """Two processes' ids read the one `seeded_from`: a process that has just started (its
    watch's five minutes not over) names every round as the one that set it, on both sides of
    the switch; a process with JOB_IDS_SEEDED=false switches every process back at its start,
    and each follows at its next look."""
    async with scratch_database(database_url, "mailprobe_scheme") as url:
        roles = frozenset({"alerter", "scheduler"})
        pool = await create_pool(url, 3, application_name=application_name(roles))
        off: asyncpg.Pool | None = None
        try:
            running = SeededGate(open_after_s=0)
            since = await scheme_store.look(pool, running, clock=WALL)
            assert since is not None
            restarted = SeededGate()  # five minutes before its own watch would ask to switch
            assert await scheme_store.read(pool, restarted) == since
            assert (
                await scheme_store.look(pool, restarted, clock=WALL) == since
            )  # waiting: nothing moved
            a, b = JobIds([KEY], running), JobIds([KEY], restarted)
            times = [since - timedelta(milliseconds=1), since, since + timedelta(minutes=30)]
            for at in times:
                assert a.make(MID, "DE", at) == b.make(MID, "DE", at)
            assert [is_seeded(a.make(MID, "DE", at)) for at in times] == [False, True, True]

            off = await create_pool(
                url, 2, application_name=application_name(frozenset({"ingester"}), False)
            )
            assert await scheme_store.read(off, SeededGate(allowed=False)) is None
            assert (
                await scheme_store.look(pool, running, clock=WALL) is None
            )  # it sees the unmarked too
            assert await scheme_store.look(pool, restarted, clock=WALL) is None
            later = since + timedelta(minutes=30)
            assert not is_seeded(a.make(MID, "DE", later))
            assert a.make(MID, "DE", later) == b.make(MID, "DE", later)
        finally:
            if off is not None:
                await off.close()
            await pool.close()


async def test_a_controller_whose_url_names_its_sessions_switches_ids_back_to_keyed(
    database_url: str,
) -> None:
    url = f"{database_url}{'&' if '?' in database_url else '?'}application_name=ops-replica-7"
    pool = await create_pool(url, 2, application_name=application_name(frozenset({"api"})))
    try:
        assert SeededGate(open_after_s=0).look(False, 0.0) == "close"
        assert await scheme_store.look(pool, SeededGate(open_after_s=0), clock=WALL) is None
    finally:
        await pool.close()


async def test_the_scheme_opens_on_the_clock_given(database_url: str) -> None:
    """The watch's wait before opening is kept on the monotonic clock it is given, and
    `seeded_from` is a lead ahead of its wall instant (issue 79): a manual clock at a year's
    end, moved by hand, on the real PostgreSQL."""
    async with scratch_database(database_url, "mailprobe_scheme") as url:
        pool = await create_pool(url, 2, application_name=application_name(frozenset({"api"})))
        try:
            clock = ManualClock(datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC), monotonic=50.0)
            gate = SeededGate(open_after_s=120)
            assert await scheme_store.look(pool, gate, clock) is None  # the wait begins
            clock.advance(119)
            assert await scheme_store.look(pool, gate, clock) is None
            clock.advance(1)  # the wait is over, in the new year
            since = await scheme_store.look(pool, gate, clock)
            assert since == clock.now() + timedelta(seconds=LEAD_S)
            assert since.year == 2027
        finally:
            await pool.close()
