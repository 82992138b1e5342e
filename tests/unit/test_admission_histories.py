"""A country's slot time shared by the controller's admission and preemption over seeded
histories: the agent's real load accounting (agent.tenant_loads, what its beats say) and the
scheduler's real ledger (controller.scheduling.admission_ledger: admission_rules, preemption),
on a clock the test moves, over a grid of AGENT_CONCURRENCY (1, 2, 8) and agents per country
(1, 3) and organizations (a greedy one whose checks hold their slot 10 s, flooding, and 1..5
quiet ones whose checks take half a second, each asking at most half its fair share). Every
quiet round starts within its start window (none `saturated`, none starving), and the greedy
organization gets what is left (it runs; the share of slot time busy is printed: the reserve's
slots, kept for the lightest, and a beat's lag are idle by design)."""

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from agent.tenant_loads import TenantUsage
from controller.fleet.load import CountryLoad
from controller.scheduling.admission_ledger import Admissions
from controller.scheduling.rules import start_window
from shared.messages import CheckJob, SmtpCheckJob
from shared.timefmt import iso_ms

T0 = datetime(2026, 11, 28, 2, tzinfo=UTC)
TICK = 0.5
GREEDY_S, QUIET_S = 10.0, 0.5
WINDOW_S = 60.0  # a job expires this long after its round
BEAT_S = 1.0  # agent.heartbeat's interval
SECONDS = 150.0  # each history's length


