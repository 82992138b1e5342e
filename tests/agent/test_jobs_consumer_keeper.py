"""`jobs-CC` only for the countries in use (issue 57: every consumer is a Raft group on a
cluster, and one per country the product knows cost a 3-node cluster most of its idle CPU).

Under deploy/'s accounts, where an agent may not create its consumer: the controller's keeper
(shared.streams.JobsConsumers fed by the live agents' view) writes none for a country without
agents, gives an existing one of an older version its idle time, and writes a country's
consumer once its first agent's heartbeat arrives; that agent, started with no consumer to
bind to, waits and runs its job. JetStream removes a consumer nobody pulls from after the idle
time, and the keeper writes it again when the country is back in use."""

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from agent.probers.tls import SslContexts
from controller.fleet.live import LiveAgents
from deploy.nats_conf import CONTROLLER_USER
from shared.clock import WALL
from shared.streams import (
    JOBS_CONSUMER_IDLE_S,
    JobsConsumers,
    ensure_streams,
    jobs_consumer_config,
)
from shared.subjects import JOBS_STREAM
from tests.agent.helpers import SmtpLikePeer, job_for, publish_job, results, worker
from tests.deploy.natsdeploy import Deployment, agent, connect
from tests.deploy.test_nats_permissions import deployment

__all__ = ["deployment"]  # the deploy tests' permissioned hub (DE and US agents)


async def consumer_names(js: object) -> set[str]:
    return {c.name for c in await js.consumers_info(JOBS_STREAM)}  # type: ignore[attr-defined]


async def until(js: object, holds: Callable[[set[str]], bool], within: float) -> None:
    """Until the consumer names of JOBS satisfy `holds`, polling."""
    async with asyncio.timeout(within):
        while not holds(await consumer_names(js)):  # noqa: ASYNC110 - JetStream has no event
            await asyncio.sleep(0.1)


async def test_an_arriving_agent_gets_its_countrys_consumer_and_runs_its_job(
    deployment: Deployment, ssl_contexts: SslContexts
) -> None:
    controller = await connect(deployment.hub, deployment, CONTROLLER_USER)
    js = controller.js
    await ensure_streams(js)
    for name in await consumer_names(js):
        await js.delete_consumer(JOBS_STREAM, name)
    # An older version made one per country, kept forever.
    await js.add_consumer(JOBS_STREAM, replace(jobs_consumer_config("US"), inactive_threshold=None))
    agents = LiveAgents(controller.nc, warmup_s=0, wall=WALL.now)
    await agents.start()
    keeper = JobsConsumers(js, agents.countries, every_s=0.2)
    await keeper.start()
    client = await agent(deployment.hub, deployment, "DE")
    try:
        assert await consumer_names(js) == {"jobs-US"}  # none for DE: no agent there yet
        us = await js.consumer_info(JOBS_STREAM, "jobs-US")
        assert us.config.inactive_threshold == JOBS_CONSUMER_IDLE_S
        async with SmtpLikePeer() as peer:
            job = job_for("DE", peer.port)
            await publish_job(js, job)
            w = worker(client.nc, "DE", ssl_contexts, heartbeat_interval=0.1)
            async with asyncio.timeout(30):
                await w.run(burst=True)
        [result] = [r for r in await results(js, "DE") if r.job_id == job.job_id]
        assert result.status == "up"
        de = await js.consumer_info(JOBS_STREAM, "jobs-DE")
        assert de.config.inactive_threshold == JOBS_CONSUMER_IDLE_S
        assert (de.num_pending, de.num_ack_pending) == (0, 0)
    finally:
        await keeper.stop()
        await agents.stop()
        await client.close()
        await controller.close()


@pytest.mark.parametrize("idle_s", [1.0])
async def test_an_unused_consumer_goes_and_comes_back_with_its_country(
    deployment: Deployment, idle_s: float
) -> None:
    controller = await connect(deployment.hub, deployment, CONTROLLER_USER)
    js = controller.js
    await ensure_streams(js)
    in_use = {"US"}
    keeper = JobsConsumers(js, lambda: in_use, idle_s=idle_s, every_s=0.1, recheck_s=0.5)
    await keeper.start()
    try:
        assert "jobs-US" in await consumer_names(js)
        in_use.clear()  # its agents gone: nobody pulls
        await until(js, lambda names: "jobs-US" not in names, 15)
        in_use.add("US")  # an agent back
        await until(js, lambda names: "jobs-US" in names, 5)
    finally:
        await keeper.stop()
        await controller.close()
