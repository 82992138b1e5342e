"""Graph's calls per mailbox bounded across agents and countries (issue 82), on real parts:
admission's reservation (`api_calls_store`, SQL `api_calls_reserve`) in PostgreSQL for the jobs
of two countries' rounds to one mailbox, with GRAPH_CALLS_PER_MAILBOX scaled down; then an
agent runs a job with the calls it was given against the Graph peer, which counts them."""

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import trustme

from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from controller.monitors.mailbox_apis import Charge
from controller.scheduling import api_calls_store
from controller.scheduling.plan import PlannedRound
from controller.settings import SchedulingSettings
from shared.clock import WALL
from shared.messages import CheckJob, ImapPopConfig
from shared.secret import Secret
from shared.timefmt import iso_ms, parse_iso
from testkit.peers.graph import GraphPeer, serve_graph
from testkit.peers.jobs import make_job

BOX = "probe@contoso.test"
BUDGET = 9  # GRAPH_CALLS_PER_MAILBOX scaled down: 4 mailbox checks of 2 calls fit, not 5
SETTINGS = SchedulingSettings(graph_calls_per_mailbox=BUDGET)
T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)


def _job(tenant: str, cc: str, at: datetime, port: int = 443, token: str = "") -> CheckJob:
    config = ImapPopConfig(user=BOX, access_token=Secret(token), api="graph")
    return make_job(
        "imap",
        port,
        config,
        job_id=str(uuid.uuid4()),
        country=cc,
        tenant=tenant,
        scheduled_at=iso_ms(at),
        timeout=3.0,
    )


def _round(jobs: list[CheckJob], at: datetime, account: str = "acct-box") -> PlannedRound:
    charges = [Charge("graph", account, "check")]
    return PlannedRound(1, at, None, jobs=jobs, account=account, api_charges=charges)


async def test_reserved_calls_never_pass_the_mailboxs_budget_in_any_ten_minutes(
    pool: asyncpg.Pool,
) -> None:
    """A seeded history of passes, each with several agents' jobs from two countries for one
    mailbox, some refused by admission afterwards (their calls released): in every 10-minute
    window the calls of the jobs kept never pass the budget, each job carries what it was given
    (2 or 0), a job refused gives its room back, and another organization naming the same
    mailbox has its own budget."""
    rng = random.Random(82)
    tenant = f"org-{uuid.uuid4().hex[:8]}"
    kept: list[tuple[datetime, int]] = []
    held = released = 0
    async with pool.acquire() as conn:
        for step in range(40):
            at = T0 + timedelta(seconds=45 * step)
            jobs = [_job(tenant, cc, at) for cc in ("DE", "FR") for _ in range(rng.randint(0, 2))]
            r = _round(jobs, at)
            async with conn.transaction():
                await api_calls_store.reserve(conn, [r], at, SETTINGS)
                assert {j.api_calls for j in r.jobs} <= {0, 2}
                refused = [j for j in r.jobs if j.api_calls and rng.random() < 0.2]
                await api_calls_store.release(conn, refused)
            held += sum(1 for j in r.jobs if j.api_calls == 0)
            released += len(refused)
            gone = {j.job_id for j in refused}
            kept += [(at, j.api_calls or 0) for j in r.jobs if j.job_id not in gone]
        for start in sorted({at for at, _ in kept}):
            window = sum(c for at, c in kept if start <= at < start + api_calls_store.WINDOW)
            assert window <= BUDGET, (start, window)
        assert held and released  # the history held some jobs and refused some
        # The mailbox's budget is spent now: one more job is held, a refused one frees it.
        at = T0 + timedelta(minutes=40)
        fill = _round([_job(tenant, "DE", at) for _ in range(5)], at)
        await api_calls_store.reserve(conn, [fill], at, SETTINGS)
        assert sorted(j.api_calls or 0 for j in fill.jobs) == [0, 2, 2, 2, 2]
        await api_calls_store.release(conn, [j for j in fill.jobs if j.api_calls][:1])
        again = _round([_job(tenant, "FR", at)], at)
        await api_calls_store.reserve(conn, [again], at, SETTINGS)
        assert again.jobs[0].api_calls == 2
        other = _round([_job(f"other-{tenant}", "DE", at)], at)
        await api_calls_store.reserve(conn, [other], at, SETTINGS)
        assert other.jobs[0].api_calls == 2
        assert parse_iso(again.jobs[0].scheduled_at) == at


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ssl_contexts(ca: trustme.CA) -> SslContexts:
    return build_ssl_contexts(cadata=ca.cert_pem.bytes().decode())


@pytest.fixture
async def graph(ca: trustme.CA) -> AsyncIterator[GraphPeer]:
    async with serve_graph(GraphPeer({BOX}), ca) as peer:
        yield peer


async def test_a_held_job_sends_nothing_and_a_given_one_runs(
    pool: asyncpg.Pool, graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    """The jobs as admission left them, run by an agent against the Graph peer: the one given
    its calls is `up` in 2 calls, the one held ends `inconclusive` (throttled, not sent) and
    the peer sees none of its calls."""
    tenant = f"org-{uuid.uuid4().hex[:8]}"
    at = T0 + timedelta(hours=5)
    token = graph.token()
    ccs = ("DE", "FR", "DE", "FR", "DE")
    r = _round([_job(tenant, cc, at, graph.port, token) for cc in ccs], at)
    async with pool.acquire() as conn:
        await api_calls_store.reserve(conn, [r], at, SETTINGS)
    assert sorted(j.api_calls or 0 for j in r.jobs) == [0, 2, 2, 2, 2]
    given = next(j for j in r.jobs if j.api_calls)
    held = next(j for j in r.jobs if j.api_calls == 0)
    up = await run_check(given, "DE-1", True, ssl_contexts, clock=WALL)
    assert (up.status, up.error_kind) == ("up", None), up.message
    assert len(graph.calls) == 2
    throttled = await run_check(held, "DE-2", True, ssl_contexts, clock=WALL)
    assert (throttled.status, throttled.error_kind) == ("inconclusive", "inconclusive")
    assert "throttled, not sent" in (throttled.message or "")
    assert len(graph.calls) == 2
