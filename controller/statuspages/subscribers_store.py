"""Status page subscribers and the subscription requests the anonymous limits count
(`subscribers` has the rules). The caller owns the transaction."""

from datetime import datetime, timedelta
from enum import Enum
from uuid import UUID

import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class Asked(Enum):
    MAIL = "mail"  # a confirmation is to be mailed
    CONFIRMED = "confirmed"  # already subscribed: nothing to mail
    PAGE_LIMIT = "page_limit"
    ADDRESS_LIMIT = "address_limit"


async def ask(
    conn: Conn,
    page_id: int,
    address: str,
    address_hash: bytes,
    confirm_hash: bytes,
    now: datetime,
    ttl: timedelta,
    per_page_per_hour: int,
    per_address_per_day: int,
) -> tuple[Asked, UUID | None]:
    """Record a subscription request of `address` to the page: whether to mail a confirmation
    (then the subscriber's public id, its pending token `confirm_hash` replacing any earlier).
    Requests of one page, and of one address, are counted one after another (row and advisory
    locks), so replicas and concurrent visitors cannot pass a limit together."""
    await conn.execute("SELECT 1 FROM status_pages WHERE id = $1 FOR UPDATE", page_id)
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(encode($1::bytea, 'hex'), 27))",
        address_hash,
    )
    await conn.execute("DELETE FROM status_subscribe_requests WHERE at < $1", now - DAY)
    # An address that never confirmed is not kept past its link's expiry.
    await conn.execute(
        "DELETE FROM status_subscribers WHERE status_page_id = $1 AND confirmed_at IS NULL"
        " AND confirm_expires < $2",
        page_id,
        now,
    )
    existing = await conn.fetchrow(
        "SELECT public_id, confirmed_at FROM status_subscribers"
        " WHERE status_page_id = $1 AND lower(email) = lower($2)",
        page_id,
        address,
    )
    if existing is not None and existing["confirmed_at"] is not None:
        return Asked.CONFIRMED, None
    on_page: int = await conn.fetchval(
        "SELECT count(*) FROM status_subscribe_requests WHERE status_page_id = $1 AND at >= $2",
        page_id,
        now - HOUR,
    )
    if on_page >= per_page_per_hour:
        return Asked.PAGE_LIMIT, None
    of_address: int = await conn.fetchval(
        "SELECT count(*) FROM status_subscribe_requests WHERE address_hash = $1 AND at >= $2",
        address_hash,
        now - DAY,
    )
    if of_address >= per_address_per_day:
        return Asked.ADDRESS_LIMIT, None
    public_id: UUID = await conn.fetchval(
        "INSERT INTO status_subscribers (status_page_id, email, confirm_hash, confirm_expires)"
        " VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (status_page_id, lower(email)) DO UPDATE"
        " SET confirm_hash = EXCLUDED.confirm_hash, confirm_expires = EXCLUDED.confirm_expires"
        " RETURNING public_id",
        page_id,
        address,
        confirm_hash,
        now + ttl,
    )
    await conn.execute(
        "INSERT INTO status_subscribe_requests (status_page_id, address_hash, at)"
        " VALUES ($1, $2, $3)",
        page_id,
        address_hash,
        now,
    )
    return Asked.MAIL, public_id


async def confirm(conn: Conn, page_id: int, confirm_hash: bytes, now: datetime) -> bool:
    """Confirm the subscriber whose pending token hashes to `confirm_hash`; False when none
    is pending under it (unknown, used or expired)."""
    done = await conn.fetchval(
        "UPDATE status_subscribers SET confirmed_at = $3, confirm_hash = NULL,"
        " confirm_expires = NULL"
        " WHERE status_page_id = $1 AND confirm_hash = $2 AND confirm_expires > $3"
        " RETURNING id",
        page_id,
        confirm_hash,
        now,
    )
    return done is not None


async def unsubscribe(conn: Conn, page_id: int, public_id: UUID) -> None:
    await conn.execute(
        "DELETE FROM status_subscribers WHERE status_page_id = $1 AND public_id = $2",
        page_id,
        public_id,
    )


class Subscriber(msgspec.Struct, frozen=True):
    """A confirmed subscriber of a status page."""

    public_id: UUID
    email: str


async def confirmed(conn: Conn, page_id: int) -> list[Subscriber]:
    """The page's confirmed subscribers."""
    rows = await conn.fetch(
        "SELECT public_id, email FROM status_subscribers"
        " WHERE status_page_id = $1 AND confirmed_at IS NOT NULL ORDER BY id",
        page_id,
    )
    return typed.many(Subscriber, rows)


async def count(conn: Conn, page_id: int) -> int:
    """How many confirmed subscribers the page has (for its admins; never shown publicly)."""
    n: int = await conn.fetchval(
        "SELECT count(*) FROM status_subscribers"
        " WHERE status_page_id = $1 AND confirmed_at IS NOT NULL",
        page_id,
    )
    return n
