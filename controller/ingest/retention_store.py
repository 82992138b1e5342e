"""What retention keeps and deletes besides whole partitions (controller.ingest.store's
`drop_partitions_before`)."""

from collections.abc import Iterable
from datetime import date, datetime

from controller.db.pool import Conn


async def forget_days_before(conn: Conn, day: date) -> None:
    """The status pages' settled days (`result_days`) before `day`."""
    await conn.execute("DELETE FROM result_days WHERE day < $1", day)


async def keep_uptime_days(conn: Conn, days: Iterable[date]) -> int:
    """Keep in `uptime_results` the results of each UTC day that uptime needs once its raw
    rows are gone (SQL `uptime_keep_day`); return how many were new."""
    kept = 0
    for day in sorted(days):
        kept += await conn.fetchval("SELECT uptime_keep_day($1)", day)
    return kept


async def forget_uptime_before(conn: Conn, at: datetime) -> None:
    """The kept results (`uptime_results`) scheduled before `at`."""
    await conn.execute("DELETE FROM uptime_results WHERE at < $1", at)
