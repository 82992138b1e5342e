"""The scheduler against real PostgreSQL and NATS: due monitors become jobs per country."""

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

import asyncpg
import httpx
import msgspec
from structlog.testing import capture_logs

from controller.jobs.rules import JobIds
from controller.scheduling import due_store as due
from controller.scheduling import rules as schedule
from controller.scheduling.scheduler import Scheduler
from controller.sidechecks.readiness import COMMON_SELECTORS
from shared.messages import (
    FEATURE_TENANT_LOADS,
    ImapCheckJob,
    SmtpCheckJob,
    SmtpConfig,
    TenantLoad,
)
from shared.sidechecks.mail_dns import WIRE as MAIL_DNS
from shared.sidechecks.mail_dns import MailDnsAsk
from shared.sidechecks.readiness import WIRE as READINESS
from shared.sidechecks.readiness import ReadinessAsk
from shared.timefmt import parse_iso, utc_hour, utcnow
from testkit.sealing import KeyRing
from tests.api.helpers import create
from tests.conftest import Tenant, make_tenant
from tests.pipeline.conftest import Clock, Countries, SchedulerWith, WiredPipeline

# No other round of a monitor made due by make_due comes due within this: a test runs its
# scheduler well inside it, even on a loaded host.
DUE_MARGIN = timedelta(seconds=5)


async def make_due(pool: asyncpg.Pool, *public_ids: str) -> datetime:
    """Make the monitors due just now, at one instant (whole milliseconds, as job times are):
    off their grids, so each round is scheduled at this time, with its whole expiry window left
    to run (a grid point up to an interval ago might be over already). While one of their next
    grid points is less than DUE_MARGIN away (it would be a second round for a scheduler run
    soon after, the one due now recorded `overdue`), it waits for that point to pass first;
    their due time is taken after the last wait, so every monitor keeps the whole margin."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT public_id::text AS id, check_interval FROM monitors"
            " WHERE public_id = ANY($1::uuid[])",
            list(public_ids),
        )
    assert len(rows) == len(set(public_ids)), "make_due: a monitor is missing"
    while True:
        now = utcnow()
        due = now.replace(microsecond=now.microsecond // 1000 * 1000) - timedelta(milliseconds=1)
        points = [
            schedule.next_due(
                schedule.phase_ms(r["id"], r["check_interval"]), r["check_interval"], due
            )
            for r in rows
        ]
        near = [point for point in points if point - now < DUE_MARGIN]
        if not near:
            break
        await asyncio.sleep(max((max(near) - now).total_seconds(), 0) + 0.002)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET next_due_at = $2 WHERE public_id = ANY($1::uuid[])",
            list(public_ids),
            due,
        )
    return due


async def next_due_at(pool: asyncpg.Pool, public_id: str) -> datetime | None:
    async with pool.acquire() as conn:
        at: datetime | None = await conn.fetchval(
            "SELECT next_due_at FROM monitors WHERE public_id = $1", public_id
        )
    return at


async def test_a_new_monitors_first_round_runs_at_once_then_it_joins_its_grid(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    """A newcomer's first result came up to one interval after creating the monitor; now the
    first round goes out on the scheduler's next pass, and the next one is on its grid, more
    than half an interval later."""
    (cc,) = countries.take()
    await countries.live(cc)
    monitor = await create(api, org, allowedCheckCountryCodes=[cc])
    assert await next_due_at(pipe_pool, monitor["publicId"]) is None
    before = utcnow() - timedelta(milliseconds=1)
    assert await pipeline.scheduler.tick() == 1
    [(job, _)] = await countries.jobs(cc)
    assert before <= parse_iso(job.scheduled_at) <= utcnow()
    due = await next_due_at(pipe_pool, monitor["publicId"])
    phase = schedule.phase_ms(monitor["publicId"], 60)
    assert due == schedule.grid_after_round(phase, 60, parse_iso(job.scheduled_at))


async def test_check_now_before_a_new_monitors_first_round_is_that_round(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    """A trigger-check of a monitor none of whose rounds has gone yet, before the scheduler
    planned it or once it planned its first round at once, is its first round: the scheduler
    sends no other, and its grid goes on after it. Once its first round has gone, a
    trigger-check is a round of its own (and moves no due time)."""
    (cc,) = countries.take()
    await countries.live(cc)
    unplanned = await create(api, org, allowedCheckCountryCodes=[cc])
    planned = await create(api, org, allowedCheckCountryCodes=[cc])
    await pipeline.scheduler.plan_new()  # both get their first round at once...
    await pipe_pool.execute(  # ...but one is created just after that plan
        "UPDATE monitors SET next_due_at = NULL WHERE public_id = $1", unplanned["publicId"]
    )
    for m in (unplanned, planned):
        url = f"/api/smtp-monitors/{m['publicId']}/trigger-check"
        r = await api.post(url, headers=org.auth())
        assert r.status_code == 202, r.text
        at = parse_iso(r.json()["scheduledAt"])
        phase = schedule.phase_ms(m["publicId"], 60)
        assert await next_due_at(pipe_pool, m["publicId"]) == schedule.grid_after_round(
            phase, 60, at
        )
    assert len(await countries.jobs(cc)) == 2
    assert await pipeline.scheduler.tick() == 0
    due = await next_due_at(pipe_pool, planned["publicId"])
    r = await api.post(
        f"/api/smtp-monitors/{planned['publicId']}/trigger-check", headers=org.auth()
    )
    assert r.status_code == 202, r.text
    assert len(await countries.jobs(cc)) == 3
    assert await next_due_at(pipe_pool, planned["publicId"]) == due


async def test_a_pass_while_check_now_plans_a_new_monitors_round_sends_no_other(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    """ "Check now" right after creating a monitor, its planning slow (a loaded host): a
    scheduler pass meanwhile sends no first round of its own (it is held back), so the
    trigger's round is the only one and the grid goes on after it."""
    (cc,) = countries.take()
    await countries.live(cc)
    m = await create(api, org, allowedCheckCountryCodes=[cc])
    planner = pipeline.scheduler.planner
    original = planner.triggered_round
    planning, go = asyncio.Event(), asyncio.Event()

    async def slow(claimed: Any, now: datetime) -> Any:
        planning.set()
        await go.wait()
        return await original(claimed, now)

    planner.triggered_round = slow  # type: ignore[method-assign]
    try:
        url = f"/api/smtp-monitors/{m['publicId']}/trigger-check"
        asked = asyncio.create_task(api.post(url, headers=org.auth()))
        await asyncio.wait_for(planning.wait(), 10)
        assert await pipeline.scheduler.tick() == 0  # the first round held back
        go.set()
        r = await asked
    finally:
        go.set()
        planner.triggered_round = original  # type: ignore[method-assign]
    assert r.status_code == 202, r.text
    at = parse_iso(r.json()["scheduledAt"])
    [(job, _)] = await countries.jobs(cc)
    assert parse_iso(job.scheduled_at) == at
    phase = schedule.phase_ms(m["publicId"], 60)
    assert await next_due_at(pipe_pool, m["publicId"]) == schedule.grid_after_round(phase, 60, at)
    assert await pipeline.scheduler.tick() == 0


