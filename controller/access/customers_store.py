"""Customers: the grouping a monitor belongs to, addressed by numeric id or public UUID."""

from datetime import datetime
from uuid import UUID

import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn
from controller.db.sql import like_pattern
from shared.guards import BrokenInvariant


class Customer(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    public_id: UUID
    organization_id: int
    name: str
    created_at: datetime
    updated_at: datetime


_COLUMNS = "id, public_id, organization_id, name, created_at, updated_at"


def parse_ident(ident: int | str) -> int | UUID | None:
    """A customer's id (a positive integer, or its digits) or public UUID as sent; None for
    neither."""
    if isinstance(ident, int):
        return ident if 0 < ident < 2**63 else None
    text = ident.strip()
    if text.isdigit():
        return parse_ident(int(text))
    try:
        return UUID(text)
    except ValueError:
        return None


async def create(conn: Conn, organization_id: int, name: str) -> Customer:
    row = await conn.fetchrow(
        f"INSERT INTO customers (organization_id, name) VALUES ($1, $2) RETURNING {_COLUMNS}",
        organization_id,
        name,
    )
    if row is None:
        raise BrokenInvariant("customers_store.create: the statement returned no row")
    return typed.one(Customer, row)


async def default_for(conn: Conn, organization_id: int, name: str) -> int:
    """The id of the organization's default customer (the one monitors created without a
    customer go to, e.g. through the AlertSite-compatible API), created on first use.

    Race-safe: a unique partial index allows one default per organization, so concurrent
    first uses insert one row and the others find it.
    """
    created: int | None = await conn.fetchval(
        "INSERT INTO customers (organization_id, name, is_default) VALUES ($1, $2, true)"
        " ON CONFLICT (organization_id) WHERE is_default DO NOTHING RETURNING id",
        organization_id,
        name,
    )
    if created is not None:
        return created
    found: int = await conn.fetchval(
        "SELECT id FROM customers WHERE organization_id = $1 AND is_default", organization_id
    )
    return found


async def find(conn: Conn, ident: int | UUID, organization_id: int | None) -> Customer | None:
    """The customer with that id or public id, inside the organization (None: any)."""
    column = "public_id" if isinstance(ident, UUID) else "id"
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM customers WHERE {column} = $1"
        " AND ($2::bigint IS NULL OR organization_id = $2)",
        ident,
        organization_id,
    )
    return typed.maybe(Customer, row)


async def list_page(
    conn: Conn,
    organization_id: int | None,
    search: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Customer], int]:
    where = "($1::bigint IS NULL OR organization_id = $1) AND ($2::text IS NULL OR name ILIKE $2)"
    pattern = like_pattern(search)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM customers WHERE {where}"
        " ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
        organization_id,
        pattern,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM customers WHERE {where}", organization_id, pattern
    )
    return typed.many(Customer, rows), total
