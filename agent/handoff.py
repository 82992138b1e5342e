"""The results a finished check has handed to the result Outbox, waiting for RESULTS to store
them (and their jobs to be acked): bounded per agent, in results and in bytes, and per
organization, to half of both, so one organization's flood of tiny checks cannot take the
whole hand-off from the others.

A check gives back its slot and its organization's share of the slots once its result is in
the hand-off (agent.worker): the check is over, only the store is awaited. When the hand-off
has no room for a result, its check waits for room holding its slot: back-pressure, nothing
dropped; with RESULTS unable to store, the agent's slots fill with such checks and it takes
no more jobs. A result enters as soon as it fits (those waiting longest first among those that
fit); an empty hand-off takes any one result, and an organization holding none of it any one
that fits the agent's bounds, so no result waits for room that can never come. A result waiting
for room within the agent's bounds (not its organization's share) holds that room for itself:
no result that came after it enters before it, or smaller ones, fitting sooner, would take the
bytes it waits for as long as they kept coming.

Operators see the hand-off in the agent's metrics (agent.metrics: its results and bytes, the
results that entered, the checks waiting for room and how long they waited), its counts kept
here as results enter and leave and as checks begin and end waiting; and in `/ready`
(agent.worker) while checks wait for room and RESULTS has stored none of this agent's results
for longer than `HANDOFF_STALLED_S` since they began waiting (`HandOff.waited_s`).

`admits` and `within_agent` are the rule (pure, table-tested); `HandOff` keeps the counts and
the waiters.
"""

import asyncio
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from agent.metrics import HandOffMetrics, HandOffReading

# An agent's hand-off holds at most twice its concurrency in results (at least
# `HANDOFF_MIN_RESULTS`), and one organization at most half of them: so an organization alone
# has as many places there as the agent has slots, and is never held back more than when a
# check kept its slot until its result was stored.
HANDOFF_SLOTS = 2
HANDOFF_MIN_RESULTS = 50
HANDOFF_SHARE = 0.5
# Bytes: this much a result on average, and never less than `HANDOFF_MIN_BYTES` (a result is
# at most the server's max_payload, 1 MiB by default).
HANDOFF_BYTES_PER_RESULT = 8 * 1024
HANDOFF_MIN_BYTES = 8 * 1024 * 1024
# Checks waiting for room with no result stored for this long say the agent is not ready:
# RESULTS does not store in time. A store ends the wait as the agent's readiness counts it, and
# nothing else does: results given up (RESULTS timing out) leave room too, and let the waiting
# checks in, without RESULTS storing anything.
HANDOFF_STALLED_S = 60.0


@dataclass(frozen=True, slots=True)
class Held:
    """Results in the hand-off and their bytes."""

    results: int = 0
    bytes: int = 0

    def plus(self, size: int) -> "Held":
        return Held(self.results + 1, self.bytes + size)

    def minus(self, size: int) -> "Held":
        return Held(self.results - 1, self.bytes - size)


@dataclass(frozen=True, slots=True)
class Limits:
    """An agent's hand-off: at most `results` results and `bytes` bytes, one organization at
    most `share` of each (at least one result)."""

    results: int
    bytes: int
    share: float = HANDOFF_SHARE

    @classmethod
    def for_agent(cls, capacity: int) -> "Limits":
        results = max(HANDOFF_SLOTS * capacity, HANDOFF_MIN_RESULTS)
        return cls(results, max(results * HANDOFF_BYTES_PER_RESULT, HANDOFF_MIN_BYTES))

    @property
    def tenant_results(self) -> int:
        return max(1, math.floor(self.results * self.share))

    @property
    def tenant_bytes(self) -> int:
        return math.floor(self.bytes * self.share)


def within_agent(limits: Limits, held: Held, size: int) -> bool:
    """Whether a result of `size` bytes fits the agent's bounds of a hand-off holding `held`
    (an empty one takes any one result)."""
    return held.results == 0 or (
        held.results < limits.results and held.bytes + size <= limits.bytes
    )


def admits(limits: Limits, held: Held, tenant: Held, size: int) -> bool:
    """Whether a result of `size` bytes of an organization holding `tenant` of a hand-off
    holding `held` enters now: within the agent's bounds and its organization's share of them.
    An empty hand-off takes any one result; an organization holding none of it, any one that
    fits the agent's bounds."""
    if not within_agent(limits, held, size):
        return False
    if tenant.results == 0:
        return True
    return tenant.results < limits.tenant_results and tenant.bytes + size <= limits.tenant_bytes


Waiter = tuple[str, int, asyncio.Future[None], float]  # tenant, size, entered, since (loop time)


