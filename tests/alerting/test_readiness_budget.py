"""Each organization's hourly readiness DNS budget per country, on real parts (issue 67): the
scheduler's planner asks each round's readiness and admission reserves it in PostgreSQL (or
holds it) as `Admission.admit` does; the agent's readiness side check walks
each domain through a loopback DNS server that counts what it is asked; the results go through
the ingester's bound and store (which settles the queries reported) and the alerter judges them.

A seeded history of rounds over three clock hours (some results lost on the way) is checked
round by round against a harness that knows when the budget is spent and whose turn it is:
every round is asked or held as the harness says, a held round's facts say why and until
when, its findings stay as they were (no false finding, no drift), the DNS server never sees
more than the budget in an hour, another organization in the same country is never held, and
asking resumes by itself when the hour rolls."""

import asyncio
import functools
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import msgspec
from cryptography.fernet import Fernet

from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from agent.sidechecks.base import Round
from agent.sidechecks.readiness import ReadinessProbe, runner
from controller.db.pool import Conn
from controller.ingest import store as results
from controller.ingest.ingester import _bound_side
from controller.scheduling import due_store as due
from controller.scheduling.due_store import ClaimedMonitor
from controller.scheduling.plan import RoundPlanner
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.sidechecks.frame import Arrived
from controller.sidechecks.readiness import budget_store, rules
from shared.clock import WALL
from shared.messages import CheckJob, CheckResult, SmtpConfig, encode
from shared.sidechecks.readiness import QUERIES_MAX, WIRE, Readiness
from shared.timefmt import parse_iso, utc_hour, utcnow
from testkit.peers.dns import DnsPeer, Records
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer
from tests.alerting.conftest import Rig
from tests.conftest import Tenant, make_tenant
from tests.console.helpers import Browserish

SEED = 67
LOST = 0.15  # the share of asked rounds whose result never arrives
HOSTILE = "hostile.test"
FINE = "fine.test"


def _hostile() -> Records:
    """A chain of 1,000 includes (each round spends its walk's bound on it), a DMARC record,
    an MX."""
    records: Records = {
        (HOSTILE, "TXT"): ['"v=spf1 include:i0.hostile.test ~all"'],
        (f"_dmarc.{HOSTILE}", "TXT"): ['"v=DMARC1; p=reject"'],
        (HOSTILE, "MX"): ["10 mx.hostile.test."],
    }
    for i in range(1000):
        records[(f"i{i}.hostile.test", "TXT")] = [f'"v=spf1 include:i{i + 1}.hostile.test ~all"']
    return records


FINE_ZONE: Records = {
    (FINE, "TXT"): ['"v=spf1 ip4:192.0.2.1 -all"'],
    (f"_dmarc.{FINE}", "TXT"): ['"v=DMARC1; p=reject"'],
    (FINE, "MX"): ["10 mx.fine.test."],
}


async def _monitor(rig: Rig, tenant: Tenant, domain: str, name: str) -> asyncpg.Record:
    monitor = await rig.monitor(["DE"], tenant=tenant, config={"auth": None}, name=name)
    async with rig.pool.acquire() as conn:
        await conn.execute(  # created before the history the test writes
            "UPDATE monitors SET mail_domain = $2, created_at = created_at - interval '4 hours'"
            " WHERE id = $1",
            monitor["id"],
            domain,
        )
    return monitor


