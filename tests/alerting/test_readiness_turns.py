"""Readiness rounds take turns within their organization's hourly DNS budget, on PostgreSQL
(the SQL function `readiness_reserve`, migration 0126, through `budget_store`): what fits as a
table, whose turn it is as a story, and a seeded multi-hour history where the demand is 2 to 5
times the budget, planned by two replicas at once, checked against the history's own ledger:
every monitor is asked at least once every ceil(demand / budget) + 1 hours, no organization
and country is ever charged past its budget, and every held round's facts are unknown with
why."""

import asyncio
import math
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from agent.sidechecks.base import Round
from agent.sidechecks.readiness import ReadinessProbe, runner
from controller.monitors import store as monitors
from controller.sidechecks.frame import Arrived
from controller.sidechecks.readiness import budget_store, rules
from controller.sidechecks.readiness.budget import why_held
from shared.messages import CheckJob, CheckResult
from shared.sidechecks.readiness import QUERIES_MAX, WIRE, Readiness, ReadinessAsk
from shared.timefmt import iso_ms, parse_iso, utc_hour
from testkit.peers.jobs import make_job
from tests.conftest import make_tenant

SEED = 6726
HOUR = timedelta(hours=1)
WINDOW = HOUR  # DNS_POSTURE_INTERVAL_SECONDS' default: one readiness round an hour
COUNTRIES = ("DE", "FR")
LOST = 0.15  # the share of asked rounds whose result never arrives


async def _monitors(pool: asyncpg.Pool, n: int) -> tuple[int, list[str]]:
    """A fresh organization with `n` monitors of a mail domain: its id and their public ids."""
    tenant = await make_tenant(pool)
    ids = []
    async with pool.acquire() as conn:
        for i in range(n):
            m = await monitors.insert(
                conn,
                tenant.org_id,
                {
                    "customer_id": tenant.customer_id,
                    "type": "smtp",
                    "name": f"mx {i}",
                    "hostname": "smtp.customer.test",
                    "port": 587,
                    "status": "active",
                    "check_interval": 60,
                    "timeout_seconds": 10,
                    "allowed_country_codes": list(COUNTRIES),
                    "config": {"auth": None},
                    "mail_domain": f"d{i}.customer.test",
                },
                datetime.now(UTC),
            )
            ids.append(str(m.public_id))
    return tenant.org_id, ids


def _job(rng: random.Random, monitor: str, country: str, at: datetime) -> CheckJob:
    return make_job(
        "smtp",
        587,
        job_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        monitor_id=monitor,
        country=country,
        scheduled_at=iso_ms(at),
        expires_at=iso_ms(at + timedelta(minutes=1)),
        side_checks={WIRE.name: ReadinessAsk(domain="customer.test")},
    )


def _asked(job: CheckJob) -> bool:
    ask = WIRE.ask_of(job.side_checks)
    return ask is not None and bool(ask.domain)


async def _reserve(
    pool: asyncpg.Pool, jobs: list[CheckJob], at: datetime, budget: int
) -> list[CheckJob]:
    async with pool.acquire() as conn, conn.transaction():
        held = await budget_store.reserve(conn, jobs, at, budget, WINDOW)
    return [held.get(j.job_id, j) for j in jobs]


async def _budget_row(pool: asyncpg.Pool, org: int, cc: str, h: datetime) -> tuple[int, ...]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT asked, settled, spent FROM readiness_budget"
            " WHERE organization_id = $1 AND country = $2 AND hour = $3",
            org,
            cc,
            h,
        )
    return tuple(row) if row is not None else (0, 0, 0)


