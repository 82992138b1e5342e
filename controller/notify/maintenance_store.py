"""Maintenance windows: one-off or weekly, for one monitor or all of a customer's."""

from collections.abc import Mapping
from uuid import UUID

from controller.db.pool import Conn
from controller.notify.maintenance import StoredWindow, Window
from shared.guards import BrokenInvariant

COLUMNS = (
    "w.id, w.public_id, w.organization_id, w.monitor_id, w.customer_id, w.kind, w.starts_at,"
    " w.ends_at, w.weekday, w.start_time, w.duration_minutes, w.timezone, w.note, w.created_at,"
    " m.public_id AS monitor_public_id, c.public_id AS customer_public_id"
)
_FROM = (
    "maintenance_windows w LEFT JOIN monitors m ON m.id = w.monitor_id"
    " LEFT JOIN customers c ON c.id = w.customer_id"
)
WRITABLE = frozenset(
    {
        "monitor_id",
        "customer_id",
        "kind",
        "starts_at",
        "ends_at",
        "weekday",
        "start_time",
        "duration_minutes",
        "timezone",
        "note",
    }
)


async def insert(conn: Conn, organization_id: int, values: Mapping[str, object]) -> StoredWindow:
    names = sorted(values)
    if not (set(names) <= WRITABLE):
        raise BrokenInvariant(
            f"maintenance_store.insert: expected set(names) <= WRITABLE: {set(names) - WRITABLE}"
        )
    placeholders = ", ".join(f"${i}" for i in range(2, len(names) + 2))
    new_id = await conn.fetchval(
        f"INSERT INTO maintenance_windows (organization_id, {', '.join(names)})"
        f" VALUES ($1, {placeholders}) RETURNING id",
        organization_id,
        *(values[n] for n in names),
    )
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM {_FROM} WHERE w.id = $1", new_id)
    if row is None:
        raise BrokenInvariant("maintenance_store.insert: the statement returned no row")
    return StoredWindow(**row)


async def get(conn: Conn, public_id: UUID, organization_id: int | None) -> StoredWindow | None:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM {_FROM} WHERE w.public_id = $1"
        " AND ($2::bigint IS NULL OR w.organization_id = $2)",
        public_id,
        organization_id,
    )
    return None if row is None else StoredWindow(**row)


async def list_page(
    conn: Conn,
    organization_id: int | None,
    monitor_id: int | None,
    customer_id: int | None,
    limit: int,
    offset: int,
) -> tuple[list[StoredWindow], int]:
    where = (
        "($1::bigint IS NULL OR w.organization_id = $1)"
        " AND ($2::bigint IS NULL OR w.monitor_id = $2)"
        " AND ($3::bigint IS NULL OR w.customer_id = $3)"
    )
    args = (organization_id, monitor_id, customer_id)
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM {_FROM} WHERE {where}"
        " ORDER BY w.created_at DESC, w.id DESC LIMIT $4 OFFSET $5",
        *args,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM maintenance_windows w WHERE {where}", *args
    )
    return [StoredWindow(**row) for row in rows], total


async def delete(conn: Conn, window_id: int) -> None:
    await conn.execute("DELETE FROM maintenance_windows WHERE id = $1", window_id)


async def for_monitor(conn: Conn, monitor_id: int, customer_id: int) -> list[Window]:
    """The windows that cover a monitor: its own and its customer's."""
    rows = await conn.fetch(
        "SELECT kind, starts_at, ends_at, weekday, start_time, duration_minutes, timezone"
        " FROM maintenance_windows WHERE monitor_id = $1 OR customer_id = $2",
        monitor_id,
        customer_id,
    )
    return [Window(**row) for row in rows]
