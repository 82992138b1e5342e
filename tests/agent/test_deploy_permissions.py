"""The worker as deployed: connected over TLS as NATS user `agent-CC` of deploy/nats, in its
country's account, with nothing more than that user may do (look up the consumer the
controller made, fetch, ack, publish its results, heartbeat to the controllers)."""

import asyncio
import uuid

import nats.errors
import pytest
from nats.aio.msg import Msg

from agent.probers.tls import SslContexts
from agent.receiver.book import AddressBook, watch
from deploy.nats_conf import CONTROLLER_USER
from shared.arrivals import RECEIVERS_BUCKET, Arrival, ReceivingAddress, new_local_part
from shared.arrivals import encode as encode_arrival
from shared.messages import decode_heartbeat
from shared.streams import ensure_jobs_consumers, ensure_streams, jobs_consumer_name
from shared.subjects import HEARTBEATS_SUBJECTS, JOBS_STREAM, arrivals_subject
from testkit.peers.slowpath import SlowPath
from tests.agent.helpers import SmtpLikePeer, job_for, publish_job, pulling, results, worker
from tests.deploy.natsdeploy import Deployment, Server, agent, connect, registered
from tests.deploy.test_nats_permissions import deployment

__all__ = ["deployment"]  # the deploy tests' permissioned hub, reused as a fixture here


@pytest.mark.parametrize("country", ["DE"])
async def test_worker_runs_a_job_with_only_its_countrys_permissions(
    deployment: Deployment, country: str, ssl_contexts: SslContexts
) -> None:
    controller = await connect(deployment.hub, deployment, CONTROLLER_USER)
    js = controller.js
    await ensure_streams(js)
    await ensure_jobs_consumers(js, [country])
    beats: list[Msg] = []

    async def heard(msg: Msg) -> None:
        beats.append(msg)

    await controller.nc.subscribe(HEARTBEATS_SUBJECTS, cb=heard)
    await registered(controller.nc)
    client = await agent(deployment.hub, deployment, country)
    try:
        async with SmtpLikePeer() as peer:
            job = job_for(country, peer.port)
            await publish_job(js, job)
            w = worker(client.nc, country, ssl_contexts, heartbeat_interval=0.1)
            await w.run(burst=True)
        [result] = [r for r in await results(js, country) if r.job_id == job.job_id]
        assert (result.status, result.agent_id) == ("up", w.agent_id)
        info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name(country))
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
        await registered(controller.nc)
        await asyncio.sleep(0)
        last = decode_heartbeat(beats[-1].data)
        assert (beats[-1].subject, last.agent_id, last.stopping) == (
            f"mon.heartbeats.{country}.{w.agent_id}",
            w.agent_id,
            True,
        )
        await client.nc.flush()
        assert client.errors == []
    finally:
        await client.close()
        await controller.close()


@pytest.mark.parametrize("country", ["US"])
async def test_a_stopped_agent_leaves_no_pull_request_to_take_a_job_from_the_others(
    deployment: Deployment, country: str, ssl_contexts: SslContexts
) -> None:
    """Once an agent has stopped, a job published in its country goes at once to another agent
    of the country, on its first delivery: a pull request of the stopped agent, reached through
    its account's import of the pull subject (the server does not see its inbox lose interest),
    must not take it into the void (where it would wait the ack wait, 30 s, past the life of
    many jobs). A standing request of 10 s failed this 3 runs in 6."""
    controller = await connect(deployment.hub, deployment, CONTROLLER_USER)
    js = controller.js
    await ensure_streams(js)
    await ensure_jobs_consumers(js, [country])
    first = await agent(deployment.hub, deployment, country)
    second = await agent(deployment.hub, deployment, country)
    try:
        async with SmtpLikePeer() as peer:
            stopped = worker(first.nc, country, ssl_contexts, fetch_timeout=1.0)
            running = asyncio.create_task(stopped.run())
            await pulling(js, country)  # bound, its request open
            stopped.stop()
            await running
            job = job_for(country, peer.port)
            await publish_job(js, job)
            other = worker(second.nc, country, ssl_contexts)
            # A job taken into the void would come back after the 30 s ack wait, not within this.
            await asyncio.wait_for(other.run(burst=True), 10)
        [result] = [r for r in await results(js, country) if r.job_id == job.job_id]
        assert result.agent_id == other.agent_id
        info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name(country))
        assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0)
    finally:
        await first.close()
        await second.close()
        await controller.close()


