"""When a round waiting for a slot of a saturated country takes one back from an organization
holding more than its share: pure rules, no I/O (controller.scheduling.admission_ledger asks
them each pass and publishes what they decide).

Admission (controller.scheduling.admission_rules) decides which jobs take free slots; a slot once
taken stays taken until its check ends, which for a check that hangs is its whole timeout. So
a job that waits at the scheduler may ask an agent of its country to cancel one check of the
organization most over its share, and the freed slot goes to that job. The rule, for each job
left waiting (its tenant `W`), serving the tenants holding fewest first, then the lightest:

- **Grace.** Only a job that has waited `grace_s` (the lesser of `GRACE_MAX_S` and a quarter of
  its start window) asks: a slot freed in the ordinary way within two beats takes it instead,
  and three quarters of its window are left to cancel a check and run.
- **Owed.** `W` holds fewer slots in the country than its max-min share (the country's slots
  water-filled over what each tenant holds or asks for, as admission's `saturated` message
  says it); each preemption counts as one slot more for `W`, so a pass takes at most what the
  waiting tenants are owed.
- **Over.** The tenant `O` whose check is cancelled holds more than its share, and after the
  move still at least as many slots as `W` does (`held[O] - 1 > held[W]`: max-min strictly
  better, so it is never moved back); or exactly as many (`held[O] - 1 == held[W]`: a swap, as
  in a country of one slot) only when `W`, even with its next check, has held the slots less
  lately than `O` has (`weight[W] < usage[O]`): the slot's time is shared max-min, and a swap
  is not undone before the other tenant's check has had its turn. A tenant at or below its
  share is never preempted, nor one whose checks lately took less than the grace on average
  (its slots come back sooner than a preemption would), nor one no agent that takes `Preempt`
  requests holds jobs of.
- Of those, the one most over its share is preempted (then the heaviest), at the agent holding
  most of its jobs; the agent cancels that tenant's longest-running check there.
"""

import math
from collections import Counter
from collections.abc import Sequence

import msgspec

from controller.fleet.load import CountryLoad
from controller.scheduling.admission_rules import water_fill, weights

# A waiting job asks for a preemption after this long at most (a quarter of its start window
# when that is shorter): two heartbeats, so a slot freed by a check ending has been seen.
GRACE_MAX_S = 2.0
GRACE_SHARE = 0.25
_EPS = 1e-9


def grace_s(start_window_s: float) -> float:
    """How long a job waits before it may take a slot back: the lesser of GRACE_MAX_S and a
    quarter of its start window (rules.start_window)."""
    return max(0.0, min(GRACE_MAX_S, GRACE_SHARE * start_window_s))


class Waiter(msgspec.Struct, frozen=True):
    """A job waiting for a slot: its tenant, timeout, how long it has waited, its grace."""

    tenant: str
    timeout_s: float
    waited_s: float
    grace_s: float


class Preemption(msgspec.Struct, frozen=True):
    """Cancel one check of `tenant` at `agent_id`, and give its slot to waiter `waiter` (an
    index into the waiters given); `held` and `share`: that tenant's, before the move."""

    waiter: int
    tenant: str
    agent_id: str
    held: int
    share: float


def preemptions(load: CountryLoad, waiters: Sequence[Waiter]) -> list[Preemption]:
    """The checks to cancel so that waiting jobs get their tenants' shares (the module's rule).
    `load.held` counts the jobs this scheduler admitted too (`admission_ledger.Admissions)."""
    held = Counter({t: n for t, n in load.held.items() if n > 0})
    wants = Counter(w.tenant for w in waiters)
    shares = water_fill(load.listed_capacity, {t: float(held[t] + wants[t]) for t in held | wants})
    weight = weights(load, [w.tenant for w in waiters], [w.timeout_s for w in waiters])
    holders = {t: {a: n for a, n in agents.items() if n > 0} for t, agents in load.holders.items()}
    lanes: dict[str, list[int]] = {}
    for i, w in enumerate(waiters):
        if w.waited_s >= w.grace_s:
            lanes.setdefault(w.tenant, []).append(i)

    def quick(tenant: str, grace: float) -> bool:
        ended = load.checks.get(tenant, 0.0)
        return ended > 0 and load.usage.get(tenant, 0.0) / ended < grace

    def over(tenant: str) -> float:
        return held[tenant] - shares.get(tenant, 0.0)

    out: list[Preemption] = []
    while lanes:
        tenant = min(lanes, key=lambda t: (held[t], weight.get(t, math.inf), t))
        i = lanes[tenant][0]
        candidates = [
            o
            for o in held
            if o != tenant
            and held[o] > 0
            and over(o) > _EPS
            and holders.get(o)
            and not quick(o, waiters[i].grace_s)
            and (
                held[o] - 1 > held[tenant]
                or (
                    held[o] - 1 == held[tenant]
                    and weight.get(tenant, math.inf) < load.usage.get(o, 0.0)
                )
            )
        ]
        if held[tenant] >= shares.get(tenant, 0.0) - _EPS or not candidates:
            del lanes[tenant]  # nothing it holds or is owed changes in this pass
            continue
        victim = max(candidates, key=lambda o: (over(o), load.usage.get(o, 0.0), o))
        agents = holders[victim]
        agent = min(agents, key=lambda a: (-agents[a], a))
        out.append(Preemption(i, victim, agent, held[victim], round(shares.get(victim, 0.0), 2)))
        held[victim] -= 1
        held[tenant] += 1
        agents[agent] -= 1
        if not agents[agent]:
            del agents[agent]
        lanes[tenant].pop(0)
        if not lanes[tenant]:
            del lanes[tenant]
    return out
