"""A country's slots and what holds them, as its live agents' heartbeats say (the live view,
controller.fleet.live, sums them; the scheduler's admission reads them)."""

from collections.abc import Mapping

import msgspec


class CountryLoad(msgspec.Struct, frozen=True):
    """`capacity`: the slots of the country's live agents; `held`, jobs running or waiting on
    them by tenant; `usage`, slot-seconds by tenant lately (decayed, agent.tenant_loads);
    `checks`, checks ended lately by tenant, decayed alike (usage / checks: how long its checks
    hold a slot; absent or 0: unknown); `heard_at`, when the oldest of the beats it sums was
    heard (the live view's clock); `holders`, by tenant, the agents that hold its jobs and take
    `Preempt` requests (`FEATURE_PREEMPT`), with how many each holds; `carriers`, the agents
    that run the job a `Preempt` carries (`FEATURE_PREEMPT_CARRY`); `unlisted`, slots running
    checks of tenants the beats left out (a beat lists at most `TENANT_LOADS_MAX` tenants: an
    agent's checks running beyond what its listed tenants hold), held all the same."""

    capacity: int
    held: Mapping[str, int] = {}
    usage: Mapping[str, float] = {}
    heard_at: float = 0.0
    checks: Mapping[str, float] = {}
    holders: Mapping[str, Mapping[str, int]] = {}
    carriers: frozenset[str] = frozenset()
    unlisted: int = 0

    @property
    def busy(self) -> int:
        """Slots held in the country: by the tenants listed and by those left out."""
        return sum(n for n in self.held.values() if n > 0) + self.unlisted

    @property
    def listed_capacity(self) -> int:
        """The slots the listed tenants share: those the unlisted ones hold are not theirs."""
        return self.capacity - self.unlisted
