"""Two lanes' transactions writing the effects of monitors of one organization take its locks
in one order: the flow incidents' lock before the organization's row (a confirmation round's
draw on its allowance for triggered checks). A lane whose batch asks a confirmation round for
one monitor and then opens another's incident, beside a lane doing the same the other way
round, waits; neither is chosen as a deadlock's victim (found by the simulation at 1,000
monitors of one organization, issue 79)."""

import asyncio

import asyncpg

from controller.alerting.rules import ConfirmationWanted, IncidentOpened
from controller.monitors.store import decode
from tests.alerting.conftest import Rig


async def _holds_a_lock_wait(pool: asyncpg.Pool, pid: int) -> None:
    """Until the backend `pid` waits for a lock."""
    async with pool.acquire() as conn:
        while not await conn.fetchval(  # noqa: ASYNC110 (polling the database)
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        ):
            await asyncio.sleep(0.02)


async def test_a_confirmation_and_an_incident_in_two_lanes_never_deadlock(rig: Rig) -> None:
    effects = rig.alerter.evaluator._effects
    asked, opening, other_opening, other_asked = [
        decode(await rig.monitor(name=f"relay {n}", hostname=f"relay{n}.customer.test"))
        for n in range(4)
    ]
    now = rig.clock()
    confirm = ConfirmationWanted(rig.at(10), ("DE", "FR"))
    opened = IncidentOpened(rig.at(10), "auth", "auth", ("DE", "FR"))
    first = await rig.pool.acquire()
    second = await rig.pool.acquire()
    try:
        one = first.transaction()
        two = second.transaction()
        await one.start()
        await two.start()
        # Lane one asks a confirmation round: it draws on the organization's allowance.
        await effects.apply(first, asked, [confirm], {}, now, False)
        # Lane two opens an incident, then asks a confirmation round; lane one then opens an
        # incident. Whatever waits, each lane's writes end committed.
        second_pid = second.get_server_pid()

        async def lane_two() -> None:
            await effects.apply(second, other_opening, [opened], {}, now, False)
            await effects.apply(second, other_asked, [confirm], {}, now, False)

        two_going = asyncio.create_task(lane_two())
        await _holds_a_lock_wait(rig.pool, second_pid)
        await effects.apply(first, opening, [opened], {}, now, False)
        await one.commit()
        async with asyncio.timeout(30):
            await two_going
        await two.commit()
    finally:
        await rig.pool.release(first)
        await rig.pool.release(second)
    async with rig.pool.acquire() as conn:
        incidents = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE monitor_id = ANY($1::bigint[])",
            [opening.id, other_opening.id],
        )
        rounds = await conn.fetchval(
            "SELECT count(*) FROM confirmation_rounds WHERE monitor_id = ANY($1::bigint[])",
            [asked.id, other_asked.id],
        )
    assert (incidents, rounds) == (2, 2)
