"""The `login_backoff` rows (controller.logins.backoff has the rules). The caller owns the
transaction."""

from controller.db.pool import Conn
from controller.logins.backoff import Backoff


async def get(conn: Conn, monitor_id: int) -> Backoff | None:
    row = await conn.fetchrow(
        "SELECT failures, since, retry_at, notified FROM login_backoff WHERE monitor_id = $1",
        monitor_id,
    )
    return None if row is None else Backoff(*row.values())


async def put(conn: Conn, monitor_id: int, b: Backoff | None) -> None:
    if b is None:
        await conn.execute("DELETE FROM login_backoff WHERE monitor_id = $1", monitor_id)
        return
    await conn.execute(
        "INSERT INTO login_backoff (monitor_id, failures, since, retry_at, notified)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (monitor_id) DO UPDATE SET"
        " failures = $2, since = $3, retry_at = $4, notified = $5",
        monitor_id,
        b.failures,
        b.since,
        b.retry_at,
        b.notified,
    )
