"""Notices on a status page written by a person (an incident or a maintenance) and their
updates. The caller checks rights and owns the transaction."""

from datetime import datetime
from uuid import UUID

import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn
from shared.guards import BrokenInvariant

IMPACTS = ("none", "minor", "major", "maintenance")
STATES = ("investigating", "identified", "monitoring", "resolved")

_NOTICE = (
    "n.id, n.public_id, n.status_page_id, n.title, n.impact, n.created_at, n.resolved_at,"
    " p.slug, p.title AS page_title, p.organization_id, p.customer_id"
)


class NoticePage(msgspec.Struct, frozen=True):
    """The status page a customer's notices go on."""

    id: int
    slug: str
    title: str
    organization_id: int
    customer_id: int


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """A notice with what names its page; open while `resolved_at` is None."""

    id: int
    public_id: UUID
    status_page_id: int
    title: str
    impact: str
    created_at: datetime
    resolved_at: datetime | None
    slug: str
    page_title: str
    organization_id: int
    customer_id: int


class NoticeUpdate(msgspec.Struct, frozen=True):
    """An update of a notice."""

    notice_id: int
    state: str
    body: str
    created_at: datetime


async def page_of_customer(
    conn: Conn, customer: int | UUID, organization_id: int
) -> NoticePage | None:
    """The status page of the organization's customer (numeric id or public UUID), or None
    (no such customer here, or no page published)."""
    column = "c.id" if isinstance(customer, int) else "c.public_id"
    row = await conn.fetchrow(
        "SELECT p.id, p.slug, p.title, p.organization_id, c.id AS customer_id"
        " FROM status_pages p JOIN customers c ON c.id = p.customer_id"
        f" WHERE {column} = $1 AND p.organization_id = $2",
        customer,
        organization_id,
    )
    return typed.maybe(NoticePage, row)


async def create(
    conn: Conn,
    page_id: int,
    title: str,
    impact: str,
    state: str,
    body: str,
    author_id: int,
    at: datetime,
) -> Notice:
    """A new notice with its first update, written at `at`; returns the notice."""
    notice_id: int = await conn.fetchval(
        "INSERT INTO status_notices (status_page_id, title, impact, created_at, resolved_at)"
        " VALUES ($1, $2, $3, $5, CASE WHEN $4 = 'resolved' THEN $5::timestamptz END)"
        " RETURNING id",
        page_id,
        title,
        impact,
        state,
        at,
    )
    await add_update(conn, notice_id, state, body, author_id, at)
    found = await by_id(conn, notice_id)
    if found is None:
        raise BrokenInvariant("notices_store.create: found is unset")
    return found


async def add_update(
    conn: Conn, notice_id: int, state: str, body: str, author_id: int, at: datetime
) -> None:
    """An update written at `at`; `resolved` resolves the notice, any other state opens it
    again."""
    await conn.execute(
        "INSERT INTO status_notice_updates (notice_id, state, body, author_id, created_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        notice_id,
        state,
        body,
        author_id,
        at,
    )
    await conn.execute(
        "UPDATE status_notices SET resolved_at = CASE WHEN $2 = 'resolved'"
        " THEN coalesce(resolved_at, $3::timestamptz) END WHERE id = $1",
        notice_id,
        state,
        at,
    )


async def by_id(conn: Conn, notice_id: int) -> Notice | None:
    row = await conn.fetchrow(
        f"SELECT {_NOTICE} FROM status_notices n JOIN status_pages p ON p.id = n.status_page_id"
        " WHERE n.id = $1",
        notice_id,
    )
    return typed.maybe(Notice, row)


async def by_public_id(conn: Conn, public_id: UUID, organization_id: int) -> Notice | None:
    """The organization's notice, or None (another organization's is not found either)."""
    row = await conn.fetchrow(
        f"SELECT {_NOTICE} FROM status_notices n JOIN status_pages p ON p.id = n.status_page_id"
        " WHERE n.public_id = $1 AND p.organization_id = $2",
        public_id,
        organization_id,
    )
    return typed.maybe(Notice, row)


async def of_page(conn: Conn, page_id: int, since: datetime) -> list[Notice]:
    """The page's notices open now or created since `since`, newest first (at most 100)."""
    rows = await conn.fetch(
        f"SELECT {_NOTICE} FROM status_notices n JOIN status_pages p ON p.id = n.status_page_id"
        " WHERE n.status_page_id = $1 AND (n.resolved_at IS NULL OR n.created_at >= $2)"
        " ORDER BY n.created_at DESC, n.id DESC LIMIT 100",
        page_id,
        since,
    )
    return typed.many(Notice, rows)


async def updates(conn: Conn, notice_ids: list[int]) -> dict[int, list[NoticeUpdate]]:
    """Each notice's updates, oldest first."""
    rows = await conn.fetch(
        "SELECT notice_id, state, body, created_at FROM status_notice_updates"
        " WHERE notice_id = ANY($1::bigint[]) ORDER BY notice_id, id",
        notice_ids,
    )
    out: dict[int, list[NoticeUpdate]] = {}
    for u in typed.many(NoticeUpdate, rows):
        out.setdefault(u.notice_id, []).append(u)
    return out


async def update_count(conn: Conn, notice_id: int) -> int:
    """How many updates the notice has."""
    n: int = await conn.fetchval(
        "SELECT count(*) FROM status_notice_updates WHERE notice_id = $1", notice_id
    )
    return n
