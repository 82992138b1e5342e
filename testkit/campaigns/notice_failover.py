"""`python -m bench notice-failover [--seeds N]`: notices through a PostgreSQL failover at the
instant of sending (issue 69), on real engines on loopback.

A primary with a synchronous standby behind a multi-host DATABASE_URL (testkit/postgres.py),
the outbox worker with two channels: e-mail (to an aiosmtpd sink) and the generic webhook (to
an HTTPS receiver that checks its signature). Each seed queues a monitor's `down` notice on
both and kills the primary (SIGKILL, every process) at an instant drawn by the seed: while a
receiver holds the first send (`send`: the outcome cannot be written back), a few milliseconds
after it answered (`commit`: the write-back's commit), or at a moment of the worker's passes
(`claim`). The standby is promoted 1-5 s later, as a failover manager would, and the
`recovered` notices are queued on the new primary at once (behind the unrecorded `down`
notices). A fresh standby of the new primary serves the next seed. `--lanes N` runs N seeds at
once, each lane on a cluster and receivers of its own.

Every notice is counted at the receivers by its idempotency key (the e-mail's Message-ID, the
webhook's event id): lost (never arrived within a minute), late (first arrived more than
LATE_S after it was queued), repeated (arrived again: receivers drop it by its key). Exits 1
unless none is lost or late.
"""

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from aiosmtpd.smtp import SMTP, Envelope, Session

from controller.access import accounts_store as accounts
from controller.access import customers_store as customers
from controller.db.migrate import migrate
from controller.db.pool import DB_AWAY, connect, create_pool
from controller.monitors import store as monitors
from controller.notify import Channel, channel_kinds, channel_store
from controller.notify.channel_kinds import Event, MonitorFacts
from controller.notify.channel_send import ChannelSender
from controller.notify.egress import Egress
from controller.notify.email import EmailChannel, message_id
from controller.notify.outbox import OutboxWorker
from controller.secrets.box import SecretBox, generate_key
from shared import embedded
from shared.clock import WALL
from shared.timefmt import iso_ms, utcnow
from testkit import postgres
from testkit.alerting.peers import Relay
from testkit.alerting.receivers import Receiver, client_context
from testkit.common import discard_logs, machine, verdict

INSTANTS = ("send", "commit", "claim")
LATE_S = 30.0
WAIT_S = 60.0  # how long a seed waits for its last notice
STOP_WITHIN_S = 30.0  # how long a seed's worker has to write its last sends back
PROMOTE_AFTER_S = (1.0, 5.0)
COMMIT_DELAY_S = (0.0, 0.03)  # `commit`: the kill this long after the receiver answered
CLAIM_DELAY_S = (0.0, 1.5)  # `claim`: the kill this long after the notices were queued
SENDER = "mailprobe@failover.test"
TARGET = "oncall@customer.test"
SECRET = "whsec-failover-signing-key"
KINDS = ("down", "recovered")


@dataclass
class Arrivals:
    """Each idempotency key's arrivals at the receivers."""

    first: dict[str, float] = field(default_factory=dict)
    count: Counter[str] = field(default_factory=Counter)
    tap: Callable[[], None] = lambda: None  # called at each arrival, before the answer
    news: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, key: str) -> None:
        self.first.setdefault(key, time.time())
        self.count[key] += 1
        self.news.set()
        self.tap()

    async def all_of(self, keys: set[str], within_s: float) -> None:
        """Until every key of `keys` arrived, or `within_s` passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                while not keys <= self.first.keys():
                    self.news.clear()
                    await self.news.wait()


@dataclass
class WebhookSink(Receiver):
    arrivals: Arrivals = field(default_factory=Arrivals)

    def answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        status, out = super().answer(method, target, headers, body)
        if 200 <= status < 300:
            self.arrivals.saw(headers["x-mailprobe-event"])
        return status, out


class MailSink:
    """aiosmtpd handler: every message's Message-ID counted."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.arrivals.saw(str(msg["Message-ID"]))
        return "250 OK queued"


@dataclass
class Queued:
    kind: str
    channel: str
    key: str  # as the receiver sees it
    at: float


@dataclass
class SeedFigures:
    seed: int
    instant: str
    promote_after_s: float
    notices: int = 0
    lost: int = 0
    late: int = 0
    repeated: int = 0
    worst_s: float = 0.0  # the longest from queued to first arrival
    # the longest from the promotion (or its queueing, if later) to first arrival: how long
    # after the database's return a notice still waited
    worst_after_s: float = 0.0


@dataclass
class Site:
    """The monitor and the channel (beside its e-mail address) its notices go to."""

    monitor_id: int
    public_id: str
    channel_id: int
    channel_public_id: str


