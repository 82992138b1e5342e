"""Which jobs a country's agents can take now, shared fairly between organizations: pure rules,
no I/O (the scheduler holds what waits and records what waited too long).

The country's slots are its live agents' `capacity` (AGENT_CONCURRENCY each); what holds them is
what their heartbeats say each tenant has running or waiting there (`held`), plus what this
scheduler admitted since. A job is published only when a slot is free for it, so JOBS never
holds a backlog that another organization's jobs would wait behind, whatever the agents'
lookahead, their number or the order jobs were published in. Of the jobs asking, the tenant
holding fewest slots goes first, then the lightest, so free slots are shared max-min between
organizations.

A tenant's weight is its slot-seconds lately plus what its next check is expected to hold: the
slot time its checks took lately (usage / checks ended, from the beats) or, for a tenant none of
whose checks ended lately (new, idle, or all hanging), its asking job's timeout. So a newcomer
counts as heavy as its checks may be until they prove shorter: twenty organizations created to
hang can never each pass as the lightest in turn and take the slot the light one needs.

Two rules decide each job:

- **Reserve.** The last `reserve(capacity)` free slots are kept for the lightest tenants: a
  tenant whose weight ranks `k`-th lightest (0: the lightest) takes a slot only while more than
  `min(k, reserve)` are free. A tenant with checks that hang for their whole timeout can never
  take the slot another organization's next round needs, and one tenant alone still uses
  every slot but the reserve's (a country of one slot keeps none: no isolation without more).
- **Wait.** A job that finds no slot it may take **waits** at the scheduler and asks again at
  the next pass, behind no one: each pass serves the tenants holding fewest first, then the
  lightest. Once its round can no longer start in time
  (`controller.scheduling.rules.can_start`) it is recorded `missed` / `saturated` in that
  country, saying what its organization held beside its max-min share (the country's slots
  water-filled over the tenants holding or asking for them). Slots taken are never taken
  back: docs/architecture.md says what that leaves unguaranteed.
"""

import heapq
import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from enum import Enum

import msgspec

from controller.fleet.load import CountryLoad
from shared.messages import CheckJob


class Admission(Enum):
    ADMIT = "admit"
    WAIT = "wait"


class Decision(msgspec.Struct, frozen=True):
    admission: Admission
    held: int = 0  # what the job's tenant held in the country when decided
    share: float = 0.0  # its share then
    busy: int = 0  # slots held in the country then
    capacity: int = 0


