"""Packed hours (issue 24, migration 0032): the compact rows of a closed hour become one pack
per monitor, country and hour, and every reader answers what it answered before, under either
job id scheme (migration 0122: a pack of seeded ids keeps their seed, not the ids)."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from controller.alerting import state_store as alert_state
from controller.ingest import packer
from controller.ingest.pack_rules import PACK_DELAY, PACK_LOCK, REBUILD_LOCK
from controller.jobs.rules import JobIds
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.clock import WALL
from shared.messages import CheckResult
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline
from tests.pipeline.test_compact_results import listed, routine
from tests.pipeline.test_ingest import publish, result


@pytest.fixture(params=["keyed", "seeded"])
def made_ids(request: pytest.FixtureRequest, settings: ControllerSettings) -> JobIds:
    """The ids a scheduler makes (with the tests' key): keyed, as before seeded ids, or seeded,
    as once every controller accepts them."""
    seeded = request.param == "seeded"
    return JobIds.from_box(
        SecretBox(settings.secrets.secrets_key or ""),
        lambda: datetime(2000, 1, 1, tzinfo=UTC) if seeded else None,
    )


async def kept_ids(pool: asyncpg.Pool, public_id: str) -> list[tuple[int, bool]]:
    """Per pack of the monitor: the job ids it keeps (not NULL), and whether it has a seed."""
    async with pool.acquire() as conn:
        found = await conn.fetch(
            "SELECT (SELECT count(*) FROM unnest(p.jobs) AS j WHERE j IS NOT NULL) AS kept,"
            " p.seed IS NOT NULL AS seeded FROM result_packs p JOIN monitors m"
            " ON m.id = p.monitor_id WHERE m.public_id = $1::uuid ORDER BY p.hour",
            public_id,
        )
    return [(r["kept"], r["seeded"]) for r in found]


def closed_hour() -> datetime:
    """An hour the packer packs now (two hours ago, whole)."""
    return utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


async def view_rows(pool: asyncpg.Pool, public_id: str) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        found = await conn.fetch(
            "SELECT r.* FROM check_results r JOIN monitors m ON m.id = r.monitor_id"
            " WHERE m.public_id = $1::uuid ORDER BY r.scheduled_at, r.country, r.job_id",
            public_id,
        )
    return [dict(r) for r in found]


async def layout(pool: asyncpg.Pool, public_id: str) -> tuple[int, int, list[int]]:
    """(rows, compact rows, results per pack) of the monitor."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM result_rows WHERE monitor_id = m.id) AS rows,"
            " (SELECT count(*) FROM result_rows WHERE monitor_id = m.id"
            "   AND detail_ms IS NOT NULL) AS compact,"
            " (SELECT coalesce(array_agg(results ORDER BY hour), '{}')"
            "   FROM result_packs WHERE monitor_id = m.id) AS packs"
            " FROM monitors m WHERE m.public_id = $1::uuid",
            public_id,
        )
    assert row is not None
    return row["rows"], row["compact"], list(row["packs"])


async def answers(api: httpx.AsyncClient, org: Tenant, pid: str) -> dict[str, Any]:
    """What the API says of the monitor's results: the list, a page of it, uptime, the monitor."""
    base = f"/api/smtp-monitors/{pid}"
    said: dict[str, Any] = {"list": await listed(api, org, pid)}
    for path in ("/results?perPage=3&page=2", "/uptime", ""):
        r = await api.get(base + path, headers=org.auth())
        assert r.status_code == 200, r.text
        said[path] = r.json()
    said["/uptime"].pop("windows")  # its windows end now
    return said


async def sent_hour(
    pipeline: WiredPipeline, job_ids: JobIds, monitor: dict[str, Any], cc: str, hour: datetime
) -> list[CheckResult]:
    """Routine results of a closed hour, a failure among them (a full row between runs)."""
    sent = [routine(job_ids, monitor, cc, hour + timedelta(minutes=n), n) for n in range(8)]
    sent[4] = result(job_ids, monitor, cc, "down", hour + timedelta(minutes=4))
    for res in sent:
        await publish(pipeline.js, res)
    assert await pipeline.ingester.burst() == len(sent)
    return sent


