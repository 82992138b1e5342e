"""Two alerters (two replicas, each its own pool) and the ingester's way in, on the same
monitors at once: closed rounds whose last country arrives while the alerters fill it with
`expired` rows. Nothing deadlocks (PostgreSQL's own count stays 0) and every round is judged
once: no round missed, none counted twice."""

import asyncio
from datetime import datetime

import asyncpg
from nats.js import JetStreamContext

from controller.alerting.alerter import Alerter
from controller.db.pool import create_pool
from testkit.alerting.wired import wired_alerter
from tests.alerting.conftest import Rig

MONITORS = 24
ROUNDS = 6


async def _deadlocks(rig: Rig) -> int:
    await asyncio.sleep(1.5)  # a backend's counters reach the view when it is next idle
    async with rig.pool.acquire() as conn:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        found: int = await conn.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
    return found


async def test_two_alerters_and_the_ingester_never_deadlock_and_judge_each_round_once(
    rig: Rig, alert_database_url: str, events_js: JetStreamContext
) -> None:
    ms = [await rig.monitor() for _ in range(MONITORS)]
    before = await _deadlocks(rig)
    pools: list[asyncpg.Pool] = [await create_pool(alert_database_url, 6) for _ in range(2)]
    replicas = [
        wired_alerter(pool, events_js, rig.job_ids, notify_reminder_minutes=30, clock=rig.clock)
        for pool in pools
    ]
    stop = asyncio.Event()
    stored = asyncio.Event()
    caught_up = [asyncio.Event() for _ in replicas]

    async def alerting(a: Alerter, done: asyncio.Event) -> int:
        n = 0
        while not stop.is_set():
            after_the_last = stored.is_set()
            judged = await a.evaluator.evaluate_due()
            n += judged
            if after_the_last and not judged:
                done.set()  # a pass begun after every round was stored found nothing due
            await asyncio.sleep(0.01)
        return n

    async def ingesting() -> None:
        # rounds 40 minutes old: closed, so an alerter fills US while it is being stored
        for n in range(ROUNDS):
            async with rig.pool.acquire() as conn, conn.transaction():
                for m in ms:
                    await rig.store_round(conn, m, n, {"DE": "up", "FR": "up"})
            await asyncio.sleep(0.02)
            async with rig.pool.acquire() as conn, conn.transaction():
                for m in ms:
                    await rig.store_round(conn, m, n, {"US": "up"})

    try:
        alerters = [
            asyncio.create_task(alerting(a, done))
            for a, done in zip(replicas, caught_up, strict=True)
        ]
        await ingesting()
        stored.set()
        async with asyncio.timeout(30):  # both alerters at it until neither finds work
            await asyncio.gather(*(done.wait() for done in caught_up))
        stop.set()
        await asyncio.gather(*alerters)
        for a in replicas:
            await a.burst()
    finally:
        for pool in pools:
            await pool.close()

    assert await _deadlocks(rig) == before
    last: datetime = rig.at(ROUNDS - 1)
    for m in ms:
        state = await rig.state(m)
        # every round passed (US up or expired): one count each, none missed, none twice
        assert (state["state"], state["last_round_at"]) == ("up", last)
        assert state["consecutive_up_rounds"] == ROUNDS, dict(state)
        changes = await rig.fetch(
            "SELECT msg_id FROM event_outbox WHERE subject LIKE '%' || $1", str(m["public_id"])
        )
        assert len(changes) <= 1  # unknown → up once (published already, or not yet)
        rows = await rig.fetch(
            "SELECT scheduled_at, country, count(*) AS n FROM check_results"
            " WHERE monitor_id = $1 AND hour >= now() - interval '1 day'"
            " GROUP BY 1, 2 HAVING count(*) > 1",
            m["id"],
        )
        assert rows == []
