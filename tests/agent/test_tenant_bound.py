"""agent.tenant_bound: at most `limit` operations of one tenant at once; others never wait."""

import asyncio
from collections import Counter

import pytest

from agent.tenant_bound import TenantBound


async def _settle() -> None:
    """Let every ready task run up to its next wait (a slot, or its release event)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def _hold(bound: TenantBound, tenant: str, release: asyncio.Event) -> None:
    async with bound.slot(tenant):
        await release.wait()


@pytest.mark.parametrize(
    ("limit", "arrivals", "running", "waiting"),
    [
        (1, "a", {"a": 1}, {}),
        (1, "aa", {"a": 1}, {"a": 1}),
        (2, "aaab", {"a": 2, "b": 1}, {"a": 1}),
        (2, "aaaaabb", {"a": 2, "b": 2}, {"a": 3}),
        (3, "abcabcabca", {"a": 3, "b": 3, "c": 3}, {"a": 1}),
        (4, "aaaaaaaaaab", {"a": 4, "b": 1}, {"a": 6}),
    ],
)
async def test_a_tenant_past_its_bound_waits_and_no_other_does(
    limit: int, arrivals: str, running: dict[str, int], waiting: dict[str, int]
) -> None:
    """Pins the bound: each tenant holds at most `limit` slots; its extra operations wait,
    whatever the others hold."""
    bound = TenantBound(limit)
    release = asyncio.Event()
    tasks = [asyncio.create_task(_hold(bound, t, release)) for t in arrivals]
    await _settle()
    tenants = set(arrivals)
    assert {t: bound.running(t) for t in tenants} == running
    assert {t: n for t in tenants if (n := bound.waiting(t))} == waiting
    release.set()
    await asyncio.gather(*tasks)
    assert bound.tenants == 0  # no entry outlives its tenant's last operation


async def test_a_freed_slot_goes_to_the_tenants_first_waiter_never_to_another_tenant() -> None:
    """Pins first come, first served within a tenant, and that one tenant's finished
    operation frees nothing of another's."""
    bound = TenantBound(1)
    order: list[str] = []
    gates = {name: asyncio.Event() for name in ("a1", "a2", "a3", "b1")}

    async def op(name: str) -> None:
        async with bound.slot(name[0]):
            order.append(name)
            await gates[name].wait()

    tasks = [asyncio.create_task(op(n)) for n in ("a1", "a2", "a3", "b1")]
    await _settle()
    assert order == ["a1", "b1"]
    gates["b1"].set()
    await _settle()
    assert order == ["a1", "b1"] and bound.waiting("a") == 2
    gates["a1"].set()
    await _settle()
    assert order == ["a1", "b1", "a2"]
    gates["a2"].set()
    gates["a3"].set()
    await asyncio.gather(*tasks)
    assert order == ["a1", "b1", "a2", "a3"]


async def test_a_waiter_cancelled_by_its_deadline_leaves_the_queue_holding_nothing() -> None:
    """Pins that a check whose deadline fires while it waits for a slot takes none: the
    slot goes to the next waiter, and nothing of the tenant stays behind."""
    bound = TenantBound(1)
    release = asyncio.Event()
    holder = asyncio.create_task(_hold(bound, "a", release))
    await _settle()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            async with bound.slot("a"):
                pytest.fail("got a slot the holder never released")
    assert (bound.running("a"), bound.waiting("a")) == (1, 0)
    got: Counter[str] = Counter()

    async def next_one() -> None:
        async with bound.slot("a"):
            got["a"] += 1

    follower = asyncio.create_task(next_one())
    release.set()
    await asyncio.gather(holder, follower)
    assert got == Counter({"a": 1})
    assert bound.tenants == 0


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TenantBound(0)
