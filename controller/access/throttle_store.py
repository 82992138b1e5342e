"""Login throttle counts (`login_throttle`) and the addresses users logged in from
(`login_addresses`); the rules are controller.access.throttle's."""

from datetime import datetime, timedelta

import asyncpg

from controller.access import throttle
from controller.access.throttle import Count, Policy
from controller.db.pool import Conn
from shared.guards import BrokenInvariant


def _count(row: asyncpg.Record) -> Count:
    return Count(row["attempts"], row["locked_until"], row["expires_at"])


async def take(
    conn: Conn, address_key: bytes, account_key: bytes, policy: Policy, now: datetime
) -> timedelta | None:
    """Count one attempt at `now` against the client address, then the account; None when it
    may go ahead, else how long to wait (the account is not counted when the address is
    refused).

    Both rows are made if missing (as already expired: a fresh count) and locked, in key order,
    by one upsert for the transaction, so concurrent attempts on any replica see each other's
    counts, never deadlock, and no row can vanish in between (housekeeping deletes expired ones).
    """
    async with conn.transaction():
        rows = await conn.fetch(
            "INSERT INTO login_throttle AS t (key, attempts, expires_at)"
            " SELECT k, 0, $2::timestamptz FROM unnest($1::bytea[]) AS k ORDER BY k"
            " ON CONFLICT (key) DO UPDATE SET attempts = t.attempts"
            " RETURNING key, attempts, locked_until, expires_at",
            [address_key, account_key],
            now,
        )
        counts = {bytes(r["key"]): _count(r) for r in rows}
        verdict = throttle.address_attempt(counts[address_key], now, policy)
        updates = {address_key: verdict.count}
        if verdict.retry_after is None:
            verdict = throttle.account_attempt(counts[account_key], now, policy)
            updates[account_key] = verdict.count
        await conn.execute(
            "UPDATE login_throttle t SET attempts = u.attempts, locked_until = u.locked_until,"
            " expires_at = u.expires_at FROM unnest($1::bytea[], $2::int[], $3::timestamptz[],"
            " $4::timestamptz[]) AS u (key, attempts, locked_until, expires_at)"
            " WHERE t.key = u.key",
            list(updates),
            [c.attempts for c in updates.values()],
            [c.locked_until for c in updates.values()],
            [c.expires_at for c in updates.values()],
        )
    return verdict.retry_after


async def failed(conn: Conn, account_key: bytes, policy: Policy, now: datetime) -> timedelta | None:
    """The password check of a counted attempt failed at `now`; the account's lockout from
    then, if any."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT attempts, locked_until, expires_at FROM login_throttle"
            " WHERE key = $1 FOR UPDATE",
            account_key,
        )
        if row is None or row["locked_until"] is None:
            return None
        count = throttle.account_failure(_count(row), now, policy)
        await conn.execute(
            "UPDATE login_throttle SET locked_until = $2, expires_at = $3 WHERE key = $1",
            account_key,
            count.locked_until,
            count.expires_at,
        )
    if count.locked_until is None:
        raise BrokenInvariant("throttle_store.failed: count.locked_until is unset")
    wait: timedelta = count.locked_until - now
    return wait


async def succeeded(conn: Conn, address_key: bytes, account_key: bytes, now: datetime) -> None:
    """A login went through at `now`: the account's count starts over and the address's
    attempt is uncounted."""
    await conn.execute("DELETE FROM login_throttle WHERE key = $1", account_key)
    await conn.execute(
        "UPDATE login_throttle SET attempts = greatest(attempts - 1, 0)"
        " WHERE key = $1 AND expires_at > $2",
        address_key,
        now,
    )


async def is_known_address(conn: Conn, user_id: int, address: str, now: datetime) -> bool:
    known: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM login_addresses WHERE user_id = $1 AND address = $2"
        " AND last_login_at > $4::timestamptz - make_interval(days => $3))",
        user_id,
        address,
        throttle.KNOWN_ADDRESS_DAYS,
        now,
    )
    return known


async def remember_address(conn: Conn, user_id: int, address: str, now: datetime) -> None:
    await conn.execute(
        "INSERT INTO login_addresses (user_id, address, last_login_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (user_id, address) DO UPDATE SET last_login_at = $3",
        user_id,
        address,
        now,
    )


async def forget_old(conn: Conn, now: datetime) -> None:
    """Throttle counts past their time at `now` and addresses not used for
    KNOWN_ADDRESS_DAYS."""
    await conn.execute("DELETE FROM login_throttle WHERE expires_at < $1", now)
    await conn.execute(
        "DELETE FROM login_addresses"
        " WHERE last_login_at < $2::timestamptz - make_interval(days => $1)",
        throttle.KNOWN_ADDRESS_DAYS,
        now,
    )
