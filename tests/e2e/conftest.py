"""End to end through the HTTP API: the controller's scheduler and ingester running as `serve`
runs them, real agents (Worker instances, and `python -m agent` processes where process death
matters), real loopback mail servers, real PostgreSQL and NATS; nothing mocked.

Isolation on the session's servers, as in tests/pipeline: a database of its own (the running
scheduler claims every due monitor of its database), an ingest consumer of its own, and country
codes no other test uses, whose jobs and consumers are removed afterwards. The agents heartbeat
on the real NATS as deployed ones do; the controller here sees only this package's countries, so
a heartbeat of another test's agent never counts as live. Every country has a sealing key pair
(`seal_keys`), the controller their public keys and each agent its own country's private key, as
`deploy.mint_country` hands them out.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest
import trustme
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from agent.worker import Worker
from controller.alerting.alerter import Alerter
from controller.db.pool import create_pool
from controller.fleet.live import LiveAgents
from controller.ingest.ingester import Ingester
from controller.jobs.rules import JobIds
from controller.oauth2.fetcher import TokenFetcher
from controller.oauth2.tokens import TokenService
from controller.runtime.pipeline import PUBLISH_ASYNC_MAX_PENDING, Pipeline
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.clock import WALL
from shared.messages import AgentHeartbeat
from shared.streams import ensure_streams, jobs_consumer_name
from shared.subjects import JOBS_STREAM, RESULTS_STREAM, jobs_subject
from shared.timefmt import utcnow
from testkit.alerting.wired import wired_alerter
from testkit.oauth2.token_endpoint import ca_context
from testkit.scheduling import wired_scheduler
from testkit.sealing import KeyRing
from testkit.serving import http_client, serve_app
from tests.conftest import Tenant, make_tenant, scratch_database
from tests.e2e.virtual import Virtual, virtual_controller

# Agents run in HOME and ABROAD for the whole package; NOBODY never has one; KILLED is the
# country of the agent process that the kill test starts and kills. No other test uses these.
HOME, ABROAD, NOBODY, KILLED = "AM", "AZ", "BA", "GE"
COUNTRIES = (HOME, ABROAD, NOBODY, KILLED)


class ScopedAgents(LiveAgents):
    """The controller's live agents view, seen through `owned` countries only."""

    def __init__(self, nc: NATS, owned: set[str], wall: Callable[[], datetime] = utcnow) -> None:
        super().__init__(nc, warmup_s=0, wall=wall)
        self.owned = owned

    def agents(self) -> list[AgentHeartbeat]:
        return [a for a in super().agents() if a.country in self.owned]

    def countries(self) -> frozenset[str]:
        return super().countries() & self.owned

    async def wait_live(self, *countries: str, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while not set(countries) <= self.countries():
            assert time.monotonic() < deadline, f"no live agent in {countries} within {within} s"
            await asyncio.sleep(0.05)


@dataclass
class Controller:
    url: str
    pool: asyncpg.Pool
    js: JetStreamContext
    agents: ScopedAgents
    pipeline: Pipeline


@dataclass
class Agents:
    home: Worker
    abroad: Worker


async def remove_country_state(js: JetStreamContext, countries: Sequence[str]) -> None:
    """Purge the countries' jobs and delete their agents' consumers."""
    for cc in countries:
        await js.purge_stream(JOBS_STREAM, subject=jobs_subject(cc))
        with suppress(NotFoundError):
            await js.delete_consumer(JOBS_STREAM, jobs_consumer_name(cc))


@pytest.fixture(scope="package")
def seal_keys(tmp_root: Path) -> KeyRing:
    return KeyRing(tmp_root / "e2e-seal-keys", COUNTRIES)


@pytest.fixture(scope="package")
def e2e_ca() -> trustme.CA:
    """The CA of the package's HTTPS peers (OAuth2 token endpoints, the Graph peer): the
    controller trusts it for token endpoints, a monitor names it in its `tlsOptions.ca`."""
    return trustme.CA()


@pytest.fixture(scope="package")
async def e2e_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with scratch_database(database_url, "mailprobe_e2e") as url:
        pool = await create_pool(url, 10)
        try:
            yield pool
        finally:
            await pool.close()


@pytest.fixture(scope="package")
async def e2e_nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_url)
    yield conn
    await conn.drain()


