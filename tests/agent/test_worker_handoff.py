"""A check is over when its result is handed to the Outbox (agent.handoff), and its job is acked
only once RESULTS stored that result: against the real NATS server, with the worker's own
connection going through `ResultsGate`, which holds its publishes to RESULTS while closed (RESULTS
unable to store) and lets its pulls, acks and `in_progress` through."""

import asyncio

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.handoff import HANDOFF_MIN_BYTES, Held, Limits
from agent.probers.tls import SslContexts
from agent.worker import Worker
from shared.streams import jobs_consumer_name
from shared.subjects import JOBS_STREAM
from tests.agent.faults import ResultsGate
from tests.agent.helpers import (
    SmtpLikePeer,
    capture,
    job_for,
    jobs_left,
    publish_job,
    result_count,
    results,
    settled,
    unacked,
    until,
    until_async,
    worker,
)

TENANT, FLOOD, VICTIM = "tenant-one", "tenant-flood", "tenant-victim"
# Long enough that a result held at the gate is waited for, not given up, in these tests.
PUBLISH_TIMEOUT_S = 60.0


async def stopped(w: Worker, run: asyncio.Task[None]) -> None:
    w.stop()
    await asyncio.wait_for(run, 10)


async def test_a_check_waiting_for_its_store_holds_no_slot_nor_load_and_its_job_stays_unacked(
    js: JetStreamContext,
    gated_nc: NATS,
    gate: ResultsGate,
    country: str,
    ssl_contexts: SslContexts,
) -> None:
    """One slot: the first check's result waits at the gate, its job delivered and unacked,
    while the slot, the tenant's share and its load in the heartbeat are free: a second job
    runs in that slot. Once RESULTS takes them, both results are stored and both jobs acked."""
    gate.close()
    async with SmtpLikePeer() as peer:
        first = job_for(country, peer.port, tenant=TENANT)
        await publish_job(js, first)
        w = worker(
            gated_nc,
            country,
            ssl_contexts,
            concurrency=1,
            lookahead=0,
            publish_timeout=PUBLISH_TIMEOUT_S,
        )
        run = asyncio.create_task(w.run())
        try:
            await until(lambda: w.storing == 1, within=10)
            assert (w.in_flight, w.held_by_tenant) == (0, {})
            loads = {load.tenant: load.held for load in w.tenant_loads()}
            assert loads.get(TENANT, 0) == 0
            assert await unacked(js, country) == (0, 1)
            second = job_for(country, peer.port, tenant=TENANT)
            await publish_job(js, second)
            await until(lambda: w.storing == 2, within=10)
            assert peer.connections == 2
            assert await unacked(js, country) == (0, 2)
            assert await results(js, country) == []
            gate.open()
            await until_async(lambda: result_count(js, country, 2), within=10)
            await until_async(lambda: settled(js, country), within=10)
        finally:
            await stopped(w, run)
    assert {r.job_id for r in await results(js, country)} == {first.job_id, second.job_id}


async def test_with_results_unable_to_store_the_handoff_bound_stops_intake_and_nothing_is_lost(
    js: JetStreamContext,
    gated_nc: NATS,
    gate: ResultsGate,
    country: str,
    ssl_contexts: SslContexts,
) -> None:
    """RESULTS takes nothing: 3 results fill the hand-off, the next 2 finished checks keep their
    2 slots waiting for room, 2 jobs wait for a slot (lookahead), and the agent takes no more
    of the 20 jobs (2 + 2 + 3 held). Once RESULTS takes them again, all 20 are stored once and
    every job is acked."""
    gate.close()
    async with SmtpLikePeer() as peer:
        jobs = [job_for(country, peer.port, tenant=TENANT) for _ in range(20)]
        for job in jobs:
            await publish_job(js, job)
        w = worker(
            gated_nc,
            country,
            ssl_contexts,
            concurrency=2,
            lookahead=2,
            publish_timeout=PUBLISH_TIMEOUT_S,
            handoff=Limits(3, HANDOFF_MIN_BYTES, 1.0),
        )
        run = asyncio.create_task(w.run())
        try:
            await until(
                lambda: (w.storing, w.handoff.waiting, w.in_flight, w.waiting) == (3, 2, 2, 2),
                within=10,
            )
            assert w.handoff.held == Held(3, w.handoff.held.bytes)
            assert peer.connections == 5  # 3 in the hand-off, 2 waiting for room in their slot
            assert await unacked(js, country) == (13, 7)
            await asyncio.sleep(1.0)  # five fetch timeouts: it would have pulled by now
            assert await unacked(js, country) == (13, 7)
            assert peer.connections == 5
            gate.open()
            await until_async(lambda: result_count(js, country, 20), within=20)
            await until_async(lambda: settled(js, country), within=10)
        finally:
            await stopped(w, run)
    found = await results(js, country)
    assert sorted(r.job_id for r in found) == sorted(j.job_id for j in jobs)
    assert peer.connections == 20  # each job ran once
    assert w.handoff.held == Held()