class HandOff:
    """The hand-off's counts, by organization, and the results waiting for room; `metrics`,
    when given, reads them (`reading`) and is told how long each check waited."""

    def __init__(
        self,
        limits: Limits,
        metrics: HandOffMetrics | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.limits = limits
        self._held = Held()
        self._tenants: dict[str, Held] = {}
        self._waiters: deque[Waiter] = deque()
        self._entered = 0
        self._metrics = metrics
        # When checks began waiting for room since a result was last stored (None: none has);
        # `clock` the loop's time unless given.
        self._since: float | None = None
        self._clock = clock
        if metrics is not None:
            metrics.watch(self.reading)

    @property
    def held(self) -> Held:
        return self._held

    @property
    def waiting(self) -> int:
        """Results of finished checks waiting for room (each holding its slot)."""
        return len(self._waiters)

    def held_by_tenant(self) -> dict[str, Held]:
        return dict(self._tenants)

    def reading(self) -> HandOffReading:
        """The counts as the agent's metrics show them: results entered since the start."""
        return HandOffReading(
            self._held.results,
            self._held.bytes,
            self.limits.results,
            self.limits.bytes,
            self._entered,
            len(self._waiters),
        )

    def waited_s(self, now: float) -> float:
        """How long checks have waited for room by `now` (loop time) with no result stored:
        since the first check that began waiting after the last store (or since that store,
        for checks still waiting then); 0 while none waits."""
        if not self._waiters or self._since is None:
            return 0.0
        return now - self._since

    def fits(self, tenant: str, size: int) -> bool:
        """Whether a result of `tenant`'s of `size` bytes would enter now: none of `tenant`'s
        waits, nor any result for room within the agent's bounds."""
        return (
            not self._waiters_for(tenant)
            and not self._waiting_for_agent()
            and admits(self.limits, self._held, self._tenants.get(tenant, Held()), size)
        )

    async def enter(self, tenant: str, size: int) -> None:
        """Wait until `tenant`'s result of `size` bytes fits, and count it; `leave` takes it
        out. An organization's results enter in the order they came."""
        if self.fits(tenant, size):
            self._add(tenant, size)
            return
        loop = asyncio.get_running_loop()
        entered: asyncio.Future[None] = loop.create_future()
        waiter = (tenant, size, entered, self._now())
        self._wait(waiter)
        try:
            await entered
        except asyncio.CancelledError:
            if entered.done() and not entered.cancelled():
                self.leave(tenant, size)  # entered as it was cancelled: give the room back
            else:
                self._unwait(waiter, self._now())
            raise

    def leave(self, tenant: str, size: int, stored: bool = False) -> None:
        """`tenant`'s result of `size` bytes is stored (`stored`) or given up; results waiting
        that now fit enter. A store ends the wait `waited_s` counts: checks still waiting
        have waited since it."""
        left = self._tenants[tenant].minus(size)
        if left.results:
            self._tenants[tenant] = left
        else:
            del self._tenants[tenant]
        self._held = self._held.minus(size)
        if self._waiters:
            self._admit_waiting()
        if stored:
            self._since = self._now() if self._waiters else None

    def _add(self, tenant: str, size: int) -> None:
        self._held = self._held.plus(size)
        self._tenants[tenant] = self._tenants.get(tenant, Held()).plus(size)
        self._entered += 1

    def _wait(self, waiter: Waiter) -> None:
        """`waiter`'s check begins waiting for room."""
        if self._since is None:
            self._since = waiter[3]
        self._waiters.append(waiter)

    def _unwait(self, waiter: Waiter, now: float) -> None:
        """`waiter`'s check ends waiting for room: its result entered, or it was cancelled."""
        self._waiters.remove(waiter)
        if self._metrics is not None:
            self._metrics.waited(now - waiter[3])

    def _waiters_for(self, tenant: str) -> bool:
        return any(t == tenant and not entered.done() for t, _, entered, _ in self._waiters)

    def _waiting_for_agent(self) -> bool:
        return any(
            not entered.done() and not within_agent(self.limits, self._held, size)
            for _, size, entered, _ in self._waiters
        )

    def _admit_waiting(self) -> None:
        blocked: set[str] = set()  # an organization's later results wait behind its first
        now = self._now()
        for waiter in list(self._waiters):
            tenant, size, entered, _ = waiter
            if tenant in blocked or entered.done():  # done: cancelled, leaving the queue
                continue
            if not within_agent(self.limits, self._held, size):
                return  # the room that comes back is this one's first
            if admits(self.limits, self._held, self._tenants.get(tenant, Held()), size):
                self._unwait(waiter, now)
                self._add(tenant, size)
                entered.set_result(None)
            else:
                blocked.add(tenant)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()
