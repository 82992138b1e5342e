"""Logins to one account go country after country: the scheduler publishes a credentialed
round's first job at once and the others `LOGIN_SPACING_SECONDS` apart, and sends none once a
login of the round was rejected (recorded `auth_backoff`); logins to one account are capped per
10 minutes over all monitors (`login_capped`). Jobs without credentials go at once."""

import uuid

import asyncpg
import httpx
import pytest

from controller.ingest import store as results
from controller.jobs.result_kinds import ResultRow
from controller.jobs.rules import JobIds
from controller.scheduling.scheduler import Scheduler
from shared.timefmt import parse_iso, utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Clock, Countries, SchedulerWith, WiredPipeline
from tests.pipeline.test_scheduler import make_due

SPACING = 1.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spaced(
    pipe_pool: asyncpg.Pool, pipeline: WiredPipeline, clock: Clock, scheduler_with: SchedulerWith
) -> Scheduler:
    """A scheduler on `clock`: the spacing is judged at the steps the test takes, not at the
    real time a loaded machine reaches them (a tick that took a second sent the next login
    within itself)."""
    return scheduler_with(
        login_spacing_s=SPACING,
        clock=clock,
    )


async def published(countries: Countries, ccs: list[str]) -> dict[str, list[str]]:
    return {cc: [job.job_id for job, _ in await countries.jobs(cc)] for cc in ccs}


async def test_logins_of_a_round_go_country_after_country(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    spaced: Scheduler,
    clock: Clock,
    job_ids: JobIds,
) -> None:
    three = countries.take(3)
    for cc in three:
        await countries.live(cc)
    monitor = await create(api, org, allowedCheckCountryCodes=three)
    pid = monitor["publicId"]
    due = await make_due(pipe_pool, pid)
    clock.set()
    assert await spaced.tick() == 1  # one login now
    sent = [cc for cc, ids in (await published(countries, three)).items() if ids]
    assert len(sent) == 1
    assert await spaced.run_deferred() == 0  # the next one is not due yet
    async with pipe_pool.acquire() as conn:  # kept as published: sealed, nothing in clear
        payloads = [
            bytes(r["payload"]) for r in await conn.fetch("SELECT payload FROM deferred_jobs")
        ]
    assert len(payloads) == 2
    assert all(
        b"sealedConfig" in p and b"username" not in p and b"password" not in p for p in payloads
    )
    clock.advance(SPACING - 0.001)
    assert await spaced.run_deferred() == 0
    clock.advance(0.001)
    assert await spaced.run_deferred() == 1
    clock.advance(SPACING)
    assert await spaced.run_deferred() == 1
    for cc in three:  # one job each, of the same round, under its own id
        [(job, msg_id)] = await countries.jobs(cc)
        assert parse_iso(job.scheduled_at) == due
        assert job.job_id == msg_id == job_ids.make(pid, cc, due)
        assert job.sealed_config is not None


async def test_no_further_login_once_one_of_the_round_was_rejected(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    spaced: Scheduler,
    clock: Clock,
) -> None:
    three = countries.take(3)
    for cc in three:
        await countries.live(cc)
    monitor = await create(api, org, allowedCheckCountryCodes=three)
    pid = monitor["publicId"]
    await make_due(pipe_pool, pid)
    clock.set()
    assert await spaced.tick() == 1
    [first] = [job for cc in three for job, _ in await countries.jobs(cc)]
    row = ResultRow(
        job_id=first.job_id,
        scheduled_at=parse_iso(first.scheduled_at),
        monitor_id=uuid.UUID(pid),
        monitor_type="smtp",
        country=first.country,
        agent_id=f"{first.country}-a1",
        status="down",
        error_kind="auth",
        message="535 5.7.8 Authentication credentials invalid",
    )
    async with pipe_pool.acquire() as conn, conn.transaction():
        await results.store(conn, [row], now=utcnow())
    clock.advance(2 * SPACING)
    assert await spaced.run_deferred() == 0
    assert sum(len(ids) for ids in (await published(countries, three)).values()) == 1
    async with pipe_pool.acquire() as conn:
        held = await conn.fetch(
            "SELECT country, status, message FROM check_results"
            " WHERE monitor_public_id = $1 AND error_kind = 'auth_backoff'",
            uuid.UUID(pid),
        )
    assert sorted(r["country"] for r in held) == sorted(set(three) - {first.country})
    assert all(r["status"] == "missed" and "rejected" in r["message"] for r in held)


async def test_a_round_without_credentials_goes_everywhere_at_once(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    spaced: Scheduler,
    clock: Clock,
) -> None:
    three = countries.take(3)
    for cc in three:
        await countries.live(cc)
    monitor = await create(api, org, allowedCheckCountryCodes=three, smtpConfig={})
    await make_due(pipe_pool, monitor["publicId"])
    clock.set()
    assert await spaced.tick() == 3


async def test_logins_to_one_account_are_capped_across_monitors_and_countries(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """Two monitors of one mailbox (same user at the same host, written differently) from two
    countries each: 4 logins to the account, a cap of 3; a third monitor of another user is
    not held back by them."""
    capped = scheduler_with(login_cap=3)
    two = countries.take(2)
    for cc in two:
        await countries.live(cc)
    same = [
        await create(
            api,
            org,
            hostname=host,
            allowedCheckCountryCodes=two,
            smtpConfig={"auth": {"user": user, "pass": "pw"}},
        )
        for host, user in (("mx.example.com", "Alice"), ("MX.example.com.", "alice"))
    ]
    other = await create(
        api,
        org,
        hostname="mx.example.com",
        allowedCheckCountryCodes=two,
        smtpConfig={"auth": {"user": "bob", "pass": "pw"}},
    )
    await make_due(pipe_pool, *(m["publicId"] for m in [*same, other]))
    assert await capped.tick() == 5  # 3 of alice's 4, both of bob's
    async with pipe_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT monitor_public_id, status, message FROM check_results"
            " WHERE error_kind = 'login_capped'"
        )
    (row,) = rows
    assert str(row["monitor_public_id"]) in {m["publicId"] for m in same}
    assert row["status"] == "missed" and "LOGIN_CAP_PER_ACCOUNT" in row["message"]