async def test_a_packed_hour_reads_back_as_it_was_stored(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
    made_ids: JobIds,
) -> None:
    """Ground truth: every result read back through the view and the API as it was stored (its
    jobId, its numbers), the ingester's ids and the packer's seeds under the controllers' key."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    sent = await sent_hour(pipeline, made_ids, monitor, cc, closed_hour())
    rows, compact, packs = await layout(pipe_pool, pid)
    assert (rows, packs) == (8, []) and compact >= 5
    before_rows, before_api = await view_rows(pipe_pool, pid), await answers(api, org, pid)
    assert [r["job_id"] for r in before_rows] == [r.job_id for r in sent]

    while await packer.pack_pass(pipe_pool, job_ids, WALL.now()):
        pass

    assert await layout(pipe_pool, pid) == (rows - compact, 0, [compact])
    seeded = made_ids.make(pid, cc, closed_hour()) != job_ids.make(pid, cc, closed_hour())
    assert await kept_ids(pipe_pool, pid) == ([(0, True)] if seeded else [(compact, False)])
    assert await view_rows(pipe_pool, pid) == before_rows
    assert await answers(api, org, pid) == before_api


async def test_a_late_result_in_a_packed_hour_lands_once_and_is_merged(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
    made_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    hour = closed_hour()
    sent = await sent_hour(pipeline, made_ids, monitor, cc, hour)
    while await packer.pack_pass(pipe_pool, job_ids, WALL.now()):
        pass
    rows, _, packs = await layout(pipe_pool, pid)

    # A redelivery of a packed result stores nothing; a late one lands as a row and is read.
    await publish(pipeline.js, sent[6])
    assert await pipeline.ingester.burst() == 0
    late = routine(made_ids, monitor, cc, hour + timedelta(minutes=30), 30)
    await publish(pipeline.js, late)
    assert await pipeline.ingester.burst() == 1
    assert await layout(pipe_pool, pid) == (rows + 1, 1, packs)
    items = await listed(api, org, pid)
    assert [i["jobId"] for i in items] == [r.job_id for r in [*sent, late]]
    before_rows, before_api = await view_rows(pipe_pool, pid), await answers(api, org, pid)

    # The next pass merges it into the hour's pack, in time order.
    while await packer.pack_pass(pipe_pool, job_ids, WALL.now()):
        pass
    assert await layout(pipe_pool, pid) == (rows, 0, [packs[0] + 1])
    assert await view_rows(pipe_pool, pid) == before_rows
    assert await answers(api, org, pid) == before_api
    await publish(pipeline.js, late)
    assert await pipeline.ingester.burst() == 0


async def test_a_pack_cut_short_leaves_the_rows(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipe_database_url: str,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """The rows are deleted and the pack written in one transaction: a packer killed before its
    commit leaves everything as it was, and the next pass packs it."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    await sent_hour(pipeline, job_ids, monitor, cc, closed_hour())
    before, rows = await view_rows(pipe_pool, pid), await layout(pipe_pool, pid)

    conn = await asyncpg.connect(pipe_database_url)
    try:
        await conn.execute("BEGIN")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PACK_LOCK)
        now = utcnow()
        assert await packer.pack(
            conn, job_ids, now - timedelta(days=1), closed_hour() + timedelta(hours=1)
        )
        killed = conn.get_server_pid()
        async with pipe_pool.acquire() as other:
            # With a timeout, it returns once the backend has exited (and so let go of its
            # lock); without one, it only signals it.
            assert await other.fetchval("SELECT pg_terminate_backend($1, 30000)", killed)
    finally:
        conn.terminate()
    assert await layout(pipe_pool, pid) == rows
    assert await view_rows(pipe_pool, pid) == before
    while await packer.pack_pass(pipe_pool, job_ids, WALL.now()):
        pass
    assert (await layout(pipe_pool, pid))[2] == [rows[1]]
    assert await view_rows(pipe_pool, pid) == before


async def test_two_packers_at_once_pack_each_hour_once(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """A second controller's packer skips its pass while one runs; racing passes leave one
    pack per hour and every result once."""
    (cc,) = countries.take()
    monitors = [await create(api, org) for _ in range(3)]
    for m in monitors:
        await sent_hour(pipeline, job_ids, m, cc, closed_hour())
    before = [await view_rows(pipe_pool, m["publicId"]) for m in monitors]

    async with pipe_pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PACK_LOCK)
        assert await packer.pack_pass(pipe_pool, job_ids, WALL.now()) is None
    for _ in range(3):
        done = await asyncio.gather(
            *(packer.pack_pass(pipe_pool, job_ids, WALL.now(), groups=1) for _ in range(4))
        )
        assert all(n is None or n <= 1 for n in done)
    while await packer.pack_pass(pipe_pool, job_ids, WALL.now()):
        pass
    for m, rows in zip(monitors, before, strict=True):
        _, compact, packs = await layout(pipe_pool, m["publicId"])
        assert compact == 0 and len(packs) == 1
        assert await view_rows(pipe_pool, m["publicId"]) == rows


async def rows_index_bytes(pool: asyncpg.Pool, partition: str) -> int:
    async with pool.acquire() as conn:
        size: int = await conn.fetchval("SELECT pg_indexes_size($1::regclass)", partition)
    return size


