"""Heartbeat monitors named by maintenance windows and notification channels (issue 83), on the
real API, PostgreSQL, NATS and the alerter on a ManualClock: a window naming a heartbeat
monitor is accepted (another organization's is a 404), and its late spell inside the window
opens the incident but tells no one until the window ends; a channel limited to a heartbeat
monitor gets its `down` notice."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from nats.js import JetStreamContext

from controller.arrivals.intake import ArrivalsIntake
from controller.jobs.rules import JobIds
from controller.notify.links import Links
from controller.runtime.pipeline import build_alerter
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.arrivals import Arrival, encode
from shared.clock import ManualClock
from shared.subjects import arrivals_subject
from shared.timefmt import iso_ms
from testkit.serving import serve_app
from tests.conftest import Tenant, make_tenant
from tests.pipeline.conftest import Countries

T0 = datetime(2026, 11, 29, 22, 0, tzinfo=UTC)
PATH = "/api/heartbeat-monitors"


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


@pytest.fixture
async def api(
    settings: ControllerSettings, pipe_pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.replace(receiver_domain="hb.mailprobe.test"), pipe_pool)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


async def heartbeat(api: httpx.AsyncClient, org: Tenant, pool: asyncpg.Pool) -> tuple[int, str]:
    """A monitor expecting one mail every 10 minutes (no grace), watched from T0."""
    body = {
        "customerId": org.customer_id,
        "name": "Nightly export",
        "heartbeatConfig": {"everyMinutes": 10, "graceMinutes": 0},
    }
    r = await api.post(PATH, json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    public_id = r.json()["publicId"]
    async with pool.acquire() as conn:
        monitor_id = await conn.fetchval(
            "SELECT id FROM monitors WHERE public_id = $1::uuid", public_id
        )
        await conn.execute(
            "UPDATE heartbeat_watch SET watched_from = $2, due_at = $2 WHERE monitor_id = $1",
            monitor_id,
            T0,
        )
    return monitor_id, public_id


async def beat_once_then_stop(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    country: str,
    public_id: str,
    settings: ControllerSettings,
    job_ids: JobIds,
    minutes: range,
) -> None:
    """One arrival at minute 1, none after: late from minute 11; the alerter runs each minute."""
    clock = ManualClock(at(1))
    alerter = build_alerter(
        settings, pool, js, job_ids, Links("https://mailprobe.example.test"), clock=clock.now
    )
    intake = ArrivalsIntake(js, pool, keep_days=30, clock=clock)
    try:
        arrival = Arrival(
            arrival_id=str(uuid.uuid4()),
            monitor_id=public_id,
            country=country,
            agent_id=f"{country}-rx",
            arrived_at=iso_ms(at(1)),
            peer="127.0.0.1",
            subject="export done",
        )
        await js.publish(arrivals_subject(country, public_id), encode(arrival))
        while not await intake.step(0.5):
            pass
        for minute in minutes:
            clock.set(at(minute))
            await alerter.burst()
    finally:
        await intake.close()


async def test_a_window_naming_a_heartbeat_monitor_holds_its_page_until_it_ends(
    api: httpx.AsyncClient,
    js: JetStreamContext,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    org: Tenant,
    settings: ControllerSettings,
    job_ids: JobIds,
) -> None:
    [country] = countries.take()
    monitor_id, public_id = await heartbeat(api, org, pipe_pool)
    window = {"monitorId": public_id, "startsAt": iso_ms(T0), "endsAt": iso_ms(at(20))}
    stranger = await make_tenant(pipe_pool)
    foreign = await api.post("/api/maintenance-windows", json=window, headers=stranger.auth())
    assert foreign.status_code == 404 and "monitorId" in foreign.text, foreign.text
    r = await api.post("/api/maintenance-windows", json=window, headers=org.auth())
    assert r.status_code == 201, r.text
    listed = await api.get(
        "/api/maintenance-windows", params={"monitorId": public_id}, headers=org.auth()
    )
    assert listed.status_code == 200, listed.text
    assert [w["monitorId"] for w in listed.json()["items"]] == [public_id]

    told = "SELECT started_at, notified FROM incidents WHERE monitor_id = $1 AND ended_at IS NULL"
    await beat_once_then_stop(js, pipe_pool, country, public_id, settings, job_ids, range(1, 19))
    opened = await pipe_pool.fetchrow(told, monitor_id)
    assert opened is not None and opened["started_at"] == at(11), "late in the window: it opens"
    assert not opened["notified"], "in the window: nobody is paged"
    await beat_once_then_stop(js, pipe_pool, country, public_id, settings, job_ids, range(19, 27))
    after = await pipe_pool.fetchrow(told, monitor_id)
    assert after is not None and after["notified"], "told once the window is over"


async def test_a_channel_limited_to_a_heartbeat_monitor_gets_its_notice(
    api: httpx.AsyncClient,
    js: JetStreamContext,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    org: Tenant,
    settings: ControllerSettings,
    job_ids: JobIds,
) -> None:
    [country] = countries.take()
    monitor_id, public_id = await heartbeat(api, org, pipe_pool)
    body = {
        "name": "backup pager",
        "kind": "webhook",
        "url": "https://hooks.mailprobe.example.com/heartbeats",
        "secret": "a webhook secret of enough length",
        "monitorIds": [public_id],
    }
    r = await api.post("/api/notification-channels", json=body, headers=org.auth("admin"))
    assert r.status_code == 201, r.text
    channel = r.json()
    assert channel["monitorIds"] == [public_id]
    await beat_once_then_stop(js, pipe_pool, country, public_id, settings, job_ids, range(1, 14))
    rows = await pipe_pool.fetch(
        "SELECT o.kind FROM notification_outbox o JOIN notification_channels c"
        " ON c.id = o.channel_id WHERE o.monitor_id = $1 AND c.public_id = $2::uuid",
        monitor_id,
        channel["id"],
    )
    assert [r["kind"] for r in rows] == ["down"], rows
