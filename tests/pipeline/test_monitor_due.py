"""Due times in `monitor_due` (migration 0128) against real PostgreSQL: this release's moves
(`scheduler_moved`, `due_move`) held to the statements they replaced (migration 0118's round
update on `monitors`) on a table of rounds; a routine round, once no previous release runs,
leaves the monitor's row unwritten; and the claims of this release and of a previous one
(on `monitors.next_due_at`) exclude each other during a rolling upgrade."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

import asyncpg
import httpx
import pytest

from controller.db.pool import Conn, connect
from controller.jobs.scheme import session_name
from controller.monitors.store import DUE_AT
from controller.scheduling import due_store
from shared.timefmt import utcnow
from testkit.common import seed_monitors
from tests.api.helpers import create
from tests.conftest import Tenant

T0 = datetime(2026, 1, 1, tzinfo=utcnow().tzinfo)

# The round update before migration 0128 (0118's `scheduler_moved`, and `set_next_due`).
OLD_MOVE = (
    "UPDATE monitors m SET next_due_at = u.due_at,"
    " round_countries = coalesce(string_to_array(u.went, ','), m.round_countries)"
    " FROM unnest($1::bigint[], $2::timestamptz[], $3::text[]) AS u(id, due_at, went)"
    " WHERE m.id = u.id"
)
# A previous release's claim (on `monitors` alone).
OLD_CLAIM = (
    "SELECT id FROM monitors WHERE status <> 'disabled' AND next_due_at <= $1"
    " ORDER BY next_due_at LIMIT 10 FOR NO KEY UPDATE SKIP LOCKED"
)

# In order on one monitor: (an update of `monitors` first, as the API makes it, or None; the due
# time's offset from T0 in seconds, or None to clear it; the countries the round went to:
# comma-joined, or None to keep the stored ones).
ROUNDS: list[tuple[str | None, int | None, str | None]] = [
    (None, 0, None),  # first planned
    (None, 10, "DE,US"),  # a first round: its countries
    (None, 20, "DE,US"),  # a routine round: the same countries
    (None, 30, None),  # countries kept
    (None, 40, "US"),  # fewer countries
    ("check_interval = 120, next_due_at = NULL", None, None),  # a new interval: planned anew
    (None, 600, None),
    (None, 720, "DE"),
    ("status = 'disabled', next_due_at = NULL", None, None),
    ("status = 'active'", 900, "DE"),
]


# A monitor's due time, countries, rounds since and row version (xmin).
Held = tuple[datetime | None, list[str] | None, datetime, str]


async def _held(conn: Conn, monitor_id: int) -> Held:
    row = await conn.fetchrow(
        f"SELECT {DUE_AT}, round_countries, rounds_since, xmin::text AS version"
        " FROM monitors WHERE id = $1",
        monitor_id,
    )
    assert row is not None
    return cast(Held, tuple(row))


async def _ids(api: httpx.AsyncClient, org: Tenant, conn: Conn, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        public_id = (await create(api, org))["publicId"]
        ids.append(await conn.fetchval("SELECT id FROM monitors WHERE public_id = $1", public_id))
        await conn.execute("UPDATE monitors SET next_due_at = NULL WHERE id = $1", ids[-1])
    return ids


async def _unmirrored(conn: Conn, mirrored: bool) -> None:
    """Inside a transaction: every controller runs this release (`seeded_from` set, the session
    named as one of its controllers), seen by no other session, unless `mirrored`."""
    if not mirrored:
        await conn.execute("UPDATE job_id_scheme SET seeded_from = now()")
        await conn.execute(
            "SELECT set_config('application_name', $1, true)", session_name(["scheduler"])
        )


@pytest.mark.parametrize("mirrored", [False, True])
async def test_moves_hold_to_the_round_update_before_them(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool, mirrored: bool
) -> None:
    async with pipe_pool.acquire() as conn:
        old, new = await _ids(api, org, conn, 2)
        for change, offset, went in ROUNDS:
            due = None if offset is None else T0 + timedelta(seconds=offset)
            async with conn.transaction():
                await _unmirrored(conn, mirrored)
                if change is not None:
                    # As the product writes a monitor: `updated_at` with it (the triggers' instant).
                    await conn.execute(
                        f"UPDATE monitors SET {change}, updated_at = now()"
                        " WHERE id = ANY($1::bigint[])",
                        [old, new],
                    )
                before = await _held(conn, new)
                if due is not None:
                    await conn.execute(OLD_MOVE, [old], [due], [went])
                    await due_store.moved(conn, [new], [due], [went], utcnow())
                a, b = await _held(conn, old), await _held(conn, new)
                kept = await conn.fetchval("SELECT next_due_at FROM monitors WHERE id = $1", new)
                await conn.execute("UPDATE job_id_scheme SET seeded_from = NULL")
            assert a[:3] == b[:3], (change, offset, went, a, b)
            assert b[0] == due
            if mirrored:  # kept for a previous release's scheduler and alerter
                assert kept == due
            elif (
                change is None
                and before[0] is not None
                and went in (None, ",".join(before[1] or ()))
            ):
                # a round that moved nothing but the due time (not a first one, which sets
                # `rounds_since`; countries kept): the monitor's row is not written
                assert b[3] == before[3], (offset, went)


async def _due(conn: Conn, monitor_id: int) -> datetime | None:
    at: datetime | None = await conn.fetchval(
        "SELECT next_due_at FROM monitor_due WHERE monitor_id = $1", monitor_id
    )
    return at


async def _new_claim(conn: Conn, now: datetime) -> Sequence[int]:
    return [due_store.monitor_of(m).id for m in await due_store.claim_due(conn, now, 10)]


async def test_claims_of_this_release_and_a_previous_one_exclude_each_other(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool
) -> None:
    async with pipe_pool.acquire() as new, pipe_pool.acquire() as old:
        (monitor,) = await _ids(api, org, new, 1)
        # planned by this release: a previous release's claim sees the due time too
        await due_store.set_next_due(new, [monitor], [T0])
        assert await old.fetchval("SELECT next_due_at FROM monitors WHERE id = $1", monitor) == T0
        now = T0 + timedelta(seconds=1)

        async with new.transaction():
            assert await _new_claim(new, now) == [monitor]
            async with old.transaction():
                assert await old.fetch(OLD_CLAIM, now) == []  # held by this release's claim
            await due_store.moved(new, [monitor], [T0 + timedelta(seconds=10)], ["DE"], now)
        async with old.transaction():
            assert await old.fetch(OLD_CLAIM, now) == []  # moved on for both

        later = T0 + timedelta(seconds=11)
        async with old.transaction():
            assert [r["id"] for r in await old.fetch(OLD_CLAIM, later)] == [monitor]
            async with new.transaction():
                assert await _new_claim(new, later) == []  # held by the previous release's
            await old.execute(OLD_MOVE, [monitor], [T0 + timedelta(seconds=20)], ["US"])
        async with new.transaction():
            assert await _new_claim(new, later) == []  # moved on for both
            assert await _due(new, monitor) == T0 + timedelta(seconds=20)
            assert await _new_claim(new, T0 + timedelta(seconds=21)) == [monitor]


async def test_a_cleared_due_time_is_planned_anew_by_this_release(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool
) -> None:
    """The API clears the due time on `monitors` (a change of interval or status) whatever
    `monitors.next_due_at` held while nothing kept it there: the monitor waits to be planned."""
    async with pipe_pool.acquire() as conn:
        (monitor,) = await _ids(api, org, conn, 1)
        async with conn.transaction():
            await _unmirrored(conn, False)
            await due_store.set_next_due(conn, [monitor], [T0])
            # not kept on `monitors`: still NULL there, and cleared again by the API
            assert (
                await conn.fetchval("SELECT next_due_at FROM monitors WHERE id = $1", monitor)
                is None
            )
            await conn.execute(
                "UPDATE monitors SET check_interval = 120, next_due_at = NULL WHERE id = $1",
                monitor,
            )
            unplanned = await due_store.claim_unplanned(conn, 10, 2)
            waiting = await due_store.waiting(conn, utcnow())
            await conn.execute("UPDATE job_id_scheme SET seeded_from = NULL")
        assert [u.id for u in unplanned] == [monitor]
        assert waiting.unplanned
        assert await _due(conn, monitor) is None


async def test_the_claim_runs_on_its_generic_plan(org: Tenant, pipe_database_url: str) -> None:
    """A claim's values (a time a few dozen of 2,000 monitors are due by, a batch's size) made
    a plan for them look cheaper than the generic one, so the join was planned again at every
    claim; through scalar subqueries both are estimated alike, and PostgreSQL keeps the generic
    plan after its first five."""
    await seed_monitors(pipe_database_url, 2_000, interval=10, organization=org.org_name + "-due")
    conn = await connect(pipe_database_url)  # its own statements: none planned before
    try:
        await conn.execute(
            "UPDATE monitor_due SET next_due_at = $1::timestamptz + monitor_id * interval '5 ms'",
            T0,
        )
        await conn.execute("ANALYZE monitor_due")
        first = await conn.fetchval("SELECT min(next_due_at) FROM monitor_due")
        for _ in range(12):
            async with conn.transaction():
                claimed = await due_store.claim_due(conn, first + timedelta(milliseconds=295), 60)
                assert len(claimed) == 60
        plans = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            due_store.CLAIM,
        )
        assert plans is not None
        assert plans["custom_plans"] <= 5 and plans["generic_plans"] >= 7, dict(plans)
    finally:
        await conn.close()


async def test_clearing_seeded_from_brings_the_previous_release_s_copy_up_to_date(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool
) -> None:
    """A due time moved while `monitors.next_due_at` was not kept is copied there when
    `seeded_from` is cleared (a rollback's `JOB_IDS_SEEDED=false`, an older controller seen):
    a previous release's scheduler and alerter then read every monitor's due time, not only
    those moved since (a daily monitor's copy would otherwise be a day, or weeks, old)."""
    async with pipe_pool.acquire() as conn:
        moved, other = await _ids(api, org, conn, 2)
        async with conn.transaction():
            await _unmirrored(conn, False)
            await due_store.set_next_due(conn, [moved, other], [T0, T0])
            await due_store.set_next_due(conn, [moved], [T0 + timedelta(days=1)])
            assert (
                await conn.fetchval("SELECT next_due_at FROM monitors WHERE id = $1", moved) is None
            )
            await conn.execute(
                "UPDATE job_id_scheme SET seeded_from = NULL WHERE seeded_from IS NOT NULL"
            )
            copies = await conn.fetch(
                "SELECT id, next_due_at FROM monitors WHERE id = ANY($1::bigint[]) ORDER BY id",
                [moved, other],
            )
        assert [tuple(r) for r in copies] == sorted([(moved, T0 + timedelta(days=1)), (other, T0)])
        assert await _due(conn, moved) == T0 + timedelta(days=1)
        assert await _due(conn, other) == T0


@pytest.mark.parametrize(
    ("session", "kept"),
    [
        (session_name(["scheduler"]), False),  # this release, every controller of it
        ("mailprobe controller scheduler ids2", True),  # the release before monitor_due
        ("mailprobe controller scheduler", True),  # an older one, or JOB_IDS_SEEDED=false
        ("my-app", True),  # a URL naming the sessions: whose, nobody can tell
    ],
)
async def test_a_previous_release_s_moves_are_kept_where_it_reads_them(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool, session: str, kept: bool
) -> None:
    """A previous release calls `scheduler_moved` too (migration 0118's, redefined by 0128):
    with `seeded_from` set (the state it left: `migrate` runs before the first controller of
    this release, whose look clears it), a move of its must still reach the
    `monitors.next_due_at` it claims by, or it claims the same monitor again at every pass
    and records the rounds that ran meanwhile `overdue`."""
    async with pipe_pool.acquire() as conn:
        (monitor,) = await _ids(api, org, conn, 1)
        async with conn.transaction():
            await _unmirrored(conn, False)
            await conn.execute("SELECT set_config('application_name', $1, true)", session)
            await conn.execute(OLD_MOVE, [monitor], [T0], [None])  # its first plan, copied
            await due_store.moved(conn, [monitor], [T0 + timedelta(seconds=10)], ["DE"], T0)
            copy = await conn.fetchval("SELECT next_due_at FROM monitors WHERE id = $1", monitor)
            await conn.execute("UPDATE job_id_scheme SET seeded_from = NULL")
        assert await _due(conn, monitor) == T0 + timedelta(seconds=10)
        assert copy == (T0 + timedelta(seconds=10) if kept else T0)
