"""The reports' upkeep, one replica at a time, hourly (alerter role): report findings judged
again, so they clear once their reports leave the organization's window, and reports and
rejected reports older than `REPORTS_RETENTION_DAYS` deleted (a report's counts with it)."""

import asyncio
from datetime import timedelta

import asyncpg
import structlog

from controller.db import turns
from controller.notify.links import Links
from controller.reports import intake
from controller.reports import store as db
from shared.loop import run_every
from shared.timefmt import utcnow

log = structlog.get_logger(__name__)

INTERVAL_S = 3600.0


async def one_pass(pool: asyncpg.Pool, retention_days: int, links: Links) -> None:
    async with pool.acquire() as conn, turns.turn(conn, turns.REPORTS) as mine:
        if not mine:
            return
        reports, rejected = await db.forget_before(conn, utcnow() - timedelta(days=retention_days))
        if reports or rejected:
            log.info("reports forgotten", reports=reports, rejected=rejected)
        await intake.sweep(pool, links)


async def keep_reports(
    pool: asyncpg.Pool, retention_days: int, links: Links, stop: asyncio.Event
) -> None:
    """Every INTERVAL_S until `stop`, the first pass at once."""

    async def run() -> None:
        await one_pass(pool, retention_days, links)

    await run_every(INTERVAL_S, run, name="reports", stop=stop)
