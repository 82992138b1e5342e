"""Alerting against real PostgreSQL (a database of its own: the alerter claims every queued
monitor of its database), real NATS for events, an aiosmtpd relay and a loopback SMS gateway.

Rounds are written through `controller.ingest.store.store`, the ingester's own way in, so the
evaluation queue is marked exactly as in production.
"""

import ipaddress
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from litestar import Litestar
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from controller.alerting.alerter import Alerter
from controller.db.pool import Conn, create_pool
from controller.ingest import store as results
from controller.jobs.result_kinds import ResultRow
from controller.jobs.rules import JobIds
from controller.monitors import store as monitors
from controller.notify import Channel
from controller.notify.egress import Egress
from controller.notify.email import EmailChannel
from controller.notify.links import Links
from controller.notify.outbox import OutboxWorker
from controller.notify.sms import SmsChannel
from controller.scheduling import rules as schedule
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared import embedded
from shared.messages import MonitorEvent, decode_event
from shared.streams import ensure_streams
from shared.subjects import EVENTS_STREAM, events_subject
from shared.timefmt import utcnow
from testkit.alerting.peers import Relay, SmsGateway
from testkit.alerting.receivers import client_context
from testkit.alerting.wired import wired_alerter
from testkit.serving import http_client, serve_app
from tests.conftest import Tenant, make_tenant, scratch_database

RELAY_USER, RELAY_PASSWORD = "relay-user", "relay-pa55word"
MONITOR_SECRET = "monitor-s3cret-never-mailed"
SENDER = "mailprobe <alerts@mailprobe.test>"


@pytest.fixture(scope="session")
async def alert_database_url(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url, "mailprobe_alert") as url:
        yield url


@pytest.fixture(scope="session")
async def alert_pool(alert_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(alert_database_url, 12)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def events_nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_url)
    yield conn
    await conn.drain()


@pytest.fixture(scope="session")
async def events_js(events_nc: NATS) -> JetStreamContext:
    js = events_nc.jetstream()
    await ensure_streams(js)
    return js


@pytest.fixture(scope="session")
async def alert_api_url(
    settings: ControllerSettings, alert_pool: asyncpg.Pool
) -> AsyncIterator[str]:
    async with serve_app(create_app(settings, alert_pool)) as url:
        yield url


@pytest.fixture
async def api(alert_api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=alert_api_url, timeout=10) as client:
        yield client


LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
PUBLIC_URL = "https://mailprobe.example.test"


def loopback_egress() -> Egress:
    """Loopback granted to every organization (`*`): the receivers of tests not about grants."""
    return Egress({"*": LOOPBACK}, ssl_context=client_context(), timeout_s=5)


def channel_app(
    settings: ControllerSettings, pool: asyncpg.Pool, egress: Egress | None = None
) -> Litestar:
    """The API with the receivers' CA trusted and loopback granted to every organization, or
    the grants of `egress`."""
    return create_app(
        settings.replace(public_url=PUBLIC_URL), pool, egress=egress or loopback_egress()
    )


@pytest.fixture(scope="session")
async def channel_api_url(
    settings: ControllerSettings, alert_pool: asyncpg.Pool
) -> AsyncIterator[str]:
    """`channel_app` served once for the session's channel tests (an app's start builds its
    OpenAPI document: about a second of CPU, and more of waiting on a loaded machine)."""
    async with serve_app(channel_app(settings, alert_pool)) as url:
        yield url


@pytest.fixture
async def channel_api(channel_api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=channel_api_url, timeout=20) as client:
        yield client


@pytest.fixture
async def org(alert_pool: asyncpg.Pool) -> AsyncIterator[Tenant]:
    """A tenant; every monitor (and so its results' alert state) is removed afterwards."""
    yield await make_tenant(alert_pool)
    async with alert_pool.acquire() as conn:
        # DELETE, not TRUNCATE: a few rows each, and TRUNCATE makes every partition's files
        # anew (~30 ms a test, most of it PostgreSQL's).
        await conn.execute(
            "DELETE FROM monitors; DELETE FROM result_rows; DELETE FROM result_details;"
            " DELETE FROM result_rollups; DELETE FROM event_outbox"
        )


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    r = Relay(embedded.free_port(), users={RELAY_USER: RELAY_PASSWORD})
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def sms() -> AsyncIterator[SmsGateway]:
    async with SmsGateway() as gateway:
        yield gateway


