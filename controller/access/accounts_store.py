"""Organizations, users and bearer tokens."""

from datetime import datetime, timedelta
from uuid import UUID

import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn
from shared.guards import BrokenInvariant

ROLES = ("owner", "admin", "member", "readonly")


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the user behind a bearer token."""

    user_id: int
    user_public_id: UUID
    organization_id: int
    email: str
    role: str
    is_global_supporter: bool
    # One of the deployment's operators (`python -m controller operator`): reads the agents',
    # the fleet's and the oracles' health of every country and gets their notices.
    is_operator: bool = False


class User(msgspec.Struct, frozen=True, kw_only=True):
    """A user of an organization (never their password hash)."""

    id: int
    public_id: UUID
    organization_id: int
    email: str
    role: str
    is_global_supporter: bool
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None
    is_operator: bool = False


class LoginUser(msgspec.Struct, frozen=True):
    """What a login checks of the user an address names."""

    id: int
    password_hash: str
    disabled_at: datetime | None


_USER_COLUMNS = (
    "u.id, u.public_id, u.organization_id, u.email, u.role, u.is_global_supporter,"
    " u.created_at, u.updated_at, u.disabled_at, u.is_operator"
)


async def ensure_organization(conn: Conn, name: str) -> int:
    org_id: int = await conn.fetchval(
        "INSERT INTO organizations (name) VALUES ($1)"
        " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        name,
    )
    return org_id


async def organization_names(conn: Conn, ids: list[int]) -> dict[int, str]:
    """The names of those of `ids` that are organizations."""
    rows = await conn.fetch("SELECT id, name FROM organizations WHERE id = ANY($1::bigint[])", ids)
    return {r["id"]: r["name"] for r in rows}


async def create_user(
    conn: Conn,
    organization_id: int,
    email: str,
    password_hash: str,
    role: str,
    is_global_supporter: bool = False,
    is_operator: bool = False,
) -> User:
    """Insert a user; raises asyncpg.UniqueViolationError when the e-mail is taken."""
    row = await conn.fetchrow(
        "INSERT INTO users AS u"
        " (organization_id, email, password_hash, role, is_global_supporter, is_operator)"
        f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_USER_COLUMNS}",
        organization_id,
        email,
        password_hash,
        role,
        is_global_supporter,
        is_operator,
    )
    if row is None:
        raise BrokenInvariant("accounts_store.create_user: the statement returned no row")
    return typed.one(User, row)


async def user_for_login(conn: Conn, email: str) -> LoginUser | None:
    row = await conn.fetchrow(
        "SELECT id, password_hash, disabled_at FROM users WHERE lower(email) = lower($1)", email
    )
    return typed.maybe(LoginUser, row)


async def list_users(
    conn: Conn, organization_id: int, limit: int, offset: int
) -> tuple[list[User], int]:
    rows = await conn.fetch(
        f"SELECT {_USER_COLUMNS}, count(*) OVER () AS total FROM users u"
        " WHERE u.organization_id = $1 ORDER BY u.created_at DESC, u.id DESC LIMIT $2 OFFSET $3",
        organization_id,
        limit,
        offset,
    )
    total: int = rows[0]["total"] if rows else await _count_users(conn, organization_id)
    return typed.many(User, rows), total


async def _count_users(conn: Conn, organization_id: int) -> int:
    total: int = await conn.fetchval(
        "SELECT count(*) FROM users WHERE organization_id = $1", organization_id
    )
    return total


async def issue_token(
    conn: Conn, user_id: int, digest: bytes, ttl_seconds: int, now: datetime
) -> datetime:
    """A token of `digest` for the user, expiring `ttl_seconds` after `now`."""
    expires_at = now + timedelta(seconds=ttl_seconds)
    await conn.execute(
        "INSERT INTO api_tokens (user_id, token_hash, expires_at) VALUES ($1, $2, $3)",
        user_id,
        digest,
        expires_at,
    )
    return expires_at


async def token_expiry(conn: Conn, user_id: int, digest: bytes, now: datetime) -> datetime | None:
    """When the user's token of `digest` expires; None when it is not live at `now`, or not
    theirs."""
    expires: datetime | None = await conn.fetchval(
        "SELECT expires_at FROM api_tokens"
        " WHERE token_hash = $1 AND user_id = $2 AND expires_at > $3",
        digest,
        user_id,
        now,
    )
    return expires


async def principal_for_token(conn: Conn, digest: bytes, now: datetime) -> Principal | None:
    """Whose token `digest` is while it is live at `now` and its user enabled; else None."""
    row = await conn.fetchrow(
        "SELECT u.id, u.public_id, u.organization_id, u.email, u.role, u.is_global_supporter,"
        " u.is_operator FROM api_tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.token_hash = $1 AND t.expires_at > $2 AND u.disabled_at IS NULL",
        digest,
        now,
    )
    if row is None:
        return None
    return Principal(
        user_id=row["id"],
        user_public_id=row["public_id"],
        organization_id=row["organization_id"],
        email=row["email"],
        role=row["role"],
        is_global_supporter=row["is_global_supporter"],
        is_operator=row["is_operator"],
    )


async def set_operator(conn: Conn, email: str, operator: bool, now: datetime) -> User | None:
    """Make the user of `email` one of the deployment's operators, or no longer one; None when
    no user has that address. The command line's alone: no API route reaches it."""
    row = await conn.fetchrow(
        f"UPDATE users u SET is_operator = $2, updated_at = $3 WHERE lower(u.email) = lower($1)"
        f" RETURNING {_USER_COLUMNS}",
        email,
        operator,
        now,
    )
    return typed.maybe(User, row)


