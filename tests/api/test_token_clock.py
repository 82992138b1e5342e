"""A token is live by the instant it is given (issue 79), not the database's `now()`: a manual
clock on the real PostgreSQL moves across its expiry at a year's end, and a user disabled at an
instant keeps that instant."""

from datetime import UTC, datetime

import asyncpg

from controller.access import accounts_store as accounts
from controller.access.credentials import new_token
from shared.clock import ManualClock
from tests.conftest import make_tenant

TTL_S = 3600


async def test_a_token_is_live_until_its_expiry_on_the_clock_given(pool: asyncpg.Pool) -> None:
    tenant = await make_tenant(pool)
    clock = ManualClock(datetime(2026, 12, 31, 23, 30, tzinfo=UTC))
    _, digest = new_token()
    async with pool.acquire() as conn:
        user: int = await conn.fetchval(
            "SELECT id FROM users WHERE organization_id = $1 AND role = 'member'", tenant.org_id
        )
        expires = await accounts.issue_token(conn, user, digest, TTL_S, clock.now())
        assert expires == datetime(2027, 1, 1, 0, 30, tzinfo=UTC)

        clock.advance(TTL_S - 0.001)  # the last millisecond of its hour
        live = await accounts.principal_for_token(conn, digest, clock.now())
        assert live is not None and live.user_id == user
        clock.advance(0.001)  # its expiry: no longer live
        assert await accounts.principal_for_token(conn, digest, clock.now()) is None

        # Disabled at an instant: that instant is kept, and a second disable does not move it.
        at = clock.now()
        row = await accounts.set_disabled(conn, user, True, at)
        clock.advance(60)
        row = await accounts.set_disabled(conn, user, True, clock.now())
        disabled_at: datetime = await conn.fetchval(
            "SELECT disabled_at FROM users WHERE id = $1", user
        )
        assert disabled_at == at == row.disabled_at