async def _open(api: httpx.AsyncClient, tenant: Tenant, monitor: asyncpg.Record) -> set[str]:
    response = await api.get(
        f"/api/smtp-monitors/{monitor['public_id']}/posture", headers=tenant.auth("readonly")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return {f"{f['code']}:{f['country']}" for f in body["findings"] if f["state"] == "open"}


class Harness:
    """What the budget is, as the harness counts it: per organization and hour, the queries
    the DNS server answered for rounds that came back and QUERIES_MAX for each asked one that
    did not (yet); and whose turn it is: a batch's room goes first to the monitors held since
    the earliest hour, then to those asked longest ago (never asked first), then by id."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.charged: dict[tuple[int, datetime], int] = {}
        self.waiting: dict[int, datetime] = {}  # monitor → the hour it is held since
        self.served: dict[int, datetime] = {}  # monitor → the hour it was last asked

    def batch(self, rounds: list[tuple[int, int]], at: datetime) -> list[bool]:
        """Whether each of a batch's rounds (organization, monitor) is asked."""
        far = datetime.max.replace(tzinfo=UTC)
        asked: set[int] = set()
        for org in {o for o, _ in rounds}:
            key = (org, utc_hour(at))
            room = (self.budget - self.charged.get(key, 0)) // QUERIES_MAX
            ours = sorted(
                (m for o, m in rounds if o == org),
                key=lambda m: (
                    m not in self.waiting,
                    self.waiting.get(m, far),
                    m in self.served,
                    self.served.get(m, far),
                    m,
                ),
            )
            for m in ours[: max(room, 0)]:
                asked.add(m)
                self.charged[key] = self.charged.get(key, 0) + QUERIES_MAX
                self.served[m] = utc_hour(at)
                self.waiting.pop(m, None)
            for m in ours[max(room, 0) :]:
                self.waiting.setdefault(m, utc_hour(at))
        return [m in asked for _, m in rounds]

    def arrived(self, org: int, at: datetime, queries: int) -> None:
        key = (org, utc_hour(at))
        self.charged[key] += queries - QUERIES_MAX


class History:
    """Three monitors of one organization on a hostile domain, one of another organization
    on a fine one, all in DE; each step a batch planned as the scheduler plans it, the agents'
    rounds run, and the results stored (some lost on the way, by the seed)."""

    def __init__(self, rig: Rig, org: Tenant, planner: RoundPlanner, budget: int) -> None:
        self.rig, self.org, self.planner, self.budget = rig, org, planner, budget
        self.rng = random.Random(SEED)
        self.harness = Harness(budget)
        self.hostile: list[asyncpg.Record] = []
        self.owners: dict[int, Tenant] = {}
        self.held: dict[int, list[str]] = {}  # monitor → the "until" of each held round
        self.judged: set[int] = set()  # the monitors of which an asked round's facts arrived
        self.per_hour: dict[tuple[str, datetime], int] = {}
        self.stored: list[tuple[int, str, bool]] = []  # (monitor, job, asked)
        self.batches: dict[datetime, list[bool]] = {}  # each batch's rounds: asked or held
        self.last: dict[int, bool] = {}  # each monitor's latest stored round: asked or held

    async def monitors(self) -> None:
        for i in range(3):
            m = await _monitor(self.rig, self.rig.tenant, HOSTILE, f"hostile {i}")
            self.hostile.append(m)
            self.owners[m["id"]] = self.rig.tenant
        self.fine = await _monitor(self.rig, self.org, FINE, "fine")
        self.owners[self.fine["id"]] = self.org

    async def plan(self, now: datetime) -> list[CheckJob]:
        """One batch: every monitor planned, its readiness reserved or held (as the scheduler's
        `_run_batch` and `Admission.admit` do)."""
        async with self.rig.pool.acquire() as conn, conn.transaction():
            await self.due(conn, now)
            return await self.reserve(conn, await self.planned(conn, now), now)

    def ids(self) -> list[int]:
        return [m["id"] for m in [*self.hostile, self.fine]]

    async def due(self, conn: Conn, now: datetime) -> None:
        await conn.execute(  # each due now
            "UPDATE monitors SET next_due_at = $2 WHERE id = ANY($1::bigint[])", self.ids(), now
        )

    async def planned(self, conn: Conn, now: datetime) -> list[CheckJob]:
        """A batch's rounds as planned, nothing reserved yet."""
        ids = self.ids()
        claimed = [await due.monitor(conn, i) for i in ids]
        plans = [self.planner.round(_watched(c), now, LIVE) for c in claimed]
        jobs = [job for p in plans for job in p.jobs]
        assert len(jobs) == len(ids)
        return jobs

    async def reserve(self, conn: Conn, jobs: list[CheckJob], now: datetime) -> list[CheckJob]:
        held = await budget_store.reserve(conn, jobs, now, self.budget, timedelta(hours=1))
        return [held.get(j.job_id, j) for j in jobs]

    async def step(self, now: datetime, smtp: int, peers: dict[int, DnsPeer]) -> None:
        jobs = await self.plan(now)
        monitors = [*self.hostile, self.fine]
        # What the harness says of each round, in the batch's order, before any comes back.
        expected = self.harness.batch(
            [(self.owners[m["id"]].org_id, m["id"]) for m in monitors], now
        )
        self.batches[now] = expected
        rows = []
        for monitor, job, asked in zip(monitors, jobs, expected, strict=True):
            owner = self.owners[monitor["id"]].org_id
            ask = WIRE.ask_of(job.side_checks)
            assert ask is not None
            assert bool(ask.domain) is asked, (monitor["name"], now, self.harness.charged)
            if owner == self.org.org_id:
                assert asked, "the other organization is never held"
            peer = peers[owner]
            before = len(peer.asked)
            probe = ReadinessProbe(resolver=peer.address, canaries=())
            checked, facts = await _agent(probe, job, smtp)
            spent = len(peer.asked) - before
            assert facts.queries == spent  # what the agent reports is what it asked
            key = (monitor["name"][:4], utc_hour(now))
            self.per_hour[key] = self.per_hour.get(key, 0) + spent
            if not asked:
                until = (utc_hour(now) + timedelta(hours=1)).strftime("%H:%M")
                assert facts.error == (
                    "this organization's DNS budget for readiness in DE is spent until"
                    f" {until} UTC ({self.budget} queries an hour)"
                )
                assert spent == 0 and facts.domain == "" and facts.spf is None
                self.held.setdefault(monitor["id"], []).append(until)
            elif self.rng.random() < LOST:
                continue  # reserved, never settled: counted at QUERIES_MAX
            else:
                self.harness.arrived(owner, now, spent)
                self.judged.add(monitor["id"])
            rows.append(_result(job, checked, facts))
            self.stored.append((monitor["id"], job.job_id, asked))
            self.last[monitor["id"]] = asked
        async with self.rig.pool.acquire() as conn, conn.transaction():
            await results.store(conn, rows, now=utcnow())

    def figures(self) -> None:
        """What each organization's DNS server answered per hour, printed; never past the
        budget."""
        for (who, hour), spent in sorted(self.per_hour.items()):
            print(f"{who} {hour:%H:%M}: {spent} queries (budget {self.budget})")
            assert spent <= self.budget


async def test_a_seeded_history_over_three_hours_is_asked_and_held_as_the_budget_says(
    rig: Rig, tmp_path: Path
) -> None:
    """Every round's verdict as readiness judges its stored facts: judged when asked (the
    hostile domain's finding), unknown when held (no verdict at all, no drift); held in both
    full hours, asked again by itself when each hour rolls."""
    history = History(rig, await make_tenant(rig.pool), _planner(rig, tmp_path), 400)
    await history.monitors()
    start = utc_hour(datetime.now(UTC)) - timedelta(hours=2)
    # Four batches an hour for two hours, then the first of the third.
    steps = [start + timedelta(minutes=15 * i) for i in range(9)]
    async with SmtpPeer() as smtp, DnsPeer(_hostile()) as dns_a, DnsPeer(FINE_ZONE) as dns_b:
        peers = {rig.tenant.org_id: dns_a, history.org.org_id: dns_b}
        for now in steps:
            await history.step(now, smtp.port, peers)
    rows = await rig.fetch(
        "SELECT job::text, scheduled_at, facts FROM side_readiness"
        " WHERE monitor_id = ANY($1::bigint[])",
        [m["id"] for m in history.hostile],
    )
    facts_of = {r["job"]: (r["scheduled_at"], r["facts"]) for r in rows}
    for monitor_id, job, asked in history.stored:
        if monitor_id == history.fine["id"]:
            continue
        at, raw = facts_of[job]
        facts = msgspec.convert(raw, Readiness)
        verdicts = rules.readiness(facts, "DE", at)
        if asked:
            assert verdicts[("spf_lookup_limit", "DE")] is not None
            assert facts.kept is not None and facts.kept.changes == []
        else:
            assert verdicts == {}  # unknown: nothing raised, nothing cleared
            assert facts.kept is not None and facts.kept.changes == []
    history.figures()
    hours = [utc_hour(steps[0]) + timedelta(hours=h) for h in range(4)]
    for h in range(2):  # both full hours: held once spent
        batches = [v for at, v in history.batches.items() if utc_hour(at) == hours[h]]
        assert not all(all(b) for b in batches), f"nothing held in {hours[h]:%H:%M}"
    for at in (steps[0], steps[4], steps[8]):  # each hour's first batch asks every monitor
        assert all(history.batches[at]), f"held at {at:%H:%M}, the hour's first batch"
    held_until = {u for until in history.held.values() for u in until}
    assert held_until == {f"{hours[1]:%H:%M}", f"{hours[2]:%H:%M}"}
    assert history.fine["id"] not in history.held


async def test_held_rounds_keep_the_findings_and_tell_nothing(
    rig: Rig, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The same history near now through the alerter: the hostile domain's finding, once
    judged, stays open through their held rounds (never cleared, no drift), told once; the
    other organization's fine domain has none and is never held."""
    # A budget of two rounds: every batch holds one of the three at least.
    history = History(rig, await make_tenant(rig.pool), _planner(rig, tmp_path), 200)
    await history.monitors()
    first = rig.at(0).replace(second=0, microsecond=0)
    if first.minute >= 50:  # the three rounds within one clock hour, the budget's
        first = utc_hour(first) + timedelta(hours=1)
    async with SmtpPeer() as smtp, DnsPeer(_hostile()) as dns_a, DnsPeer(FINE_ZONE) as dns_b:
        peers = {rig.tenant.org_id: dns_a, history.org.org_id: dns_b}
        for i in range(3):
            await history.step(first + timedelta(minutes=5 * i), smtp.port, peers)
            await rig.alerter.burst()
            for monitor in history.hostile:
                found = {"spf_lookup_limit:DE"} if monitor["id"] in history.judged else set()
                assert await _open(api, rig.tenant, monitor) == found, monitor["name"]
            assert await _open(api, history.org, history.fine) == set()
    assert history.held, "the history held rounds"
    # The monitor page says why a country's latest readiness round read nothing.
    console = Browserish(api, session=rig.tenant.tokens["readonly"])
    for monitor in history.hostile:
        page = (await console.get(f"/console/monitors/{monitor['public_id']}")).text
        last = history.last[monitor["id"]]
        shown = "this organization&#39;s DNS budget for readiness in DE is spent until" in page
        assert shown is (not last), monitor["name"]
    # One notice per change, none for holds; the finding is a fact of the domain the three
    # monitors name, told once to the address they share (issue 80).
    notes = [(n["kind"], n["source"]) for m in history.hostile for n in await rig.outbox_rows(m)]
    judged = any(m["id"] in history.judged for m in history.hostile)
    assert notes == ([("finding", "finding")] if judged else [])
    history.figures()


LIVE = frozenset({"DE"})


def _planner(rig: Rig, tmp_path: Path) -> RoundPlanner:
    return RoundPlanner(rig.job_ids, SecretBox(_secrets_key()), CountryKeys(str(tmp_path)))


@functools.cache
def _contexts() -> SslContexts:
    return build_ssl_contexts()


def _secrets_key() -> str:
    return Fernet.generate_key().decode()


def _watched(claimed: ClaimedMonitor | None) -> ClaimedMonitor:
    assert claimed is not None
    return claimed


async def _agent(probe: ReadinessProbe, job: CheckJob, port: int) -> tuple[CheckResult, Readiness]:
    """The core check of a real SMTP server, and the agent's readiness side check on the
    job's ask beside it."""
    ask = WIRE.ask_of(job.side_checks)
    assert ask is not None
    checked = await run_check(
        make_job("smtp", port, SmtpConfig(), country="DE"),
        "DE-agent",
        True,
        _contexts(),
        clock=WALL,
    )
    facts = await runner(probe)(ask, Round(job, checked, port, None))
    assert facts is not None
    return checked, facts


def _result(job: CheckJob, checked: CheckResult, facts: Readiness) -> Any:
    """The job's result as the ingester stores it, its side facts bounded as it bounds them."""
    checked.job_id = job.job_id
    checked.monitor_id = job.monitor_id
    checked.scheduled_at = job.scheduled_at
    checked.side_checks[WIRE.name] = msgspec.to_builtins(facts)
    row = results.decode_result(encode(checked))
    _bound_side(row)
    return row


async def test_what_a_round_is_charged_is_its_own_once_and_at_most_its_reservation(
    rig: Rig, tmp_path: Path
) -> None:
    """An agent that says it spent a billion queries charges its round QUERIES_MAX (the
    ingester's bound), a result delivered twice settles once, and the charge is its own
    organization's and country's alone."""
    org = await make_tenant(rig.pool)
    history = History(rig, org, _planner(rig, tmp_path), 400)
    await history.monitors()
    now = utc_hour(datetime.now(UTC))
    jobs = await history.plan(now)
    lying = jobs[0]
    facts = Readiness(domain=HOSTILE, queries=10**9)
    async with SmtpPeer() as smtp:
        checked = await run_check(
            make_job("smtp", smtp.port, SmtpConfig(), country="DE"),
            "DE-agent",
            True,
            _contexts(),
            clock=WALL,
        )
    for _ in range(2):  # delivered twice
        async with rig.pool.acquire() as conn, conn.transaction():
            await results.store(conn, [_result(lying, checked, facts)], now=utcnow())
    rows = await rig.fetch(
        "SELECT organization_id, country, asked, settled, spent FROM readiness_budget"
        " WHERE organization_id = ANY($1::bigint[]) AND hour = $2 ORDER BY organization_id",
        [rig.tenant.org_id, org.org_id],
        now,
    )
    assert [tuple(r) for r in rows] == [
        (rig.tenant.org_id, "DE", 3, 1, QUERIES_MAX),
        (org.org_id, "DE", 1, 0, 0),
    ]


async def test_two_replicas_planning_at_once_never_ask_more_than_the_budget(
    rig: Rig, tmp_path: Path
) -> None:
    """Two controllers plan every monitor on their own connections (each asking all), then both
    reserve, the second while the first holds the hour's row: between them they ask two rounds
    of the three hostile ones (the budget), and the second's jobs go out held, saying why."""
    org = await make_tenant(rig.pool)
    history = History(rig, org, _planner(rig, tmp_path), 2 * QUERIES_MAX)
    await history.monitors()
    now = utc_hour(datetime.now(UTC))
    async with rig.pool.acquire() as conn:
        await history.due(conn, now)
    hostile = {str(m["public_id"]) for m in history.hostile}
    async with rig.pool.acquire() as a, rig.pool.acquire() as b:
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        planned_a = await history.planned(a, now)
        planned_b = await history.planned(b, now)
        for planned in (planned_a, planned_b):  # planned: every round asks its domain
            assert sum(_asks(j) for j in planned if j.monitor_id in hostile) == 3
        jobs_a = await history.reserve(a, planned_a, now)
        second = asyncio.create_task(history.reserve(b, planned_b, now))
        await ta.commit()
        jobs_b = await second
        await tb.commit()
    asked = [j for j in [*jobs_a, *jobs_b] if j.monitor_id in hostile and _asks(j)]
    (row,) = await rig.fetch(
        "SELECT asked FROM readiness_budget WHERE organization_id = $1 AND hour = $2",
        rig.tenant.org_id,
        now,
    )
    print(f"two replicas: {len(asked)} rounds asked, {row['asked']} reserved, budget 2 rounds")
    assert len(asked) == row["asked"] == 2
    assert sum(_asks(j) for j in jobs_b if j.monitor_id in hostile) == 0
    held_b = [WIRE.ask_of(j.side_checks) for j in jobs_b if j.monitor_id in hostile]
    assert all(h is not None and "spent until" in h.held for h in held_b)
    assert sum(_asks(j) for j in [*jobs_a, *jobs_b] if j.monitor_id not in hostile) == 2


def _asks(job: CheckJob) -> bool:
    ask = WIRE.ask_of(job.side_checks)
    return ask is not None and bool(ask.domain)


async def test_one_result_stored_by_two_controllers_at_once_settles_once(
    rig: Rig, tmp_path: Path
) -> None:
    """Two controllers store the same round's facts in their own transactions at once (neither
    sees the other's rows yet): the round is settled once, its queries counted once."""
    org = await make_tenant(rig.pool)
    history = History(rig, org, _planner(rig, tmp_path), 400)
    await history.monitors()
    now = utc_hour(datetime.now(UTC))
    job = (await history.plan(now))[0]
    arrived = Arrived(
        job.job_id,
        UUID(str(job.monitor_id)),
        job.country,
        parse_iso(job.scheduled_at),
        now,
        Readiness(domain=HOSTILE, queries=30),
    )
    async with rig.pool.acquire() as a, rig.pool.acquire() as b:
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        await budget_store.settle(a, [arrived])
        second = asyncio.create_task(budget_store.settle(b, [arrived]))
        await ta.commit()
        await second
        await tb.commit()
    (row,) = await rig.fetch(
        "SELECT asked, settled, spent FROM readiness_budget WHERE organization_id = $1"
        " AND hour = $2",
        rig.tenant.org_id,
        now,
    )
    assert tuple(row) == (3, 1, 30)


async def test_rounds_that_never_run_give_their_reservation_back(rig: Rig, tmp_path: Path) -> None:
    """A batch that reserved every round its budget allowed (two) and had them refused (no
    slot in the country) releases them: the next batch of the hour asks two rounds again,
    where without the release it would hold all."""
    org = await make_tenant(rig.pool)
    history = History(rig, org, _planner(rig, tmp_path), 2 * QUERIES_MAX)
    await history.monitors()
    now = utc_hour(datetime.now(UTC))
    hostile = {str(m["public_id"]) for m in history.hostile}
    refused = [j for j in await history.plan(now) if j.monitor_id in hostile and _asks(j)]
    assert len(refused) == 2
    async with rig.pool.acquire() as conn:
        await budget_store.release(conn, refused)
    again = [j for j in await history.plan(now) if j.monitor_id in hostile and _asks(j)]
    assert len(again) == 2