async def test_one_organization_cannot_fill_the_handoff(
    js: JetStreamContext,
    gated_nc: NATS,
    gate: ResultsGate,
    country: str,
    ssl_contexts: SslContexts,
) -> None:
    """An attacker: one organization's 12 instant checks beside another's 2 that answer after
    0.5 s, RESULTS taking nothing. The hand-off has room for 4 results; the flood holds at most
    its half of it however fast its checks end, so the other organization's results enter when
    their checks end (the flood's waiting in their slots); all 14 are stored once RESULTS
    takes them again."""
    gate.close()
    async with SmtpLikePeer() as instant, SmtpLikePeer(delay=0.5) as slow:
        victim = [job_for(country, slow.port, tenant=VICTIM) for _ in range(2)]
        flood = [job_for(country, instant.port, tenant=FLOOD) for _ in range(12)]
        for job in (*victim, *flood):
            await publish_job(js, job)
        w = worker(
            gated_nc,
            country,
            ssl_contexts,
            concurrency=4,
            publish_timeout=PUBLISH_TIMEOUT_S,
            handoff=Limits(4, HANDOFF_MIN_BYTES, 0.5),
        )
        run = asyncio.create_task(w.run())
        most_of_flood = 0

        def victims_in() -> bool:
            nonlocal most_of_flood
            held = w.handoff.held_by_tenant()
            most_of_flood = max(most_of_flood, held.get(FLOOD, Held()).results)
            return held.get(VICTIM, Held()).results == 2

        try:
            await until(victims_in, within=10)
            assert most_of_flood <= 2
            assert w.handoff.held.results == 4
            gate.open()
            await until_async(lambda: result_count(js, country, 14), within=20)
            await until_async(lambda: settled(js, country), within=10)
        finally:
            await stopped(w, run)
    found = await results(js, country)
    assert sorted(r.job_id for r in found) == sorted(j.job_id for j in (*victim, *flood))


async def test_a_job_waiting_for_its_store_is_kept_in_progress_past_the_ack_wait(
    js: JetStreamContext,
    gated_nc: NATS,
    gate: ResultsGate,
    country: str,
    ssl_contexts: SslContexts,
) -> None:
    """Ack wait 1 s, the result held at the gate for 3 s: the job is not redelivered (the agent,
    its slot free, would pull and run it again), and is acked once its result is stored."""
    gate.close()
    async with SmtpLikePeer() as peer:
        job = job_for(country, peer.port, tenant=TENANT)
        await publish_job(js, job)
        w = worker(gated_nc, country, ssl_contexts, ack_wait=1.0, publish_timeout=PUBLISH_TIMEOUT_S)
        run = asyncio.create_task(w.run())
        try:
            await until(lambda: w.storing == 1, within=10)
            await asyncio.sleep(3.0)  # three ack waits
            info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name(country))
            assert (info.num_redelivered, info.num_ack_pending, peer.connections) == (0, 1, 1)
            gate.open()
            await until_async(lambda: result_count(js, country, 1), within=10)
            await until_async(lambda: settled(js, country), within=10)
        finally:
            await stopped(w, run)
    assert [r.job_id for r in await results(js, country)] == [job.job_id]


async def test_a_stop_hands_back_a_job_whose_result_was_not_stored_within_the_grace(
    js: JetStreamContext,
    nc: NATS,
    gated_nc: NATS,
    gate: ResultsGate,
    country: str,
    ssl_contexts: SslContexts,
) -> None:
    """The agent stops while its one result waits at the gate: after the grace the job goes
    back (nak), not acked; another agent runs it and its result is stored."""
    gate.close()
    async with SmtpLikePeer() as peer:
        job = job_for(country, peer.port, tenant=TENANT)
        await publish_job(js, job)
        w = worker(
            gated_nc, country, ssl_contexts, shutdown_grace=0.3, publish_timeout=PUBLISH_TIMEOUT_S
        )
        run = asyncio.create_task(w.run())
        await until(lambda: w.storing == 1, within=10)
        with capture() as logs:
            await stopped(w, run)
        assert [e["handed_back"] for e in logs if e["event"] == "shutdown_grace_exceeded"] == [1]
        assert await jobs_left(js, country) == 1
        other = worker(nc, country, ssl_contexts, publish_timeout=PUBLISH_TIMEOUT_S)
        await asyncio.wait_for(other.run(burst=True), 20)
    assert [r.job_id for r in await results(js, country)] == [job.job_id]
    assert peer.connections == 2