@pytest.mark.parametrize(
    ("stored", "budget", "wanted", "asked"),
    [
        ((0, 0, 0), 80, 1, 1),  # room for exactly one round
        ((0, 0, 0), 79, 1, 0),
        ((0, 0, 0), 200, 3, 2),  # two of three fit
        ((4, 4, 320), 400, 1, 1),  # 320 + 80 = 400
        ((4, 4, 321), 400, 1, 0),
        ((5, 0, 0), 400, 1, 0),  # five in flight reserve it all
        ((5, 5, 60), 400, 3, 3),  # they came back small
        ((1, 2, 20), 100, 1, 1),  # more settled than asked: never less than spent
    ],
)
async def test_a_round_is_asked_while_one_more_fits(
    pool: asyncpg.Pool, stored: tuple[int, int, int], budget: int, wanted: int, asked: int
) -> None:
    """What is spent plus reserved (QUERIES_MAX a round not back) never passes the budget."""
    org, ids = await _monitors(pool, wanted)
    at = utc_hour(datetime.now(UTC)) + timedelta(minutes=7)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO readiness_budget (organization_id, country, hour, asked, settled, spent)"
            " VALUES ($1, 'DE', $2, $3, $4, $5)",
            org,
            utc_hour(at),
            *stored,
        )
    rng = random.Random(SEED)
    jobs = await _reserve(pool, [_job(rng, m, "DE", at) for m in ids], at, budget)
    assert sum(map(_asked, jobs)) == asked
    assert (await _budget_row(pool, org, "DE", utc_hour(at)))[0] == stored[0] + asked
    for job in jobs:
        ask = WIRE.ask_of(job.side_checks)
        assert ask is not None
        assert ask.held == ("" if _asked(job) else why_held("spent", budget, "DE", at))


async def test_the_monitor_held_last_hour_goes_first(pool: asyncpg.Pool) -> None:
    """A budget of one round, two monitors: `early` (each hour at :05) and `late` (at :50).
    The first hour asks `early` and holds `late`; the next hour holds `early` though the budget
    has room (it is kept for `late`, waiting longer: its reason says so) and asks `late`; the
    hour after, `early` (now waiting) is asked again. Another country keeps its own turns."""
    _, (early, late) = await _monitors(pool, 2)
    start = utc_hour(datetime.now(UTC)) - 4 * HOUR
    rng = random.Random(SEED)
    seen: list[tuple[str, str, str]] = []
    for h in range(3):
        for minute, monitor in ((5, early), (50, late)):
            at = start + h * HOUR + timedelta(minutes=minute)
            (job,) = await _reserve(pool, [_job(rng, monitor, "DE", at)], at, QUERIES_MAX)
            ask = WIRE.ask_of(job.side_checks)
            assert ask is not None
            name = "early" if monitor == early else "late"
            seen.append((f"{h}:{minute:02}", name, "asked" if _asked(job) else ask.held))
    until = [f"{start + (h + 1) * HOUR:%H:%M}" for h in range(3)]
    turn = "is kept until {} UTC for its monitors waiting longer (80 queries an hour)"
    spent = "is spent until {} UTC (80 queries an hour)"
    prefix = "this organization's DNS budget for readiness in DE "
    assert seen == [
        ("0:05", "early", "asked"),
        ("0:50", "late", prefix + spent.format(until[0])),
        ("1:05", "early", prefix + turn.format(until[1])),
        ("1:50", "late", "asked"),
        ("2:05", "early", "asked"),
        ("2:50", "late", prefix + spent.format(until[2])),
    ]
    at = start + 3 * HOUR + timedelta(minutes=5)  # FR has had no round: `early` goes
    (job,) = await _reserve(pool, [_job(rng, early, "FR", at)], at, QUERIES_MAX)
    assert _asked(job)


@dataclass
class Org:
    """One organization of the history: its monitors' phases (minutes into each hour), its
    budget, and what the history saw of its rounds."""

    org: int
    monitors: list[str]
    phase: dict[str, float]
    budget: int
    served: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    # (country, hour index) → [queries spent by rounds back, rounds asked not back]
    ledger: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    asked: int = 0
    held: int = 0

    @property
    def rounds(self) -> int:
        """The rounds the budget holds in an hour at their most (QUERIES_MAX each)."""
        return self.budget // QUERIES_MAX

    @property
    def bound(self) -> int:
        """ceil(demand / budget) + 1 hours, both in rounds an hour."""
        return math.ceil(len(self.monitors) / self.rounds) + 1


