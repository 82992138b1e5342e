"""What operators see of the hand-off (agent.handoff, agent.metrics, `/ready`), against the real
NATS server with the worker's connection going through `ResultsGate`, which holds its publishes
to RESULTS while closed. The figures are checked against what the harness counts: checks the
peer saw end, results and their sizes as RESULTS stored them, jobs left on JOBS."""

import asyncio
import contextlib
import itertools
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from agent import ops
from agent.handoff import HANDOFF_MIN_BYTES, Limits
from agent.probers.tls import SslContexts
from agent.worker import Worker
from shared.messages import Preempt
from shared.subjects import RESULTS_STREAM, results_country_filter
from testkit.campaigns.saturation import Tarpit
from testkit.serving import http_client
from tests.agent.faults import LimitedSmtpPeer, ResultsGate
from tests.agent.helpers import (
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

TENANT = "tenant-one"
# Long enough that a result held at the gate is waited for, not given up, in these tests.
PUBLISH_TIMEOUT_S = 60.0
# Checks waiting for room this long make the agent not ready (HANDOFF_STALLED_S in production).
STALLED_AFTER_S = 0.3


def sample(name: str, country: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"country": country, **labels}) or 0.0


def held(country: str) -> tuple[float, float, float]:
    """(results in the hand-off, their bytes, checks waiting for room) as exported."""
    return (
        sample("mailprobe_agent_handoff_results", country),
        sample("mailprobe_agent_handoff_bytes", country),
        sample("mailprobe_agent_handoff_waiting", country),
    )


def counted(country: str) -> tuple[float, float, float]:
    """(results entered, waits ended, seconds waited) as exported."""
    return (
        sample("mailprobe_agent_handoff_entered_total", country),
        sample("mailprobe_agent_handoff_wait_seconds_count", country),
        sample("mailprobe_agent_handoff_wait_seconds_sum", country),
    )


def counted_since(before: tuple[float, float, float], country: str) -> tuple[float, ...]:
    return tuple(after - was for after, was in zip(counted(country), before, strict=True))


def gated_worker(
    nc: NATS, country: str, contexts: SslContexts, results_held: int, **options: Any
) -> Worker:
    """Two slots, no job pulled beyond them, room for `results_held` results."""
    defaults: dict[str, Any] = {
        "concurrency": 2,
        "lookahead": 0,
        "publish_timeout": PUBLISH_TIMEOUT_S,
        "handoff": Limits(results_held, HANDOFF_MIN_BYTES, 1.0),
        "handoff_stalled_after": STALLED_AFTER_S,
    }
    return worker(nc, country, contexts, **{**defaults, **options})


async def stored_sizes(js: JetStreamContext, country: str) -> list[int]:
    """The size of each result RESULTS stored for `country`, as published."""
    sub = await js.pull_subscribe(results_country_filter(country), stream=RESULTS_STREAM)
    try:
        pending = (await sub.consumer_info()).num_pending or 0
        return [len(msg.data) for msg in await sub.fetch(pending, timeout=2)]
    finally:
        await sub.unsubscribe()


