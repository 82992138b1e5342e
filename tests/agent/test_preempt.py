"""A `Preempt` request on `mon.control.CC.<agentId>` cancels exactly one check of the tenant it
names, its longest-running one, at the agent it names: the check's connection is closed, its
result `down` / `preempted` with the readable message is published, its job acked, and the slot
is free for the next job. Real NATS, a real server that accepts and never greets."""

import asyncio
import re
import time

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.probers.tls import SslContexts
from shared.messages import AGENT_FEATURES, FEATURE_PREEMPT, FEATURE_PREEMPT_CARRY, Preempt, encode
from shared.streams import jobs_consumer_config
from shared.subjects import JOBS_STREAM, control_subject, jobs_subject
from testkit.campaigns.saturation import Tarpit
from tests.agent.helpers import (
    capture,
    closed_port,
    job_for,
    publish_job,
    results,
    unacked,
    until,
    until_async,
    worker,
)

CANCELLED_AFTER = re.compile(r"cancelled after (?P<s>\d+) s so another organization could ")


async def test_a_preempt_request_cancels_the_named_tenants_longest_running_check(
    nc: NATS, js: JetStreamContext, country: str, ssl_contexts: SslContexts
) -> None:
    assert FEATURE_PREEMPT in AGENT_FEATURES  # what the heartbeat announces
    await js.add_consumer(JOBS_STREAM, jobs_consumer_config(country))
    w = worker(nc, country, ssl_contexts, concurrency=3, lookahead=0)
    run = asyncio.create_task(w.run())
    try:
        async with Tarpit() as tarpit:
            first = job_for(country, tarpit.port, tenant="noisy", timeout_seconds=30)
            published = time.monotonic()  # the first check starts after this
            await publish_job(js, first)
            await until(lambda: w.held_by_tenant.get("noisy") == 1)
            await until(lambda: len(tarpit._held) == 1)
            running = time.monotonic()  # and before this: it connected
            await asyncio.sleep(0.3)  # the first is the longest running by 0.3 s
            second = job_for(country, tarpit.port, tenant="noisy", timeout_seconds=30)
            other = job_for(country, tarpit.port, tenant="other", timeout_seconds=30)
            await publish_job(js, second)
            await publish_job(js, other)
            await until(lambda: w.held_by_tenant == {"noisy": 2, "other": 1})
            await until(lambda: len(tarpit._held) == 3)
            request = Preempt(
                country=country, agent_id=w.agent_id, tenant="noisy", held=2, share=1.5, capacity=3
            )
            with capture() as logs:
                asked = time.monotonic()  # it is cancelled after this
                await nc.publish(control_subject(country, w.agent_id), encode(request))
                # one for another agent, and one that is no request: neither cancels anything
                await nc.publish(control_subject(country, "elsewhere"), encode(request))
                await nc.publish(control_subject(country, w.agent_id), b"{not json")
                await until_async(lambda: _has_result(js, country, first.job_id))
                seen = time.monotonic()  # and before this
            await until(lambda: w.held_by_tenant == {"noisy": 1, "other": 1})
            await until(lambda: len(tarpit._held) == 2)  # its connection was closed
            [result] = [r for r in await results(js, country) if r.job_id == first.job_id]
            assert (result.status, result.error_kind, result.agent_id) == (
                "down",
                "preempted",
                w.agent_id,
            )
            # The seconds it ran, rounded, between what this test saw of its start and its end
            # (a loaded machine's loop makes them more than 0).
            ran = CANCELLED_AFTER.match(result.message)
            assert ran is not None, result.message
            assert round(asked - running) <= int(ran["s"]) <= round(seen - published), (
                result.message,
                asked - running,
                seen - published,
            )
            assert f"fair share of {country}'s slots: your organization held 2, its share 1.5" in (
                result.message
            )
            assert [r.job_id for r in await results(js, country)] == [first.job_id]
            assert await unacked(js, country) == (0, 2)  # the first is acked, not redelivered
            [line] = [e for e in logs if e["event"] == "check" and e["job_id"] == first.job_id]
            assert (line["error_kind"], line["outcome"]) == ("preempted", "acked")
            assert [e["event"] for e in logs if e["event"].startswith("control")] == [
                "control_malformed"
            ]
            # The slot is free: the next job runs at once.
            third = job_for(country, tarpit.port, tenant="other", timeout_seconds=30)
            await publish_job(js, third)
            await until(lambda: w.held_by_tenant == {"noisy": 1, "other": 2})
            # A tenant with no check running here: nothing is cancelled.
            w.preempt(
                Preempt(country=country, agent_id=w.agent_id, tenant="absent", held=1, share=1.0)
            )
            await asyncio.sleep(0.2)
            assert w.held_by_tenant == {"noisy": 1, "other": 2}
    finally:
        w.stop()
        await run


