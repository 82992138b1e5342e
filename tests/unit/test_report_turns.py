"""The report parsers taken in turn by organization (controller/reports/turns.py)."""

import asyncio

from controller.reports.turns import Turns


async def _order(turns: Turns, arrivals: list[int]) -> list[int]:
    """The organizations in the order their reports got a parser, each holding it a moment."""
    began: list[int] = []
    gate = asyncio.Event()

    async def one(org: int) -> None:
        async with turns.turn(org):
            began.append(org)
            await gate.wait()
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(one(org)) for org in arrivals]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    return began


async def test_a_flood_of_one_organization_is_never_ahead_of_anothers_report() -> None:
    arrivals = [1, 1, 1, 1, 1, 1, 2, 3, 1, 2]
    # Two parsers: organization 1 holds both; then the fewest-held lane, then round robin.
    assert await _order(Turns(2), arrivals) == [1, 1, 2, 3, 1, 2, 1, 1, 1, 1]


async def test_a_lone_organization_uses_every_parser() -> None:
    turns = Turns(2)
    assert await _order(turns, [1, 1, 1]) == [1, 1, 1]
    assert (turns.held, turns.waiting()) == ({}, {})


async def test_a_waiter_cancelled_leaves_its_lane_and_no_parser_held() -> None:
    turns = Turns(1)
    gate = asyncio.Event()

    async def hold(org: int) -> None:
        async with turns.turn(org):
            await gate.wait()

    first = asyncio.create_task(hold(1))
    waiter = asyncio.create_task(hold(2))
    await asyncio.sleep(0)
    assert turns.waiting() == {2: 1}
    waiter.cancel()
    await asyncio.sleep(0)
    assert turns.waiting() == {}
    gate.set()
    await first
    assert (turns.held, turns.waiting()) == ({}, {})
    assert await _order(turns, [3]) == [3]