async def test_the_gauges_rise_while_results_is_held_and_fall_to_zero_once_it_stores(
    js: JetStreamContext,
    gated_nc: NATS,
    gate: ResultsGate,
    country: str,
    ssl_contexts: SslContexts,
) -> None:
    """RESULTS takes nothing; room for 3 results, 2 slots, 7 jobs. Of the 5 checks the peer saw
    end (none stored), the hand-off holds 3, whose bytes are 3 of the results as RESULTS later
    stores them, and exactly 2 wait for room, the two slots with them: `/ready` says so once
    they waited past the bound. Once RESULTS stores, all 7 results entered, once each, and
    the gauges are back at zero; the two that waited waited at least as long as the gate was
    seen closed with them waiting."""
    gate.close()
    before = counted(country)
    loop = asyncio.get_running_loop()
    async with LimitedSmtpPeer(slots=10, hold=0) as peer:
        jobs = [job_for(country, peer.port, tenant=TENANT) for _ in range(7)]
        for job in jobs:
            await publish_job(js, job)
        w = gated_worker(gated_nc, country, ssl_contexts, results_held=3)
        run = asyncio.create_task(w.run())
        try:

            def ended() -> int:
                return peer.connections - peer.open

            await until(
                lambda: (ended(), held(country)[0], held(country)[2]) == (5, 3, 2), within=10
            )
            seen_waiting = loop.time()
            await until(lambda: "hand-off" in (w.readiness() or ""), within=10)
            assert "waited for room in the hand-off" in str(w.readiness())
            assert (ended(), peer.connections) == (5, 5)  # no job taken meanwhile
            results_in, bytes_in, waiting = held(country)
            assert (results_in, waiting) == (3, 2)
            assert await unacked(js, country) == (2, 5)
            server = await ops.start("127.0.0.1", 0, w.readiness)
            assert server is not None
            port = server.sockets[0].getsockname()[1]
            try:
                async with http_client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                    ready = await client.get("/ready")
                    metrics = (await client.get("/metrics")).text
            finally:
                server.close()
                await server.wait_closed()
            assert ready.status_code == 503
            assert "2 now, each holding its slot" in ready.json()["reason"]
            assert f'mailprobe_agent_handoff_waiting{{country="{country}"}} 2.0' in metrics
            opened = loop.time()
            gate.open()
            await until_async(lambda: result_count(js, country, 7), within=20)
            await until_async(lambda: settled(js, country), within=10)
            await until(lambda: w.readiness() is None, within=10)
        finally:
            w.stop()
            await asyncio.wait_for(run, 10)
    sizes = await stored_sizes(js, country)
    assert bytes_in in {sum(three) for three in itertools.combinations(sizes, 3)}
    assert sorted(r.job_id for r in await results(js, country)) == sorted(j.job_id for j in jobs)
    assert held(country) == (0, 0, 0)
    entered, waits, waited = counted_since(before, country)
    assert entered == 7
    assert waits >= 2
    assert waited >= 2 * (opened - seen_waiting) - 0.01
    bounds = (
        sample("mailprobe_agent_handoff_max_results", country),
        sample("mailprobe_agent_handoff_max_bytes", country),
    )
    assert bounds == (3, HANDOFF_MIN_BYTES)


async def test_a_stall_whose_stores_time_out_makes_the_agent_not_ready_though_no_wait_is_long(
    js: JetStreamContext,
    gated_nc: NATS,
    gate: ResultsGate,
    country: str,
    ssl_contexts: SslContexts,
) -> None:
    """RESULTS takes nothing and the agent gives each store up after 0.3 s: the results leave
    together, let the waiting checks in, and the next checks wait again, so no check waits
    long (every wait ended within 1 s) and none is stored. Their waits, one after the other,
    still make the agent not ready after 2 s."""
    gate.close()
    before = counted(country)
    async with LimitedSmtpPeer(slots=10, hold=0) as peer:
        for _ in range(30):
            await publish_job(js, job_for(country, peer.port, tenant=TENANT))
        w = gated_worker(
            gated_nc,
            country,
            ssl_contexts,
            results_held=2,
            publish_timeout=0.3,
            handoff_stalled_after=2.0,
        )
        run = asyncio.create_task(w.run())
        try:
            await until(lambda: "hand-off" in (w.readiness() or ""), within=20)
            _, waits, _ = counted_since(before, country)
            quick = sample("mailprobe_agent_handoff_wait_seconds_bucket", country, le="1.0")
            checks = peer.connections
        finally:
            w.stop()
            await asyncio.wait_for(run, 10)
    assert waits >= 2 and quick == waits  # earlier waits ended, each within 1 s
    assert checks > 4  # more than 2 slots and 2 places: results left without a store
    assert await results(js, country) == []
    assert await jobs_left(js, country) == 30  # none acked
    assert held(country) == (0, 0, 0)