class Clock:
    """The alerter's and the worker's time: real time plus a shift tests may move."""

    def __init__(self) -> None:
        self.shift = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.shift


@pytest.fixture
def clock() -> Clock:
    return Clock()


def email_channel(relay: Relay) -> EmailChannel:
    return EmailChannel(
        f"smtp://{RELAY_USER}:{RELAY_PASSWORD}@127.0.0.1:{relay.port}", SENDER, timeout_s=5
    )


@dataclass
class Rig:
    """The alerter role wired to the test peers, and helpers to write rounds."""

    pool: asyncpg.Pool
    js: JetStreamContext
    tenant: Tenant
    relay: Relay
    sms: SmsGateway
    clock: Clock
    alerter: Alerter
    outbox: Callable[..., OutboxWorker]
    job_ids: JobIds
    base: datetime = field(default_factory=lambda: utcnow() - timedelta(minutes=40))

    async def monitor(
        self,
        countries: list[str] | None = None,
        *,
        status: str = "active",
        email: str | None = "oncall@customer.test",
        phone: str | None = "+4915112345678",
        name: str = "Outbound relay",
        kind: str = "smtp",
        config: dict[str, Any] | None = None,
        tenant: Tenant | None = None,
        hostname: str = "smtp.customer.test",
        port: int = 587,
    ) -> asyncpg.Record:
        """A monitor of the rig's organization, or of `tenant`'s."""
        owner = tenant or self.tenant
        async with self.pool.acquire() as conn:
            monitor = await monitors.insert(
                conn,
                owner.org_id,
                {
                    "customer_id": owner.customer_id,
                    "type": kind,
                    "name": name,
                    "hostname": hostname,
                    "port": port,
                    "status": status,
                    "check_interval": 60,
                    "timeout_seconds": 10,
                    "allowed_country_codes": countries or ["DE", "FR", "US"],
                    "config": config or {"auth": {"user": "probe", "pass": MONITOR_SECRET}},
                    "notification_email": email,
                    "notification_phone_number": phone,
                },
                self.clock(),
            )
            # The rig's tests read the monitor by column.
            row: asyncpg.Record | None = await conn.fetchrow(
                f"SELECT {monitors.COLUMNS} FROM monitors WHERE id = $1", monitor.id
            )
        assert row is not None
        return row

    def at(self, n: int) -> datetime:
        """The scheduled time of round `n` (one a minute, from 40 minutes ago)."""
        return self.base + timedelta(minutes=n)

    async def on_grid(self, monitor: asyncpg.Record, first: datetime, sent: int) -> None:
        """As the scheduler would have it: the monitor's grid starts at its first point after
        `first` (which becomes round 0 of `at`), and its first `sent` rounds were sent."""
        interval = monitor["check_interval"]
        phase = schedule.phase_ms(str(monitor["public_id"]), interval)
        self.base = schedule.next_due(phase, interval, first)
        async with self.pool.acquire() as conn:
            await conn.execute(  # planned: the grid starts here (rounds_since)
                "UPDATE monitors SET next_due_at = $2 WHERE id = $1", monitor["id"], self.base
            )
            await conn.execute(
                "UPDATE monitors SET next_due_at = $2 WHERE id = $1",
                monitor["id"],
                self.base + timedelta(seconds=interval * sent),
            )

    async def round(
        self,
        monitor: asyncpg.Record,
        n: int,
        outcome: dict[str, str],
        *,
        at: datetime | None = None,
        trigger: bool = False,
    ) -> None:
        """Store round `n` (or the one scheduled `at`, triggered or not): country → `up`, an
        error kind (`down`), `no_agent` (missed) or `inconclusive` (the agent's own path failed
        its self-check); under the scheduler's job ids."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self.store_round(conn, monitor, n, outcome, at=at, trigger=trigger)

    async def store_round(
        self,
        conn: Conn,
        monitor: asyncpg.Record,
        n: int,
        outcome: dict[str, str],
        *,
        at: datetime | None = None,
        trigger: bool = False,
    ) -> None:
        """`round`'s rows stored on `conn`, in the caller's transaction."""
        at = at or self.at(n)
        rows = []
        for cc, what in outcome.items():
            missed = what in ("no_agent", "expired")
            status = what if what in ("up", "inconclusive") else "missed" if missed else "down"
            rows.append(
                ResultRow(
                    job_id=self.job_ids.make(str(monitor["public_id"]), cc, at, trigger),
                    scheduled_at=at,
                    monitor_id=monitor["public_id"],
                    monitor_type=monitor["type"],
                    country=cc,
                    agent_id=None if missed else f"{cc}-agent",
                    status=status,
                    error_kind=None if status == "up" else what,
                    message=MESSAGES.get(what, ""),
                    finished_at=at + timedelta(seconds=1),
                )
            )
        await results.store(conn, rows, now=self.clock())

    async def rounds(
        self, monitor: asyncpg.Record, first: int, outcomes: list[dict[str, str]]
    ) -> None:
        """Store and evaluate round after round, as the ingester and alerter would."""
        for i, outcome in enumerate(outcomes):
            await self.round(monitor, first + i, outcome)
            await self.alerter.burst()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows

    async def state(self, monitor: asyncpg.Record) -> asyncpg.Record:
        rows = await self.fetch(
            "SELECT * FROM monitor_alert_state WHERE monitor_id = $1", monitor["id"]
        )
        return rows[0]

    async def incidents(self, monitor: asyncpg.Record) -> list[asyncpg.Record]:
        return await self.fetch(
            "SELECT * FROM incidents WHERE monitor_id = $1 ORDER BY id", monitor["id"]
        )

    async def outbox_rows(self, monitor: asyncpg.Record) -> list[asyncpg.Record]:
        return await self.fetch(
            "SELECT * FROM notification_outbox WHERE monitor_id = $1 ORDER BY id", monitor["id"]
        )

    async def events(self, monitor: asyncpg.Record) -> list[MonitorEvent]:
        """The monitor's events on the EVENTS stream, read without a consumer."""
        found: list[MonitorEvent] = []
        seq = 0
        subject = events_subject(str(monitor["public_id"]))
        while True:
            try:
                msg = await self.js.get_msg(EVENTS_STREAM, seq=seq + 1, subject=subject, next=True)
            except NotFoundError:
                return found
            assert msg.data is not None and msg.seq is not None
            found.append(decode_event(msg.data))
            seq = msg.seq


