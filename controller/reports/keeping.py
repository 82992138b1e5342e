"""The reports' upkeep, one replica at a time (alerter role):

- hourly: report findings judged again, so they clear once their reports leave the
  organization's window; reports and rejected reports received more than
  `REPORTS_RETENTION_DAYS` ago, and aggregates of days that long ago, deleted (each domain's
  stored rows counted down, so REPORT_ROWS_KEPT frees up); the intake's past hours forgotten;
- every `DIGEST_TICK_S`: the report findings' digests that are due sent
  (controller.reports.intake.send_digests)."""

import asyncio
from datetime import datetime, timedelta

import asyncpg
import structlog

from controller.db import turns
from controller.notify.links import Links
from controller.reports import intake
from controller.reports import store as db
from shared.clock import Clock
from shared.loop import run_every

log = structlog.get_logger(__name__)

INTERVAL_S = 3600.0
DIGEST_TICK_S = 60.0


async def one_pass(pool: asyncpg.Pool, retention_days: int, links: Links, now: datetime) -> None:
    async with pool.acquire() as conn, turns.turn(conn, turns.REPORTS) as mine:
        if not mine:
            return
        gone = await db.forget_before(conn, now - timedelta(days=retention_days))
        await db.forget_hours(conn, now.replace(minute=0, second=0, microsecond=0))
        if gone.reports or gone.rejected or gone.rows:
            log.info(
                "reports forgotten", reports=gone.reports, rejected=gone.rejected, rows=gone.rows
            )
        await intake.sweep(pool, links, now)


async def digest_pass(pool: asyncpg.Pool, links: Links, now: datetime) -> int:
    """The digests due at `now` sent (each monitor's row locked: replicas never send one
    twice)."""
    sent = await intake.send_digests(pool, links, now)
    if sent:
        log.info("report finding digests sent", digests=sent)
    return sent


async def keep_reports(
    pool: asyncpg.Pool, retention_days: int, links: Links, stop: asyncio.Event, clock: Clock
) -> None:
    """Every INTERVAL_S until `stop` (the first pass at once), and the digests every
    DIGEST_TICK_S."""

    async def run() -> None:
        await one_pass(pool, retention_days, links, clock.now())

    async def digests() -> None:
        await digest_pass(pool, links, clock.now())

    await asyncio.gather(
        run_every(INTERVAL_S, run, name="reports", stop=stop),
        run_every(DIGEST_TICK_S, digests, name="report digests", stop=stop),
    )
