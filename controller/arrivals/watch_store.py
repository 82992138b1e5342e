"""When the heartbeat judge looks at each heartbeat monitor (`heartbeat_watch`, migration
0153): at its rule's `due_at`, or at once when an arrival was stored for it. Rows are leased
(FOR UPDATE SKIP LOCKED) so replicas share them. Also which monitors take mail (`receiving`).
The caller owns the transaction."""

from collections.abc import Sequence
from datetime import datetime

import msgspec

from controller.db.pool import Conn
from controller.db.rows import many
from shared.arrivals import MAILBOX_LISTENER

_CLAIM = """
UPDATE heartbeat_watch w SET leased_until = $1 + make_interval(secs => $3)
FROM (SELECT monitor_id FROM heartbeat_watch
      WHERE due_at <= $1 AND (leased_until IS NULL OR leased_until <= $1)
      ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
WHERE w.monitor_id = due.monitor_id
RETURNING w.monitor_id, w.watched_from
"""

# A heartbeat counts the mail its address's own port took and the mail read from its mailbox,
# not a senders' test twin's copy.
_NEWEST = f"""
SELECT arrived_at, header_from, mail_from, subject FROM arrivals
WHERE monitor_id = $1 AND arrived_at <= $2 AND listener IN ('', '{MAILBOX_LISTENER}')
ORDER BY arrived_at DESC LIMIT $3
"""


_RECEIVING = """
SELECT config ->> 'localPart' AS local_part, public_id::text AS public_id, organization_id
FROM monitors WHERE type = 'heartbeat' AND status <> 'disabled'
"""


class Receiving(msgspec.Struct, frozen=True):
    """A heartbeat monitor that takes mail: its address's local part, whose it is."""

    local_part: str | None
    public_id: str
    organization_id: int


class Watched(msgspec.Struct, frozen=True):
    monitor_id: int
    watched_from: datetime


class Seen(msgspec.Struct, frozen=True):
    arrived_at: datetime
    header_from: str
    mail_from: str
    subject: str


async def watch(conn: Conn, monitor_id: int, since: datetime) -> None:
    """Watch the monitor from `since` (created, or enabled again): looked at at once."""
    await conn.execute(
        "INSERT INTO heartbeat_watch (monitor_id, watched_from, due_at) VALUES ($1, $2, $2)"
        " ON CONFLICT (monitor_id) DO UPDATE SET watched_from = $2, due_at = $2,"
        " leased_until = NULL",
        monitor_id,
        since,
    )


async def wake(conn: Conn, public_ids: Sequence[str], now: datetime) -> None:
    """Arrivals were stored for these monitors (public ids): each is looked at by `now`."""
    await conn.execute(
        "UPDATE heartbeat_watch w SET due_at = $2 FROM monitors m"
        " WHERE m.id = w.monitor_id AND m.public_id::text = ANY($1::text[])"
        " AND (w.due_at IS NULL OR w.due_at > $2)",
        list(public_ids),
        now,
    )


async def claim(conn: Conn, now: datetime, limit: int, lease_s: float) -> list[Watched]:
    """Lease at most `limit` monitors due by `now` for `lease_s` seconds, earliest first."""
    rows = await conn.fetch(_CLAIM, now, limit, lease_s)
    return many(Watched, rows)


async def release(
    conn: Conn, monitor_id: int, due_at: datetime | None, watched_from: datetime | None = None
) -> None:
    """Judged: looked at again at `due_at` (None: only when an arrival comes); `watched_from`,
    when given, moves its watch's start (a disabled monitor's, to the look)."""
    await conn.execute(
        "UPDATE heartbeat_watch SET due_at = $2, leased_until = NULL,"
        " watched_from = coalesce($3, watched_from) WHERE monitor_id = $1",
        monitor_id,
        due_at,
        watched_from,
    )


async def newest(conn: Conn, monitor_id: int, upto: datetime, most: int) -> list[Seen]:
    """The monitor's `most` newest arrivals up to `upto`, newest first."""
    return many(Seen, await conn.fetch(_NEWEST, monitor_id, upto, most))


async def receiving(conn: Conn) -> list[Receiving]:
    """Every heartbeat monitor that is not disabled (what RECEIVERS should hold)."""
    return many(Receiving, await conn.fetch(_RECEIVING))