async def test_a_closed_days_rows_index_is_rebuilt_and_reads_the_same(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """Once a day is closed, the rows' index that packing left mostly empty is rebuilt once,
    by one packer at a time, and every reader answers as before."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    hour = (utcnow() - timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    partition = f"result_rows_p{hour:%Y%m%d}"
    await sent_hour(pipeline, job_ids, monitor, cc, hour)
    while await packer.pack_pass(pipe_pool, job_ids, now=hour + timedelta(hours=2)):
        pass
    async with pipe_pool.acquire() as conn:
        # What an hour of a busy day leaves in the index: entries its packing deleted.
        await conn.execute(
            f"INSERT INTO {partition} SELECT (jsonb_populate_record(NULL::{partition},"
            " to_jsonb(r) || jsonb_build_object('scheduled_at', r.scheduled_at + g * interval"
            " '1 ms'))).* FROM (SELECT * FROM result_rows WHERE monitor_id = $1 LIMIT 1) r,"
            " generate_series(1, 5000) AS g",
            await conn.fetchval("SELECT id FROM monitors WHERE public_id = $1::uuid", pid),
        )
        await conn.execute(
            f"DELETE FROM {partition} r USING monitors m WHERE m.id = r.monitor_id AND"
            " m.public_id = $1::uuid AND r.scheduled_at <> date_trunc('second', r.scheduled_at)",
            pid,
        )
        await conn.execute(f"VACUUM {partition}")
    bloated = await rows_index_bytes(pipe_pool, partition)
    before_rows, before_api = await view_rows(pipe_pool, pid), await answers(api, org, pid)
    # Yesterday is closed once the packers' horizon has passed midnight, PACK_DELAY after it.
    now = max(utcnow(), hour.replace(hour=0) + timedelta(days=1) + PACK_DELAY)

    async with pipe_pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", REBUILD_LOCK)
        try:
            assert await packer.rebuild_pass(pipe_pool, now, min_bytes=0) is None
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", REBUILD_LOCK)
    # One day a pass, the oldest first (other tests' days may come before this one).
    rebuilt = []
    while name := await packer.rebuild_pass(pipe_pool, now, min_bytes=0):
        assert name not in rebuilt
        rebuilt.append(name)
    assert partition in rebuilt
    assert rebuilt == sorted(rebuilt)
    assert await rows_index_bytes(pipe_pool, partition) < bloated / 4
    assert await view_rows(pipe_pool, pid) == before_rows
    assert await answers(api, org, pid) == before_api


async def alerter_reads(
    pool: asyncpg.Pool, public_id: str, after: datetime
) -> tuple[alert_state.ResultsAfter, alert_state.ResultsAfter]:
    """The alerter's two reads of the monitor's results after `after` (its batch's, its own)."""
    async with pool.acquire() as conn:
        monitor_id = await conn.fetchval(
            "SELECT id FROM monitors WHERE public_id = $1::uuid", public_id
        )
        now = WALL.now()
        batch = await alert_state.batch_results_after(conn, {monitor_id: after}, 50, now)
        alone = await alert_state.results_after(conn, monitor_id, after, 50, now)
    return batch[monitor_id], alone


async def test_the_alerters_reads_find_packed_and_recent_results_alike(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """After a cursor old enough for packs the alerter reads `check_results` and finds an hour's
    results as it did before the hour was packed; after a recent cursor it reads the unpacked
    rows' view (migration 0127), and finds there what `check_results` holds."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    hour = closed_hour()
    sent = await sent_hour(pipeline, job_ids, monitor, cc, hour)
    old = hour - timedelta(minutes=1)
    assert alert_state.results_view(old, WALL.now()) == "check_results"
    before = await alerter_reads(pipe_pool, pid, old)
    assert [r.job_id for r in before[0].rows] == [r.job_id for r in sent]
    while await packer.pack_pass(pipe_pool, job_ids, WALL.now()):
        pass
    assert (await layout(pipe_pool, pid))[2] != []
    assert await alerter_reads(pipe_pool, pid, old) == before

    recent = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    assert alert_state.results_view(recent, WALL.now()) == "check_results_unpacked"
    fresh = [routine(job_ids, monitor, cc, recent + timedelta(seconds=20 * n), n) for n in range(4)]
    fresh[2] = result(job_ids, monitor, cc, "down", recent + timedelta(seconds=40))
    for res in fresh:
        await publish(pipeline.js, res)
    assert await pipeline.ingester.burst() == len(fresh)
    batch, alone = await alerter_reads(pipe_pool, pid, recent - timedelta(seconds=1))
    async with pipe_pool.acquire() as conn:
        held = await conn.fetch(
            f"SELECT {alert_state._RESULT_COLUMNS} FROM check_results WHERE monitor_id ="
            " (SELECT id FROM monitors WHERE public_id = $1::uuid) AND scheduled_at >= $2"
            " ORDER BY scheduled_at, country",
            pid,
            recent,
        )
    assert [r.job_id for r in batch.rows] == [r.job_id for r in fresh]
    assert batch.rows == alone.rows == [tuple(r.values()) for r in held]
    assert batch == alone
