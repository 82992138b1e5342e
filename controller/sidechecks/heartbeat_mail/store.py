"""Who reads which mailbox for heartbeat mail, for the scheduler (`Readers`, read every
`REFRESH_S`). The looks' answers, errors included, are the side check's rows as any side
check's; their arrivals are stored by the ingester (`ControllerSideCheck.arrivals`)."""

from collections.abc import Sequence
from typing import Final

import asyncpg
import msgspec

from controller.db.pool import Conn
from controller.db.rows import many
from controller.monitors.kinds import MAILBOX_TYPES
from controller.sidechecks.heartbeat_mail.rules import Reader

# The heartbeat monitors (not disabled) that name a monitor of their organization whose mailbox
# holds their mail, by that monitor.
_READERS = """
SELECT r.id AS mailbox_monitor, h.public_id::text AS heartbeat_id,
    coalesce(h.config ->> 'sender', '') AS sender,
    coalesce(h.config ->> 'subject', '') AS subject,
    coalesce((h.config ->> 'everyMinutes')::int, 60) AS every_minutes,
    coalesce((h.config ->> 'graceMinutes')::int, 0) AS grace_minutes
FROM monitors h
JOIN monitors r ON r.public_id::text = h.config ->> 'mailboxMonitorId'
    AND r.organization_id = h.organization_id AND r.type = ANY($1::text[])
WHERE h.type = 'heartbeat' AND h.status <> 'disabled'
    AND coalesce(h.config ->> 'mailboxMonitorId', '') <> ''
"""


class _ReaderRow(msgspec.Struct, frozen=True):
    mailbox_monitor: int
    heartbeat_id: str
    sender: str
    subject: str
    every_minutes: int
    grace_minutes: int


async def readers(conn: Conn) -> dict[int, list[Reader]]:
    """Every heartbeat reading a mailbox, by the internal id of the monitor whose it is."""
    out: dict[int, list[Reader]] = {}
    for row in many(_ReaderRow, await conn.fetch(_READERS, list(MAILBOX_TYPES))):
        reader = Reader(
            row.heartbeat_id, row.sender, row.subject, row.every_minutes, row.grace_minutes
        )
        out.setdefault(row.mailbox_monitor, []).append(reader)
    return out


class HeartbeatReaders:
    """The scheduler's view of who reads which mailbox (`Readers`), read every `REFRESH_S`: a
    new heartbeat's mail is read from the first round of its mailbox's monitor after that."""

    REFRESH_S: Final = 60.0

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._readers: dict[int, list[Reader]] = {}

    def of(self, monitor_id: int) -> Sequence[Reader]:
        return self._readers.get(monitor_id, ())

    async def refresh(self) -> None:
        async with self._pool.acquire() as conn:
            self._readers = await readers(conn)
