"""Token fetch slots, shared fairly among organizations.

A replica asks at most `total` token endpoints at once (OAUTH2_TOKEN_FETCHES), one organization
at most `org_max` of them. A slot that frees goes to the waiting organization holding the fewest
slots, round-robin among equals (`next_organization`): an organization's share shrinks as more
organizations wait, so however many organizations' endpoints hang, any other organization's
fetch takes one of the next slots that free, each at the latest when the fetch holding it times
out.
"""

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager


def next_organization(
    waiting: Sequence[int], holding: Mapping[int, int], org_max: int
) -> int | None:
    """The organization a free slot goes to: of the `waiting` ones (in turn order, the one
    served longest ago first), the first holding the fewest slots, if below `org_max`; None
    when every waiting one holds `org_max`."""
    best: int | None = None
    for org in waiting:
        held = holding.get(org, 0)
        if held < org_max and (best is None or held < holding.get(best, 0)):
            best = org
    return best


class FairSlots:
    """`total` slots, at most `org_max` per organization, handed out by `next_organization`."""

    def __init__(self, total: int, org_max: int) -> None:
        self._free = total
        self._org_max = org_max
        self._holding: dict[int, int] = {}
        # Waiters by organization; the dict's order is the turn order (served: to the end).
        self._queues: dict[int, deque[asyncio.Future[None]]] = {}

    def holding(self) -> dict[int, int]:
        """Slots held, by organization."""
        return dict(self._holding)

    def waiting(self) -> dict[int, int]:
        """Fetches waiting for a slot, by organization."""
        return {org: len(queue) for org, queue in self._queues.items()}

    @asynccontextmanager
    async def slot(self, organization_id: int) -> AsyncIterator[None]:
        """Hold one of the organization's slots for the block."""
        await self._acquire(organization_id)
        try:
            yield
        finally:
            self._release(organization_id)

    async def _acquire(self, org: int) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(org, deque()).append(waiter)
        self._hand_out()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(org)  # handed a slot as it was cancelled: it goes on
            else:
                self._drop(org, waiter)
            raise

    def _drop(self, org: int, waiter: asyncio.Future[None]) -> None:
        queue = self._queues.get(org)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[org]

    def _release(self, org: int) -> None:
        left = self._holding[org] - 1
        if left:
            self._holding[org] = left
        else:
            del self._holding[org]
        self._free += 1
        self._hand_out()

    def _hand_out(self) -> None:
        while self._free > 0:
            org = next_organization(list(self._queues), self._holding, self._org_max)
            if org is None:
                return
            queue = self._queues.pop(org)
            waiter = queue.popleft()
            if queue:
                self._queues[org] = queue  # its next turn comes after the others'
            if waiter.done():  # cancelled, not yet dropped
                continue
            waiter.set_result(None)
            self._free -= 1
            self._holding[org] = self._holding.get(org, 0) + 1
