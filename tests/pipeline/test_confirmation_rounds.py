"""Confirmation rounds, the scheduler's side, against real PostgreSQL and NATS: a round the
alerter asked for goes out at once as a triggered round from every country of the monitor,
once, and never for a disabled monitor."""

import uuid
from datetime import timedelta
from typing import cast

import asyncpg
import httpx

from controller.ingest import store as results
from controller.jobs.result_kinds import ResultRow
from controller.jobs.rules import JobIds
from controller.scheduling import confirm_store as confirmations
from shared.timefmt import parse_iso, utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline


async def ask(pool: asyncpg.Pool, public_id: str, failed: dict[str, str] | None = None) -> None:
    """What the ingester and the alerter write for a round that failed just now: the failed
    results (country → agent), then the request."""
    at = utcnow() - timedelta(seconds=2)
    async with pool.acquire() as conn, conn.transaction():
        monitor_id, org_id = cast(
            asyncpg.Record,
            await conn.fetchrow(
                "SELECT id, organization_id FROM monitors WHERE public_id = $1", public_id
            ),
        )
        await results.store(
            conn,
            [
                ResultRow(
                    job_id=str(uuid.uuid4()),
                    scheduled_at=at,
                    monitor_id=uuid.UUID(public_id),
                    monitor_type="smtp",
                    country=cc,
                    agent_id=agent,
                    status="down",
                    error_kind="refused",
                    message="connection refused",
                )
                for cc, agent in (failed or {}).items()
            ],
            now=utcnow(),
        )
        outcome = await confirmations.request(conn, monitor_id, at, utcnow(), org_id, 0.0)
    assert outcome == "requested"


async def test_a_requested_confirmation_is_sent_at_once_from_every_country_once(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    a, b = countries.take(2)
    await countries.live(a)
    await countries.live(b)
    monitor = await create(api, org, allowedCheckCountryCodes=[a, b])
    pid = monitor["publicId"]
    await pipeline.scheduler.plan_new()  # its grid round is a minute away at most
    await ask(pipe_pool, pid)
    before = utcnow()
    assert await pipeline.scheduler.run_confirmations() == 2
    for cc in (a, b):
        [(job, msg_id)] = await countries.jobs(cc)
        at = parse_iso(job.scheduled_at)
        assert before - timedelta(milliseconds=1) <= at <= utcnow()
        assert job.job_id == msg_id == job_ids.make(pid, cc, at, trigger=True)
        assert job.sealed_config is not None  # credentials still go sealed only
        assert job.avoid_agents == []
    assert await pipeline.scheduler.run_confirmations() == 0  # sent once


async def test_no_confirmation_for_a_disabled_monitor(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    (cc,) = countries.take()
    await countries.live(cc)
    monitor = await create(api, org, allowedCheckCountryCodes=[cc])
    await ask(pipe_pool, monitor["publicId"])
    async with pipe_pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET status = 'disabled' WHERE public_id = $1", monitor["publicId"]
        )
    assert await pipeline.scheduler.run_confirmations() == 0
    assert await countries.jobs(cc) == []


async def test_a_confirmation_asks_the_failed_agent_to_leave_it_to_another_of_its_country(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    """A second opinion where the country has another live agent; where it has none, the one
    agent is not asked to step aside (its job would only wait for nobody)."""
    two, one = countries.take(2)
    await countries.live(two, "first")
    await countries.live(two, "second")
    await countries.live(one, "only")
    monitor = await create(api, org, allowedCheckCountryCodes=[two, one])
    await ask(pipe_pool, monitor["publicId"], {two: "first", one: "only"})
    assert await pipeline.scheduler.run_confirmations() == 2
    [(job, _)] = await countries.jobs(two)
    assert job.avoid_agents == ["first"]
    [(job, _)] = await countries.jobs(one)
    assert job.avoid_agents == []
