"""The packer: the compact rows of each closed UTC hour, monitor and country become one
`result_packs` row (migration 0032), so a routine result costs a few dozen bytes instead of a
row and an index entry.

A pass moves a bounded number of (monitor, hour, country) groups per transaction, under an
exclusive advisory lock (PACK_LOCK): a second controller's packer skips its pass while one runs,
and an ingester storing results old enough to fall in a packed hour waits for it (see
`store.store`). The rows are deleted and the pack written in one statement: a crash leaves the
rows or the pack, never both or neither. Rows that arrived for an hour already packed are merged
into its pack by a later pass.
"""

import asyncio
from datetime import datetime, timedelta

import asyncpg
import structlog

from controller.ingest import pack_store
from controller.ingest.pack_rules import PACK_LOCK, pack_horizon
from controller.ingest.pack_store import GROUPS, pack
from shared.loop import run_every
from shared.timefmt import utcnow

__all__ = ["GROUPS", "LOOKBACK", "PACK_LOCK", "keep_packing", "pack", "pack_pass"]

log = structlog.get_logger(__name__)

PACK_EVERY_S = 300.0
# How far back a pass looks for rows to pack (rows of older hours stay rows, read as such).
LOOKBACK = timedelta(days=1)


async def pack_pass(
    pool: asyncpg.Pool, now: datetime | None = None, groups: int = GROUPS
) -> int | None:
    """One transaction's worth of packing of the closed hours; the groups packed, or None when
    another packer holds the lock."""
    until = pack_horizon(now or utcnow())
    async with pool.acquire() as conn, conn.transaction():
        if not await pack_store.try_lock(conn):
            return None
        return await pack(conn, until - LOOKBACK, until, groups)


async def keep_packing(pool: asyncpg.Pool, stop: asyncio.Event) -> None:
    """`pack_pass` every PACK_EVERY_S, at once again while a pass filled its quota."""

    async def step() -> float | None:
        packed = await pack_pass(pool)
        if packed:
            log.info("result hours packed", groups=packed)
        return 0.0 if packed == GROUPS else None

    await run_every(PACK_EVERY_S, step, name="result packer", stop=stop)