class Cluster:
    """The primary and its synchronous standby; after a failover, a new standby of the new
    primary."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.made = 0
        self.primary = postgres.primary(self._folder(), embedded.free_port())
        self.standby = self._standby()

    def _folder(self) -> Path:
        self.made += 1
        return self.tmp / f"pg-{self.made}"

    def _standby(self) -> postgres.PgNode:
        node = postgres.standby(self.primary, self._folder(), embedded.free_port())
        self.primary.synchronous()
        return node

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in (self.primary, self.standby))
        return f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"

    def kill_primary(self) -> None:
        self.primary.kill()

    def promote(self) -> None:
        self.standby.promote()
        old, self.primary = self.primary, self.standby
        old.stop()
        shutil.rmtree(old.data, ignore_errors=True)

    def renew(self) -> None:
        """A new synchronous standby of the (new) primary."""
        self.standby = self._standby()

    def close(self) -> None:
        for node in (self.primary, self.standby):
            node.stop()


async def _site(url: str, box: SecretBox, webhook_url: str) -> Site:
    conn = await connect(url)
    try:
        await migrate(conn)
        org = await accounts.ensure_organization(conn, "failover")
        customer = await customers.create(conn, org, "Failover")
        monitor = await monitors.insert(
            conn,
            org,
            {
                "customer_id": customer.id,
                "type": "smtp",
                "name": "Outbound relay",
                "hostname": "smtp.customer.test",
                "port": 587,
                "status": "active",
                "check_interval": 60,
                "timeout_seconds": 10,
                "allowed_country_codes": ["DE"],
                "config": {},
                "notification_email": TARGET,
            },
            datetime.now(UTC),
        )
        channel = await channel_store.insert(
            conn,
            org,
            {
                "name": "on-call",
                "kind": "webhook",
                "url": webhook_url,
                "url_shown": webhook_url,
                "secret": box.seal(SECRET),
                "chat_id": None,
            },
        )
        public: UUID = await conn.fetchval(
            "SELECT public_id FROM notification_channels WHERE id = $1", channel
        )
        return Site(monitor.id, str(monitor.public_id), channel, str(public))
    finally:
        await conn.close()


def _event(site: Site, kind: str, key: str) -> dict[str, Any]:
    event = Event(
        id=channel_kinds.event_id(key),
        kind=kind,
        state=channel_kinds.STATE_OF[kind],
        at=iso_ms(utcnow()),
        summary=f"[mailprobe] {kind.upper()}: Outbound relay",
        monitor=MonitorFacts(site.public_id, "Outbound relay", "smtp", "smtp.customer.test", 587),
        incident=None,
        console_url=None,
    )
    out: dict[str, Any] = msgspec.to_builtins(event)
    return out


async def _queue(pool: asyncpg.Pool, site: Site, seed: int, kind: str) -> list[Queued]:
    """The notice `kind` of the seed on both channels, tried until the database takes it."""
    base = f"failover:{seed}:{kind}"
    while True:
        try:
            async with pool.acquire() as conn, conn.transaction():
                at: float = await conn.fetchval("SELECT extract(epoch FROM now())::float8")
                await conn.execute(
                    "INSERT INTO notification_outbox (monitor_id, kind, channel, target, subject,"
                    " body_text, dedupe_key) VALUES ($1, $2, 'email', $3, $4, $4, $5)",
                    site.monitor_id,
                    kind,
                    TARGET,
                    f"[mailprobe] {kind.upper()}: Outbound relay",
                    f"{base}:email",
                )
                await conn.execute(
                    "INSERT INTO notification_outbox (monitor_id, kind, channel, target, subject,"
                    " body_text, dedupe_key, channel_id, payload)"
                    " VALUES ($1, $2, 'webhook', $3, $4, '', $5, $6, $7)",
                    site.monitor_id,
                    kind,
                    site.channel_public_id,
                    f"[mailprobe] {kind.upper()}: Outbound relay",
                    f"{base}:webhook",
                    site.channel_id,
                    _event(site, kind, f"{base}:webhook"),
                )
            return [
                Queued(kind, "email", message_id(f"{base}:email"), at),
                Queued(kind, "webhook", channel_kinds.event_id(f"{base}:webhook"), at),
            ]
        except DB_AWAY:
            await asyncio.sleep(0.1)


async def run_seed(
    cluster: Cluster,
    site: Site,
    channels: dict[str, Channel],
    arrivals: Arrivals,
    box: SecretBox,
    seed: int,
) -> SeedFigures:
    draw = random.Random(seed)
    instant = INSTANTS[seed % len(INSTANTS)]
    figures = SeedFigures(seed, instant, draw.uniform(*PROMOTE_AFTER_S))
    loop = asyncio.get_running_loop()
    killed = asyncio.Event()

    def kill() -> None:
        if not killed.is_set():
            cluster.kill_primary()
            killed.set()

    if instant == "send":
        arrivals.tap = kill
    elif instant == "commit":
        delay = draw.uniform(*COMMIT_DELAY_S)

        def kill_later() -> None:
            loop.call_later(delay, kill)

        arrivals.tap = kill_later

    pool = await create_pool(cluster.url, 4)
    egress = Egress({"*": [ipaddress.ip_network("127.0.0.0/8")]}, ssl_context=client_context())
    sender = ChannelSender(pool, box, egress, clock=WALL.now)
    worker = OutboxWorker(pool, {**channels, **sender.channels()}, clock=WALL.now)
    stop = asyncio.Event()
    queued = await _queue(pool, site, seed, "down")
    running = asyncio.create_task(worker.run(stop))
    try:
        if instant == "claim":
            await asyncio.sleep(draw.uniform(*CLAIM_DELAY_S))
            kill()
        await killed.wait()
        arrivals.tap = lambda: None
        await asyncio.sleep(figures.promote_after_s)
        await asyncio.to_thread(cluster.promote)
        promoted = time.time()
        queued += await _queue(pool, site, seed, "recovered")
        await arrivals.all_of({q.key for q in queued}, WAIT_S)
    finally:
        # The worker stops as a controller does: its sends under way end and are written back,
        # so no lease of this seed's rows holds the next seed's notices back.
        stop.set()
        await asyncio.wait([running], timeout=STOP_WITHIN_S)
        running.cancel()
        await asyncio.wait([running])
        await pool.close()
    for q in queued:
        figures.notices += 1
        first = arrivals.first.get(q.key)
        if first is None:
            figures.lost += 1
            continue
        figures.worst_s = max(figures.worst_s, first - q.at)
        figures.worst_after_s = max(figures.worst_after_s, first - max(q.at, promoted))
        figures.late += first - q.at > LATE_S
        figures.repeated += arrivals.count[q.key] - 1
    return figures


async def run_campaign(
    seeds: Iterable[int], say: Callable[[str], None] = print, lanes: int = 1
) -> list[SeedFigures]:
    """The seeds' failovers, `lanes` at once (seeds dealt round-robin): each lane has its own
    cluster, receivers and monitor, and runs its seeds one after another. The figures in seed
    order."""
    order = list(seeds)
    lanes = max(1, min(lanes, len(order)))
    box = SecretBox(generate_key())
    async with asyncio.TaskGroup() as group:  # one lane failing stops the others
        runs = [group.create_task(_lane(order[i::lanes], box, say)) for i in range(lanes)]
    return sorted((f for run in runs for f in run.result()), key=lambda f: f.seed)


async def _lane(seeds: list[int], box: SecretBox, say: Callable[[str], None]) -> list[SeedFigures]:
    tmp = Path(tempfile.mkdtemp(prefix="mailprobe-notice-failover-"))
    arrivals = Arrivals()
    relay = Relay(embedded.free_port())
    relay.keep = MailSink(arrivals)  # type: ignore[assignment]  # its handler, not _Keep
    cluster = await asyncio.to_thread(Cluster, tmp)
    found: list[SeedFigures] = []
    try:
        await relay.start()
        async with WebhookSink("webhook", SECRET, arrivals=arrivals) as hook:
            site = await _site(cluster.url, box, hook.url)
            email = EmailChannel(f"smtp://127.0.0.1:{relay.port}", SENDER, timeout_s=5)
            for n, seed in enumerate(seeds):
                if n:  # a standby of the primary the last seed promoted
                    await asyncio.to_thread(cluster.renew)
                f = await run_seed(cluster, site, {"email": email}, arrivals, box, seed)
                say(line(f))
                found.append(f)
    finally:
        await relay.stop()
        await asyncio.to_thread(cluster.close)
        shutil.rmtree(tmp, ignore_errors=True)
    return found


def line(f: SeedFigures) -> str:
    """A seed's figures, one line."""
    return (
        f"    seed {f.seed:3d} kill mid-{f.instant:<6} promoted after {f.promote_after_s:.1f} s:"
        f" {f.notices} notices, lost {f.lost}, late {f.late}, repeated {f.repeated},"
        f" slowest {f.worst_s:.1f} s ({f.worst_after_s:.1f} s after the promotion)"
    )


