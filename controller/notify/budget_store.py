"""The notification budget's counts (`controller.notify.budget` has the rules) and the
organization facts its owners' notice needs. The caller owns the transaction."""

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from controller.db.pool import Conn
from controller.notify.budget import Pot, granted
from controller.notify.recipients import Owner
from shared.guards import BrokenInvariant


async def organizations(conn: Conn, monitor_ids: Sequence[int]) -> dict[int, int]:
    """Monitor → its organization."""
    rows = await conn.fetch(
        "SELECT id, organization_id FROM monitors WHERE id = ANY($1::bigint[])", list(monitor_ids)
    )
    return {r["id"]: r["organization_id"] for r in rows}


async def take(
    conn: Conn, organization_id: int, pot: Pot, start: datetime, per_hour: int, wanted: int
) -> tuple[int, int]:
    """Take up to `wanted` notifications from the organization's budget `pot` in the window
    beginning `start`, holding the rest: (taken, held before this call). The row stays locked
    until the caller's transaction ends, so replicas count one after another."""
    await conn.execute(
        "INSERT INTO notification_budget AS b (organization_id, source, channel, window_start)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (organization_id, source, channel) DO UPDATE"
        " SET window_start = $4, used = 0, held = 0 WHERE b.window_start < $4",
        organization_id,
        pot.source,
        pot.family,
        start,
    )
    row = await conn.fetchrow(
        "SELECT used, held FROM notification_budget"
        " WHERE organization_id = $1 AND source = $2 AND channel = $3 FOR UPDATE",
        organization_id,
        pot.source,
        pot.family,
    )
    if row is None:
        raise BrokenInvariant("budget_store.take: the statement returned no row")
    taken = granted(row["used"], per_hour, wanted)
    await conn.execute(
        "UPDATE notification_budget SET used = used + $4, held = held + $5"
        " WHERE organization_id = $1 AND source = $2 AND channel = $3",
        organization_id,
        pot.source,
        pot.family,
        taken,
        wanted - taken,
    )
    held: int = row["held"]
    return taken, held


async def owners(conn: Conn, organization_id: int) -> tuple[str, list[Owner]]:
    """The organization's name and its owners who may log in (id, email), oldest first."""
    name: str = await conn.fetchval("SELECT name FROM organizations WHERE id = $1", organization_id)
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, email FROM users WHERE organization_id = $1 AND role = 'owner'"
        " AND disabled_at IS NULL ORDER BY id",
        organization_id,
    )
    return name, [Owner(r["id"], r["email"]) for r in rows]
