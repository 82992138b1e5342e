"""What the agent's heartbeat says of its tenants' load: the jobs each holds here (running or
waiting for a slot), the slot-seconds its checks held lately and how many ended lately, which
the controller's admission of a country's jobs sums over the country's agents
(controller.scheduling.admission_rules): usage / checks is how long its checks hold a slot.

Usage counts every second a tenant's check holds a slot, halved every
`TENANT_USAGE_HALF_LIFE_S`: a tenant whose checks hang for their whole timeout is heavy, one
whose checks take milliseconds stays light however often they run. Pure: the caller gives the
clock; a start and an end cost O(1), a sample O(tenants).
"""

import math
from collections.abc import Mapping

from shared.messages import TENANT_LOADS_MAX, TENANT_USAGE_HALF_LIFE_S, TenantLoad

# Below this (slot-seconds) a tenant holding nothing is dropped: it counts as idle and unknown.
# Low enough that a tenant whose checks take a millisecond stays known for many half-lives.
FORGET_BELOW = 1e-6


class TenantUsage:
    """Each tenant's decayed slot-seconds on this agent."""

    def __init__(self, half_life_s: float = TENANT_USAGE_HALF_LIFE_S) -> None:
        self._rate = math.log(2) / half_life_s
        self._usage: dict[str, float] = {}
        self._since_sample: dict[str, float] = {}  # slot-seconds of ended checks, unsampled
        self._checks: dict[str, float] = {}  # ended checks, decayed like the usage
        self._ended: dict[str, int] = {}  # checks ended since the last sample
        self._running: dict[str, int] = {}
        self._starts: dict[str, float] = {}  # sum of running checks' starts, each >= last sample
        self._sampled_at: float | None = None

    def _clip(self, start: float) -> float:
        return start if self._sampled_at is None else max(start, self._sampled_at)

    def started(self, tenant: str, now: float) -> None:
        self._running[tenant] = self._running.get(tenant, 0) + 1
        self._starts[tenant] = self._starts.get(tenant, 0.0) + now

    def ended(self, tenant: str, started: float, now: float) -> None:
        """A check of `tenant` that started at `started` ended `now`."""
        left = self._running.get(tenant, 0) - 1
        if left < 0:
            return
        start = self._clip(started)
        self._since_sample[tenant] = self._since_sample.get(tenant, 0.0) + max(0.0, now - start)
        self._ended[tenant] = self._ended.get(tenant, 0) + 1
        if left:
            self._running[tenant] = left
            self._starts[tenant] -= start
        else:
            del self._running[tenant]
            del self._starts[tenant]

    def sample(self, now: float) -> None:
        """Fold what was held since the last sample into each tenant's usage, decaying the
        rest (a beat's second is short beside the half-life: no decay within it)."""
        dt = 0.0 if self._sampled_at is None else max(0.0, now - self._sampled_at)
        self._sampled_at = now
        decay = math.exp(-self._rate * dt)
        held = self._since_sample
        ended = self._ended
        self._since_sample, self._ended = {}, {}
        for tenant, n in self._running.items():
            held[tenant] = held.get(tenant, 0.0) + max(0.0, n * now - self._starts[tenant])
            self._starts[tenant] = n * now
        for tenant in set(self._usage) | set(held):
            used = self._usage.get(tenant, 0.0) * decay + held.get(tenant, 0.0)
            if used < FORGET_BELOW and tenant not in self._running:
                self._usage.pop(tenant, None)
                self._checks.pop(tenant, None)
            else:
                self._usage[tenant] = used
                self._checks[tenant] = self._checks.get(tenant, 0.0) * decay + ended.get(tenant, 0)

    def usage(self, tenant: str) -> float:
        return self._usage.get(tenant, 0.0)

    def checks(self, tenant: str) -> float:
        return self._checks.get(tenant, 0.0)

    def loads(self, held: Mapping[str, int]) -> list[TenantLoad]:
        """The heartbeat's loads: every tenant holding jobs or with usage left, those holding
        most first (what fills the slots is never left out), then the lightest (the ones the
        admission's reserve is for), at most TENANT_LOADS_MAX: one left out is idle and counts
        as unknown, never as light."""
        tenants = set(self._usage) | {t for t, n in held.items() if n > 0}
        loads = [
            TenantLoad(
                t[:64],
                held.get(t, 0),
                round(self._usage.get(t, 0.0), 6),
                round(self._checks.get(t, 0.0), 3),
            )
            for t in tenants
        ]
        loads.sort(key=lambda load: (-load.held, load.usage, load.tenant))
        return loads[:TENANT_LOADS_MAX]