class Operator(msgspec.Struct, frozen=True):
    """An operator who may be told: their user id, address and organization."""

    id: int
    email: str
    organization_id: int


async def operators(conn: Conn) -> list[Operator]:
    """The deployment's operators who may log in, by organization, oldest first."""
    rows = await conn.fetch(
        "SELECT id, email, organization_id FROM users WHERE is_operator AND disabled_at IS NULL"
        " ORDER BY organization_id, id"
    )
    return typed.many(Operator, rows)


async def delete_expired_tokens(conn: Conn, now: datetime) -> None:
    await conn.execute("DELETE FROM api_tokens WHERE expires_at < $1", now)


async def revoke_token(conn: Conn, digest: bytes) -> None:
    await conn.execute("DELETE FROM api_tokens WHERE token_hash = $1", digest)


async def revoke_user_tokens(conn: Conn, user_id: int) -> None:
    await conn.execute("DELETE FROM api_tokens WHERE user_id = $1", user_id)


async def user_in_organization(conn: Conn, public_id: UUID, organization_id: int) -> User | None:
    row = await conn.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users u WHERE u.public_id = $1 AND u.organization_id = $2",
        public_id,
        organization_id,
    )
    return typed.maybe(User, row)


async def lock_organization(conn: Conn, organization_id: int) -> None:
    """Serialise changes to the organization's users until the transaction ends (two owners
    disabling each other at once must not leave it without one)."""
    await conn.execute("SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE", organization_id)


async def other_enabled_owners(conn: Conn, organization_id: int, user_id: int) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM users WHERE organization_id = $1 AND role = 'owner'"
        " AND disabled_at IS NULL AND id <> $2",
        organization_id,
        user_id,
    )
    return count


async def set_disabled(conn: Conn, user_id: int, disabled: bool, now: datetime) -> User:
    """Disable (keeping the first time) or enable a user at `now`; disabling also deletes their
    tokens, so enabling them again does not bring back a token that may have leaked."""
    row = await conn.fetchrow(
        "UPDATE users AS u SET disabled_at = CASE WHEN $2 THEN coalesce(u.disabled_at, $3) END,"
        f" updated_at = $3 WHERE u.id = $1 RETURNING {_USER_COLUMNS}",
        user_id,
        disabled,
        now,
    )
    if row is None:
        raise BrokenInvariant("accounts_store.set_disabled: the statement returned no row")
    if disabled:
        await revoke_user_tokens(conn, user_id)
    return typed.one(User, row)
