"""The `oauth2_tokens` and `oauth2_token_calls` rows (controller.oauth2.rules has the rules).
The caller owns the transaction, if any."""

from dataclasses import dataclass
from datetime import datetime

from controller.db.pool import Conn


@dataclass(frozen=True)
class Cached:
    access_token: str | None  # sealed
    expires_at: datetime | None
    refresh_token: str | None  # sealed: a rotated one
    error: str | None
    error_message: str | None
    retry_at: datetime | None
    told: bool


async def hold(conn: Conn, grant_key: str) -> None:
    """Hold the grant until `release`: one replica asks its endpoint at a time (a rotated
    refresh token used twice may revoke the grant). A session lock, so no transaction stays
    open while the endpoint is asked; a connection going back to the pool drops it anyway."""
    await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 25))", grant_key)


async def release(conn: Conn, grant_key: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 25))", grant_key)


async def get(conn: Conn, grant_key: str) -> Cached | None:
    row = await conn.fetchrow(
        "SELECT access_token, expires_at, refresh_token, error, error_message, retry_at, told"
        " FROM oauth2_tokens WHERE grant_key = $1",
        grant_key,
    )
    return None if row is None else Cached(*row.values())


async def issued(
    conn: Conn,
    grant_key: str,
    monitor_id: int,
    access_token: str,
    expires_at: datetime,
    refresh_token: str | None,
    now: datetime,
) -> None:
    """A token the endpoint issued (sealed), and the refresh token it rotated to, if any, at
    `now`."""
    await conn.execute(
        "INSERT INTO oauth2_tokens AS t (grant_key, monitor_id, access_token, expires_at,"
        " refresh_token, updated_at) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (grant_key) DO UPDATE SET"
        " access_token = $3, expires_at = $4,"
        " refresh_token = coalesce($5, t.refresh_token), error = NULL, error_message = NULL,"
        " retry_at = NULL, told = false, updated_at = $6",
        grant_key,
        monitor_id,
        access_token,
        expires_at,
        refresh_token,
        now,
    )


async def failed(
    conn: Conn,
    grant_key: str,
    monitor_id: int,
    error: str,
    message: str,
    retry_at: datetime,
    told: bool,
    now: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO oauth2_tokens AS t (grant_key, monitor_id, error, error_message, retry_at,"
        " told, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (grant_key) DO UPDATE SET"
        " access_token = NULL, expires_at = NULL, error = $3, error_message = $4,"
        " retry_at = $5, told = $6, updated_at = $7",
        grant_key,
        monitor_id,
        error,
        message,
        retry_at,
        told,
        now,
    )


async def take_call(conn: Conn, organization_id: int, hour: datetime, limit: int) -> bool:
    """One call to a token endpoint from the organization's hourly budget; False when spent."""
    taken = await conn.fetchval(
        "INSERT INTO oauth2_token_calls AS c (organization_id, hour, calls) VALUES ($1, $2, 1)"
        " ON CONFLICT (organization_id, hour) DO UPDATE SET calls = c.calls + 1"
        " WHERE c.calls < $3 RETURNING calls",
        organization_id,
        hour,
        limit,
    )
    return taken is not None
