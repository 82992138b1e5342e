"""One organization's outage notices to channels that never answer beside another's working
channel (issue 78): how long the other's outage page takes while the outbox worker runs, on
real PostgreSQL and loopback HTTP endpoints.

Organization B (the attacker) has SILENT webhook channels on one monitor, each at a listener
that accepts the connection and never answers; organization A (the victim) has one working
webhook channel on its monitor. B's monitor goes down first (one outage notice per channel),
then, while the worker is busy with B's, A's monitor goes down: the figure is the time from
A's incident to its page at the receiver. Shared by tests/alerting/test_fair_notices.py (short
deadlines) and `python -m bench fair-notices` (the shipped ones)."""

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import asyncpg

from controller.access import accounts_store as accounts
from controller.access import customers_store as customers
from controller.alerting import incident_store
from controller.db.pool import Conn
from controller.monitors import store as monitors
from controller.monitors.store import Monitor
from controller.notify import Channel, channel_store
from controller.notify.channel_send import ChannelSender
from controller.notify.egress import Egress
from controller.notify.entry import Notice, notify
from controller.notify.outbox import OutboxWorker
from controller.notify.recipients import to_channels
from controller.notify.sources import Source
from controller.notify.texts import Texts
from controller.secrets.box import SecretBox
from shared.clock import WALL
from shared.timefmt import utcnow
from testkit.alerting.receivers import Receiver

SILENT = 100
SECRET = "whsec-silent-channels-0123456789"


@dataclass
class SilentListener:
    """A loopback HTTP endpoint that accepts every connection, reads what it is sent and never
    answers; each connection is held until its client gives up."""

    accepted: int = 0
    port: int = 0
    most: int = 0  # connections held at once, at most
    first: asyncio.Event = field(default_factory=asyncio.Event)  # set at the first connection
    _grown: asyncio.Condition = field(default_factory=asyncio.Condition)  # a connection came
    _server: asyncio.Server | None = None
    _held: set[asyncio.StreamWriter] = field(default_factory=set)

    async def holding(self, n: int) -> None:
        """Return once `n` connections are held at once."""
        async with self._grown:
            await self._grown.wait_for(lambda: len(self._held) >= n)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/never"

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.first.set()
        self._held.add(writer)
        self.most = max(self.most, len(self._held))
        async with self._grown:
            self._grown.notify_all()
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        finally:
            self._held.discard(writer)
            writer.close()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._held):
            writer.close()
        await self._server.wait_closed()


@dataclass(frozen=True)
class Tenant:
    organization_id: int
    monitor: Monitor


async def tenant(conn: Conn, name: str) -> Tenant:
    org = await accounts.ensure_organization(conn, f"{name}-{uuid.uuid4().hex[:8]}")
    customer = await customers.create(conn, org, name)
    monitor = await monitors.insert(
        conn,
        org,
        {
            "customer_id": customer.id,
            "type": "smtp",
            "name": f"{name} relay",
            "hostname": f"smtp.{name}.test",
            "port": 587,
            "status": "active",
            "check_interval": 60,
            "timeout_seconds": 10,
            "allowed_country_codes": ["DE"],
            "config": {},
        },
        utcnow(),
    )
    return Tenant(org, monitor)


async def _webhooks(conn: Conn, box: SecretBox, tenant: Tenant, url: str, n: int) -> None:
    for i in range(n):
        channel = await channel_store.insert(
            conn,
            tenant.organization_id,
            {
                "name": f"hook {i}",
                "kind": "webhook",
                "url": url,
                "url_shown": url,
                "secret": box.seal(SECRET),
                "chat_id": None,
            },
        )
        await channel_store.choose(conn, channel, [tenant.monitor.id], [])


@dataclass(frozen=True)
class Site:
    attacker: Tenant  # SILENT channels that never answer
    victim: Tenant  # one working channel