MESSAGES = {
    "auth": "535 5.7.8 Authentication credentials invalid",
    "refused": "connection refused",
    "timeout": "no answer within 10 s",
    "tls": "certificate has expired",
    "temporary": "421 4.3.2 Service not available",
    "no_agent": "no live agent at the time",
    "inconclusive": "connection timed out; canary mx.canary.test:25 timed out too",
}


@pytest.fixture
def rig(
    alert_pool: asyncpg.Pool,
    events_js: JetStreamContext,
    org: Tenant,
    relay: Relay,
    sms: SmsGateway,
    clock: Clock,
    job_ids: JobIds,
) -> Iterator[Rig]:
    def outbox(**kwargs: Any) -> OutboxWorker:
        channels: dict[str, Channel] = {
            "email": email_channel(relay),
            "sms": SmsChannel(sms.url, timeout_s=5),
        }
        return OutboxWorker(alert_pool, channels, clock=clock, **{"backoff_s": 0, **kwargs})

    alerter = wired_alerter(
        alert_pool, events_js, job_ids, notify_reminder_minutes=30, links=LINKS, clock=clock
    )
    yield Rig(alert_pool, events_js, org, relay, sms, clock, alerter, outbox, job_ids)


LINKS = Links("https://mailprobe.example.test")  # PUBLIC_URL


def console_page(monitor: asyncpg.Record) -> str:
    """The monitor's console page, as notices link it."""
    return f"https://mailprobe.example.test/console/monitors/{monitor['public_id']}"


DOWN = {"DE": "auth", "FR": "auth", "US": "up"}  # a majority failing
UP = {"DE": "up", "FR": "up", "US": "up"}
ONE = {"DE": "refused", "FR": "up", "US": "up"}  # a minority failing
GONE = {"DE": "no_agent", "FR": "no_agent", "US": "no_agent"}


def new_id() -> str:
    return str(uuid.uuid4())
