"""The e2e controller on a skipping clock (testkit.skipping), for the files whose subject is
time: a database of its own, the scheduler and alerter stepped by the test (`Stepper`), the
ingester and the API running as `serve` runs them, two real agents (Worker instances on the
same clock) in countries of their own, real NATS. Only the waits nobody works through are
skipped: a round trip's SMTP, IMAP and POP3 exchanges run in real time on loopback."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
from nats.js import JetStreamContext

from agent.worker import Worker
from controller.db.pool import create_pool
from controller.ingest.ingester import Ingester
from controller.jobs.rules import JobIds
from controller.runtime.pipeline import PUBLISH_ASYNC_MAX_PENDING, Pipeline
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.streams import ensure_streams
from shared.subjects import RESULTS_STREAM
from testkit.alerting.wired import wired_alerter
from testkit.scheduling import wired_scheduler
from testkit.sealing import KeyRing
from testkit.serving import serve_app
from testkit.skipping import CountingPublisher, SkippingClock, Stepper
from tests.api.helpers import SMTP
from tests.conftest import Tenant, scratch_database
from tests.e2e.helpers import results

# Countries no other test uses (taken out of tests/countries.py's pools).
FIRST, SECOND = "BO", "PY"
VIRTUAL_COUNTRIES = (FIRST, SECOND)


@dataclass
class Virtual:
    url: str
    pool: asyncpg.Pool
    js: JetStreamContext
    job_ids: JobIds
    clock: SkippingClock
    stepper: Stepper


@asynccontextmanager
async def virtual_controller(
    settings: ControllerSettings, database_url: str, nats_url: str, job_ids: JobIds, keys: Path
) -> AsyncIterator[Virtual]:
    # Imported here: tests.e2e.conftest imports this module.
    from tests.e2e.conftest import ScopedAgents, remove_country_state

    clock = SkippingClock()
    ring = KeyRing(keys, VIRTUAL_COUNTRIES)
    async with scratch_database(database_url, "mailprobe_e2e_virtual") as url:
        pool = await create_pool(url, 10)
        nc = await nats.connect(nats_url)
        js = nc.jetstream(publish_async_max_pending=PUBLISH_ASYNC_MAX_PENDING)
        await ensure_streams(js)
        live = ScopedAgents(nc, set(VIRTUAL_COUNTRIES), wall=clock.now)
        await live.start()
        box = SecretBox(settings.secrets.secrets_key or "")
        country_keys = CountryKeys(str(ring.directory))
        scheduler = wired_scheduler(pool, js, live, box, country_keys, clock=clock.now)
        publisher = CountingPublisher(js, live, country_keys, job_ids.asks)
        alerter = wired_alerter(pool, js, job_ids, clock=clock.now)
        stepper = Stepper(pool, clock, scheduler, publisher, alerter)
        ingester = Ingester(
            pool, nc, js, job_ids, durable=f"ingest-virtual-{uuid.uuid4().hex[:8]}", clock=clock
        )
        pipeline = Pipeline(nc, js, live, scheduler, ingester, clock=clock)
        stop = asyncio.Event()
        ingesting = asyncio.create_task(ingester.run(stop))
        conns = [await nats.connect(nats_url) for _ in VIRTUAL_COUNTRIES]
        workers = [
            Worker.of(
                conn,
                cc,
                agent_id=f"{cc}-virtual-{uuid.uuid4().hex[:6]}",
                allow_private=True,
                seal_keys=ring.opening(cc),
                clock=clock,
            )
            for conn, cc in zip(conns, VIRTUAL_COUNTRIES, strict=True)
        ]
        runs = [asyncio.create_task(w.run()) for w in workers]
        try:
            await live.wait_live(*VIRTUAL_COUNTRIES)
            async with serve_app(create_app(settings, pool, pipeline)) as api_url:
                yield Virtual(api_url, pool, js, job_ids, clock, stepper)
        finally:
            for w in workers:
                w.stop()
            await asyncio.gather(*runs)
            for conn in conns:
                await conn.drain()
            stop.set()
            await ingesting
            await ingester.close()
            await live.stop()
            await js.delete_consumer(RESULTS_STREAM, ingester.durable)
            await remove_country_state(js, VIRTUAL_COUNTRIES)
            await nc.drain()
            await pool.close()


async def stepped_results(
    virtual: Virtual,
    api: httpx.AsyncClient,
    org: Tenant,
    public_id: str,
    until: Callable[[list[dict[str, Any]]], bool],
    within: float,
    path: str = SMTP,
) -> list[dict[str, Any]]:
    """Step the controller until the results API (of `path`'s monitors) shows `until(items)`;
    fail once `within` seconds of its clock have passed."""

    async def matched() -> tuple[list[dict[str, Any]]] | None:
        items: list[dict[str, Any]] = (await results(api, org, public_id, path))["items"]
        return (items,) if until(items) else None

    (items,) = await virtual.stepper.until("results matched", matched, within)
    return items


async def due_now(virtual: Virtual, public_id: str) -> datetime:
    """The monitor's next round is due at the clock's now (the next step sends it); returns
    that instant."""
    now = virtual.clock.now()
    await virtual.pool.execute(
        "UPDATE monitors SET next_due_at = $2 WHERE public_id = $1::uuid", public_id, now
    )
    return now
