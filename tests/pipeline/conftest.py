"""The controller's pipeline against real PostgreSQL and NATS.

Isolation on session-wide servers: a database of its own (the scheduler claims every due monitor in
its database, so other tests' monitors must not be there), an ingest consumer of its own (it drops
other tests' results: their monitors are not in its database), and per test country codes that no
other suite's pool holds (tests/countries.py), whose jobs and results are purged and whose agents
are said to stop afterwards, before the codes go back to the pool. Live agents come from
heartbeats on the real NATS, as agents publish them; the view here needs no warm-up (tests of the
warm-up make their own), and ages beats on a clock of its own (`view_clock`) that moves only at
each test's start, by the view's log interval: no beat ages out while a test runs, however long
the loaded host takes (tests of the TTL make their own view). Every one of those countries has a
sealing key pair (`seal_keys`); the scheduler re-reads the key directory at every use, so a test
may change its own country's key.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from controller.db.pool import create_pool
from controller.fleet.live import LOG_EVERY_S, LiveAgents
from controller.ingest.ingester import Ingester
from controller.jobs.rules import JobIds
from controller.runtime.pipeline import PUBLISH_ASYNC_MAX_PENDING, Pipeline
from controller.scheduling.scheduler import Scheduler
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.clock import WALL, ManualClock
from shared.messages import AgentHeartbeat, CheckJob, bundle_parts, decode_job, encode
from shared.streams import ensure_streams, jobs_consumer_name
from shared.subjects import (
    JOBS_STREAM,
    RESULTS_STREAM,
    heartbeats_subject,
    jobs_subject,
    results_country_filter,
)
from shared.timefmt import iso_ms, utcnow
from testkit.scheduling import wired_scheduler
from testkit.sealing import KeyRing
from testkit.serving import http_client, serve_app
from tests.conftest import Tenant, make_tenant, scratch_database
from tests.countries import PIPELINE, Pool

_COUNTRIES = Pool(PIPELINE)

if TYPE_CHECKING:

    class WiredPipeline(Pipeline):
        """The `pipeline` fixture's `Pipeline`, for mypy: it has every part (none is None)."""

        agents: LiveAgents
        scheduler: Scheduler
        ingester: Ingester

else:
    WiredPipeline = Pipeline


class Clock:
    """A scheduler's time that moves only when a test moves it (`set`, `advance`), so what is
    due at a step does not depend on how long the loaded machine took to get there."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def set(self) -> None:
        """Stop at the real time now."""
        self.now = utcnow()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def seal_keys(tmp_root: Path) -> KeyRing:
    return KeyRing(tmp_root / "pipeline-seal-keys", PIPELINE)


@pytest.fixture(scope="session")
async def pipe_database_url(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url, "mailprobe_pipe") as url:
        yield url


@pytest.fixture(scope="session")
async def pipe_pool(pipe_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(pipe_database_url, 10)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_url)
    yield conn
    await conn.drain()


@pytest.fixture(scope="session")
async def js(nc: NATS) -> JetStreamContext:
    context = nc.jetstream(publish_async_max_pending=PUBLISH_ASYNC_MAX_PENDING)
    await ensure_streams(context)
    return context


@pytest.fixture(scope="session")
def view_clock() -> ManualClock:
    """The clock the pipeline's live-agents view ages beats by (see the module)."""
    return ManualClock(utcnow())


@pytest.fixture(scope="session")
async def pipeline(
    settings: ControllerSettings,
    pipe_pool: asyncpg.Pool,
    nc: NATS,
    js: JetStreamContext,
    job_ids: JobIds,
    seal_keys: KeyRing,
    view_clock: ManualClock,
) -> AsyncIterator[WiredPipeline]:
    agents = LiveAgents(nc, warmup_s=0, ttl_s=60, clock=view_clock.monotonic, wall=WALL.now)
    await agents.start()
    scheduler = wired_scheduler(
        pipe_pool,
        js,
        agents,
        SecretBox(settings.secrets.secrets_key or ""),
        CountryKeys(str(seal_keys.directory), reload_every_s=0),
        default_countries=2,
        # Every country's job at once, as these tests expect of a round; the spacing of logins
        # to one account has tests of its own (test_login_spacing.py).
        login_spacing_s=0,
    )
    # The results these tests publish are made by hand, as an agent older than sealed asks
    # sends them (no `asksSeal`): their side facts are taken as ACCEPT_UNSEALED_SIDE_FACTS
    # takes them during an upgrade; the default (off) has its tests (test_agent_bounds.py).
    ingester = Ingester(
        pipe_pool,
        nc,
        js,
        job_ids,
        durable=f"ingest-test-{uuid.uuid4().hex[:8]}",
        accept_unsealed=True,
        clock=WALL,
    )
    yield WiredPipeline(nc, js, agents, scheduler, ingester, clock=WALL)
    await ingester.close()
    await agents.stop()


@pytest.fixture(scope="session")
async def pipe_api_url(
    settings: ControllerSettings, pipe_pool: asyncpg.Pool, pipeline: WiredPipeline
) -> AsyncIterator[str]:
    async with serve_app(create_app(settings, pipe_pool, pipeline)) as url:
        yield url


@pytest.fixture
async def api(pipe_api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=pipe_api_url, timeout=10) as client:
        yield client


