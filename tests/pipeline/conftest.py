"""The controller's pipeline against real PostgreSQL and NATS.

Isolation on session-wide servers: a database of its own (the scheduler claims every due monitor
in its database, so other tests' monitors must not be there), a KV bucket of its own for live
agents, an ingest consumer reading only these tests' countries, and per test country codes that
no other test uses, whose jobs are purged afterwards. Every one of those countries has a sealing
key pair (`seal_keys`); the scheduler re-reads the key directory at every use, so a test may
change its own country's key.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
import uvicorn
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from controller.agents import LiveAgents
from controller.app import create_app
from controller.db.pool import create_pool
from controller.ingest import Ingester
from controller.pipeline import PUBLISH_ASYNC_MAX_PENDING, Pipeline
from controller.schedule import JobIds
from controller.scheduler import Scheduler
from controller.sealkeys import CountryKeys
from controller.secretbox import SecretBox
from shared import embedded
from shared.messages import AgentHeartbeat, CheckJob, decode_job, encode
from shared.settings import ControllerSettings
from shared.streams import ensure_streams
from shared.subjects import JOBS_STREAM, jobs_subject
from shared.timefmt import iso_ms, utcnow
from tests.conftest import Tenant, make_tenant, scratch_database
from tests.sealing import KeyRing

# Valid ISO codes that no other test uses (tests/agent takes from a list of its own).
_CODES = (
    "UY VE PY BO EC GT HN NI CR PA CU DO HT JM TT BS BB KZ UZ TM KG TJ MN NP BD LK MM TH VN"
    " ZW ZM MW MZ AO NA BW LS SZ MG MU SC KM DJ ER ET SO SD SS UG RW BI TZ"
)
_COUNTRIES = iter(_CODES.split(" "))


@pytest.fixture(scope="session")
def seal_keys(tmp_root: Path) -> KeyRing:
    return KeyRing(tmp_root / "pipeline-seal-keys", _CODES.split(" "))


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
async def agents_kv(js: JetStreamContext) -> AsyncIterator[KeyValue]:
    name = f"agents_test_{uuid.uuid4().hex[:8]}"
    kv = await js.create_key_value(KeyValueConfig(bucket=name, ttl=60, history=1))
    yield kv
    await js.delete_key_value(name)


@pytest.fixture(scope="session")
async def pipeline(
    settings: ControllerSettings,
    pipe_pool: asyncpg.Pool,
    nc: NATS,
    js: JetStreamContext,
    agents_kv: KeyValue,
    job_ids: JobIds,
    seal_keys: KeyRing,
) -> AsyncIterator[Pipeline]:
    agents = LiveAgents(agents_kv, ttl_s=0)
    scheduler = Scheduler(
        pipe_pool,
        js,
        agents,
        SecretBox(settings.secrets_key or ""),
        CountryKeys(str(seal_keys.directory), reload_every_s=0),
        default_countries=2,
    )
    ingester = Ingester(pipe_pool, js, job_ids, durable=f"ingest-test-{uuid.uuid4().hex[:8]}")
    yield Pipeline(nc, js, agents, scheduler, ingester)
    await ingester.close()


@pytest.fixture(scope="session")
async def pipe_api_url(
    settings: ControllerSettings, pipe_pool: asyncpg.Pool, pipeline: Pipeline
) -> AsyncIterator[str]:
    port = embedded.free_port()
    app = create_app(settings, pipe_pool, pipeline)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
async def api(pipe_api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pipe_api_url, timeout=10) as client:
        yield client


@pytest.fixture
async def org(pipe_pool: asyncpg.Pool) -> AsyncIterator[Tenant]:
    """A tenant; every monitor and result is removed afterwards, so tests do not see each other."""
    yield await make_tenant(pipe_pool)
    async with pipe_pool.acquire() as conn:
        await conn.execute("TRUNCATE check_results, monitor_country_state")
        await conn.execute("DELETE FROM monitors")


class Countries:
    """Fresh country codes for one test; their jobs and heartbeats are removed afterwards."""

    def __init__(self, js: JetStreamContext, kv: KeyValue) -> None:
        self.js, self.kv = js, kv
        self.used: list[str] = []
        self.keys: list[str] = []

    def take(self, n: int = 1) -> list[str]:
        got = [next(_COUNTRIES) for _ in range(n)]
        self.used += got
        return got

    async def live(self, cc: str, agent_id: str = "a1", **extra: Any) -> None:
        now = iso_ms(utcnow())
        beat = AgentHeartbeat(agent_id=agent_id, country=cc, started_at=now, seen_at=now, **extra)
        key = f"{cc}.{agent_id}"
        await self.kv.put(key, encode(beat))
        self.keys.append(key)

    async def jobs(self, cc: str) -> list[tuple[CheckJob, str]]:
        """(job, its Nats-Msg-Id) waiting on `mon.jobs.CC`, read without consuming them."""
        found: list[tuple[CheckJob, str]] = []
        seq = 0
        subject = jobs_subject(cc)
        while True:
            try:
                msg = await self.js.get_msg(JOBS_STREAM, seq=seq + 1, subject=subject, next=True)
            except NotFoundError:
                return found
            assert msg.data is not None and msg.seq is not None
            found.append((decode_job(msg.data), (msg.headers or {}).get("Nats-Msg-Id", "")))
            seq = msg.seq

    async def cleanup(self) -> None:
        for cc in self.used:
            await self.js.purge_stream(JOBS_STREAM, subject=jobs_subject(cc))
        for key in self.keys:
            await self.kv.delete(key)


@pytest.fixture
async def countries(js: JetStreamContext, agents_kv: KeyValue) -> AsyncIterator[Countries]:
    c = Countries(js, agents_kv)
    yield c
    await c.cleanup()
