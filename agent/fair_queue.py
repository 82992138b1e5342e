"""Which waiting job an agent starts next: per-tenant lanes, served fairly.

A job's `tenant` is an opaque per-organization key (`""` from a controller that predates it:
one lane for all). Jobs wait in their tenant's lane in arrival order, one job a turn: the
tenant holding fewest slots goes first, then the one whose checks held the agent's slots least
lately (its decayed slot-seconds, agent.tenant_loads), then round robin, so one organization's
flood of jobs is never ahead of another's whole round, and where the cap cannot bind (one
slot, or a share of 1) an organization whose checks hold their slot long still gets only the
slot time the others leave. A tenant holding `cap` slots or more (`tenant_cap`: its share of
the agent's slots) starts a job only when no tenant under its cap has one waiting: a lone
tenant may use every slot, and a tenant with long checks cannot fill the slots others are
waiting for. Slots held are never taken back; the cap binds on the next start.

Pure: no I/O, no clock. The worker owns the slots and counts what each tenant holds.
"""

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


def tenant_cap(capacity: int, share: float) -> int:
    """The slots one tenant may hold while another tenant under its cap waits: `share` of
    `capacity`, rounded down, at least one."""
    return max(1, math.floor(capacity * share))


def choose(
    order: Sequence[str],
    held: Mapping[str, int],
    cap: int,
    used: Callable[[str], float] = lambda tenant: 0.0,
) -> str | None:
    """The tenant whose job starts next, of those with jobs waiting, in `order` (round robin:
    the one served longest ago first): of those holding fewer than `cap` slots (when every one
    holds `cap` or more, of all: a free slot never stays idle while jobs wait), the one holding
    fewest, then the one whose checks `used` the slots least lately, then the first in
    `order`. None when nothing waits."""
    under = [t for t in order if held.get(t, 0) < cap] or list(order)
    if not under:
        return None
    turn = {t: i for i, t in enumerate(under)}
    return min(under, key=lambda t: (held.get(t, 0), used(t), turn[t]))


class FairQueue(Generic[T]):
    """Waiting jobs by tenant, each lane in arrival order; `pop` takes the next one to start."""

    def __init__(self, capacity: int, share: float) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be more than 0 and at most 1")
        self.cap = tenant_cap(capacity, share)
        # Lanes with jobs, the one served longest ago first.
        self._lanes: OrderedDict[str, deque[T]] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, tenant: str, item: T) -> None:
        self._lanes.setdefault(tenant, deque()).append(item)
        self._count += 1

    def pop(
        self, held: Mapping[str, int], used: Callable[[str], float] = lambda tenant: 0.0
    ) -> tuple[str, T] | None:
        """The next job to start, given the slots each tenant `held` and its slot-seconds
        lately (`used`), and its tenant; its lane goes to the back of the round."""
        tenant = choose(list(self._lanes), held, self.cap, used)
        if tenant is None:
            return None
        lane = self._lanes.pop(tenant)
        item = lane.popleft()
        if lane:
            self._lanes[tenant] = lane  # re-inserted: last in the round
        self._count -= 1
        return tenant, item

    def counts(self) -> dict[str, int]:
        """Waiting jobs by tenant."""
        return {tenant: len(lane) for tenant, lane in self._lanes.items()}

    def lanes(self) -> Iterator[deque[T]]:
        """Each tenant's waiting jobs, in arrival order (a lane at a time)."""
        return iter(list(self._lanes.values()))

    def clear(self) -> list[T]:
        """Remove and return every waiting job."""
        items = [item for lane in self._lanes.values() for item in lane]
        self._lanes.clear()
        self._count = 0
        return items
