"""A scheduler pass against real PostgreSQL and NATS: confirmation rounds and deferred logins are
claimed only when the statement closing the due rounds says some wait, so a routine pass is its
due rounds' transaction (the central CPU per check of issues 24 and 70 is mostly per statement),
a pass before the earliest due time claims nothing, and a confirmation asked for still goes out
in the next pass."""

import asyncio

import asyncpg
import httpx
from asyncpg.connection import LoggedQuery

from controller.db.pool import create_pool
from controller.jobs.rules import JobIds
from controller.scheduling.scheduler import Scheduler
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.settings import ControllerSettings
from shared.timefmt import parse_iso
from testkit.scheduling import wired_scheduler
from testkit.sealing import KeyRing
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline
from tests.pipeline.test_confirmation_rounds import ask

# BEGIN, the claim, the monitors' next due times and what waits and when the next pass is due
# (one statement, `scheduler_moved`), COMMIT. A first round also records that it carried the
# mail domain.
ROUTINE_STATEMENTS = 5
# The statements that close a pass: what waits, and when the next pass is due.
CLOSING = ("SELECT * FROM scheduler_moved(", "SELECT * FROM scheduler_waiting(")
CLAIM = "FOR NO KEY UPDATE OF due, monitors SKIP LOCKED"


def replica(
    pool: asyncpg.Pool, pipeline: WiredPipeline, settings: ControllerSettings, keys: KeyRing
) -> Scheduler:
    """A scheduler (a replica) over `pool` (the `scheduler_with` fixture's is the pipeline's)
    and the pipeline's NATS and live agents, sending every login of a round at once."""
    assert pipeline.agents is not None
    return wired_scheduler(
        pool,
        pipeline.js,
        pipeline.agents,
        SecretBox(settings.secrets.secrets_key or ""),
        CountryKeys(str(keys.directory), reload_every_s=0),
        login_spacing_s=0,
    )


