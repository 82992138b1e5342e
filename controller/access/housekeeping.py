"""Expired tokens, throttle counts past their time, login addresses no longer known: deleted now
and then by the API replicas, one at a time (a replica whose turn finds another's under way
skips it)."""

import asyncio

import asyncpg

from controller.access import accounts_store as accounts
from controller.access import throttle_store as logins
from controller.db import turns
from shared.clock import Clock
from shared.loop import run_every

HOUSEKEEPING_INTERVAL_S = 600.0


async def housekeeping(pool: asyncpg.Pool, clock: Clock, stop: asyncio.Event) -> None:
    """Every HOUSEKEEPING_INTERVAL_S until `stop`, the first pass at once; past its time by
    `clock`."""

    async def one_pass() -> None:
        async with pool.acquire() as conn, turns.turn(conn, turns.HOUSEKEEPING) as mine:
            if mine:
                now = clock.now()
                await accounts.delete_expired_tokens(conn, now)
                await logins.forget_old(conn, now)

    await run_every(HOUSEKEEPING_INTERVAL_S, one_pass, name="housekeeping", stop=stop)
