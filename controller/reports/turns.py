"""The report parsers taken in turn by organization: a fair gate in front of the sandbox's
`PARSERS` processes (one event loop's bookkeeping, no I/O).

A report waits in its organization's lane, in arrival order. When a parser is free, the lane
whose organization holds fewest parsers goes next, then the one whose last parser began
longest ago (round robin), so one organization's flood of reports is never ahead of another's
one report: the other waits at most for the parses under way. A free parser never stays idle
while a report waits; a lone organization may use them all. A waiter cancelled before its turn
leaves its lane; one cancelled as its turn came gives the parser back."""

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator


class Turns:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.held: dict[int, int] = {}  # parsers held, by organization
        self._busy = 0
        self._turns = 0
        self._served: dict[int, int] = {}  # the turn each organization holding one last began
        # Lanes with reports waiting, in arrival order of their first.
        self._lanes: OrderedDict[int, deque[asyncio.Future[None]]] = OrderedDict()

    def waiting(self) -> dict[int, int]:
        """Reports waiting, by organization."""
        return {org: len(lane) for org, lane in self._lanes.items()}

    @contextlib.asynccontextmanager
    async def turn(self, organization_id: int) -> AsyncIterator[None]:
        """Hold one parser for the organization's report, once its turn comes."""
        if self._busy < self.slots and not self._lanes:
            self._take(organization_id)
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._lanes.setdefault(organization_id, deque()).append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._give(organization_id)  # its turn came as it was cancelled
                else:
                    self._leave(organization_id, turn)
                raise
        try:
            yield
        finally:
            self._give(organization_id)

    def _take(self, organization_id: int) -> None:
        self._busy += 1
        self._turns += 1
        self._served[organization_id] = self._turns
        self.held[organization_id] = self.held.get(organization_id, 0) + 1

    def _give(self, organization_id: int) -> None:
        self._busy -= 1
        left = self.held.pop(organization_id) - 1
        if left:
            self.held[organization_id] = left
        self._next()
        self._forget(organization_id)

    def _leave(self, organization_id: int, turn: "asyncio.Future[None]") -> None:
        lane = self._lanes.get(organization_id)
        if lane is None:
            return
        with contextlib.suppress(ValueError):
            lane.remove(turn)
        if not lane:
            del self._lanes[organization_id]
        self._forget(organization_id)

    def _forget(self, organization_id: int) -> None:
        """An organization holding no parser and with nothing waiting is not remembered."""
        if organization_id not in self.held and organization_id not in self._lanes:
            self._served.pop(organization_id, None)

    def _next(self) -> None:
        """Give free parsers to the waiting lanes' next reports, fewest held first."""
        while self._busy < self.slots and self._lanes:
            org = min(self._lanes, key=lambda o: (self.held.get(o, 0), self._served.get(o, 0)))
            lane = self._lanes[org]
            turn = lane.popleft()
            if not lane:
                del self._lanes[org]
            if turn.done():  # cancelled, not yet out of its lane
                continue
            self._take(org)
            turn.set_result(None)