@dataclass
class Agent:
    name: str
    capacity: int
    usage: TenantUsage = field(default_factory=TenantUsage)
    running: list[tuple[float, float, str]] = field(default_factory=list)  # end, start, tenant

    def held(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, _, tenant in self.running:
            out[tenant] = out.get(tenant, 0) + 1
        return out


@dataclass
class Figures:
    quiet_asked: int = 0
    quiet_started: int = 0
    quiet_refused: int = 0
    quiet_worst_wait_s: float = 0.0
    quiet_oldest_pending_s: float = 0.0  # at the end
    greedy_started: int = 0
    preempted: int = 0
    busy_slot_ticks: int = 0


def _job(tenant: str, n: int, at: datetime) -> CheckJob:
    return SmtpCheckJob(
        job_id=f"{tenant}-{n}",
        monitor_id="00000000-0000-0000-0000-000000000001",
        hostname="mx.example",
        country="DE",
        scheduled_at=iso_ms(at),
        expires_at=iso_ms(at + timedelta(seconds=WINDOW_S)),
        timeout_seconds=30.0,
        tenant=tenant,
    )


def _history(seed: int, concurrency: int, agents: int, quiet: int, seconds: float) -> Figures:
    rng = random.Random(seed)
    clock = [0.0]
    fleet = [Agent(f"DE-{a}", concurrency) for a in range(agents)]
    capacity = concurrency * agents
    beats: list[CountryLoad] = [CountryLoad(capacity)]
    ledger = Admissions(lambda cc: beats[0], lambda: clock[0])
    jobs: list[CheckJob] = []  # JOBS: admitted, not pulled yet, in order
    asked_at: dict[str, float] = {}
    figures = Figures()
    quiet_names = [f"quiet{i}" for i in range(quiet)]
    # A quarter of its fair share at most: a slot turns over once a beat (BEAT_S) at best, as
    # the controller sees it free only then, however short the check.
    rate = min(0.5, capacity / (4 * (quiet + 1)) * TICK / max(QUIET_S, BEAT_S))
    greedy_asking = 0
    n = 0

    def start(job: CheckJob, now: float) -> None:
        agent = min(fleet, key=lambda a: len(a.running))
        assert len(agent.running) < agent.capacity
        hold = GREEDY_S if job.tenant == "greedy" else QUIET_S
        agent.running.append((now + hold, now, job.tenant))
        agent.usage.started(job.tenant, now)
        if job.tenant == "greedy":
            figures.greedy_started += 1
        else:
            figures.quiet_started += 1
            wait = now - asked_at.pop(job.job_id)
            figures.quiet_worst_wait_s = max(figures.quiet_worst_wait_s, wait)

    steps = int(seconds / TICK)
    for step in range(steps):
        now = step * TICK
        clock[0] = now
        at = T0 + timedelta(seconds=now)
        for agent in fleet:
            for run in [r for r in agent.running if r[0] <= now]:
                agent.running.remove(run)
                agent.usage.ended(run[2], run[1], now)
        if step % int(BEAT_S / TICK) == 0:  # a beat, summed as controller.fleet.live does
            held: dict[str, int] = {}
            usage: dict[str, float] = {}
            checks: dict[str, float] = {}
            holders: dict[str, dict[str, int]] = {}
            for agent in fleet:
                agent.usage.sample(now)
                for load in agent.usage.loads(agent.held()):
                    held[load.tenant] = held.get(load.tenant, 0) + load.held
                    usage[load.tenant] = usage.get(load.tenant, 0.0) + load.usage
                    checks[load.tenant] = checks.get(load.tenant, 0.0) + load.checks
                    if load.held:
                        holders.setdefault(load.tenant, {})[agent.name] = load.held
            carriers = frozenset(a.name for a in fleet)
            beats[0] = CountryLoad(capacity, held, usage, now, checks, holders, carriers)
        new: list[CheckJob] = []
        while greedy_asking < 2 * capacity:  # the flood: always more than the slots
            n += 1
            new.append(_job("greedy", n, at))
            greedy_asking += 1
        for tenant in quiet_names:
            if rng.random() < rate:
                n += 1
                new.append(_job(tenant, n, at))
                asked_at[new[-1].job_id] = now
                figures.quiet_asked += 1
        # A pass: the waiting jobs first (`retry`), then the new rounds' (as the scheduler).
        first, taken = ledger.retry(at), ledger.take(new, at)
        taken.admitted[:0] = first.admitted
        taken.preempts[:0] = first.preempts
        taken.refused_jobs[:0] = first.refused_jobs
        for job in taken.refused_jobs:
            if job.tenant == "greedy":
                greedy_asking -= 1
            else:
                figures.quiet_refused += 1
        for p in taken.preempts:
            agent = next(a for a in fleet if a.name == p.agent_id)
            mine = [r for r in agent.running if r[2] == p.tenant]
            if mine:
                longest = min(mine, key=lambda r: r[1])
                agent.running.remove(longest)
                agent.usage.ended(p.tenant, longest[1], now)
                figures.preempted += 1
            if p.job is not None:
                jobs.insert(0, p.job)  # takes the next free slot, ahead of pulled jobs
        jobs += taken.admitted
        while jobs and any(len(a.running) < a.capacity for a in fleet):
            job = jobs.pop(0)
            if job.tenant == "greedy":
                greedy_asking -= 1
            start(job, now)
        figures.busy_slot_ticks += sum(len(a.running) for a in fleet)
    figures.quiet_oldest_pending_s = max((clock[0] - t for t in asked_at.values()), default=0)
    return figures


GRID = [(c, a, q) for c in (1, 2, 8) for a in (1, 3) for q in (1, 2, 5)]


@pytest.mark.parametrize(("concurrency", "agents", "quiet"), GRID)
def test_quiet_organizations_get_their_slot_time_and_the_greedy_one_the_rest(
    concurrency: int, agents: int, quiet: int
) -> None:
    for seed in range(2):
        f = _history(seed, concurrency, agents, quiet, seconds=SECONDS)
        print(
            f"seed={seed} concurrency={concurrency} agents={agents} quiet={quiet}"
            f" quiet_asked={f.quiet_asked} started={f.quiet_started}"
            f" refused={f.quiet_refused} worst_wait_s={f.quiet_worst_wait_s}"
            f" oldest_pending_s={f.quiet_oldest_pending_s}"
            f" greedy_started={f.greedy_started} preempted={f.preempted}"
            f" busy_share={f.busy_slot_ticks / (concurrency * agents * SECONDS / TICK):.2f}"
        )
        assert f.quiet_refused == 0, f"seed {seed}: a quiet round was refused `saturated`"
        window = start_window(T0, T0 + timedelta(seconds=WINDOW_S)).total_seconds()
        assert f.quiet_worst_wait_s <= window, f"seed {seed}: a quiet round started late"
        assert f.quiet_oldest_pending_s <= window, f"seed {seed}: a quiet round starving"
        assert f.greedy_started > 0, f"seed {seed}: the greedy organization got nothing"