async def logging_pool(database_url: str, sent: list[str]) -> asyncpg.Pool:
    """A pool whose connections add each statement they send to `sent` (soon after)."""

    def logged(q: LoggedQuery) -> None:
        sent.append(" ".join(q.query.split()))

    async def log_queries(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(logged)

    return await create_pool(database_url, 2, setup=log_queries)


async def test_a_pass_sends_a_confirmation_asked_for(
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
    await ask(pipe_pool, pid)

    await pipeline.scheduler.run_pass()

    for cc in (a, b):
        sent = await countries.jobs(cc)
        assert [
            job
            for job, _ in sent
            if job.job_id == job_ids.make(pid, cc, parse_iso(job.scheduled_at), trigger=True)
        ], sent
    async with pipe_pool.acquire() as conn:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM confirmation_rounds c JOIN monitors m ON m.id = c.monitor_id"
            " WHERE m.public_id = $1 AND c.sent_at IS NULL",
            pid,
        )
    assert waiting == 0


async def test_a_routine_pass_claims_no_confirmation_and_no_deferred_login(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_database_url: str,
    pipeline: WiredPipeline,
    countries: Countries,
    settings: ControllerSettings,
    seal_keys: KeyRing,
) -> None:
    sent: list[str] = []
    pool = await logging_pool(pipe_database_url, sent)
    try:
        scheduler = replica(pool, pipeline, settings, seal_keys)
        (cc,) = countries.take()
        await countries.live(cc)
        # What other tests of this database left waiting goes first.
        await scheduler.run_confirmations()
        await scheduler.run_deferred()
        # No login: its round takes no slot of the login cap (statements of their own).
        await create(
            api,
            org,
            allowedCheckCountryCodes=[cc],
            smtpConfig={"secure": False, "ignoreTls": True},
        )
        await scheduler.plan_new()  # a new monitor is due at once
        sent.clear()

        await scheduler.run_pass()
        await asyncio.sleep(0)  # loggers are called soon after

        assert [job for job, _ in await countries.jobs(cc)]
        claims = [q for q in sent if "confirmation_" in q or "deferred_jobs" in q]
        assert claims == [], "\n".join(sent)
        assert [q for q in sent if q.startswith(CLOSING)] == [
            q for q in sent if q.startswith(CLOSING[0])
        ], "\n".join(sent)
        assert len([q for q in sent if q.startswith(CLOSING[0])]) == 1, "\n".join(sent)
        assert sent.count("BEGIN;") == 1, "\n".join(sent)
        assert len(sent) <= ROUTINE_STATEMENTS, "\n".join(sent)
    finally:
        await pool.close()


async def test_the_loop_plans_new_monitors_only_when_a_pass_saw_some(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_database_url: str,
    pipeline: WiredPipeline,
    countries: Countries,
    settings: ControllerSettings,
    seal_keys: KeyRing,
) -> None:
    """A pass's closing statement says whether a monitor waits for its first due time; the
    loop claims unplanned monitors only then (not on a clock of its own), and a monitor
    created meanwhile still has its first round sent within a pass or two."""
    sent: list[str] = []
    pool = await logging_pool(pipe_database_url, sent)
    stop = asyncio.Event()
    scheduler = replica(pool, pipeline, settings, seal_keys)
    (cc,) = countries.take()
    await countries.live(cc)

    def passes() -> list[str]:
        return [q for q in sent if q.startswith(CLOSING)]

    async def until_passes(count: int) -> None:
        deadline = asyncio.get_running_loop().time() + 30
        while len(passes()) < count:
            assert asyncio.get_running_loop().time() < deadline, "\n".join(sent)
            await asyncio.sleep(0.05)

    loop = asyncio.create_task(scheduler.run(stop))
    try:
        await until_passes(1)  # what other tests of this database left is planned first
        sent.clear()
        await until_passes(3)
        plans = [q for q in sent if "AS never_run" in q]
        assert plans == [], "\n".join(sent)

        monitor = await create(
            api, org, allowedCheckCountryCodes=[cc], smtpConfig={"secure": False, "ignoreTls": True}
        )
        deadline = asyncio.get_running_loop().time() + 5
        while not [j for j, _ in await countries.jobs(cc) if j.monitor_id == monitor["publicId"]]:
            assert asyncio.get_running_loop().time() < deadline, "its first round never went"
            await asyncio.sleep(0.1)
        assert [q for q in sent if "AS never_run" in q]
    finally:
        stop.set()
        await loop
        await pool.close()


async def test_a_pass_before_the_earliest_due_time_claims_nothing(
    pipe_database_url: str,
    pipeline: WiredPipeline,
    settings: ControllerSettings,
    seal_keys: KeyRing,
) -> None:
    """A pass told that no monitor can be due yet sends one statement (what waits, and when)
    and no transaction."""
    sent: list[str] = []
    pool = await logging_pool(pipe_database_url, sent)
    try:
        scheduler = replica(pool, pipeline, settings, seal_keys)
        await scheduler.run_confirmations()  # what other tests of this database left waiting
        await scheduler.run_deferred()
        sent.clear()

        done = await scheduler.run_pass(nothing_due=True)
        await asyncio.sleep(0)  # loggers are called soon after

        assert done.jobs == 0
        assert len(sent) == 1 and sent[0].startswith(CLOSING[1]), "\n".join(sent)
    finally:
        await pool.close()


async def test_the_loop_sends_a_round_made_due_earlier_than_it_knew(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_database_url: str,
    pipeline: WiredPipeline,
    countries: Countries,
    settings: ControllerSettings,
    seal_keys: KeyRing,
) -> None:
    """Passes before the earliest due time they know claim nothing, yet each asks that time
    again: a monitor whose due time is moved to now meanwhile (another replica, an operator)
    has its round sent within a pass or two."""
    sent: list[str] = []
    pool = await logging_pool(pipe_database_url, sent)
    stop = asyncio.Event()
    scheduler = replica(pool, pipeline, settings, seal_keys)
    (cc,) = countries.take()
    await countries.live(cc)
    monitor = await create(
        api, org, allowedCheckCountryCodes=[cc], smtpConfig={"secure": False, "ignoreTls": True}
    )
    pid = monitor["publicId"]
    async with pool.acquire() as conn:  # planned, its first round an hour away
        await conn.execute(
            "UPDATE monitors SET next_due_at = now() + interval '1 hour',"
            " round_countries = ARRAY[$2] WHERE public_id = $1",
            pid,
            cc,
        )

    async def until(count: int) -> None:
        deadline = asyncio.get_running_loop().time() + 30
        while len([q for q in sent if q.startswith(CLOSING)]) < count:
            assert asyncio.get_running_loop().time() < deadline, "\n".join(sent)
            await asyncio.sleep(0.05)

    loop = asyncio.create_task(scheduler.run(stop))
    try:
        await until(2)
        async with pool.acquire() as conn:
            await conn.execute("UPDATE monitors SET next_due_at = now() WHERE public_id = $1", pid)
        deadline = asyncio.get_running_loop().time() + 5
        while not [j for j, _ in await countries.jobs(cc) if j.monitor_id == pid]:
            assert asyncio.get_running_loop().time() < deadline, "its round never went"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await loop
        await pool.close()
