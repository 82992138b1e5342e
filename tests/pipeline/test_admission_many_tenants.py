"""Admission never publishes more jobs than a country has free slots, whatever the number of
tenants on its agents: the agents' real beats (agent.tenant_loads, at most TENANT_LOADS_MAX
tenants each) read by the controller's real live view (controller.fleet.live, on a real NATS
connection) and the scheduler's ledger (controller.scheduling.admission_ledger), over a seeded
grid of AGENT_CONCURRENCY (1, 8, the beat's tenant limit and one past it, the default 200,
1000), agents per country and tenants per agent. A job admitted beyond the free slots waits
in JOBS, in arrival order, where a quiet organization's next job queues behind a greedy one's
flood: what admission exists to prevent."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client as NATS

from agent.tenant_loads import TenantUsage
from controller.fleet.live import LiveAgents
from controller.scheduling.admission_ledger import Admissions
from shared.clock import WALL
from shared.messages import (
    AGENT_FEATURES,
    TENANT_LOADS_MAX,
    AgentHeartbeat,
    CheckJob,
    SmtpCheckJob,
    encode,
)
from shared.subjects import heartbeats_subject
from shared.timefmt import iso_ms

AT = datetime(2026, 11, 28, 2, tzinfo=UTC)
CC = "DE"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _job(tenant: str, n: int) -> CheckJob:
    return SmtpCheckJob(
        job_id=f"{tenant}-{n}",
        monitor_id="00000000-0000-0000-0000-000000000001",
        hostname="mx.example",
        country=CC,
        scheduled_at=iso_ms(AT),
        expires_at=iso_ms(AT + timedelta(seconds=60)),
        timeout_seconds=30.0,
        tenant=tenant,
    )


def _beat(agent_id: str, capacity: int, held: dict[str, int]) -> bytes:
    """What agent.worker's heartbeat says of an agent running `held` (tenant → checks)."""
    usage = TenantUsage()
    for tenant, n in held.items():
        for _ in range(n):
            usage.started(tenant, 0.0)
    usage.sample(1.0)
    now = iso_ms(AT)
    return encode(
        AgentHeartbeat(
            agent_id=agent_id,
            country=CC,
            capacity=capacity,
            in_flight=sum(held.values()),
            started_at=now,
            seen_at=now,
            features=list(AGENT_FEATURES),
            tenants=usage.loads(held),
        )
    )


def _spread(rng: random.Random, busy: int, tenants: int, prefix: str) -> dict[str, int]:
    """`busy` running checks over `tenants` organizations, each at least one."""
    held = {f"{prefix}-{i}": 1 for i in range(tenants)}
    names = list(held)
    for _ in range(busy - tenants):
        held[rng.choice(names)] += 1
    return held


GRID = [(c, a) for c in (1, 8, TENANT_LOADS_MAX, TENANT_LOADS_MAX + 1, 200, 1000) for a in (1, 3)]


@pytest.mark.parametrize(("concurrency", "agents"), GRID)
async def test_a_country_is_given_no_more_jobs_than_it_has_free_slots(
    nc: NATS, concurrency: int, agents: int
) -> None:
    for seed in range(4):
        rng = random.Random(seed * 7919 + concurrency * 31 + agents)
        clock = Clock()
        view = LiveAgents(nc, clock=clock, wall=WALL.now)
        free = 0
        for a in range(agents):
            spare = rng.choice((0, 0, 1, min(3, concurrency)))
            busy = concurrency - spare
            tenants = rng.randint(max(1, busy // 2), busy) if busy else 0
            held = _spread(rng, busy, tenants, f"org{a}")
            free += spare
            view.heard(heartbeats_subject(CC, f"{CC}-{a}"), _beat(f"{CC}-{a}", concurrency, held))
        ledger = Admissions(view.load, clock)
        # A greedy organization's flood, then a quiet one's round.
        asking = [_job("greedy", n) for n in range(2 * concurrency)] + [_job("quiet", 0)]
        taken = ledger.take(asking, AT)
        load = view.load(CC)
        assert load is not None
        print(
            f"seed={seed} concurrency={concurrency} agents={agents} free={free}"
            f" listed_held={sum(load.held.values())} admitted={len(taken.admitted)}"
            f" waiting={taken.waiting}"
        )
        assert len(taken.admitted) <= free, (
            f"seed {seed}: {len(taken.admitted)} jobs published for {free} free slots"
        )