async def site(
    pool: asyncpg.Pool, box: SecretBox, silent_url: str, working_url: str, silent: int = SILENT
) -> Site:
    async with pool.acquire() as conn, conn.transaction():
        attacker = await tenant(conn, "attacker")
        victim = await tenant(conn, "victim")
        await _webhooks(conn, box, attacker, silent_url, silent)
        await _webhooks(conn, box, victim, working_url, 1)
    return Site(attacker, victim)


async def more_monitors(pool: asyncpg.Pool, tenant: Tenant, n: int) -> list[Tenant]:
    """`n` more monitors of `tenant`'s organization, each told on the channels its first
    monitor chose."""
    found = []
    async with pool.acquire() as conn, conn.transaction():
        for i in range(n):
            first = tenant.monitor
            monitor = await monitors.insert(
                conn,
                tenant.organization_id,
                {
                    "customer_id": first.customer_id,
                    "type": "smtp",
                    "name": f"{first.name} {i}",
                    "hostname": f"{i}.{first.hostname}",
                    "port": 587,
                    "status": "active",
                    "check_interval": 60,
                    "timeout_seconds": 10,
                    "allowed_country_codes": ["DE"],
                    "config": {},
                },
                utcnow(),
            )
            await conn.execute(
                "INSERT INTO monitor_notification_channels (monitor_id, channel_id)"
                " SELECT $1, channel_id FROM monitor_notification_channels WHERE monitor_id = $2",
                monitor.id,
                first.id,
            )
            found.append(Tenant(tenant.organization_id, monitor))
    return found


async def outage(pool: asyncpg.Pool, tenant: Tenant) -> None:
    """The monitor's incident opens and its outage notice is queued, as the alerter does: one
    row per channel of the monitor."""
    async with pool.acquire() as conn, conn.transaction():
        incident = await incident_store.open_incident(
            conn, tenant.monitor.id, utcnow(), "refused", "connection refused", ["DE"]
        )
        name = tenant.monitor.name
        texts = Texts(f"[mailprobe] DOWN: {name}", f"{name} is down", "", f"DOWN: {name}")
        notes = to_channels("down", texts, f"down:{incident.id}")
        await notify(
            conn,
            Notice(Source.OUTAGE, tenant.organization_id, tenant.monitor, incident.id, notes),
            utcnow(),
        )


def sender_channels(pool: asyncpg.Pool, box: SecretBox, egress: Egress) -> Mapping[str, Channel]:
    return ChannelSender(pool, box, egress, clock=WALL.now).channels()


async def page_latency(
    pool: asyncpg.Pool,
    worker: OutboxWorker,
    site: Site,
    working: Receiver,
    silent: SilentListener,
    *,
    busy_s: float,
    within_s: float,
    held: int = 1,
) -> float | None:
    """Seconds from the victim's incident to its page at `working`, with `worker` running:
    the attacker's outage first, the victim's `busy_s` later and once `silent` holds `held`
    connections at once (every sender of every worker running: none is idle for the victim's
    page; TimeoutError when they never are within `within_s`); None when the page did not
    arrive within `within_s`."""
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await outage(pool, site.attacker)
        await asyncio.wait_for(silent.first.wait(), busy_s + 30)
        await asyncio.sleep(busy_s)
        await asyncio.wait_for(silent.holding(held), within_s)
        seen = len(working.delivered)
        started = time.monotonic()
        await outage(pool, site.victim)
        while len(working.delivered) == seen:
            if time.monotonic() - started > within_s:
                return None
            await asyncio.sleep(0.01)
        return time.monotonic() - started
    finally:
        # Stopped, not cancelled: its sends under way end within their deadline and are
        # written back (`OutboxWorker.run`). A cancelled send's statement can still hold its
        # outbox rows on the server while the caller removes the monitors (a deadlock).
        stop.set()
        done, _ = await asyncio.wait({running}, timeout=within_s)
        if not done:
            running.cancel()
        await asyncio.gather(running, return_exceptions=True)