async def test_first_rounds_at_once_draw_on_the_organizations_trigger_allowance(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """A new monitor's first round went out at once, whatever the rate: creating (and
    deleting) monitors of every country was a trigger-check without a limit, a round of every
    country per request. Now a first round at once draws on the organization's allowance for
    triggered checks (ORG_MAX_CHECKS_PER_MINUTE a minute, here 3): three new monitors of one
    country start at once, the fourth on its grid; another organization is not held back.
    The scheduler's clock stands still: no monitor's grid point comes due between the passes,
    however long the machine takes between them."""
    (cc,) = countries.take()
    await countries.live(cc)
    clock = Clock()
    scheduler = scheduler_with(
        checks_per_minute=3,
        clock=clock,
    )
    made = [
        await create(api, org, allowedCheckCountryCodes=[cc], checkInterval=3600) for _ in range(4)
    ]
    assert await scheduler.tick() == 3
    started = {job.monitor_id for job, _ in await countries.jobs(cc)}
    (waiting,) = [m["publicId"] for m in made if m["publicId"] not in started]
    due = await next_due_at(pipe_pool, waiting)
    assert due is not None and clock.now < due <= clock.now + timedelta(hours=1)  # its grid
    other = await make_tenant(pipe_pool)
    theirs = await create(api, other, allowedCheckCountryCodes=[cc], checkInterval=3600)
    assert await scheduler.tick() == 1
    assert theirs["publicId"] in {job.monitor_id for job, _ in await countries.jobs(cc)}


async def test_due_monitor_becomes_one_job_per_listed_country_with_its_msg_id(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
    seal_keys: KeyRing,
) -> None:
    a, b = countries.take(2)
    await countries.live(a)
    await countries.live(b)
    monitor = await create(api, org, allowedCheckCountryCodes=[a, b], port=None)
    pid = monitor["publicId"]
    due = await make_due(pipe_pool, pid)
    assert await pipeline.scheduler.tick() == 2
    for cc in (a, b):
        [(job, msg_id)] = await countries.jobs(cc)
        assert isinstance(job, SmtpCheckJob)
        assert job.job_id == msg_id == job_ids.make(pid, cc, due)
        assert (job.monitor_id, job.country, job.hostname) == (pid, cc, "smtp.example.com")
        assert job.port == 25  # the default, resolved
        assert job.timeout_seconds == 30
        assert parse_iso(job.scheduled_at) == due
        assert parse_iso(job.expires_at) == due + timedelta(seconds=60)
        assert job.config.auth is None  # the credentials travel sealed to the country
        opened = seal_keys.opened(job)
        assert isinstance(opened, SmtpCheckJob) and opened.config.auth is not None
        auth = opened.config.auth
        assert (auth.user, auth.password.reveal()) == ("username", "password")
    # Back on its grid: `make_due` made this new monitor's first due time, off the grid, so the
    # grid goes on from its first point more than half an interval on.
    after = await next_due_at(pipe_pool, pid)
    assert after == schedule.first_grid_round(schedule.phase_ms(pid, 60), 60, due)


async def test_imap_job_carries_the_decrypted_password_and_protocol_sealed(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    seal_keys: KeyRing,
) -> None:
    (cc,) = countries.take()
    await countries.live(cc)
    monitor = await create(api, org, "imap", allowedCheckCountryCodes=[cc])
    await make_due(pipe_pool, monitor["publicId"])
    assert await pipeline.scheduler.tick() == 1
    [(job, _)] = await countries.jobs(cc)
    assert isinstance(job, ImapCheckJob)
    assert (job.config.user, job.config.password.reveal()) == ("", "")
    job = seal_keys.opened(job)
    assert isinstance(job, ImapCheckJob)
    assert (job.config.protocol, job.config.user, job.config.password.reveal(), job.port) == (
        "imap",
        "monitor@example.com",
        "password",
        993,
    )


async def test_a_replayed_round_or_a_second_replica_publishes_no_duplicates(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """A crash before the commit leaves the monitor due: the same ids go out again, and
    JetStream's duplicate window drops them."""
    (cc,) = countries.take()
    await countries.live(cc)
    monitor = await create(api, org, allowedCheckCountryCodes=[cc])
    due = await make_due(pipe_pool, monitor["publicId"])
    assert await pipeline.scheduler.tick() == 1
    replica = scheduler_with()
    async with pipe_pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET next_due_at = $2 WHERE public_id = $1", monitor["publicId"], due
        )
    assert await replica.tick() == 1  # published, but JetStream kept only the first
    assert len(await countries.jobs(cc)) == 1


async def test_disabled_monitor_is_not_scheduled_and_status_change_replans(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    (cc,) = countries.take()
    await countries.live(cc)
    monitor = await create(api, org, allowedCheckCountryCodes=[cc])
    await make_due(pipe_pool, monitor["publicId"])
    r = await api.patch(
        f"/api/smtp-monitors/{monitor['publicId']}", json={"status": "paused"}, headers=org.auth()
    )
    assert r.status_code == 200, r.text
    assert await next_due_at(pipe_pool, monitor["publicId"]) is None
    await make_due(pipe_pool, monitor["publicId"])
    assert await pipeline.scheduler.tick() == 0
    assert await countries.jobs(cc) == []


async def test_interval_change_takes_effect_from_the_next_round(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    (cc,) = countries.take()
    await countries.live(cc)
    monitor = await create(api, org, allowedCheckCountryCodes=[cc])
    assert await pipeline.scheduler.tick() == 1  # its first round, at once
    r = await api.patch(
        f"/api/smtp-monitors/{monitor['publicId']}",
        json={"checkInterval": 600, "timeoutSeconds": 10},
        headers=org.auth(),
    )
    assert r.status_code == 200, r.text
    before = utcnow()
    await pipeline.scheduler.plan_new()
    due = await next_due_at(pipe_pool, monitor["publicId"])
    assert due is not None and before < due <= before + timedelta(seconds=600)
    assert schedule.next_due(schedule.phase_ms(monitor["publicId"], 600), 600, before) == due


async def test_null_countries_run_from_n_live_countries_stable_per_monitor(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    live = countries.take(3)
    for cc in live:
        await countries.live(cc)
    await countries.only_these_live()
    monitor = await create(api, org, allowedCheckCountryCodes=None)
    pid = monitor["publicId"]
    await make_due(pipe_pool, pid)
    assert await pipeline.scheduler.tick() == 2
    expected = schedule.pick_countries(pid, set(live), 2)
    got = sorted([cc for cc in live if await countries.jobs(cc)])
    assert got == expected
    # Nothing recorded as no_agent: every picked country is live.
    async with pipe_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM check_results") == 0


async def test_null_countries_without_any_live_agent_are_no_agent_where_the_round_went(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    """When every agent is gone, the round is not silently skipped: it is recorded `no_agent`
    in the countries the monitor's last round went to, and the API shows only those."""
    live = countries.take(2)
    for cc in live:
        await countries.live(cc)
    await countries.only_these_live()
    monitor = await create(api, org, allowedCheckCountryCodes=None)
    pid = monitor["publicId"]
    await make_due(pipe_pool, pid)
    assert await pipeline.scheduler.tick() == 2
    async with pipe_pool.acquire() as conn:
        went = await conn.fetchval("SELECT round_countries FROM monitors WHERE public_id = $1", pid)
    assert sorted(went) == sorted(live)
    await countries.cleanup()  # every agent gone
    await make_due(pipe_pool, pid)
    assert await pipeline.scheduler.tick() == 0
    async with pipe_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT country, status, error_kind FROM check_results WHERE monitor_public_id = $1",
            pid,
        )
    assert sorted(tuple(r) for r in rows) == [(cc, "missed", "no_agent") for cc in sorted(live)]


async def test_a_monitor_that_cannot_become_jobs_is_skipped_and_the_rest_still_run(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    """A stored secret that no longer decrypts (e.g. SECRETS_KEY lost) stops that monitor's
    rounds with a log line, not the scheduler: its next due time moves on, others run."""
    (cc,) = countries.take()
    await countries.live(cc)
    broken = await create(api, org, allowedCheckCountryCodes=[cc])
    fine = await create(api, org, allowedCheckCountryCodes=[cc])
    async with pipe_pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET config = jsonb_set(config, '{auth,pass}', '\"enc:v1:garbage\"')"
            " WHERE public_id = $1",
            broken["publicId"],
        )
    due = await make_due(pipe_pool, broken["publicId"], fine["publicId"])
    with capture_logs() as logs:
        assert await pipeline.scheduler.tick() == 1
    [(job, _)] = await countries.jobs(cc)
    assert job.monitor_id == fine["publicId"]
    [skipped] = [e for e in logs if e["event"] == "monitor unusable; round skipped"]
    assert skipped["monitor_id"] == broken["publicId"] and skipped["log_level"] == "error"
    after = await next_due_at(pipe_pool, broken["publicId"])
    assert after is not None and after > due


async def test_a_monitor_whose_config_does_not_fit_its_kind_is_logged_once_and_moves_on(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    """A stored config of the wrong shape (written by hand, or by an older version) is one
    error line naming the monitor and its kind, per round; its round goes nowhere, records
    nothing, and its next due time moves on; the other monitors run."""
    (cc,) = countries.take()
    await countries.live(cc)
    broken = await create(api, org, allowedCheckCountryCodes=[cc])
    fine = await create(api, org, allowedCheckCountryCodes=[cc])
    async with pipe_pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET config = jsonb_set(config, '{auth}', '\"not an object\"')"
            " WHERE public_id = $1",
            broken["publicId"],
        )
    due = await make_due(pipe_pool, broken["publicId"], fine["publicId"])
    with capture_logs() as logs:
        assert await pipeline.scheduler.tick() == 1
    [(job, _)] = await countries.jobs(cc)
    assert job.monitor_id == fine["publicId"]
    [skipped] = [e for e in logs if broken["publicId"] in str(e.get("monitor_id"))]
    assert skipped["event"] == "monitor unusable; round skipped"
    assert skipped["log_level"] == "error" and skipped["monitor_type"] == "smtp"
    assert "auth" in skipped["error"]
    after = await next_due_at(pipe_pool, broken["publicId"])
    assert after is not None and after > due
    async with pipe_pool.acquire() as conn:
        went, stored = cast(
            asyncpg.Record,
            await conn.fetchrow(
                "SELECT m.round_countries, (SELECT count(*) FROM check_results r"
                "  WHERE r.monitor_id = m.id) FROM monitors m WHERE public_id = $1",
                broken["publicId"],
            ),
        )
    assert (went, stored) == ([cc], 0)


async def test_hostname_and_country_changes_take_effect_from_the_next_round(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    first, second = countries.take(2)
    await countries.live(first)
    await countries.live(second)
    monitor = await create(api, org, allowedCheckCountryCodes=[first])
    pid = monitor["publicId"]
    r = await api.patch(
        f"/api/smtp-monitors/{pid}",
        json={
            "hostname": "mx2.example.net",
            "allowedCheckCountryCodes": [second],
            # a new server needs the password sent again (tests/api/test_secret_binding.py)
            "smtpConfig": {"auth": {"user": "username", "pass": "password"}},
        },
        headers=org.auth(),
    )
    assert r.status_code == 200, r.text
    await make_due(pipe_pool, pid)
    assert await pipeline.scheduler.tick() == 1
    assert await countries.jobs(first) == []
    [(job, _)] = await countries.jobs(second)
    assert job.hostname == "mx2.example.net"


async def _overdue_monitor(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
    *,
    down: timedelta,
    late: timedelta,
) -> tuple[str, str, datetime, Scheduler]:
    """A 10 s monitor whose scheduler was away for `down` and comes back `late` after a grid
    point g: (public id, country, g, that scheduler, its clock fixed there)."""
    (cc,) = countries.take()
    await countries.live(cc)
    monitor = await create(
        api, org, allowedCheckCountryCodes=[cc], checkInterval=10, timeoutSeconds=5
    )
    pid = monitor["publicId"]
    g = schedule.last_due(schedule.phase_ms(pid, 10), 10, utcnow())
    async with pipe_pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET next_due_at = $2 WHERE public_id = $1", pid, g - down
        )
    scheduler = scheduler_with(
        clock=lambda: g + late,
    )
    return pid, cc, g, scheduler


async def missed_rows(pool: asyncpg.Pool, public_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT scheduled_at, country, job_id, status, error_kind, agent_id FROM check_results"
            " WHERE monitor_public_id = $1 ORDER BY scheduled_at",
            uuid.UUID(public_id),
        )
    return rows


async def test_an_overdue_monitor_gets_missed_rows_for_its_skipped_rounds_and_one_job(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
    scheduler_with: SchedulerWith,
) -> None:
    """Back after 40 s away, 3 s past grid point g: the four rounds before g are over, each
    gets one `overdue` row (under its job id, as a grid cell), only g's round is sent, and
    the monitor moves on to g + 10 s."""
    pid, cc, g, scheduler = await _overdue_monitor(
        api,
        org,
        pipe_pool,
        pipeline,
        countries,
        scheduler_with,
        down=timedelta(seconds=40),
        late=timedelta(seconds=3),
    )
    assert await scheduler.tick() == 1
    [(job, _)] = await countries.jobs(cc)
    assert parse_iso(job.scheduled_at) == g
    rows = await missed_rows(pipe_pool, pid)
    skipped = [g - timedelta(seconds=s) for s in (40, 30, 20, 10)]
    assert [r["scheduled_at"] for r in rows] == skipped
    assert {(r["country"], r["status"], r["error_kind"], r["agent_id"]) for r in rows} == {
        (cc, "missed", "overdue", None)
    }
    assert [r["job_id"] for r in rows] == [job_ids.make(pid, cc, at) for at in skipped]
    assert await next_due_at(pipe_pool, pid) == g + timedelta(seconds=10)
    assert await scheduler.tick() == 0  # and nothing twice
    assert len(await missed_rows(pipe_pool, pid)) == 4


async def test_a_round_with_too_little_time_left_is_recorded_overdue_not_sent(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """9.5 s into a 10 s round its job would expire before an agent could start it: nothing
    is published, the round is `overdue` like the ones before it."""
    pid, cc, g, scheduler = await _overdue_monitor(
        api,
        org,
        pipe_pool,
        pipeline,
        countries,
        scheduler_with,
        down=timedelta(seconds=20),
        late=timedelta(seconds=9.5),
    )
    assert await scheduler.tick() == 0
    assert await countries.jobs(cc) == []
    rows = await missed_rows(pipe_pool, pid)
    assert [(r["scheduled_at"], r["error_kind"]) for r in rows] == [
        (g - timedelta(seconds=20), "overdue"),
        (g - timedelta(seconds=10), "overdue"),
        (g, "overdue"),
    ]
    assert await next_due_at(pipe_pool, pid) == g + timedelta(seconds=10)


async def test_catch_up_after_hours_away_is_one_round_and_an_hour_of_overdue_rows(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """Two hours away: one round sent, and the last hour's rounds (the alerter's horizon, as
    far back as rows are written) recorded overdue, not a burst of two hours of jobs."""
    pid, cc, g, scheduler = await _overdue_monitor(
        api,
        org,
        pipe_pool,
        pipeline,
        countries,
        scheduler_with,
        down=timedelta(hours=2),
        late=timedelta(seconds=1),
    )
    assert await scheduler.tick() == 1
    [(job, _)] = await countries.jobs(cc)
    assert parse_iso(job.scheduled_at) == g
    rows = await missed_rows(pipe_pool, pid)
    assert len(rows) == 359  # g - 3590 s to g - 10 s: g - 1 h is before the horizon
    assert rows[0]["scheduled_at"] >= g + timedelta(seconds=1) - timedelta(hours=1)
    assert rows[-1]["scheduled_at"] == g - timedelta(seconds=10)


async def test_listed_country_without_agent_is_recorded_no_agent_and_shown_by_the_api(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    live, dark = countries.take(2)
    await countries.live(live)
    monitor = await create(api, org, allowedCheckCountryCodes=[live, dark])
    pid = monitor["publicId"]
    due = await make_due(pipe_pool, pid)
    assert await pipeline.scheduler.tick() == 1
    assert len(await countries.jobs(live)) == 1
    assert await countries.jobs(dark) == []
    r = await api.get(f"/api/smtp-monitors/{pid}/results", headers=org.auth("readonly"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["total"], body["page"], body["perPage"]) == (1, 1, 50)
    [item] = body["items"]
    assert item["country"] == dark
    assert (item["status"], item["errorKind"], item["agentId"]) == ("missed", "no_agent", None)
    assert item["jobId"] == job_ids.make(pid, dark, due)
    assert parse_iso(item["scheduledAt"]) == due
    r = await api.get(f"/api/smtp-monitors/{pid}/uptime", headers=org.auth())
    day = r.json()["windows"][0]
    assert day["window"] == "day"
    assert day["countries"][dark] == {
        "up": 0,
        "down": 0,
        "missed": 1,
        "uptimePercent": None,
        "upSeconds": 0.0,
        "downSeconds": 0.0,
    }
    r = await api.get(f"/api/smtp-monitors/{pid}/countries", headers=org.auth())
    [state] = r.json()["items"]
    assert (state["country"], state["status"], state["errorKind"]) == (dark, "missed", "no_agent")


async def test_trigger_check_runs_a_round_now_from_every_country(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
) -> None:
    live, dark = countries.take(2)
    await countries.live(live)
    monitor = await create(api, org, allowedCheckCountryCodes=[live, dark])
    # Settled, waiting on a round of its grid an hour on (ingest.alert_queue_store.push_settled).
    watched = (
        "INSERT INTO alert_queue (monitor_id, due_at, settled, watch_at, watch_step)"
        " SELECT id, now() + interval '1 hour', true, now(), 60 FROM monitors"
        " WHERE public_id = $1::uuid ON CONFLICT (monitor_id) DO UPDATE SET"
        " due_at = EXCLUDED.due_at, settled = true, watch_at = EXCLUDED.watch_at,"
        " watch_step = 60"
    )
    await pipe_pool.execute(watched, monitor["publicId"])
    url = f"/api/smtp-monitors/{monitor['publicId']}/trigger-check"
    r = await api.post(url, headers=org.auth("member"))
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    statuses = {j["country"]: j["status"] for j in body["jobs"]}
    assert statuses == {live: "queued", dark: "no_agent"}
    # A round off its grid: no routine round moves the queue row past it any more.
    watch = await pipe_pool.fetchrow(
        "SELECT q.watch_at, q.watch_step FROM alert_queue q JOIN monitors m"
        " ON m.id = q.monitor_id WHERE m.public_id = $1::uuid",
        monitor["publicId"],
    )
    assert watch is not None and tuple(watch.values()) == (None, None)
    [(job, msg_id)] = await countries.jobs(live)
    queued = next(j for j in body["jobs"] if j["country"] == live)
    assert job.job_id == msg_id == queued["jobId"]
    assert job.scheduled_at == body["scheduledAt"]
    # A second trigger is a new round with new ids.
    r = await api.post(url, headers=org.auth())
    assert r.status_code == 202
    assert len(await countries.jobs(live)) == 2


async def test_trigger_check_roles_and_tenancy(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool, countries: Countries
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org, "imap", allowedCheckCountryCodes=[cc])
    url = f"/api/imap-pop-monitors/{monitor['publicId']}/trigger-check"
    assert (await api.post(url, headers=org.auth("readonly"))).status_code == 403
    other = await make_tenant(pipe_pool, supporter=True)
    assert (await api.post(url, headers=other.auth("admin"))).status_code == 404
    assert (await api.post(url, headers=other.auth("supporter"))).status_code == 403
    r = await api.get(
        f"/api/imap-pop-monitors/{monitor['publicId']}/results", headers=other.auth("admin")
    )
    assert r.status_code == 404
    r = await api.get(
        f"/api/imap-pop-monitors/{monitor['publicId']}/results", headers=other.auth("supporter")
    )
    assert r.status_code == 200
    r = await api.get(
        f"/api/smtp-monitors/{monitor['publicId']}/results", headers=org.auth("admin")
    )
    assert r.status_code == 404  # an IMAP monitor is not an SMTP monitor


async def test_agents_lists_live_agents_per_country(
    api: httpx.AsyncClient, org: Tenant, countries: Countries
) -> None:
    a, b = countries.take(2)
    await countries.live(a, "agent-1", version="1.2.3", in_flight=3, capacity=100)
    await countries.live(a, "agent-2")
    await countries.live(b, "agent-3")
    r = await api.get("/api/agents", headers=org.auth("operator"))
    assert r.status_code == 200, r.text
    by_country = {c["country"]: c["agents"] for c in r.json()["countries"]}
    assert [x["id"] for x in by_country[a]] == ["agent-1", "agent-2"]
    first = by_country[a][0]
    assert (first["version"], first["inFlight"], first["capacity"]) == ("1.2.3", 3, 100)
    assert set(first) == {
        "id",
        "country",
        "version",
        "lastSeen",
        "startedAt",
        "inFlight",
        "capacity",
        "selfCheck",
    }
    assert first["selfCheck"] is None  # an agent without canaries (or one that predates them)
    assert [x["id"] for x in by_country[b]] == ["agent-3"]


async def test_a_monitor_with_a_mail_domain_gets_it_on_one_round_per_dns_interval(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """DNS every 300 s, checks every 60 s: of ten rounds in a row the first carries
    `mailDomain` (a new monitor's DNS is resolved at once), then one per window, five rounds
    apart; a monitor without one never does. Every
    SMTP monitor's DNS rounds ask for its reverse DNS (`reverseDns`, issue 58), the same
    rounds as its mail DNS, whether it names a mail domain or not; a monitor that opted in to
    the open relay test (`relayCheck`) has it in its job's config on those rounds only."""
    (cc,) = countries.take()
    await countries.live(cc)
    watched = await create(api, org, allowedCheckCountryCodes=[cc], mailDomain="Example.COM")
    relay = {"secure": False, "relayCheck": True}
    plain = await create(api, org, allowedCheckCountryCodes=[cc], smtpConfig=relay)
    assert plain["smtpConfig"] == relay
    scheduler = scheduler_with(
        dns_interval_s=300,
    )
    carried: dict[str, list[datetime]] = {}
    reverse: dict[str, list[datetime]] = {}
    firsts: dict[str, datetime] = {}
    for monitor in (watched, plain):
        pid = monitor["publicId"]
        g = schedule.next_due(schedule.phase_ms(pid, 60), 60, utcnow())
        firsts[pid] = g
        for n in range(10):
            at = g + timedelta(seconds=60 * n)
            async with pipe_pool.acquire() as conn:
                await conn.execute(
                    "UPDATE monitors SET next_due_at = $2 WHERE public_id = $1", pid, at
                )
                claimed = await due.monitor(conn, monitor["id"])
            assert claimed is not None
            (plan,) = await scheduler.planner.rounds(
                [claimed], at + timedelta(seconds=1), frozenset({cc})
            )
            (job,) = plan.jobs
            if plan.dns_round:  # as sending the round records it
                async with pipe_pool.acquire() as conn:
                    await due.dns_asked(conn, [monitor["id"]], at)
            if job.mail_domain is not None:
                assert job.mail_domain == "example.com"
                carried.setdefault(pid, []).append(parse_iso(job.scheduled_at))
            if job.reverse_dns:
                reverse.setdefault(pid, []).append(parse_iso(job.scheduled_at))
            # the opted-in relay test rides on the same rounds only
            assert isinstance(job.config, SmtpConfig)
            assert job.config.relay_check is (pid == plain["publicId"] and job.reverse_dns)
            # what older agents read in those fields, newer ones read in `sideChecks` (issue 65)
            asked = {"mail_dns": job.mail_domain is not None, "reverse_dns": job.reverse_dns,
                     "relay": job.config.relay_check,
                     # readiness (issue 67): a mail domain's (this one's) DNS rounds
                     "readiness": job.mail_domain is not None}  # fmt: skip
            assert set(job.side_checks) == {name for name, yes in asked.items() if yes}
            if job.mail_domain is not None:
                assert MAIL_DNS.ask_of(job.side_checks) == MailDnsAsk(domain="example.com")
    for pid, got in (
        (watched["publicId"], carried[watched["publicId"]]),
        (plain["publicId"], reverse[plain["publicId"]]),
    ):
        first = got[0]
        later = [at for at in got if at != first]
        assert first == firsts[pid]  # the first round, at once
        assert len(later) in (1, 2) and all(schedule.dns_due(pid, at, 60, 300) for at in later)
        assert len(later) == 1 or later[1] - later[0] == timedelta(seconds=300)
    assert plain["publicId"] not in carried
    assert reverse[watched["publicId"]] == carried[watched["publicId"]]


async def test_repeated_trigger_checks_resolve_mail_dns_once_per_floor(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    """Pins TRIGGER_DNS_FLOOR: the first trigger-check of a monitor whose mail DNS was never
    resolved carries `mailDomain`; the ones after it within 5 minutes do not (before, every
    trigger-check did); once the last resolution is 5 minutes old, the next one does again."""
    (cc,) = countries.take()
    await countries.live(cc)
    monitor = await create(api, org, allowedCheckCountryCodes=[cc], mailDomain="example.com")
    async with pipe_pool.acquire() as conn:
        monitor_id = await conn.fetchval(
            "SELECT id FROM monitors WHERE public_id = $1", uuid.UUID(monitor["publicId"])
        )

    async def carried() -> list[str | None]:
        for _ in range(3):
            assert await pipeline.scheduler.trigger(monitor_id) is not None
        return [job.mail_domain for job, _ in await countries.jobs(cc)][-3:]

    assert await carried() == ["example.com", None, None]
    async with pipe_pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET mail_dns_at = mail_dns_at - interval '5 minutes' WHERE id = $1",
            monitor_id,
        )
    assert await carried() == ["example.com", None, None]


async def test_jobs_carry_their_organization_as_an_opaque_tenant_key(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    """Agents share slots and lookups between organizations by the job's `tenant`: the same
    key for every job of one organization, another for another's, and not its database id."""
    (cc,) = countries.take()
    await countries.live(cc)
    other = await make_tenant(pipe_pool)
    ours = [await create(api, org, allowedCheckCountryCodes=[cc]) for _ in range(2)]
    theirs = await create(api, other, allowedCheckCountryCodes=[cc])
    await make_due(pipe_pool, *(m["publicId"] for m in [*ours, theirs]))
    assert await pipeline.scheduler.tick() == 3
    tenant = {job.monitor_id: job.tenant for job, _ in await countries.jobs(cc)}
    a, b, c = (tenant[m["publicId"]] for m in [*ours, theirs])
    assert a == b != c
    assert len(a) == 16 and a != str(org.org_id) and c != str(other.org_id)


async def test_a_pass_behind_its_rounds_ends_after_its_time_and_the_rest_stay_due(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """A scheduler that cannot keep up ends a pass's due rounds after `max_s` (the next pass
    follows at once), so it still plans, confirms and sees a stop in between; what it did not
    reach stays due and goes in the next pass."""
    (cc,) = countries.take()
    await countries.live(cc)
    monitors = [await create(api, org, allowedCheckCountryCodes=[cc]) for _ in range(3)]
    await make_due(pipe_pool, *(m["publicId"] for m in monitors))
    one_at_a_time = scheduler_with(batch=1)
    assert await one_at_a_time.run_due(max_s=0) == 1  # one batch, then its time is up
    still_due = [
        m
        for m in monitors
        if cast(datetime, await next_due_at(pipe_pool, m["publicId"])) <= utcnow()
    ]
    assert len(still_due) == 2
    assert await one_at_a_time.run_due() == 2  # no limit: every round due now
    assert len(await countries.jobs(cc)) == 3


async def test_readiness_is_held_past_its_organizations_hourly_budget_and_resumes_by_itself(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
    job_ids: JobIds,
) -> None:
    """READINESS_QUERIES_PER_HOUR of 160 (two rounds' most) in a country: of three monitors
    of one organization due in one pass, two are asked their mail domain's readiness and one
    is held with why (the domain not sent at all), as the pass reserved; each job's asks, the
    held one's as admission changed them, are sealed with its id as sent (issue 78); another
    organization's monitor in the same country is asked. An hour later the held monitor is
    asked again: nothing of the budget outlives its hour."""
    (cc,) = countries.take()
    await countries.live(cc)
    clock = Clock()
    scheduler = scheduler_with(
        readiness_queries=160,
        clock=clock,
    )
    other = await make_tenant(pipe_pool)
    fields: dict[str, Any] = {"allowedCheckCountryCodes": [cc], "checkInterval": 3600, "port": None}
    ours = [await create(api, org, mailDomain=f"d{i}.example", **fields) for i in range(3)]
    theirs = await create(api, other, mailDomain="other.example", **fields)
    await make_due(pipe_pool, *(m["publicId"] for m in [*ours, theirs]))
    clock.set()
    assert await scheduler.tick() == 4
    sent = [j for j, _ in await countries.jobs(cc)]
    for j in sent:  # as the agent echoes them: the JSON values it decoded
        echoed = msgspec.json.decode(msgspec.json.encode(j.side_checks))
        assert j.asks_seal and job_ids.asks.opens(j.job_id, echoed, j.asks_seal)
        assert not job_ids.asks.opens(j.job_id, {}, j.asks_seal)
    asks = {j.monitor_id: cast(ReadinessAsk, READINESS.ask_of(j.side_checks)) for j in sent}
    asked = [m["publicId"] for m in ours if asks[m["publicId"]].domain]
    (held,) = [m["publicId"] for m in ours if m["publicId"] not in asked]
    until = (utc_hour(clock.now) + timedelta(hours=1)).strftime("%H:%M")
    assert asks[held] == ReadinessAsk(
        held=f"this organization's DNS budget for readiness in {cc} is spent until {until} UTC"
        " (160 queries an hour)"
    )
    assert asks[theirs["publicId"]].domain == "other.example"
    async with pipe_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT organization_id, asked FROM readiness_budget WHERE country = $1"
            " ORDER BY organization_id",
            cc,
        )
    assert [tuple(r) for r in rows] == [(org.org_id, 2), (other.org_id, 1)]
    # The next hour: the held monitor is asked again, by itself (the others' rounds are
    # not due yet).
    clock.now = utc_hour(clock.now) + timedelta(hours=1, minutes=1)
    async with pipe_pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET next_due_at = CASE WHEN public_id = $1"
            " THEN $2::timestamptz ELSE $3 END WHERE public_id = ANY($4::uuid[])",
            uuid.UUID(held),
            clock.now - timedelta(seconds=1),
            clock.now + timedelta(hours=1),
            [uuid.UUID(m["publicId"]) for m in [*ours, theirs]],
        )
    assert await scheduler.tick() == 1
    (job, _) = (await countries.jobs(cc))[-1]
    assert job.monitor_id == held
    assert READINESS.ask_of(job.side_checks) == ReadinessAsk(
        domain=f"d{[m['publicId'] for m in ours].index(held)}.example",
        selectors=list(COMMON_SELECTORS),
    )


async def test_readiness_rounds_admission_refuses_give_their_budget_reservation_back(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """A country whose one slot another organization holds: the pass reserves its two rounds'
    readiness and they wait for a slot; once they can no longer start, the pass that refuses
    them (`saturated`) gives their reservation back, so the hour's budget is whole again."""
    (cc,) = countries.take()
    await countries.live(
        cc,
        features=[FEATURE_TENANT_LOADS],
        capacity=1,
        in_flight=1,
        tenants=[TenantLoad("someone else", held=1)],
    )
    clock = Clock()
    scheduler = scheduler_with(
        readiness_queries=160,
        clock=clock,
    )
    fields: dict[str, Any] = {"allowedCheckCountryCodes": [cc], "checkInterval": 3600, "port": None}
    ours = [await create(api, org, mailDomain=f"d{i}.example", **fields) for i in range(2)]
    await make_due(pipe_pool, *(m["publicId"] for m in ours))
    clock.set()
    assert await scheduler.tick() == 0  # both wait for the slot

    async def asked() -> list[int]:
        rows = await pipe_pool.fetch(
            "SELECT asked FROM readiness_budget WHERE organization_id = $1 AND country = $2",
            org.org_id,
            cc,
        )
        return [r["asked"] for r in rows]

    assert await asked() == [2]
    clock.now += timedelta(hours=2)  # past their start window: refused
    assert await scheduler.run_waiting() == 0
    assert await asked() == [0]