@pytest.mark.parametrize("country", ["US"])
async def test_a_stopped_agent_far_from_its_server_waits_for_its_last_request_to_end(
    deployment: Deployment, country: str, ssl_contexts: SslContexts
) -> None:
    """What makes the test above fail on a loaded host, made certain: the stopping agent's
    requests reach the server 0.4 s after they were sent, so the server still holds its last
    pull request for 0.4 s after the agent's fetch gave up. The agent stays subscribed until
    the server has ended it; a job published once `run()` has returned goes to the other agent,
    on its first delivery."""
    controller = await connect(deployment.hub, deployment, CONTROLLER_USER)
    js = controller.js
    await ensure_streams(js)
    await ensure_jobs_consumers(js, [country])
    host, port = deployment.hub.url.removeprefix("tls://").split(":")
    async with SlowPath(host, int(port), delay_s=0.4) as path:
        far = Server(url=f"tls://{host}:{path.port}", monitor="", proc=deployment.hub.proc)
        first = await agent(far, deployment, country)
        second = await agent(deployment.hub, deployment, country)
        try:
            async with SmtpLikePeer() as peer:
                stopped = worker(first.nc, country, ssl_contexts, fetch_timeout=1.0)
                running = asyncio.create_task(stopped.run())
                await pulling(js, country)  # bound, its request open
                stopped.stop()
                await running
                job = job_for(country, peer.port)
                await publish_job(js, job)
                other = worker(second.nc, country, ssl_contexts)
                await asyncio.wait_for(other.run(burst=True), 10)
            [result] = [r for r in await results(js, country) if r.job_id == job.job_id]
            assert (result.agent_id, result.status) == (other.agent_id, "up")
            info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name(country))
            assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0)
        finally:
            await first.close()
            await second.close()
            await controller.close()


@pytest.mark.parametrize("country", ["DE"])
async def test_an_agent_publishes_its_countrys_arrivals_and_no_other(
    deployment: Deployment, country: str
) -> None:
    """`agent-CC` stores an arrival on `mon.arrivals.CC.*` (its PubAck comes back) and
    cannot publish one for another country."""
    controller = await connect(deployment.hub, deployment, CONTROLLER_USER)
    await ensure_streams(controller.js)
    await registered(controller.nc)
    client = await agent(deployment.hub, deployment, country)
    try:
        arrival = Arrival(
            arrival_id=str(uuid.uuid4()),
            monitor_id="m1",
            country=country,
            agent_id=f"{country}-1",
            arrived_at="2026-11-28T12:00:00.000Z",
            peer="192.0.2.1",
        )
        ack = await client.nc.jetstream().publish(
            arrivals_subject(country, "m1"), encode_arrival(arrival), timeout=5
        )
        assert ack.stream == "ARRIVALS"
        with pytest.raises(nats.errors.Error):
            await client.nc.jetstream().publish(
                arrivals_subject("FR", "m1"), encode_arrival(arrival), timeout=2
            )
    finally:
        await client.close()
        await controller.close()


@pytest.mark.parametrize("country", ["DE"])
async def test_an_agent_follows_the_receivers_bucket_it_cannot_write(
    deployment: Deployment, country: str
) -> None:
    """`agent-CC`'s book reads the present entries of RECEIVERS (put by `controller`) and
    follows what is put and deleted after; the agent cannot put an entry of its own."""
    controller = await connect(deployment.hub, deployment, CONTROLLER_USER)
    await ensure_streams(controller.js)
    await registered(controller.nc)
    kv = await controller.js.key_value(RECEIVERS_BUCKET)
    before, after = new_local_part(), new_local_part()
    await kv.put(before, encode_arrival(ReceivingAddress(monitor_id="m-before")))
    client = await agent(deployment.hub, deployment, country)
    book, stop = AddressBook(), asyncio.Event()
    watching = asyncio.create_task(watch(client.nc.jetstream(), book, stop))
    try:
        await asyncio.wait_for(book.ready.wait(), 10)
        present = book.get(before)
        await kv.put(after, encode_arrival(ReceivingAddress(monitor_id="m-after")))
        await kv.delete(before)
        for _ in range(200):
            if book.get(after) is not None and book.get(before) is None:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(nats.errors.Error):
            theirs = await client.nc.jetstream().key_value(RECEIVERS_BUCKET)
            await theirs.put(new_local_part(), b'{"monitorId": "forged"}')
    finally:
        stop.set()
        await watching
        await client.close()
        await controller.close()
    assert present is not None and present.monitor_id == "m-before"
    followed = book.get(after)
    assert followed is not None and followed.monitor_id == "m-after"
    assert book.get(before) is None and len(book) == 1
