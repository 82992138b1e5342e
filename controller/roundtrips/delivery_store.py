"""The `roundtrip_delivery` rows (controller.roundtrips.rules has the rules). The caller owns
the transaction."""

from controller.db.pool import Conn
from controller.roundtrips.rules import Delivery


async def get(conn: Conn, monitor_id: int) -> Delivery:
    row = await conn.fetchrow(
        "SELECT confirmed_at, not_delivered, notified FROM roundtrip_delivery"
        " WHERE monitor_id = $1",
        monitor_id,
    )
    return Delivery() if row is None else Delivery(*row.values())


async def put(conn: Conn, monitor_id: int, d: Delivery) -> None:
    await conn.execute(
        "INSERT INTO roundtrip_delivery (monitor_id, confirmed_at, not_delivered, notified)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (monitor_id) DO UPDATE SET"
        " confirmed_at = $2, not_delivered = $3, notified = $4",
        monitor_id,
        d.confirmed_at,
        d.not_delivered,
        d.notified,
    )