def reserve(capacity: int) -> int:
    """Free slots kept for the lightest tenants: one in eight, at least one from two slots on."""
    return 0 if capacity < 2 else max(1, capacity // 8)


def water_fill(capacity: float, demand: Mapping[str, float]) -> dict[str, float]:
    """Max-min fair shares of `capacity`: every tenant gets its demand, or the level at which
    the demands above it share what is left, whichever is less."""
    shares: dict[str, float] = {}
    left = float(capacity)
    pending = sorted(demand.items(), key=lambda item: (item[1], item[0]))
    while pending:
        level = left / len(pending)
        tenant, want = pending[0]
        if want <= level:
            shares[tenant] = want
            left -= want
            pending.pop(0)
            continue
        for tenant, _ in pending:
            shares[tenant] = level
        break
    return shares


def holds_for(load: CountryLoad, job: CheckJob) -> float:
    """How long a job is expected to hold its slot: its tenant's checks' slot time lately, or,
    when none of them ended lately, the job's timeout."""
    used, ended = load.usage.get(job.tenant, 0.0), load.checks.get(job.tenant, 0.0)
    return used / ended if ended > 0 else job.timeout_seconds


def weights(
    load: CountryLoad, asking: Sequence[str], timeouts: Sequence[float]
) -> dict[str, float]:
    """Each tenant's weight: its slot-seconds lately plus its next check's expected slot time:
    its checks' lately, else its first asking job's timeout; one of neither (holding jobs none
    of which ended, asking none) is of unknown weight, after every other."""
    timeout: dict[str, float] = {}
    for tenant, seconds in zip(asking, timeouts, strict=True):
        timeout.setdefault(tenant, seconds)
    tenants = set(asking) | set(load.held) | {t for t, u in load.usage.items() if u > 0}
    out = {}
    for t in tenants:
        used, ended = load.usage.get(t, 0.0), load.checks.get(t, 0.0)
        out[t] = used + (used / ended if ended > 0 else timeout.get(t, math.inf))
    return out


def fits_all(load: CountryLoad, asking: int) -> bool:
    """Whether `decide` admits every one of `asking` jobs, whoever asks: when they all fit with
    the reserve still free after them, no tenant's turn ever finds the free slots down to its
    reserve (each job is then admitted, in the order asked, and nothing waits)."""
    return load.capacity - load.busy - asking >= reserve(load.capacity)


def decide(
    load: CountryLoad, asking: Sequence[str], timeouts: Sequence[float] | None = None
) -> list[Decision]:
    """One decision per job asking (its tenant, in the order given: a tenant's jobs are taken
    in that order); `timeouts`, each job's timeout in seconds (none given: 0)."""
    held = Counter({t: n for t, n in load.held.items() if n > 0})
    wants = Counter(asking)
    demand = {t: float(held[t] + wants[t]) for t in set(held) | set(wants)}
    shares = water_fill(load.listed_capacity, demand)
    weight = weights(load, asking, timeouts or [0.0] * len(asking))
    first: dict[str, int] = {}
    for i, tenant in enumerate(asking):
        first.setdefault(tenant, i)
    # Lightest first; between equals, the tenant whose first job asks earliest.
    lightest = sorted(weight, key=lambda t: (weight[t], first.get(t, len(asking)), t))
    rank = {t: k for k, t in enumerate(lightest)}

    keep = reserve(load.capacity)
    busy = load.busy
    lanes: dict[str, deque[int]] = {}
    for i, tenant in enumerate(asking):
        lanes.setdefault(tenant, deque()).append(i)
    out: list[Decision | None] = [None] * len(asking)
    # Fewest held first, then the lightest: one job per turn, so slots go round the tenants.
    # Once no slot is free, every job left waits: decided at once, not turn by turn. The turns
    # are a heap of (held, rank): ranks are distinct, so its least is the one tenant due.
    turns = [(held[t], rank[t], t) for t in lanes]
    heapq.heapify(turns)
    while turns and load.capacity - busy > 0:
        _, _, tenant = heapq.heappop(turns)
        share = round(shares.get(tenant, 0.0), 2)
        if load.capacity - busy <= min(rank[tenant], keep):
            # Nothing it holds or asks changes before the next pass: its whole lane waits.
            for i in lanes.pop(tenant):
                out[i] = Decision(Admission.WAIT, held[tenant], share, busy, load.capacity)
            continue
        lane = lanes[tenant]
        i = lane.popleft()
        out[i] = Decision(Admission.ADMIT, held[tenant], share, busy, load.capacity)
        held[tenant] += 1
        busy += 1
        if lane:
            heapq.heappush(turns, (held[tenant], rank[tenant], tenant))
        else:
            del lanes[tenant]
    for tenant, left in lanes.items():
        share = round(shares.get(tenant, 0.0), 2)
        for i in left:
            out[i] = Decision(Admission.WAIT, held[tenant], share, busy, load.capacity)
    return [d for d in out if d is not None]


def saturated_why(country: str, decision: Decision) -> str:
    """The message of a round that waited for a slot in `country` until it could no longer
    start in time."""
    return (
        f"{country}'s agents were full ({decision.busy} of {decision.capacity} slots busy);"
        f" your organization held {decision.held} of them, its fair share {decision.share:g},"
        " until this round could no longer start in time: not run"
    )
