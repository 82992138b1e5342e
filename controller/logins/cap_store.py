"""The `login_caps` rows: monitors whose logins reached their account's cap, and the owners'
one notice per episode (controller.logins.cap has the rules). The caller owns the transaction."""

from dataclasses import dataclass
from datetime import datetime

from controller.db.pool import Conn
from controller.logins.cap import WINDOW


@dataclass(frozen=True, slots=True)
class Capped:
    since: datetime
    last_at: datetime
    cap: int
    notified: bool


async def get(conn: Conn, monitor_id: int, now: datetime) -> Capped | None:
    """The monitor's cap episode, if one is on (reached within the last window)."""
    row = await conn.fetchrow(
        "SELECT since, last_at, cap, notified FROM login_caps"
        " WHERE monitor_id = $1 AND last_at > $2",
        monitor_id,
        now - WINDOW,
    )
    return None if row is None else Capped(*row.values())


async def reached(conn: Conn, monitor_id: int, cap: int, now: datetime) -> bool:
    """Record that the monitor's login was capped at `now`; whether its owners are still to be
    told (a new episode starts when the last one is a window old)."""
    notified: bool = await conn.fetchval(
        "INSERT INTO login_caps AS c (monitor_id, since, last_at, cap) VALUES ($1, $2, $2, $3)"
        " ON CONFLICT (monitor_id) DO UPDATE SET last_at = $2, cap = $3,"
        "  since = CASE WHEN c.last_at <= $4 THEN $2 ELSE c.since END,"
        "  notified = c.notified AND c.last_at > $4"
        " RETURNING notified",
        monitor_id,
        now,
        cap,
        now - WINDOW,
    )
    return not notified


async def told(conn: Conn, monitor_id: int) -> None:
    await conn.execute("UPDATE login_caps SET notified = true WHERE monitor_id = $1", monitor_id)
