"""A job that asks an agent to leave it to another (`avoidAgents`: the agent whose check failed,
on a confirmation round) goes to another agent of the country; with no other agent there, the
listed one runs it after a few short hand-backs, so the country still answers."""

import asyncio

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.probers.tls import SslContexts
from agent.selfcheck_rules import HAND_OVER_TRIES
from tests.agent.helpers import (
    SmtpLikePeer,
    capture,
    job_for,
    jobs_left,
    publish_job,
    result_count,
    results,
    until_async,
    worker,
)


async def test_a_job_avoiding_an_agent_is_run_by_another_agent_of_the_country(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """Which waiting agent JetStream hands a redelivery to is the server's choice: the listed
    agent never runs a job before its last hand-back, and the other agent runs most of them."""
    # Fetches as long as deployed agents' (1 s): idle agents keep a pull request waiting.
    a = worker(nc, country, ssl_contexts, fetch_timeout=1.0)
    b = worker(nc, country, ssl_contexts, fetch_timeout=1.0)
    with capture() as logs:
        runs = [asyncio.create_task(w.run()) for w in (a, b)]
        try:
            async with SmtpLikePeer() as peer:
                jobs = [job_for(country, peer.port, avoid_agents=[a.agent_id]) for _ in range(5)]
                for job in jobs:
                    await publish_job(js, job)
                await until_async(lambda: result_count(js, country, 5), within=10)
        finally:
            for w in (a, b):
                w.stop()
            await asyncio.gather(*runs)
    found = await results(js, country)
    assert sorted(r.job_id for r in found) == sorted(j.job_id for j in jobs)
    assert sum(r.agent_id == b.agent_id for r in found) >= 3
    checks = [e for e in logs if e["event"] == "check"]
    assert all(e["attempt"] == HAND_OVER_TRIES for e in checks if e["agent_id"] == a.agent_id)
    assert await jobs_left(js, country) == 0


async def test_the_only_agent_of_the_country_runs_a_job_that_avoids_it(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    a = worker(nc, country, ssl_contexts)
    run = asyncio.create_task(a.run())
    try:
        async with SmtpLikePeer() as peer:
            job = job_for(country, peer.port, avoid_agents=[a.agent_id])
            await publish_job(js, job)
            await until_async(lambda: result_count(js, country, 1), within=5)
    finally:
        a.stop()
        await run
    (result,) = await results(js, country)
    assert (result.job_id, result.agent_id, result.status) == (job.job_id, a.agent_id, "up")