def report(found: list[SeedFigures], say: Callable[[str], None] = print) -> bool:
    ok = True
    for instant in INSTANTS:
        of = [f for f in found if f.instant == instant]
        if not of:
            continue
        lost, late = sum(f.lost for f in of), sum(f.late for f in of)
        ok = ok and lost == late == 0
        say(
            f"  primary killed mid-{instant}: {len(of)} seeds, {sum(f.notices for f in of)}"
            f" notices, lost {lost}, late beyond {LATE_S:.0f} s {late} (target 0 each),"
            f" repeated {sum(f.repeated for f in of)} (dropped by the receivers' key), slowest"
            f" {max(f.worst_s for f in of):.1f} s from queued to received,"
            f" {max(f.worst_after_s for f in of):.1f} s from the promotion"
        )
    say(f"  {verdict(ok)}")
    return ok


def run(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(prog="python -m bench notice-failover", description=__doc__)
    parser.add_argument("--seeds", type=int, default=30, help="failovers, 30 by default")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--lanes", type=int, default=1, help="seeds at once, 1 by default")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    discard_logs()
    # asyncpg's pool logs each connection it cannot remake while there is no primary: expected.
    quiet = logging.getLogger("asyncpg")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    print(
        f"notice-failover ({machine()}; PostgreSQL primary and synchronous standby, the outbox"
        f" worker, an e-mail sink and a webhook receiver; {args.seeds} failovers)",
        flush=True,
    )
    seeds = range(args.first, args.first + args.seeds)
    found = asyncio.run(run_campaign(seeds, lambda s: print(s, flush=True), args.lanes))
    return report(found)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(0 if run() else 1)