@pytest.fixture(scope="package")
async def controller(
    settings: ControllerSettings,
    e2e_pool: asyncpg.Pool,
    e2e_nc: NATS,
    job_ids: JobIds,
    seal_keys: KeyRing,
    e2e_ca: trustme.CA,
) -> AsyncIterator[Controller]:
    """What `serve` runs: the scheduler (with its OAuth2 token service, token endpoints on
    loopback allowed) and the ingester as tasks, the API beside them."""
    js = e2e_nc.jetstream(publish_async_max_pending=PUBLISH_ASYNC_MAX_PENDING)
    await ensure_streams(js)
    agents = ScopedAgents(e2e_nc, {HOME, ABROAD})
    await agents.start()
    box = SecretBox(settings.secrets.secrets_key or "")
    tokens = TokenService(
        e2e_pool, box, TokenFetcher(verify=ca_context(e2e_ca), allow_private=True), clock=WALL
    )
    scheduler = wired_scheduler(
        e2e_pool,
        js,
        agents,
        box,
        CountryKeys(str(seal_keys.directory)),
        default_countries=2,
        tokens=tokens,
    )
    ingester = Ingester(
        e2e_pool, e2e_nc, js, job_ids, durable=f"ingest-e2e-{uuid.uuid4().hex[:8]}", clock=WALL
    )
    pipeline = Pipeline(e2e_nc, js, agents, scheduler, ingester, clock=WALL)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(scheduler.run(stop)), asyncio.create_task(ingester.run(stop))]
    try:
        allowing = settings.replace(oauth2_token_hosts="127.0.0.1")
        async with serve_app(create_app(allowing, e2e_pool, pipeline)) as url:
            yield Controller(url, e2e_pool, js, agents, pipeline)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await ingester.close()
        await tokens.close()
        await agents.stop()
        await js.delete_consumer(RESULTS_STREAM, ingester.durable)
        await remove_country_state(js, COUNTRIES)


@pytest.fixture(scope="package")
async def agents(
    controller: Controller, nats_url: str, seal_keys: KeyRing
) -> AsyncIterator[Agents]:
    """One agent in HOME and one in ABROAD, each on its own connection like a process and with
    its country's sealing key, with heartbeats, for the whole package."""
    conns = [await nats.connect(nats_url) for _ in range(2)]
    home, abroad = (
        Worker.of(
            conn,
            cc,
            agent_id=f"{cc}-e2e-{uuid.uuid4().hex[:6]}",
            allow_private=True,
            seal_keys=seal_keys.opening(cc),
            clock=WALL,
        )
        for conn, cc in zip(conns, (HOME, ABROAD), strict=True)
    )
    runs = [asyncio.create_task(w.run()) for w in (home, abroad)]
    try:
        await controller.agents.wait_live(HOME, ABROAD)
        yield Agents(home, abroad)
    finally:
        for w in (home, abroad):
            w.stop()
        await asyncio.gather(*runs)
        for conn in conns:
            await conn.drain()


@pytest.fixture(scope="package")
async def virtual(
    settings: ControllerSettings,
    database_url: str,
    nats_url: str,
    job_ids: JobIds,
    tmp_root: Path,
) -> AsyncIterator[Virtual]:
    """The controller on a skipping clock, with agents of its own (tests/e2e/virtual.py), for
    the files whose subject is time."""
    async with virtual_controller(
        settings, database_url, nats_url, job_ids, tmp_root / "e2e-virtual-seal-keys"
    ) as running:
        yield running


@pytest.fixture
async def virtual_api(virtual: Virtual) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=virtual.url, timeout=10) as client:
        yield client


@pytest.fixture
def unjudged(virtual: Virtual) -> Iterator[None]:
    """The skipping clock's controller without the alerter role for the test, as the package's
    controller runs unless a test asks for `alerter`."""
    virtual.stepper.judging = False
    yield
    virtual.stepper.judging = True


@pytest.fixture
async def virtual_org(virtual: Virtual) -> AsyncIterator[Tenant]:
    """A tenant of the skipping clock's controller, its monitors deleted afterwards."""
    tenant = await make_tenant(virtual.pool)
    yield tenant
    await virtual.pool.execute("DELETE FROM monitors WHERE organization_id = $1", tenant.org_id)


@pytest.fixture
async def api(controller: Controller) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=controller.url, timeout=10) as client:
        yield client


@pytest.fixture
async def org(controller: Controller) -> AsyncIterator[Tenant]:
    """A tenant whose monitors are deleted afterwards, so the scheduler forgets them."""
    tenant = await make_tenant(controller.pool)
    yield tenant
    async with controller.pool.acquire() as conn:
        await conn.execute("DELETE FROM monitors WHERE organization_id = $1", tenant.org_id)


@pytest.fixture
async def alerter(controller: Controller, job_ids: JobIds) -> AsyncIterator[Alerter]:
    """The alerter role beside the running scheduler and ingester, as `serve` runs it."""
    running = wired_alerter(
        controller.pool, controller.js, job_ids, alert_eval_interval_seconds=0.05
    )
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    yield running
    stop.set()
    await task
