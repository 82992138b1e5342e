"""The `report_mailboxes` rows: an organization's report mailbox as configured (its secrets
sealed), its grant's cached token, and how its last read went. The caller opens the
transaction."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from controller.db.pool import Conn

_COLUMNS = (
    "organization_id, host, port, username, password, oauth2, ca_pem, folder, done_folder,"
    " enabled, access_token, token_expires_at, refresh_token, next_read_at, last_read_at,"
    " last_ok_at, last_error, last_messages, last_stored, last_rejected, protocol, security"
)


@dataclass(frozen=True, slots=True)
class StoredMailbox:
    organization_id: int
    host: str
    port: int
    user: str
    password: str | None  # sealed
    oauth2: dict[str, Any] | None  # a grant as stored, its secrets sealed
    ca_pem: str | None
    folder: str
    done_folder: str
    enabled: bool
    access_token: str | None = None  # sealed
    token_expires_at: datetime | None = None
    refresh_token: str | None = None  # sealed, the rotated one
    next_read_at: datetime | None = None
    last_read_at: datetime | None = None
    last_ok_at: datetime | None = None
    last_error: str | None = None
    last_messages: int | None = None
    last_stored: int | None = None
    last_rejected: int | None = None
    protocol: str = "imap"  # or "pop3"
    security: str = "tls"  # or "starttls" (POP3: STLS)


def _of(row: asyncpg.Record) -> StoredMailbox:
    return StoredMailbox(*row.values())


async def get(conn: Conn, organization_id: int) -> StoredMailbox | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM report_mailboxes WHERE organization_id = $1", organization_id
    )
    return None if row is None else _of(row)


async def save(conn: Conn, box: StoredMailbox, *, grant_changed: bool, now: datetime) -> None:
    """Create or replace the organization's mailbox at `now`, to be read at once;
    `grant_changed` forgets the cached token and the rotated refresh token."""
    await conn.execute(
        "INSERT INTO report_mailboxes AS b (organization_id, host, port, username, password,"
        " oauth2, ca_pem, folder, done_folder, enabled, protocol, security, next_read_at,"
        " updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12, $13, $14, $14)"
        " ON CONFLICT (organization_id) DO UPDATE SET host = $2, port = $3, username = $4,"
        " password = $5, oauth2 = $6, ca_pem = $7, folder = $8, done_folder = $9, enabled = $10,"
        " protocol = $12, security = $13,"
        " access_token = CASE WHEN $11 THEN NULL ELSE b.access_token END,"
        " token_expires_at = CASE WHEN $11 THEN NULL ELSE b.token_expires_at END,"
        " refresh_token = CASE WHEN $11 THEN NULL ELSE b.refresh_token END,"
        " next_read_at = $14, last_error = NULL, updated_at = $14",
        box.organization_id,
        box.host,
        box.port,
        box.user,
        box.password,
        box.oauth2,
        box.ca_pem,
        box.folder,
        box.done_folder,
        box.enabled,
        grant_changed,
        box.protocol,
        box.security,
        now,
    )


async def delete(conn: Conn, organization_id: int) -> bool:
    done: str = await conn.execute(
        "DELETE FROM report_mailboxes WHERE organization_id = $1", organization_id
    )
    return done.endswith(" 1")


async def due(conn: Conn, now: datetime, limit: int) -> list[StoredMailbox]:
    """The enabled mailboxes whose read is due, the longest waiting first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM report_mailboxes WHERE enabled AND next_read_at <= $1"
        " ORDER BY next_read_at, organization_id LIMIT $2",
        now,
        limit,
    )
    return [_of(r) for r in rows]


async def read_done(
    conn: Conn,
    organization_id: int,
    at: datetime,
    next_at: datetime,
    error: str | None,
    counts: tuple[int, int, int] | None,
) -> None:
    """How a read went: `error` None and `counts` (messages, stored, rejected) when it read."""
    messages, stored, rejected = counts or (None, None, None)
    await conn.execute(
        "UPDATE report_mailboxes SET last_read_at = $2, next_read_at = $3, last_error = $4,"
        " last_ok_at = CASE WHEN $4::text IS NULL THEN $2 ELSE last_ok_at END,"
        " last_messages = coalesce($5, last_messages), last_stored = coalesce($6, last_stored),"
        " last_rejected = coalesce($7, last_rejected)"
        " WHERE organization_id = $1",
        organization_id,
        at,
        next_at,
        error,
        messages,
        stored,
        rejected,
    )


async def token_issued(
    conn: Conn,
    organization_id: int,
    oauth2: dict[str, Any],
    access_token: str,
    expires_at: datetime,
    refresh_token: str | None,
) -> None:
    """A token the grant's endpoint issued (sealed), kept while the grant is still `oauth2`
    (one changed meanwhile by the API keeps none)."""
    await conn.execute(
        "UPDATE report_mailboxes SET access_token = $3, token_expires_at = $4,"
        " refresh_token = coalesce($5, refresh_token)"
        " WHERE organization_id = $1 AND oauth2 = $2",
        organization_id,
        oauth2,
        access_token,
        expires_at,
        refresh_token,
    )
