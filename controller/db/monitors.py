"""Monitors: one table for every type, config as JSONB (secrets sealed by the API layer)."""

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import asyncpg

from controller.db.pool import Conn
from controller.db.sql import like_pattern

# `last_checked_at`: the latest over the monitor's countries (the ingester keeps it per country).
COLUMNS = (
    "id, public_id, organization_id, customer_id, type, name, hostname, port, status,"
    " check_interval, timeout_seconds, allowed_country_codes, config, notification_email,"
    " notification_phone_number, next_due_at, created_at, updated_at,"
    " (SELECT max(s.last_checked_at) FROM monitor_country_state s"
    "  WHERE s.monitor_id = monitors.id) AS last_checked_at"
)

# Columns the API may write; anything else in `changes` is a programming error.
WRITABLE = frozenset(
    {
        "customer_id",
        "type",
        "name",
        "hostname",
        "port",
        "status",
        "check_interval",
        "timeout_seconds",
        "allowed_country_codes",
        "config",
        "notification_email",
        "notification_phone_number",
        "next_due_at",
    }
)


async def insert(conn: Conn, organization_id: int, values: Mapping[str, Any]) -> asyncpg.Record:
    names = sorted(values)
    assert set(names) <= WRITABLE, set(names) - WRITABLE
    placeholders = ", ".join(f"${i}" for i in range(2, len(names) + 2))
    row: asyncpg.Record | None = await conn.fetchrow(
        f"INSERT INTO monitors (organization_id, {', '.join(names)})"
        f" VALUES ($1, {placeholders}) RETURNING {COLUMNS}",
        organization_id,
        *(values[n] for n in names),
    )
    assert row is not None
    return row


async def get(
    conn: Conn,
    ident: UUID | int,
    types: Sequence[str],
    organization_id: int | None,
    *,
    for_update: bool = False,
) -> asyncpg.Record | None:
    """The monitor with that public UUID or numeric id, of one of `types`, inside the
    organization (None: any organization)."""
    column = "public_id" if isinstance(ident, UUID) else "id"
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM monitors WHERE {column} = $1 AND type = ANY($2::text[])"
        " AND ($3::bigint IS NULL OR organization_id = $3)" + (" FOR UPDATE" if for_update else ""),
        ident,
        types,
        organization_id,
    )
    return row


async def list_page(
    conn: Conn,
    *,
    organization_id: int | None,
    types: Sequence[str],
    customer_id: int | None,
    search: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    where = (
        "type = ANY($1::text[]) AND ($2::bigint IS NULL OR organization_id = $2)"
        " AND ($3::bigint IS NULL OR customer_id = $3)"
        " AND ($4::text IS NULL OR name ILIKE $4 OR hostname ILIKE $4)"
        " AND ($5::text IS NULL OR status = $5)"
    )
    args = (types, organization_id, customer_id, like_pattern(search), status)
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM monitors WHERE {where}"
        " ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7",
        *args,
        limit,
        offset,
    )
    total: int = await conn.fetchval(f"SELECT count(*) FROM monitors WHERE {where}", *args)
    return rows, total


async def update(conn: Conn, monitor_id: int, changes: Mapping[str, Any]) -> asyncpg.Record:
    names = sorted(changes)
    assert set(names) <= WRITABLE, set(names) - WRITABLE
    assignments = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=2))
    row: asyncpg.Record | None = await conn.fetchrow(
        f"UPDATE monitors SET {assignments}{', ' if names else ''}updated_at = now()"
        f" WHERE id = $1 RETURNING {COLUMNS}",
        monitor_id,
        *(changes[n] for n in names),
    )
    assert row is not None
    return row


async def delete(conn: Conn, monitor_id: int) -> None:
    await conn.execute("DELETE FROM monitors WHERE id = $1", monitor_id)
