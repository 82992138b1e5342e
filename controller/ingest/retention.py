"""Retention of stored results: daily partitions ahead of time, and none older than what each
kind of row keeps: raw rows, their details and side checks' facts CHECK_RAW_DAYS, hourly
rollups (rounds), the results uptime needs of a day whose raw rows are gone (`uptime_results`)
and the daily sums kept of them CHECK_HISTORY_DAYS. Every ingester replica
runs the pass; one at a time does the work."""

import asyncio
from datetime import UTC, datetime, time, timedelta

import asyncpg
import structlog

from controller.db import turns
from controller.ingest import retention_store
from controller.ingest import store as results
from controller.sidechecks import facts_store
from controller.sidechecks.registry import WIRED
from shared.clock import Clock
from shared.loop import run_every

log = structlog.get_logger(__name__)

PARTITION_EVERY_S = 3600.0
HISTORY_DAYS = 90  # CHECK_HISTORY_DAYS' default
RAW_DAYS = 35  # CHECK_RAW_DAYS' default


async def one_pass(
    pool: asyncpg.Pool, history_days: int, raw_days: int, now: datetime
) -> list[str]:
    """Create the partitions from the day before `now` to three days ahead; keep what uptime
    needs of the
    raw partitions older than `raw_days`, then drop them, and rollup partitions older than
    `history_days`; return the dropped (none when another replica's pass is under way)."""
    async with pool.acquire() as conn, turns.turn(conn, turns.PARTITIONS) as mine:
        if not mine:
            return []
        created = await results.ensure_partitions(conn, now - timedelta(days=1))
        raw_before = (now - timedelta(days=raw_days)).date()
        history_before = (now - timedelta(days=history_days)).date()
        # Before a day's raw rows go, the results uptime needs of it are kept (as long as the
        # rollups, and a day more for the state at the start of the longest window).
        going = await results.partitions_before(conn, raw_before, ("result_rows",))
        kept = await retention_store.keep_uptime_days(conn, map(results.partition_day, going))
        dropped = await results.drop_partitions_before(conn, raw_before, results.RAW_TABLES)
        dropped += await results.drop_partitions_before(conn, history_before, results.ROLLUP_TABLES)
        # The status pages' settled days (`result_days`) are kept as long as the rollups.
        await retention_store.forget_days_before(conn, history_before)
        await retention_store.forget_uptime_before(
            conn, datetime.combine(history_before, time(), UTC) - timedelta(days=1)
        )
        # Side checks' facts are kept as long as the raw results they ride.
        side = await facts_store.drop_before(conn, WIRED.values(), now - timedelta(days=raw_days))
    if created:
        log.info("result partitions created", count=created)
    if kept:
        log.info("uptime results kept", rows=kept, days=len(going))
    if side:
        log.info("side check facts dropped", rows=side, raw_days=raw_days)
    if dropped:
        log.info(
            "result partitions dropped",
            partitions=dropped,
            raw_days=raw_days,
            history_days=history_days,
        )
    return dropped


async def keep_partitions(
    pool: asyncpg.Pool,
    clock: Clock,
    stop: asyncio.Event,
    history_days: int = HISTORY_DAYS,
    raw_days: int = RAW_DAYS,
) -> None:
    """`one_pass` hourly until `stop` is set, at `clock`'s time."""

    async def run() -> None:
        await one_pass(pool, history_days, raw_days, clock.now())

    await run_every(PARTITION_EVERY_S, run, name="result partitions", stop=stop)