async def _has_result(js: JetStreamContext, country: str, job_id: str) -> bool:
    return any(r.job_id == job_id for r in await results(js, country))


async def test_a_preempt_carrying_a_job_runs_it_in_the_freed_slot_before_any_pulled_job(
    nc: NATS, js: JetStreamContext, country: str, ssl_contexts: SslContexts
) -> None:
    """One slot, held by Noisy's hanging check, and another Noisy job admitted earlier waiting
    unpulled in JOBS: the `Preempt` carrying the waiting job cancels the check, and the freed
    slot runs the carried job (its result published under its own job id), not the JOBS one,
    which is pulled only once the carried job's slot is free again."""
    assert FEATURE_PREEMPT_CARRY in AGENT_FEATURES
    await js.add_consumer(JOBS_STREAM, jobs_consumer_config(country))
    w = worker(nc, country, ssl_contexts, concurrency=1, lookahead=0)
    run = asyncio.create_task(w.run())
    try:
        async with Tarpit() as tarpit:
            hanging = job_for(country, tarpit.port, tenant="noisy", timeout_seconds=30)
            await publish_job(js, hanging)
            await until(lambda: w.held_by_tenant == {"noisy": 1})
            await until(lambda: len(tarpit._held) == 1)
            queued = job_for(country, tarpit.port, tenant="noisy", timeout_seconds=30)
            await publish_job(js, queued)
            await asyncio.sleep(0.3)
            assert await unacked(js, country) == (1, 1)  # the queued one sits in JOBS
            carried = job_for(country, closed_port(), tenant="victim", timeout_seconds=5)
            request = Preempt(
                country=country,
                agent_id=w.agent_id,
                tenant="noisy",
                held=1,
                share=0.5,
                capacity=1,
                job=carried,
            )
            with capture() as logs:
                await nc.publish(control_subject(country, w.agent_id), encode(request))
                await until_async(lambda: _has_result(js, country, carried.job_id))
                # Only then is the queued job pulled, into the slot the carried job freed.
                await until(lambda: w.held_by_tenant == {"noisy": 1})
                await until(lambda: len(tarpit._held) == 1)
            got = {r.job_id: r for r in await results(js, country)}
            assert set(got) == {hanging.job_id, carried.job_id}
            assert (got[hanging.job_id].error_kind, got[carried.job_id].agent_id) == (
                "preempted",
                w.agent_id,
            )
            assert got[carried.job_id].status == "down"  # the closed port, really checked
            checks = [e for e in logs if e["event"] == "check"]
            assert [(e["job_id"], e["carried"]) for e in checks] == [
                (hanging.job_id, False),
                (carried.job_id, True),
            ]
            assert await unacked(js, country) == (0, 1)  # the queued one, running now
            # The carried job was never in JOBS: it cannot run twice.
            jobs = await js.stream_info(JOBS_STREAM, subjects_filter=jobs_subject(country))
            assert (jobs.state.subjects or {}).get(jobs_subject(country)) == 2
    finally:
        w.stop()
        await run


async def test_a_carried_job_runs_even_when_nothing_is_cancelled(
    nc: NATS, js: JetStreamContext, country: str, ssl_contexts: SslContexts
) -> None:
    """A `Preempt` naming a tenant with no check here (a stale view) still runs the job it
    carries: in a free slot at once, else in the next slot to free, ahead of pulled jobs."""
    await js.add_consumer(JOBS_STREAM, jobs_consumer_config(country))
    w = worker(nc, country, ssl_contexts, concurrency=1, lookahead=0)
    run = asyncio.create_task(w.run())
    try:
        carried = job_for(country, closed_port(), tenant="victim", timeout_seconds=5)
        request = Preempt(
            country=country, agent_id=w.agent_id, tenant="absent", held=1, share=0.5, job=carried
        )
        await until(lambda: w.readiness() is None)
        await asyncio.sleep(0.2)  # subscribed to its control subject
        await nc.publish(control_subject(country, w.agent_id), encode(request))
        await until_async(lambda: _has_result(js, country, carried.job_id))
        [result] = await results(js, country)
        assert (result.job_id, result.status) == (carried.job_id, "down")
    finally:
        w.stop()
        await run
