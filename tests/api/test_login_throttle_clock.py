"""The login throttle decides by the instant it is given (shared.clock), not by the database's
`now()`: driven by a manual clock on the real PostgreSQL across UTC midnight, a month's end and
a year's end, with no sleeping. Lockouts end, double, and are forgotten, address windows close,
and known addresses stop being known, exactly at their times."""

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from controller.access import accounts_store as accounts
from controller.access import throttle_store as logins
from controller.access.credentials import new_token
from controller.access.throttle import ACCOUNT_MEMORY, KNOWN_ADDRESS_DAYS, Policy
from controller.db.pool import Conn
from shared.clock import ManualClock

POLICY = Policy(
    address_per_minute=2,
    account_failures=3,
    lockout=timedelta(seconds=30),
    lockout_max=timedelta(seconds=120),
)
EDGES = [
    pytest.param(datetime(2026, 11, 30, 23, 59, 45, tzinfo=UTC), id="november-end"),
    pytest.param(datetime(2026, 12, 31, 23, 59, 50, 500_000, tzinfo=UTC), id="year-end"),
    pytest.param(datetime(2027, 2, 28, 23, 59, 59, tzinfo=UTC), id="february-end"),
    pytest.param(datetime(2028, 2, 28, 23, 59, 59, tzinfo=UTC), id="leap-february"),
]


def _key() -> bytes:
    return uuid.uuid4().bytes


@contextlib.asynccontextmanager
async def rolled_back(pool: asyncpg.Pool) -> AsyncIterator[Conn]:
    """A connection in a transaction rolled back at the end: the housekeeping run at a later
    instant deletes nothing the session's other tests keep (their tokens, their counts)."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            yield conn
        finally:
            await transaction.rollback()


async def _rows(conn: Conn, *keys: bytes) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM login_throttle WHERE key = ANY($1::bytea[])", list(keys)
    )
    return count


async def _attempt(
    conn: Conn, address: bytes, account: bytes, clock: ManualClock
) -> timedelta | None:
    """One attempt whose password is wrong: the wait it met, or the lockout it began."""
    wait = await logins.take(conn, address, account, POLICY, clock.now())
    if wait is not None:
        return wait
    return await logins.failed(conn, account, POLICY, clock.now())


@pytest.mark.parametrize("start", EDGES)
async def test_a_lockout_ends_doubles_and_is_forgotten_at_its_instants(
    pool: asyncpg.Pool, start: datetime
) -> None:
    clock = ManualClock(start)
    account = _key()
    async with rolled_back(pool) as conn:
        waits = []
        for _ in range(3):  # from three addresses: the account's count alone locks it
            waits.append(await _attempt(conn, _key(), account, clock))
        assert waits == [None, None, timedelta(seconds=30)]
        clock.advance(29.5)
        assert await _attempt(conn, _key(), account, clock) == timedelta(seconds=0.5)
        clock.advance(0.5)  # the lockout is over, on the other side of midnight
        assert clock.now().day != start.day
        assert await _attempt(conn, _key(), account, clock) == timedelta(seconds=60)
        ended = clock.now() + timedelta(seconds=60)
        clock.advance(59)
        assert await logins.take(conn, _key(), account, POLICY, clock.now()) == timedelta(seconds=1)
        # Forgotten a day after the last lockout ends, not a second earlier.
        clock.set(ended + ACCOUNT_MEMORY - timedelta(seconds=1))
        await logins.forget_old(conn, clock.now())
        assert await _rows(conn, account) == 1
        clock.set(ended + ACCOUNT_MEMORY + timedelta(seconds=1))
        await logins.forget_old(conn, clock.now())
        assert await _rows(conn, account) == 0


@pytest.mark.parametrize("start", EDGES)
async def test_an_address_window_closes_a_minute_after_its_first_attempt(
    pool: asyncpg.Pool, start: datetime
) -> None:
    clock = ManualClock(start)
    address = _key()
    async with pool.acquire() as conn:
        assert await logins.take(conn, address, _key(), POLICY, clock.now()) is None
        clock.advance(10)
        assert await logins.take(conn, address, _key(), POLICY, clock.now()) is None
        clock.advance(49)
        assert await logins.take(conn, address, _key(), POLICY, clock.now()) == timedelta(seconds=1)
        clock.advance(1)
        assert await logins.take(conn, address, _key(), POLICY, clock.now()) is None


@pytest.mark.parametrize("start", EDGES)
async def test_a_known_address_is_known_for_its_days_then_forgotten(
    pool: asyncpg.Pool, start: datetime
) -> None:
    clock = ManualClock(start)
    days = timedelta(days=KNOWN_ADDRESS_DAYS)
    async with rolled_back(pool) as conn:
        org = await accounts.ensure_organization(conn, f"clock-{uuid.uuid4().hex[:8]}")
        user = await accounts.create_user(
            conn, org, f"{uuid.uuid4().hex}@example.com", "-", "member"
        )
        await logins.remember_address(conn, user.id, "192.0.2.7", clock.now())
        clock.set(start + days - timedelta(seconds=1))
        assert await logins.is_known_address(conn, user.id, "192.0.2.7", clock.now())
        await logins.forget_old(conn, clock.now())
        clock.set(start + days)
        assert not await logins.is_known_address(conn, user.id, "192.0.2.7", clock.now())
        clock.set(start + days + timedelta(seconds=1))
        await logins.forget_old(conn, clock.now())
        kept = await conn.fetchval(
            "SELECT count(*) FROM login_addresses WHERE user_id = $1", user.id
        )
        assert kept == 0


@pytest.mark.parametrize("start", EDGES)
async def test_a_token_lives_its_ttl_from_the_given_instant_then_is_deleted(
    pool: asyncpg.Pool, start: datetime
) -> None:
    clock = ManualClock(start)
    _, digest = new_token()
    async with rolled_back(pool) as conn:
        org = await accounts.ensure_organization(conn, f"clock-{uuid.uuid4().hex[:8]}")
        user = await accounts.create_user(
            conn, org, f"{uuid.uuid4().hex}@example.com", "-", "member"
        )
        expires = await accounts.issue_token(conn, user.id, digest, 30, clock.now())
        assert expires == start + timedelta(seconds=30)
        clock.advance(29)
        await accounts.delete_expired_tokens(conn, clock.now())
        assert await conn.fetchval("SELECT count(*) FROM api_tokens WHERE token_hash = $1", digest)
        clock.advance(2)
        await accounts.delete_expired_tokens(conn, clock.now())
        assert not await conn.fetchval(
            "SELECT count(*) FROM api_tokens WHERE token_hash = $1", digest
        )
