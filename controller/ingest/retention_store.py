"""What retention deletes besides whole partitions (controller.ingest.store's
`drop_partitions_before`)."""

from datetime import date

from controller.db.pool import Conn


async def forget_days_before(conn: Conn, day: date) -> None:
    """The status pages' settled days (`result_days`) before `day`."""
    await conn.execute("DELETE FROM result_days WHERE day < $1", day)
