"""Heartbeat mail as stored: each arrival an agent read from a mailbox for a heartbeat its job
asked for (controller.arrivals.store, listener `mailbox`, the result's country), the heartbeat's
judge woken at the result's time (the looks' answers, errors included, are the side check's rows
as any side check's); and who reads which mailbox, for the scheduler (`Readers`, read every
`REFRESH_S`)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import asyncpg
import msgspec
import structlog

from controller.arrivals.store import keep as store_arrivals
from controller.arrivals.watch_store import wake
from controller.db.pool import Conn
from controller.db.rows import many
from controller.sidechecks.frame import Arrived
from controller.sidechecks.heartbeat_mail.rules import Reader
from shared.arrivals import MAILBOX_LISTENER, Arrival
from shared.sidechecks.heartbeat_mail import HeartbeatMail

log = structlog.get_logger(__name__)

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
    AND r.organization_id = h.organization_id AND r.type IN ('imap', 'pop3', 'roundtrip')
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
    for row in many(_ReaderRow, await conn.fetch(_READERS)):
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


async def keep(conn: Conn, facts: Sequence[Arrived[HeartbeatMail]]) -> None:
    """Store the arrivals the results read (each once, as the heartbeat's: its monitor the
    look's, its country the result's) and wake their heartbeats; each look's answer is kept
    in `side_heartbeat_mail` besides, as every side check's facts are."""
    arrivals: list[Arrival] = []
    woken: set[str] = set()
    at: datetime | None = None
    for arrived in facts:
        found = [
            msgspec.structs.replace(
                a,
                monitor_id=look.monitor_id,
                country=arrived.country,
                listener=MAILBOX_LISTENER,
            )
            for look in arrived.facts.looks
            for a in look.arrivals
        ]
        for look in arrived.facts.looks:
            if look.error:
                log.info(
                    "heartbeat_mailbox_not_read",
                    heartbeat=look.monitor_id,
                    mailbox_monitor=str(arrived.monitor_id),
                    country=arrived.country,
                    error_kind=look.error_kind,
                )
        if found:
            arrivals += found
            woken |= {a.monitor_id for a in found}
            at = arrived.finished_at if at is None else max(at, arrived.finished_at)
    if arrivals and at is not None:
        await store_arrivals(conn, arrivals)
        await wake(conn, sorted(woken), at)
