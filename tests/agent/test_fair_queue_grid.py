"""The agent's fair queue (agent.fair_queue) over seeded histories and a grid of what an operator
sets: AGENT_CONCURRENCY (1, 2, 8, the default 200), AGENT_TENANT_SLOT_SHARE (its least useful
value, the default, `1`: no cap) and the organizations on the agent (1..50), one greedy
organization flooding jobs that hold a slot long, the others quiet with short checks. Every
tick of every history: no slot idle while a job waits (the greedy one gets what is left), and
every job of a quiet organization (asking half its fair share at most) starts within a greedy
check's length and a turn of every organization, twice (none starves), whoever fills the slots.
Where the cap leaves no slot to the others (one slot, or a share of 1), round robin alone gave a
greedy organization whose checks hold a slot ten times longer ten elevenths of it: the queue
serves the organization that held the slots least lately first (the worker's usage)."""

import random
from dataclasses import dataclass

import pytest

from agent.fair_queue import FairQueue, tenant_cap
from agent.tenant_loads import TenantUsage

GREEDY_TICKS = 10  # a greedy check holds its slot this long; a quiet one, one tick


def bound(tenants: int) -> int:
    """The longest a quiet organization's job may wait: a greedy check's end, then a turn
    of every organization, twice (a job may arrive just behind its own lane's)."""
    return 2 * (GREEDY_TICKS + tenants)


@dataclass
class Figures:
    started: int = 0
    quiet_worst_wait: int = 0
    greedy_started: int = 0


def _history(seed: int, capacity: int, share: float, tenants: int, ticks: int) -> Figures:
    rng = random.Random(seed)
    queue: FairQueue[int] = FairQueue(capacity, share)
    held: dict[str, int] = {}
    usage = TenantUsage()  # what the worker feeds it: slot-seconds lately, sampled each beat
    running: list[tuple[int, int, str]] = []  # (ends at tick, started at tick, tenant)
    figures = Figures()
    quiet = [f"quiet{i}" for i in range(tenants - 1)]
    # Each quiet organization asks for half its fair share of the slots at most.
    rate = min(0.3, capacity / (2 * tenants))
    for tick in range(ticks):
        for end, began, tenant in [r for r in running if r[0] <= tick]:
            running.remove((end, began, tenant))
            held[tenant] -= 1
            usage.ended(tenant, began, tick)
        usage.sample(tick)
        for _ in range(rng.randint(0, 2 * capacity)):  # the flood
            queue.push("greedy", tick)
        for tenant in quiet:
            if rng.random() < rate:
                queue.push(tenant, tick)
        while len(running) < capacity and (picked := queue.pop(held, usage.usage)) is not None:
            tenant, pushed = picked
            held[tenant] = held.get(tenant, 0) + 1
            usage.started(tenant, tick)
            running.append((tick + (GREEDY_TICKS if tenant == "greedy" else 1), tick, tenant))
            figures.started += 1
            if tenant == "greedy":
                figures.greedy_started += 1
            else:
                figures.quiet_worst_wait = max(figures.quiet_worst_wait, tick - pushed)
        assert len(running) == capacity or len(queue) == 0, (
            f"seed {seed} tick {tick}: a slot idle while {len(queue)} jobs wait"
        )
        for tenant, lane in zip(queue.counts(), queue.lanes(), strict=True):
            if tenant != "greedy" and lane:
                assert tick - lane[0] <= bound(tenants), (
                    f"seed {seed} tick {tick}: {tenant} starving ({tick - lane[0]} ticks)"
                )
    return figures


GRID = [
    (capacity, share, tenants)
    for capacity in (1, 2, 8, 200)
    for share in (0.01, 0.5, 1.0)
    for tenants in (1, 2, 5, 50)
]


@pytest.mark.parametrize(("capacity", "share", "tenants"), GRID)
def test_no_quiet_organization_starves_and_no_slot_idles(
    capacity: int, share: float, tenants: int
) -> None:
    for seed in range(3):
        figures = _history(seed, capacity, share, tenants, ticks=60)
        print(
            f"seed={seed} capacity={capacity} share={share} tenants={tenants}"
            f" cap={tenant_cap(capacity, share)} started={figures.started}"
            f" greedy={figures.greedy_started} quiet_worst_wait={figures.quiet_worst_wait}"
        )
        assert figures.quiet_worst_wait <= bound(tenants)
