"""Incidents as stored (`incidents`): opened, closed, notified, listed; each read returns the
typed `Incident`. The caller owns the transaction; the alerter is their only writer.
"""

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn
from controller.notify.incident import Incident
from shared.guards import BrokenInvariant


async def open_incident(
    conn: Conn,
    monitor_id: int,
    started_at: datetime,
    cause_kind: str,
    cause: str,
    countries: Sequence[str],
    messages: Sequence[str] = (),
    *,
    opened_at: datetime | None = None,
) -> Incident:
    """`messages`: the agents' messages of the round that opened it (which leg failed);
    `opened_at`: the opener's clock (the column's default, the database's, when not given)."""
    opened = ("", "") if opened_at is None else (", opened_at", ", $7")
    row: asyncpg.Record | None = await conn.fetchrow(
        "INSERT INTO incidents (monitor_id, started_at, cause_kind, cause, countries, messages"
        f"{opened[0]}) VALUES ($1, $2, $3, $4, $5, $6{opened[1]}) RETURNING {INCIDENT_COLUMNS}",
        monitor_id,
        started_at,
        cause_kind,
        cause,
        list(countries),
        [m[:500] for m in messages[:20]],
        *([] if opened_at is None else [opened_at]),
    )
    if row is None:
        raise BrokenInvariant("incident_store.open_incident: the statement returned no row")
    return _incident(row)


INCIDENT_COLUMNS = (
    "id, public_id, monitor_id, started_at, opened_at, ended_at, duration_seconds, cause_kind,"
    " cause, countries, notified, reminders, end_reason, recovery_held, flow_incident_id,"
    " messages"
)


def _incident(row: asyncpg.Record) -> Incident:
    return Incident(**{name: row[name] for name in Incident.__struct_fields__})


async def incident(conn: Conn, incident_id: int) -> Incident | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1", incident_id
    )
    return None if row is None else _incident(row)


async def close_incident(
    conn: Conn,
    incident_id: int,
    ended_at: datetime,
    *,
    reason: str | None = None,
    hold_recovery: bool = False,
) -> Incident:
    """`reason`: why it ended other than by recovering; `hold_recovery`: its recovery notice, if
    it was notified at all, waits until notifications are no longer held (`held_recoveries`)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "UPDATE incidents SET ended_at = $2, end_reason = $3, recovery_held = $4 AND notified"
        f" WHERE id = $1 RETURNING {INCIDENT_COLUMNS}",
        incident_id,
        ended_at,
        reason,
        hold_recovery,
    )
    if row is None:
        raise BrokenInvariant("incident_store.close_incident: the statement returned no row")
    return _incident(row)


async def held_recoveries(conn: Conn, monitor_id: int) -> list[Incident]:
    """Closed incidents whose recovery notice is still held, oldest first; each is released
    (the caller queues its notice in the same transaction)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "UPDATE incidents SET recovery_held = false"
        " WHERE monitor_id = $1 AND recovery_held"
        f" RETURNING {INCIDENT_COLUMNS}",
        monitor_id,
    )
    return sorted((_incident(r) for r in rows), key=lambda i: i.id)


async def set_incident_unnotified(conn: Conn, incident_id: int) -> None:
    """Its `down` was not told after all (held by maintenance): wanted again after it."""
    await conn.execute("UPDATE incidents SET notified = false WHERE id = $1", incident_id)


async def set_incident_notified(conn: Conn, incident_id: int, reminders: int) -> None:
    await conn.execute(
        "UPDATE incidents SET notified = true, reminders = $2 WHERE id = $1",
        incident_id,
        reminders,
    )


class ListedIncident(msgspec.Struct, frozen=True, kw_only=True):
    """An incident, open while `ended_at` is None, with the counts of its notices (the
    recovery's left out) `queued`, `delivered` and still `waiting` to go out."""

    public_id: UUID
    started_at: datetime
    ended_at: datetime | None
    duration_seconds: float | None
    cause_kind: str
    cause: str
    countries: list[str]
    end_reason: str | None
    queued: int
    delivered: int
    waiting: int
    # The flow incident (the mail-flow problem people are told of) it joined, and how many
    # monitors' outages joined that one.
    flow_incident: UUID | None = None
    flow_monitors: int = 0


async def list_incidents(
    conn: Conn, monitor_id: int, limit: int, offset: int
) -> tuple[list[ListedIncident], int]:
    """A page of the monitor's incidents, newest first, each with the counts of its notices
    (the recovery's left out) `queued`, `delivered` and still `waiting` to go out: its own,
    and its flow incident's that named it (`notice_incidents`)."""
    rows = await conn.fetch(
        f"SELECT {INCIDENT_COLUMNS}, d.queued, d.delivered, d.waiting,"
        " (SELECT f.public_id FROM flow_incidents f WHERE f.id = i.flow_incident_id)"
        "  AS flow_incident,"
        " (SELECT count(DISTINCT j.monitor_id) FROM incidents j"
        "  WHERE j.flow_incident_id = i.flow_incident_id) AS flow_monitors"
        " FROM incidents i"
        " CROSS JOIN LATERAL (SELECT count(*) AS queued,"
        "   count(*) FILTER (WHERE o.status = 'sent') AS delivered,"
        "   count(*) FILTER (WHERE o.status = 'pending') AS waiting"
        "   FROM notification_outbox o"
        "   WHERE o.id IN (SELECT x.id FROM notification_outbox x WHERE x.incident_id = i.id"
        "    UNION SELECT n.outbox_id FROM notice_incidents n WHERE n.incident_id = i.id)"
        "   AND o.kind NOT IN ('recovered', 'no_data')) d"
        " WHERE i.monitor_id = $1"
        " ORDER BY i.started_at DESC, i.id DESC LIMIT $2 OFFSET $3",
        monitor_id,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        "SELECT count(*) FROM incidents WHERE monitor_id = $1", monitor_id
    )
    return typed.many(ListedIncident, rows), total
