"""An API with a check pipeline, for the tests that trigger checks: real NATS, a real agent of
one country, the session's PostgreSQL. Nothing mocked.

Isolation on the session-wide servers: the scheduler never runs its loop here (trigger-check
publishes directly), so other tests' monitors in the shared database are never claimed; live
agents are heard from the rig's own heartbeat; the rig's country code is used by no other test,
and its jobs and consumer are removed afterwards.
"""

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import nats
from nats.js.errors import NotFoundError

from agent.probers.tls import build_ssl_contexts
from agent.worker import Worker
from controller.fleet.live import LiveAgents
from controller.ingest.ingester import Ingester
from controller.jobs.rules import JobIds
from controller.runtime.pipeline import PUBLISH_ASYNC_MAX_PENDING, Pipeline
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.clock import WALL
from shared.messages import AgentHeartbeat, encode
from shared.streams import ensure_jobs_consumers, ensure_streams, jobs_consumer_name
from shared.subjects import JOBS_STREAM, heartbeats_subject, jobs_subject
from shared.timefmt import iso_ms, utcnow
from testkit.scheduling import wired_scheduler
from testkit.sealing import KeyRing
from testkit.serving import serve_app


@dataclass
class Rig:
    url: str
    country: str
    settings: ControllerSettings  # with the rig's limits
    pipeline: Pipeline  # for a second API beside the first, as another replica would be


@asynccontextmanager
async def pipeline_api(
    settings: ControllerSettings,
    pool: asyncpg.Pool,
    nats_url: str,
    country: str,
    *,
    agent_cadata: str | None = None,
    **limits: Any,
) -> AsyncIterator[Rig]:
    """The API (with `limits` replacing settings) and its pipeline; with `agent_cadata` (the
    PEM of a test CA) a real agent of `country` runs the jobs, trusting that CA."""
    settings = settings.replace(**limits)
    box = SecretBox(settings.secrets.secrets_key or "")
    nc = await nats.connect(nats_url)
    js = nc.jetstream(publish_async_max_pending=PUBLISH_ASYNC_MAX_PENDING)
    await ensure_streams(js)
    await ensure_jobs_consumers(js, [country])
    agents = LiveAgents(nc, warmup_s=0, ttl_s=600, wall=WALL.now)
    await agents.start()
    now = iso_ms(utcnow())
    beat = AgentHeartbeat(agent_id="rig", country=country, started_at=now, seen_at=now)
    await nc.publish(heartbeats_subject(country, "rig"), encode(beat))
    deadline = asyncio.get_running_loop().time() + 5
    while country not in agents.countries():
        assert asyncio.get_running_loop().time() < deadline, "the rig's heartbeat was not heard"
        await asyncio.sleep(0.01)
    key_dir = tempfile.TemporaryDirectory(prefix="rig-seal-")
    ring = KeyRing(Path(key_dir.name), [country])
    keys = CountryKeys(str(ring.directory), reload_every_s=0)
    scheduler = wired_scheduler(
        pool, js, agents, box, keys, default_countries=settings.fair_use.default_check_countries
    )
    ingester = Ingester(
        pool, nc, js, JobIds.from_box(box), durable=f"ingest-api-{uuid.uuid4().hex[:8]}", clock=WALL
    )
    pipeline = Pipeline(nc, js, agents, scheduler, ingester, clock=WALL)
    agent_nc = await nats.connect(nats_url) if agent_cadata is not None else None
    worker = run = None
    if agent_nc is not None:
        worker = Worker.of(
            agent_nc,
            country,
            allow_private=True,
            ssl_contexts=build_ssl_contexts(agent_cadata),
            heartbeat_interval=None,
            seal_keys=ring.opening(country),
            clock=WALL,
        )
        run = asyncio.create_task(worker.run())
    try:
        async with serve_app(create_app(settings, pool, pipeline)) as url:
            yield Rig(url, country, settings, pipeline)
    finally:
        if worker is not None and run is not None and agent_nc is not None:
            worker.stop()
            await run
            await agent_nc.drain()
        await ingester.close()
        await js.purge_stream(JOBS_STREAM, subject=jobs_subject(country))
        with suppress(NotFoundError):
            await js.delete_consumer(JOBS_STREAM, jobs_consumer_name(country))
        await agents.stop()
        await nc.drain()
        key_dir.cleanup()