async def _history_org(pool: asyncpg.Pool, rng: random.Random, times: int | None) -> Org:
    """An organization whose monitors ask `times` (None: 2 to 5, by the seed) the rounds its
    budget holds an hour."""
    rounds = rng.randint(1, 3)
    n = rounds * times if times else rng.randint(2 * rounds, 5 * rounds)
    budget = rounds * QUERIES_MAX + rng.randrange(QUERIES_MAX)
    org, ids = await _monitors(pool, n)
    return Org(org, ids, {m: rng.uniform(0, 60) for m in ids}, budget)


async def _two_replicas(
    pool: asyncpg.Pool, jobs: list[CheckJob], at: datetime, budget: int, rng: random.Random
) -> list[CheckJob]:
    """A batch split between two replicas reserving at once: the second's statement waits on
    the first's row locks until the first commits."""
    first = [j for j in jobs if rng.random() < 0.5]
    second = [j for j in jobs if j not in first]
    async with pool.acquire() as a, pool.acquire() as b:
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        held_a = await budget_store.reserve(a, first, at, budget, WINDOW)
        pending = asyncio.create_task(budget_store.reserve(b, second, at, budget, WINDOW))
        await ta.commit()
        held_b = await pending
        await tb.commit()
    held = held_a | held_b
    return [held.get(j.job_id, j) for j in jobs]


async def _held_facts(job: CheckJob) -> Readiness:
    """What the agent reports of a held round (it asks nothing)."""
    ask = WIRE.ask_of(job.side_checks)
    assert ask is not None
    probe = ReadinessProbe(resolver="127.0.0.1:9", canaries=())  # never asked
    result = CheckResult(
        job_id=job.job_id,
        monitor_id=job.monitor_id,
        monitor_type="smtp",
        country=job.country,
        agent_id=f"{job.country}-agent",
        scheduled_at=job.scheduled_at,
        started_at=job.scheduled_at,
        finished_at=job.scheduled_at,
        status="up",
    )
    facts = await runner(probe)(ask, Round(job, result, 587, None))
    assert facts is not None
    return facts


async def test_a_seeded_history_gives_every_monitor_its_turn(pool: asyncpg.Pool) -> None:
    rng = random.Random(SEED)
    orgs = [await _history_org(pool, rng, times) for times in (5, 2, None, None, None)]
    hours = 2 * max(o.bound for o in orgs) + 1
    start = utc_hour(datetime.now(UTC)) - (hours + 1) * HOUR
    by_id = {m: o for o in orgs for m in o.monitors}
    for h in range(hours):
        for batch in range(12):  # a batch every five minutes
            at = start + h * HOUR + timedelta(minutes=5 * batch)
            due = [
                (m, at + timedelta(minutes=o.phase[m] - 5 * batch))
                for o in orgs
                for m in o.monitors
                if 5 * batch <= o.phase[m] < 5 * (batch + 1)
            ]
            jobs = [_job(rng, m, cc, when) for m, when in due for cc in COUNTRIES]
            if not jobs:
                continue
            budgets = {o.budget for o in orgs}
            out: list[CheckJob] = []
            for budget in sorted(budgets):  # each organization its own setting
                ours = [j for j in jobs if by_id[j.monitor_id].budget == budget]
                out += await _two_replicas(pool, ours, at, budget, rng)
            await _settle(pool, out, by_id, h, rng)
    for o in orgs:
        _check(o, hours)
        for cc in COUNTRIES:
            for h in range(hours):
                spent, unsettled = _charged(o, cc, h)
                stored = await _budget_row(pool, o.org, cc, start + h * HOUR)
                assert stored[2] == spent and stored[0] - stored[1] == unsettled