@pytest.mark.parametrize("how", ["stop", "cancel"])
async def test_checks_cancelled_while_waiting_for_room_leave_the_gauges_at_zero(
    js: JetStreamContext,
    gated_nc: NATS,
    gate: ResultsGate,
    country: str,
    ssl_contexts: SslContexts,
    how: str,
) -> None:
    """Room for 1 result, 2 slots, 3 jobs, RESULTS taking nothing: 1 result held, 2 checks
    waiting for room. A stop whose grace runs out (`stop`), or the agent's task cancelled
    (`cancel`, a hard kill), cancels them: every gauge is back at zero, the two waits are
    counted once each and no result entered beyond the first; a stop hands all 3 jobs back."""
    gate.close()
    before = counted(country)
    async with LimitedSmtpPeer(slots=10, hold=0) as peer:
        for _ in range(3):
            await publish_job(js, job_for(country, peer.port, tenant=TENANT))
        w = gated_worker(gated_nc, country, ssl_contexts, results_held=1, shutdown_grace=0.2)
        run = asyncio.create_task(w.run())
        await until(
            lambda: (peer.connections - peer.open, held(country)[0], held(country)[2]) == (3, 1, 2),
            within=10,
        )
        if how == "stop":
            w.stop()
            await asyncio.wait_for(run, 10)
            assert await jobs_left(js, country) == 3
        else:
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
            await until(lambda: held(country) == (0, 0, 0), within=10)
    assert held(country) == (0, 0, 0)
    entered, waits, _ = counted_since(before, country)
    assert (entered, waits) == (1, 2)
    assert w.readiness() is not None  # stopping, never the hand-off's
    assert "hand-off" not in str(w.readiness())


async def test_a_preempted_check_waits_for_room_like_any_and_a_later_preempt_finds_none(
    js: JetStreamContext,
    gated_nc: NATS,
    gate: ResultsGate,
    country: str,
    ssl_contexts: SslContexts,
) -> None:
    """Room for 1 result: the first check's is held at the gate; the second, at a server that
    never greets, is preempted, and its `preempted` result waits for room in its slot (its
    connection closed, the tarpit says). A second request for the organization finds no check
    to cancel: a check waiting for room is over. Both results are stored once RESULTS takes
    them again, and the gauges are back at zero."""
    gate.close()
    before = counted(country)
    async with LimitedSmtpPeer(slots=10, hold=0) as peer, Tarpit() as tarpit:
        fast = job_for(country, peer.port, tenant=TENANT)
        slow = job_for(country, tarpit.port, tenant=TENANT, timeout_seconds=30)
        w = gated_worker(gated_nc, country, ssl_contexts, results_held=1)
        run = asyncio.create_task(w.run())
        try:
            await publish_job(js, fast)
            await until(
                lambda: held(country)[0] == 1 and peer.connections - peer.open == 1, within=10
            )
            await publish_job(js, slow)
            await until(lambda: len(tarpit._held) == 1, within=10)
            request = Preempt(
                country=country, agent_id=w.agent_id, tenant=TENANT, held=1, share=0.5
            )
            assert w.preempt(request)
            await until(lambda: not tarpit._held and held(country)[2] == 1, within=10)
            assert not w.preempt(request)
            assert (held(country)[0], held(country)[2], len(tarpit._held)) == (1, 1, 0)
            gate.open()
            await until_async(lambda: result_count(js, country, 2), within=20)
            await until_async(lambda: settled(js, country), within=10)
        finally:
            w.stop()
            await asyncio.wait_for(run, 10)
    kinds = {r.job_id: r.error_kind for r in await results(js, country)}
    assert kinds == {fast.job_id: None, slow.job_id: "preempted"}
    assert held(country) == (0, 0, 0)
    entered, waits, _ = counted_since(before, country)
    assert (entered, waits) == (2, 1)
