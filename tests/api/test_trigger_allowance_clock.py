"""The trigger allowance refills on the clock it is given (issue 79), not the database's: on the
real PostgreSQL a manual clock runs an organization's allowance down just before a year's end,
then moves across it. What comes back follows the manual clock alone: nothing while it stands
(however long the wall runs), all of it once it has moved a window on."""

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg

from controller.scheduling import confirm_store as confirmations
from shared.clock import ManualClock
from testkit.common import seed_monitors

COST_S = 20.0  # three takes fill the minute's window
WINDOW_S = 60.0


async def test_confirmations_draw_on_an_allowance_that_refills_on_the_clock_given(
    pool: asyncpg.Pool, database_url: str
) -> None:
    org = f"clock-{uuid.uuid4().hex[:8]}"
    await seed_monitors(database_url, 3, interval=60, organization=org)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT m.id, m.organization_id FROM monitors m JOIN organizations o"
            " ON o.id = m.organization_id WHERE o.name = $1 ORDER BY m.id",
            org,
        )
        org_id = rows[0]["organization_id"]
        clock = ManualClock(datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC))

        async def ask(monitor: int, after_round: datetime) -> str:
            return await confirmations.request(
                conn, monitor, after_round, clock.now(), org_id, COST_S
            )

        first = clock.now()
        assert [await ask(r["id"], first) for r in rows] == ["requested"] * 3
        second = datetime(2026, 12, 31, 23, 59, 40, tzinfo=UTC)
        clock.advance(10)
        assert await ask(rows[0]["id"], second) == "org_capped"  # 10 s back: not yet 20

        await asyncio.sleep(0.5)  # the wall runs on; the clock given stands
        assert await ask(rows[0]["id"], second) == "org_capped"

        clock.advance(10)  # 20 s on the clock given: one take's worth is back
        assert await ask(rows[0]["id"], second) == "requested"
        assert await ask(rows[1]["id"], second) == "org_capped"

        clock.advance(WINDOW_S)  # across the year's end: the whole window is back
        assert clock.now().year == 2027
        third = clock.now()
        assert [await ask(r["id"], third) for r in rows] == ["requested"] * 3
        assert await ask(rows[0]["id"], clock.now().replace(second=59)) == "org_capped"
