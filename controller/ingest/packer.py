"""The packer: the compact rows of each closed UTC hour, monitor and country become one
`result_packs` row (migration 0032), so a routine result costs a few dozen bytes instead of a
row and an index entry.

A pass moves a bounded number of (monitor, hour, country) groups per transaction, under an
exclusive advisory lock (PACK_LOCK): a second controller's packer skips its pass while one runs,
and an ingester storing results old enough to fall in a packed hour waits for it (see
`store.store`). The rows are deleted and the pack written in one statement: a crash leaves the
rows or the pack, never both or neither. A pack keeps the seed of its monitor, country and hour
(`JobIds.seed`: the packer runs in the ingester's role, which holds SECRETS_KEY) and only the
job ids that are not that seed's (controller/jobs/rules.py, migration 0122). Rows that arrived
for an hour already packed are merged into its pack by a later pass.

Once every hour of a day is packed, the day's rows' index is rebuilt (`rebuild_pass`, when
`rows_index_bloated` says so): packing left it at the size the day's busiest hours needed, while
what it still indexes is the results stored whole.
"""

import asyncio
from datetime import datetime, timedelta

import asyncpg
import structlog

from controller.ingest import pack_store
from controller.ingest.pack_rules import (
    PACK_LOCK,
    REBUILD_MIN_BYTES,
    pack_horizon,
    rows_closed_before,
    rows_index_bloated,
)
from controller.ingest.pack_store import GROUPS, pack
from controller.jobs.rules import JobIds
from shared.clock import Clock
from shared.loop import run_every

__all__ = [
    "GROUPS",
    "LOOKBACK",
    "PACK_LOCK",
    "keep_packing",
    "pack",
    "pack_pass",
    "rebuild_pass",
]

log = structlog.get_logger(__name__)

PACK_EVERY_S = 300.0
# How far back a pass looks for rows to pack (rows of older hours stay rows, read as such).
LOOKBACK = timedelta(days=1)


async def pack_pass(
    pool: asyncpg.Pool, ids: JobIds, now: datetime, groups: int = GROUPS
) -> int | None:
    """One transaction's worth of packing of the hours closed at `now` (seeds under `ids`);
    the groups packed, or None when another packer holds the lock."""
    until = pack_horizon(now)
    async with pool.acquire() as conn, conn.transaction():
        if not await pack_store.try_lock(conn):
            return None
        return await pack(conn, ids, until - LOOKBACK, until, groups)


async def rebuild_pass(
    pool: asyncpg.Pool, now: datetime, min_bytes: int = REBUILD_MIN_BYTES
) -> str | None:
    """Rebuild the rows' index of the oldest closed day that `rows_index_bloated` names (one a
    pass, so that a pass after an upgrade does not rebuild a month's days at once); the
    partition rebuilt, or None (none to rebuild, or another packer rebuilding)."""
    async with pool.acquire() as conn:
        days = await pack_store.rows_days_before(conn, rows_closed_before(now))
        for day in days:
            if rows_index_bloated(day.index_bytes, day.rows, min_bytes):
                return day.name if await pack_store.rebuild_rows_index(conn, day) else None
    return None


async def keep_packing(pool: asyncpg.Pool, ids: JobIds, clock: Clock, stop: asyncio.Event) -> None:
    """`pack_pass` every PACK_EVERY_S, at once again while a pass filled its quota; the hours
    closed by `clock`."""

    async def step() -> float | None:
        packed = await pack_pass(pool, ids, clock.now())
        if packed:
            log.info("result hours packed", groups=packed)
        if packed == GROUPS:
            return 0.0
        rebuilt = await rebuild_pass(pool, clock.now())
        if rebuilt is not None:
            log.info("rows' index of a packed day rebuilt", partition=rebuilt)
        return None

    await run_every(PACK_EVERY_S, step, name="result packer", stop=stop)
