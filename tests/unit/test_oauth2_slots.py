"""Which organization's token fetch takes a free slot: the waiting one holding the fewest, below
its cap, round-robin among equals; and the slots themselves under many organizations, a late
one and cancelled waiters."""

import asyncio

import pytest

from controller.oauth2.slots import FairSlots, next_organization

A, B, C, V = 1, 2, 3, 9


@pytest.mark.parametrize(
    ("waiting", "holding", "org_max", "chosen"),
    [
        ([], {}, 3, None),  # no one waits
        ([A], {}, 3, A),
        ([A, B], {}, 3, A),  # equals: the turn order decides
        ([B, A], {}, 3, B),
        ([A, V], {A: 3}, 3, V),  # A is at its cap
        ([A], {A: 3}, 3, None),  # the only waiting one is at its cap: the slot stays free
        ([A, B, V], {A: 2, B: 1}, 3, V),  # a newcomer holding none goes first
        ([A, B, C], {A: 2, B: 1, C: 1}, 3, B),  # fewest held, first in turn among them
        ([A, B, C], {A: 1, B: 2, C: 1}, 3, A),
        ([A, B], {A: 1, B: 1, V: 0}, 1, None),  # org_max 1: both hold their share
        ([A, B], {V: 5}, 3, A),  # holders not waiting do not count
    ],
)
def test_a_free_slot_goes_to_the_waiting_organization_holding_the_fewest(
    waiting: list[int], holding: dict[int, int], org_max: int, chosen: int | None
) -> None:
    assert next_organization(waiting, holding, org_max) == chosen


async def _hold(slots: FairSlots, org: int, release: asyncio.Event, got: list[int]) -> None:
    async with slots.slot(org):
        got.append(org)
        await release.wait()


async def test_organizations_holding_every_slot_hand_the_next_ones_to_a_late_organization() -> None:
    slots = FairSlots(total=4, org_max=3)
    got: list[int] = []
    fetches: list[tuple[int, asyncio.Event]] = [(A, asyncio.Event()) for _ in range(5)]
    fetches += [(B, asyncio.Event()) for _ in range(5)]
    tasks = [asyncio.create_task(_hold(slots, org, done, got)) for org, done in fetches]
    await asyncio.sleep(0)
    assert slots.holding() == {A: 3, B: 1}  # A's cap, then B
    assert slots.waiting() == {A: 2, B: 4}
    late = asyncio.Event()
    tasks.append(asyncio.create_task(_hold(slots, V, late, got)))
    await asyncio.sleep(0)
    assert slots.waiting() == {A: 2, B: 4, V: 1}

    # A's three holders end: V is served first (it holds none), then A and B in turn (A was
    # served longest ago).
    for _, done in fetches[:3]:
        done.set()
    for _ in range(3):
        await asyncio.sleep(0)
    assert got[4:] == [V, A, B], got
    assert slots.holding() == {V: 1, A: 1, B: 2}
    for _, done in fetches:
        done.set()
    late.set()
    await asyncio.gather(*tasks)
    assert slots.holding() == {} and slots.waiting() == {}
    assert sorted(got) == [A] * 5 + [B] * 5 + [V]


async def test_a_cancelled_waiter_takes_no_slot_and_a_cancelled_holder_gives_it_back() -> None:
    slots = FairSlots(total=1, org_max=1)
    release = asyncio.Event()
    got: list[int] = []
    holder = asyncio.create_task(_hold(slots, A, release, got))
    waiter = asyncio.create_task(_hold(slots, B, release, got))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert slots.waiting() == {} and slots.holding() == {A: 1}
    holder.cancel()
    await asyncio.gather(holder, return_exceptions=True)
    assert slots.holding() == {}
    # Handed the slot as it was cancelled: the slot comes back.
    first = asyncio.create_task(_hold(slots, A, release, got))
    await asyncio.sleep(0)
    second = asyncio.create_task(_hold(slots, B, asyncio.Event(), got))
    await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0)  # A's block ends, B is handed the slot...
    second.cancel()  # ...and cancelled before it runs
    await asyncio.gather(first, second, return_exceptions=True)
    assert slots.holding() == {} and slots.waiting() == {}
    assert got == [A, A]
