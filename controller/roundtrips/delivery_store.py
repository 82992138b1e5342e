"""The `roundtrip_delivery` rows (controller.roundtrips.rules has the rules). The caller owns
the transaction."""

from controller.db.pool import Conn
from controller.roundtrips import rules
from controller.roundtrips.rules import Delivery

# In a statement over `monitors m LEFT JOIN roundtrip_delivery d`: the latest round whose result
# in some country showed the message arriving (SQL `roundtrip_arrived`), of those after the
# mailbox last changed (`rules.seen` reads it with the record).
ARRIVED_AT = (
    "(SELECT max(s.last_scheduled_at) FROM monitor_country_state s WHERE s.monitor_id = m.id"
    " AND roundtrip_arrived(s.last_status, s.last_error_kind)"
    " AND s.last_scheduled_at > coalesce(d.mailbox_at, '-infinity'))"
)


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


async def seen(conn: Conn, monitor_id: int) -> Delivery:
    """The record as the caps read it: with the results ahead of it (`rules.seen`)."""
    row = await conn.fetchrow(
        "SELECT d.confirmed_at, coalesce(d.not_delivered, 0) AS not_delivered,"
        f" coalesce(d.notified, false) AS notified, {ARRIVED_AT} AS arrived_at FROM monitors m"
        " LEFT JOIN roundtrip_delivery d ON d.monitor_id = m.id WHERE m.id = $1",
        monitor_id,
    )
    if row is None:
        return Delivery()
    d = Delivery(row["confirmed_at"], row["not_delivered"], row["notified"])
    return rules.seen(d, row["arrived_at"])
