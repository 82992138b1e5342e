"""The worker as deployed: connected as NATS user `agent-CC` of deploy/nats, with nothing more
than that user may do (look up the consumer the controller made, fetch, ack, publish its
results, heartbeat)."""

import nats
import pytest
from nats.aio.client import Client as NATS

from agent.heartbeat import heartbeat_key
from agent.probers.tls import SslContexts
from deploy.nats_conf import agent_user
from shared.streams import ensure_jobs_consumers, ensure_streams, jobs_consumer_name
from shared.subjects import AGENTS_BUCKET, JOBS_STREAM, agent_inbox_prefix
from tests.agent.helpers import SmtpLikePeer, job_for, publish_job, results, worker
from tests.deploy.test_nats_permissions import Hub, hub

__all__ = ["hub"]  # the deploy tests' permissioned server, reused as a fixture here


@pytest.mark.parametrize("country", ["DE"])
async def test_worker_runs_a_job_with_only_its_countrys_permissions(
    hub: Hub, country: str, ssl_contexts: SslContexts
) -> None:
    controller = await nats.connect(
        hub.url, user="controller", password=hub.passwords["controller"]
    )
    js = controller.jetstream()
    await ensure_streams(js)
    await ensure_jobs_consumers(js, [country])
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    agent = NATS()
    await agent.connect(
        hub.url,
        user=agent_user(country),
        password=hub.passwords[agent_user(country)],
        inbox_prefix=agent_inbox_prefix(country),
        error_cb=on_error,
        allow_reconnect=False,
    )
    try:
        async with SmtpLikePeer() as peer:
            job = job_for(country, peer.port)
            await publish_job(js, job)
            w = worker(agent, country, ssl_contexts, heartbeat_interval=0.1)
            await w.run(burst=True)
        key = heartbeat_key(country, w.agent_id)
        [result] = await results(js, country)
        assert (result.job_id, result.status, result.agent_id) == (job.job_id, "up", w.agent_id)
        info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name(country))
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
        marker = await js.get_msg(f"KV_{AGENTS_BUCKET}", subject=f"$KV.{AGENTS_BUCKET}.{key}")
        assert marker.headers is not None and marker.headers["KV-Operation"] == "DEL"
        await agent.flush()
        assert errors == []
    finally:
        await agent.close()
        await controller.close()
