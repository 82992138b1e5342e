"""The worker shares its slots fairly between tenants (issue 22), against the real NATS server
and loopback peers: one tenant's long checks at a server that accepts and never greets hold
at most its share of the slots while another tenant's jobs wait, and those run on time."""

import asyncio

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.probers.tls import SslContexts
from shared.streams import jobs_consumer_name
from shared.subjects import JOBS_STREAM
from tests.agent.helpers import (
    SmtpLikePeer,
    job_for,
    jobs_left,
    publish_job,
    result_count,
    results,
    until,
    until_async,
    worker,
)

FLOOD, OTHER = "tenant-flood", "tenant-other"


async def test_a_flood_of_long_checks_holds_at_most_its_share_and_others_run_on_time(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """6 jobs at a server that never greets (4 s timeout), published first, then 2 of another
    tenant that expire in 2 s, for 4 slots. First come first served ran 4 of the flood and
    the others expired behind them; now the flood holds at most 2 (AGENT_TENANT_SLOT_SHARE
    0.5) while the other tenant has jobs waiting, those run at once and are up, and once they
    are done the flood, alone, uses all 4 slots. The jobs may reach the worker in more than
    one take: checks the flood started before the other tenant's jobs arrived keep running,
    and from then on it starts none while it holds its share or more."""
    async with SmtpLikePeer(delay=60) as silent, SmtpLikePeer() as answering:
        flood = [job_for(country, silent.port, timeout=4.0, tenant=FLOOD) for _ in range(6)]
        other = [job_for(country, answering.port, expires_in=2.0, tenant=OTHER) for _ in range(2)]
        for job in (*flood, *other):
            await publish_job(js, job)
        w = worker(nc, country, ssl_contexts, concurrency=4, shutdown_grace=0)
        run = asyncio.create_task(w.run())
        most_while_others_wait = 0
        held_when_others_came: int | None = None
        deadline = asyncio.get_running_loop().time() + 3
        try:
            # until the other tenant's checks have been made and settled
            while answering.connections < 2 or OTHER in w.held_by_tenant:
                held, waiting = w.held_by_tenant, w.waiting_by_tenant
                if waiting.get(OTHER):
                    if held_when_others_came is None:
                        held_when_others_came = held.get(FLOOD, 0)
                    most_while_others_wait = max(most_while_others_wait, held.get(FLOOD, 0))
                assert w.in_flight <= 4
                assert asyncio.get_running_loop().time() < deadline, "the other tenant waited"
                await asyncio.sleep(0.005)
            await until_async(lambda: result_count(js, country, 2))
            await until(lambda: w.held_by_tenant == {FLOOD: 4}, within=3)
        finally:
            w.stop()
            await asyncio.wait_for(run, 5)
    found = await results(js, country)
    assert {r.job_id for r in found} == {j.job_id for j in other}
    assert [(r.status, r.error_kind) for r in found] == [("up", None)] * 2
    # A flood holding every slot when they came would have made them wait past the deadline.
    assert most_while_others_wait <= max(2, held_when_others_came or 0)
    assert await jobs_left(js, country) == 6  # the flood's, handed back on stop


async def test_a_lone_tenant_uses_every_slot(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """The cap binds only while another tenant waits: alone, one tenant's 4 long checks run
    at once on 4 slots."""
    async with SmtpLikePeer(delay=60) as silent:
        for _ in range(5):
            await publish_job(js, job_for(country, silent.port, timeout=4.0, tenant=FLOOD))
        w = worker(nc, country, ssl_contexts, concurrency=4, shutdown_grace=0)
        run = asyncio.create_task(w.run())
        try:
            await until(lambda: w.held_by_tenant == {FLOOD: 4}, within=3)
            assert w.waiting_by_tenant == {FLOOD: 1}
        finally:
            w.stop()
            await asyncio.wait_for(run, 5)
    assert await jobs_left(js, country) == 5


async def test_jobs_pulled_ahead_are_run_once_or_handed_back_on_stop(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """Jobs taken beyond the free slots to see other tenants' are never lost nor run twice:
    stopped mid-way, the worker finishes what runs and hands back what waits; another
    worker runs the rest, one result per job, and the stream ends empty."""
    async with SmtpLikePeer(delay=0.3) as peer:
        jobs = [job_for(country, peer.port, tenant=FLOOD) for _ in range(6)]
        jobs += [job_for(country, peer.port, tenant=OTHER) for _ in range(3)]
        for job in jobs:
            await publish_job(js, job)
        first = worker(nc, country, ssl_contexts, concurrency=2)
        run = asyncio.create_task(first.run())
        await until(lambda: first.waiting > 0 and first.in_flight == 2)
        first.stop()
        await asyncio.wait_for(run, 5)
        done = len(await results(js, country))
        assert 2 <= done < 9
        second = worker(nc, country, ssl_contexts, concurrency=2)
        await asyncio.wait_for(second.run(burst=True), 15)
        await until_async(lambda: result_count(js, country, 9))
    found = await results(js, country)
    assert sorted(r.job_id for r in found) == sorted(j.job_id for j in jobs)
    assert all(r.status == "up" for r in found)
    assert await jobs_left(js, country) == 0


async def _pulls(js: JetStreamContext, country: str, n: int) -> bool:
    """Whether `n` pull requests wait at the country's consumer."""
    info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name(country))
    return (info.num_waiting or 0) == n


async def test_an_admitted_job_goes_to_the_agent_with_a_free_slot_not_into_a_full_ones_lookahead(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """Two agents of a country, lookahead 8 each. Agent A's 2 slots hold checks at a server
    that never greets; agent B is idle. A job the controller published `admitted` (for a free
    slot of the country, B's) must run on B at once: A, having taken admitted jobs, pulls for
    its free slots only, so it never holds the job in its lookahead behind its hanging checks.
    Without the rule A's standing pull takes it half the time, and it waits there."""
    async with SmtpLikePeer(delay=60) as silent, SmtpLikePeer() as answering:
        a = worker(nc, country, ssl_contexts, concurrency=2, lookahead=8, shutdown_grace=0)
        b = worker(nc, country, ssl_contexts, concurrency=2, lookahead=8, shutdown_grace=0)
        run_a = asyncio.create_task(a.run())
        try:
            for _ in range(2):
                hang = job_for(country, silent.port, timeout=20.0, tenant=FLOOD)
                hang.admitted = True
                await publish_job(js, hang)
            await until(lambda: a.held_by_tenant == {FLOOD: 2}, within=3)
            # A full: no pull request of A's left open (it pulls for free slots only), then
            # B's open.
            await until_async(lambda: _pulls(js, country, 0), within=10)
            run_b = asyncio.create_task(b.run())
            await until_async(lambda: _pulls(js, country, 1), within=10)
            for _ in range(4):
                quick = job_for(country, answering.port, expires_in=3.0, tenant=OTHER)
                quick.admitted = True
                await publish_job(js, quick)
                await asyncio.sleep(0.3)
            await until_async(lambda: result_count(js, country, 4), within=4)
            assert a.waiting == 0, "a full agent held an admitted job in its lookahead"
            assert answering.connections == 4
            assert {r.status for r in await results(js, country)} == {"up"}
        finally:
            a.stop()
            b.stop()
        await asyncio.gather(run_a, run_b)
