"""The trigger allowance (controller.monitors.limits_store.take_trigger, GCRA in one SQL
statement on real PostgreSQL) over seeded histories and a grid of what an operator sets
(TRIGGER_CHECK_BURST 1..1000, TRIGGER_CHECK_INTERVAL_SECONDS from a second to a day, and an
organization's trigger costing less or more than its whole minute): once takes stop, the
allowance is whole again after what it was run down by, never later (no organization or
monitor stranded), and within it no more than the burst is ever taken. Time passes by moving
the row's `trigger_tat` back, as the clock would have (the instant given stands)."""

import random
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from controller.db.pool import Conn
from controller.monitors.limits_store import take_trigger
from tests.conftest import Tenant

NOW = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)


async def _pass(conn: Conn, org: int, seconds: float) -> None:
    """`seconds` go by for the organization's allowance."""
    await conn.execute(
        "UPDATE organizations SET trigger_tat = trigger_tat - $2 * interval '1 s' WHERE id = $1",
        org,
        seconds,
    )


@pytest.mark.parametrize(
    ("cost_s", "window_s"),
    [
        (1.0, 1.0),
        (30.0, 90.0),
        (60.0, 60.0 * 1000),
        (86_400.0, 86_400.0 * 3),
        (0.5, 60.0),
        (900.0, 60.0),
    ],
)
async def test_an_allowance_run_down_is_whole_again_once_takes_stop(
    pool: asyncpg.Pool, tenant: Tenant, cost_s: float, window_s: float
) -> None:
    burst = max(1, int(window_s // cost_s))
    async with pool.acquire() as conn:
        for seed in range(3 if burst <= 100 else 1):  # TRIGGER_CHECK_BURST's edge: once
            rng = random.Random(seed)
            await conn.execute(
                "UPDATE organizations SET trigger_tat = NULL WHERE id = $1", tenant.org_id
            )
            taken = 0
            for _ in range(burst + 3):  # back to back: the burst, then refusals
                wait = await take_trigger(
                    conn, "organizations", tenant.org_id, cost_s, window_s, NOW
                )
                if wait == 0:
                    taken += 1
                else:
                    assert 0 < wait <= cost_s + 1, f"seed {seed}: {wait} s to wait"
            assert taken == burst, f"seed {seed}: {taken} taken back to back, burst {burst}"
            # A random history of takes and pauses, then quiet: whole after what was owed.
            for _ in range(rng.randint(0, 20)):
                await _pass(conn, tenant.org_id, rng.uniform(0, 2 * cost_s))
                await take_trigger(conn, "organizations", tenant.org_id, cost_s, window_s, NOW)
            owed = await conn.fetchval(
                "SELECT greatest(0, extract(epoch FROM trigger_tat - $2))::float8"
                " FROM organizations WHERE id = $1",
                tenant.org_id,
                NOW,
            )
            print(
                f"seed={seed} cost_s={cost_s} window_s={window_s} burst={burst} owed_s={owed:.1f}"
            )
            assert owed <= window_s + cost_s, f"seed {seed}: {owed} s owed"
            await _pass(conn, tenant.org_id, owed + 0.01)
            again = 0
            while (
                await take_trigger(conn, "organizations", tenant.org_id, cost_s, window_s, NOW) == 0
            ):
                again += 1
                assert again <= burst, f"seed {seed}: more than the burst"
            assert again == burst, f"seed {seed}: {again} of {burst} after the quiet"


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (2, 1, 0), (1, 2, 0)])
async def test_a_bursts_takes_racing_are_all_taken_in_any_order(
    pool: asyncpg.Pool, tenant: Tenant, order: tuple[int, int, int]
) -> None:
    """Three check-nows at once (a burst of 3, one a minute after): each request began at its
    own instant, a few milliseconds apart, and they reach the row in any order. All three are
    taken; a fourth is told to wait the interval, less what passed."""
    began = [NOW + timedelta(milliseconds=5 * n) for n in range(3)]
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE organizations SET trigger_tat = NULL, trigger_seen = NULL WHERE id = $1",
            tenant.org_id,
        )
        waits = [
            await take_trigger(conn, "organizations", tenant.org_id, 60.0, 180.0, began[n])
            for n in order
        ]
        assert waits == [0.0, 0.0, 0.0]
        fourth = await take_trigger(conn, "organizations", tenant.org_id, 60.0, 180.0, began[0])
    assert 59.9 < fourth <= 60.0