async def _settle(
    pool: asyncpg.Pool,
    jobs: list[CheckJob],
    by_id: dict[str, Org],
    h: int,
    rng: random.Random,
) -> None:
    """Each asked round's facts come back (spending 5 to 80 queries) or are lost; each held
    round's facts are the agent's for a held ask: unknown, saying why."""
    arrived = []
    for job in jobs:
        o = by_id[job.monitor_id]
        at = parse_iso(job.scheduled_at)
        ledger = o.ledger[(job.country, h)]
        if not ledger:
            ledger += [0, 0]
        if not _asked(job):
            o.held += 1
            facts = await _held_facts(job)
            assert facts.error in {
                why_held("spent", o.budget, job.country, at),
                why_held("turn", o.budget, job.country, at),
            }
            assert facts.queries == 0 and rules.readiness(facts, job.country, at) == {}
            continue
        o.asked += 1
        o.served[(job.monitor_id, job.country)].append(h)
        if rng.random() < LOST:
            ledger[1] += 1  # reserved, never settled: counted at QUERIES_MAX
            continue
        spent = rng.randint(5, QUERIES_MAX)
        ledger[0] += spent
        facts = Readiness(domain="customer.test", queries=spent)
        arrived.append(Arrived(job.job_id, uuid.UUID(job.monitor_id), job.country, at, at, facts))
        # What the history charged the hour so far: never past the budget.
        assert ledger[0] + ledger[1] * QUERIES_MAX <= o.budget
    async with pool.acquire() as conn, conn.transaction():
        await budget_store.settle(conn, arrived)
    for o in {id(o): o for o in (by_id[j.monitor_id] for j in jobs)}.values():
        for cc in COUNTRIES:
            spent, unsettled = _charged(o, cc, h)
            assert spent + unsettled * QUERIES_MAX <= o.budget


def _charged(o: Org, cc: str, h: int) -> tuple[int, int]:
    ledger = o.ledger.get((cc, h)) or [0, 0]
    return ledger[0], ledger[1]


def _check(o: Org, hours: int) -> None:
    """Every monitor asked at least once every `bound` hours in each country (its first turn
    within `bound` hours too), and each hour asking at least what the budget holds at its
    most; figures printed."""
    longest = 0
    for m in o.monitors:
        for cc in COUNTRIES:
            served = o.served[(m, cc)]
            gaps = [b - a for a, b in zip([-1, *served], [*served, hours], strict=True)]
            longest = max(longest, *gaps)
            assert max(gaps) <= o.bound, (m, cc, served, o.bound)
    for cc in COUNTRIES:
        for h in range(hours):
            asked = sum(h in o.served[(m, cc)] for m in o.monitors)
            assert asked >= min(o.rounds, len(o.monitors)), (cc, h, asked)
    print(
        f"organization {o.org}: {len(o.monitors)} monitors, budget {o.budget} queries"
        f" ({o.rounds} rounds), demand {len(o.monitors) / o.rounds:.1f}x, {hours} hours x"
        f" {len(COUNTRIES)} countries: {o.asked} rounds asked, {o.held} held, longest wait"
        f" {longest} h (bound {o.bound} h)"
    )


async def test_a_monitor_that_stops_coming_keeps_no_place_past_its_due_hour(
    pool: asyncpg.Pool,
) -> None:
    """A budget of one round. `late`, held in the first hour, then disabled: the next hour
    keeps no room for it (`early` is asked). Enabled again and held, then never coming again
    (its country gone): the hour its round was due keeps its room (`early` held), the hour
    after does not."""
    _, (early, late) = await _monitors(pool, 2)
    start = utc_hour(datetime.now(UTC)) - 5 * HOUR
    rng = random.Random(SEED)

    async def one(monitor: str, h: int, minute: int) -> bool:
        at = start + h * HOUR + timedelta(minutes=minute)
        (job,) = await _reserve(pool, [_job(rng, monitor, "DE", at)], at, QUERIES_MAX)
        return _asked(job)

    assert await one(early, 0, 5) and not await one(late, 0, 50)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET status = 'disabled' WHERE public_id = $1", uuid.UUID(late)
        )
    assert await one(early, 1, 5)  # nothing kept for a disabled monitor
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET status = 'active' WHERE public_id = $1", uuid.UUID(late)
        )
    assert not await one(late, 1, 50)  # back, held: waiting again, due at 2:50
    assert not await one(early, 2, 5)  # its room kept for `late`, due this hour
    # `late` does not come at 2:50 (its country gone): 3:05 keeps nothing for it
    assert await one(early, 3, 5)
