"""At most `limit` of one tenant's operations at once (issue 22): a tenant past its bound waits
its turn (first come, first served), within whatever deadline its caller set; other tenants do
not wait for it. An entry lives only while a tenant has an operation running or waiting, so
opaque keys from jobs never pile up."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass


@dataclass(slots=True)
class _Lane:
    slots: asyncio.Semaphore
    users: int = 0  # holding a slot or waiting for one
    holding: int = 0  # holding a slot


class TenantBound:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the bound must be at least 1")
        self.limit = limit
        self._lanes: dict[str, _Lane] = {}

    def running(self, tenant: str) -> int:
        """The tenant's operations holding a slot now."""
        lane = self._lanes.get(tenant)
        return 0 if lane is None else lane.holding

    def waiting(self, tenant: str) -> int:
        """The tenant's operations waiting for a slot now."""
        lane = self._lanes.get(tenant)
        return 0 if lane is None else lane.users - lane.holding

    @property
    def tenants(self) -> int:
        """Tenants with an operation running or waiting."""
        return len(self._lanes)

    @asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        """Hold one of `tenant`'s slots for the block; wait for one while all are held. A
        caller cancelled while waiting leaves the queue and holds nothing."""
        lane = self._lanes.get(tenant)
        if lane is None:
            lane = self._lanes[tenant] = _Lane(asyncio.Semaphore(self.limit))
        lane.users += 1
        try:
            async with lane.slots:
                lane.holding += 1
                try:
                    yield
                finally:
                    lane.holding -= 1
        finally:
            lane.users -= 1
            if lane.users == 0:
                del self._lanes[tenant]

    @asynccontextmanager
    async def slot_within(self, tenant: str, seconds: float) -> AsyncIterator[float]:
        """Hold one of `tenant`'s slots for the block, waiting at most `seconds` for it
        (TimeoutError when none came); yields the seconds left of them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        async with AsyncExitStack() as stack:
            async with asyncio.timeout_at(deadline):
                await stack.enter_async_context(self.slot(tenant))
            yield deadline - loop.time()


# What a side check's DNS probe says when its organization's share of the agent's probes was in
# use for its whole budget: the round's own `unknown`, nothing asked.
BOUND_BUSY = (
    "not asked: this organization's share of the agent's DNS probes"
    " (AGENT_DNS_PROBES_PER_TENANT) was in use for the whole budget"
)