@pytest.fixture
async def org(pipe_pool: asyncpg.Pool) -> AsyncIterator[Tenant]:
    """A tenant; every monitor and result is removed afterwards, so tests do not see each other."""
    yield await make_tenant(pipe_pool)
    async with pipe_pool.acquire() as conn:
        # DELETE, not TRUNCATE: a few rows each, and TRUNCATE makes every partition's files
        # anew (~30 ms a test, most of it PostgreSQL's).
        await conn.execute(
            "DELETE FROM result_rows; DELETE FROM result_details; DELETE FROM result_rollups;"
            " DELETE FROM uptime_results; DELETE FROM monitor_country_state; DELETE FROM monitors"
        )


class Countries:
    """Country codes for one test; afterwards their jobs, results, consumer and agents are gone,
    their sealing key is back, and the codes return to the pool."""

    def __init__(
        self, js: JetStreamContext, nc: NATS, agents: LiveAgents, seal_keys: KeyRing
    ) -> None:
        self.js, self.nc, self.agents, self.seal_keys = js, nc, agents, seal_keys
        self.used: list[str] = []
        self.beats: list[AgentHeartbeat] = []

    def take(self, n: int = 1) -> list[str]:
        got = [_COUNTRIES.take() for _ in range(n)]
        self.used += got
        return got

    async def live(self, cc: str, agent_id: str = "a1", **extra: Any) -> None:
        """An agent of `cc` heartbeats, as agents do; returns once the view has it."""
        now = iso_ms(utcnow())
        beat = AgentHeartbeat(agent_id=agent_id, country=cc, started_at=now, seen_at=now, **extra)
        await self.nc.publish(heartbeats_subject(cc, agent_id), encode(beat))
        self.beats.append(beat)
        deadline = time.monotonic() + 5
        while (cc, agent_id) not in {(a.country, a.agent_id) for a in self.agents.agents()}:
            assert time.monotonic() < deadline, f"the heartbeat of {agent_id} was not heard"
            await asyncio.sleep(0.01)

    async def only_these_live(self) -> None:
        """Say stopping for every agent in the view of a country this test did not take: what
        earlier tests of this worker left there (their beats count for the view's TTL). A test
        of what the scheduler does with "every live country" starts from its own."""
        now = iso_ms(utcnow())
        for a in self.agents.agents():
            if a.country not in self.used:
                gone = AgentHeartbeat(
                    agent_id=a.agent_id,
                    country=a.country,
                    started_at=now,
                    seen_at=now,
                    stopping=True,
                )
                await self.nc.publish(heartbeats_subject(a.country, a.agent_id), encode(gone))
        deadline = time.monotonic() + 5
        while not set(self.agents.countries()) <= set(self.used):
            assert time.monotonic() < deadline, f"still live: {self.agents.countries()}"
            await asyncio.sleep(0.01)

    async def messages(self, cc: str) -> list[tuple[bytes, str]]:
        """(data, Nats-Msg-Id) of each message waiting on `mon.jobs.CC`, read without
        consuming them: a job, or a bundle of jobs."""
        found: list[tuple[bytes, str]] = []
        seq = 0
        subject = jobs_subject(cc)
        while True:
            try:
                msg = await self.js.get_msg(JOBS_STREAM, seq=seq + 1, subject=subject, next=True)
            except NotFoundError:
                return found
            assert msg.data is not None and msg.seq is not None
            found.append((msg.data, (msg.headers or {}).get("Nats-Msg-Id", "")))
            seq = msg.seq

    async def jobs(self, cc: str) -> list[tuple[CheckJob, str]]:
        """(job, its message's Nats-Msg-Id) waiting on `mon.jobs.CC`: a bundle's jobs share
        its id."""
        return [
            (decode_job(part), msg_id)
            for data, msg_id in await self.messages(cc)
            for part in bundle_parts(data) or [data]
        ]

    async def cleanup(self) -> None:
        for cc in self.used:
            await self.js.purge_stream(JOBS_STREAM, subject=jobs_subject(cc))
            await self.js.purge_stream(RESULTS_STREAM, subject=results_country_filter(cc))
            with contextlib.suppress(NotFoundError):
                await self.js.delete_consumer(JOBS_STREAM, jobs_consumer_name(cc))
            if not (self.seal_keys.directory / f"{cc}.pub").exists():
                self.seal_keys.add(cc)
        for beat in self.beats:
            beat.stopping = True
            await self.nc.publish(heartbeats_subject(beat.country, beat.agent_id), encode(beat))
        await self.nc.flush()
        _COUNTRIES.give_back(self.used)


@pytest.fixture
async def countries(
    js: JetStreamContext,
    nc: NATS,
    pipeline: WiredPipeline,
    seal_keys: KeyRing,
    view_clock: ManualClock,
) -> AsyncIterator[Countries]:
    # A test's codes may be an earlier test's: the view logs their drops anew, as a second on.
    view_clock.advance(LOG_EVERY_S)
    c = Countries(js, nc, pipeline.agents, seal_keys)
    yield c
    await c.cleanup()


# `scheduler_with(**kw)`: a scheduler (a replica) over the pipeline's pool, NATS and live
# agents; `kw`: `wired_scheduler`'s keywords, over sending every login of a round at once.
SchedulerWith = Callable[..., Scheduler]


@pytest.fixture
def scheduler_with(
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    settings: ControllerSettings,
    seal_keys: KeyRing,
) -> SchedulerWith:
    def made(**kw: Any) -> Scheduler:
        return wired_scheduler(
            pipe_pool,
            pipeline.js,
            pipeline.agents,
            SecretBox(settings.secrets.secrets_key or ""),
            CountryKeys(str(seal_keys.directory), reload_every_s=0),
            **{"login_spacing_s": 0, **kw},
        )

    return made
