"""Each notification channel's send under way and its breaker (`notification_channel_state`),
shared by every controller: the lease of the one send a channel has at a time is taken in the
outbox's claim (`controller.notify.outbox_store.claim_outbox`) and renewed with its row's
(`outbox_store.renew`); here its outcome gives it back and moves the channel's breaker
(`controller.notify.breaker`). Rows of several channels are locked in channel order, as the
claim takes them. The caller owns the transaction.
"""

from collections.abc import Sequence

from controller.db.pool import Conn
from controller.notify.breaker import State


async def state(conn: Conn, channel_id: int) -> State | None:
    """The channel's breaker, locked until the transaction ends; None when the channel has
    no row (deleted since its claim)."""
    row = await conn.fetchrow(
        "SELECT failures, opened, open_until FROM notification_channel_state"
        " WHERE channel_id = $1 FOR UPDATE",
        channel_id,
    )
    return None if row is None else State(row["failures"], row["opened"], row["open_until"])


async def ended(conn: Conn, channel_id: int, outbox_id: int, attempt: int, breaker: State) -> None:
    """The send of `outbox_id`'s `attempt` to the channel ended: its lease given back (if it
    still held it) and the channel's breaker now `breaker`."""
    await conn.execute(
        "UPDATE notification_channel_state SET failures = $4, opened = $5, open_until = $6,"
        " until = CASE WHEN outbox_id = $2 AND attempt = $3 THEN NULL ELSE until END"
        " WHERE channel_id = $1",
        channel_id,
        outbox_id,
        attempt,
        breaker.failures,
        breaker.opened,
        breaker.open_until,
    )


async def give_back(conn: Conn, leases: Sequence[tuple[int, int, int]]) -> None:
    """Give back the leases (channel, outbox id, attempt) of sends that never started (their
    rows dropped unsent), in channel order."""
    await conn.execute(
        "UPDATE notification_channel_state s SET until = NULL"
        " WHERE s.channel_id IN (SELECT channel_id FROM notification_channel_state"
        "   WHERE (channel_id, outbox_id, attempt)"
        "     IN (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[]))"
        "   ORDER BY channel_id FOR UPDATE)",
        [c for c, _, _ in sorted(leases)],
        [o for _, o, _ in sorted(leases)],
        [a for _, _, a in sorted(leases)],
    )
