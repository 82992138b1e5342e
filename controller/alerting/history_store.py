"""A monitor's incidents and notification attempts as the API and the console list them, read
as Structs (the statements are `controller.alerting.store`'s `list_incidents` and
`list_history`)."""

from datetime import datetime
from uuid import UUID

import msgspec

from controller.alerting import store as alerts
from controller.db import rows as typed
from controller.db.pool import Conn


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


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt to deliver a notification."""

    id: int
    kind: str
    channel: str
    target: str
    attempt: int
    status: str
    error: str | None
    at: datetime
    incident_public_id: UUID | None


async def incidents_page(
    conn: Conn, monitor_id: int, limit: int, offset: int
) -> tuple[list[ListedIncident], int]:
    """A page of the monitor's incidents, newest first, and how many it has."""
    rows, total = await alerts.list_incidents(conn, monitor_id, limit, offset)
    return typed.many(ListedIncident, rows), total


async def attempts_page(
    conn: Conn, monitor_id: int, limit: int, offset: int
) -> tuple[list[Attempt], int]:
    """A page of the monitor's notification attempts, newest first, and how many it has."""
    rows, total = await alerts.list_history(conn, monitor_id, limit, offset)
    return typed.many(Attempt, rows), total
