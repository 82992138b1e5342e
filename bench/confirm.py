"""Outage to notification, before and after confirmation rounds (issue 16, part 3): a real SMTP
server goes down and `python -m controller serve` (scheduler, ingester, alerter) with real agents
in DE and FR (`python -m agent`) on embedded NATS and PostgreSQL finds it so and queues the down
notice.

One monitor per (interval, mode) at 60 s and 300 s, each checked from DE and FR, `before` with
`confirmFailures` off (what every monitor did before: `downAfterRounds` 2 scheduled rounds),
`after` with it on (the default). Their public ids are picked so that their grids meet a little
after the start: the server goes down just before that round, so the first failing round comes
at once and the figures are what the controller adds, not where the outage fell in the interval
(which no monitor can know before it checks; it adds up to one interval to both).

Targets: `after` outage → notification queued under 30 s + the check timeout at both intervals;
a lone failing country (a third monitor checked from DE, FR and US, whose agent refuses loopback
targets: `blocked_target` every round) never confirms and never notifies.
"""

import asyncio
import multiprocessing
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection

from controller.access import accounts_store as accounts
from controller.access import customers_store as customers
from controller.db.migrate import migrate
from controller.db.pool import connect
from controller.scheduling import rules as schedule
from shared import embedded
from testkit.common import Pipes, child_env, discard_logs, machine, start_module, verdict
from testkit.peers.smtp import SmtpPeer

INTERVALS = (60, 300)
TIMEOUT_S = 5
TARGET_S = 30.0 + TIMEOUT_S
GRID_IN_S = 45.0  # the grids meet this long after seeding: the services are up by then
SECRETS_KEY = "Aq1QnlR2gU7GxwqZ6fZ7Y8Yk5o3wB8vQ1bq0yVJf2lE="


def _serve(conn: Connection) -> None:
    asyncio.run(_serve_async(conn))


async def _serve_async(conn: Connection) -> None:
    """Two servers: `outage` goes down when told, `steady` stays up."""
    async with SmtpPeer() as steady:
        outage = SmtpPeer()
        await outage.__aenter__()
        conn.send((outage.port, steady.port))
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, conn.recv) == "down"
        await outage.__aexit__(None, None, None)
        conn.send("down")
        await loop.run_in_executor(None, conn.recv)  # until told to stop


@dataclass
class Monitor:
    name: str
    interval: int
    confirm: bool
    public_id: str = ""
    first_failure: datetime | None = None
    notified: datetime | None = None


def _public_id(interval: int, at: datetime) -> str:
    """A public id whose grid has a point in [at, at + 1 s)."""
    while True:
        candidate = str(uuid.uuid4())
        due = schedule.next_due(schedule.phase_ms(candidate, interval), interval, at)
        if due - at < timedelta(seconds=1):
            return candidate


async def _seed(url: str, monitors: list[Monitor], ports: tuple[int, int], meet: datetime) -> None:
    conn = await connect(url)
    try:
        await migrate(conn)
        org_id = await accounts.ensure_organization(conn, "bench")
        customer = await customers.create(conn, org_id, "bench")
        for m in monitors:
            lone = m.name == "lone"
            m.public_id = _public_id(m.interval, meet)
            monitor_id = await conn.fetchval(
                "INSERT INTO monitors (public_id, organization_id, customer_id, type, name,"
                " hostname, port, status, check_interval, timeout_seconds, allowed_country_codes,"
                " config, notification_email) VALUES ($1, $2, $3, 'smtp', $4, '127.0.0.1', $5,"
                " 'active', $6, $7, $8, '{}'::jsonb, 'oncall@example.com') RETURNING id",
                uuid.UUID(m.public_id),
                org_id,
                customer.id,
                m.name,
                ports[1] if lone else ports[0],
                m.interval,
                TIMEOUT_S,
                ["DE", "FR", "US"] if lone else ["DE", "FR"],
            )
            if not m.confirm:
                await conn.execute(
                    "INSERT INTO monitor_alert_settings (monitor_id, confirm_failures)"
                    " VALUES ($1, false)",
                    monitor_id,
                )
    finally:
        await conn.close()


async def _watch(url: str, monitors: list[Monitor], deadline: float) -> None:
    """Poll until every outage monitor's down notice is queued (or the deadline)."""
    conn = await connect(url)
    try:
        while time.monotonic() < deadline:
            for m in monitors:
                if m.name == "lone" or m.notified is not None:
                    continue
                m.first_failure = await conn.fetchval(
                    "SELECT min(r.finished_at) FROM check_results r JOIN monitors m"
                    " ON m.id = r.monitor_id WHERE m.public_id = $1 AND r.status = 'down'",
                    uuid.UUID(m.public_id),
                )
                m.notified = await conn.fetchval(
                    "SELECT min(o.created_at) FROM notification_outbox o JOIN monitors m"
                    " ON m.id = o.monitor_id WHERE m.public_id = $1 AND o.kind = 'down'",
                    uuid.UUID(m.public_id),
                )
            if all(m.notified is not None for m in monitors if m.name != "lone"):
                return
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def _lone(url: str, public_id: str) -> tuple[int, int, int, int]:
    """(its rounds, rounds with a failure, confirmations asked, notifications) of the lone
    country's monitor."""
    conn = await connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(DISTINCT r.scheduled_at) AS rounds, count(DISTINCT r.scheduled_at)"
            " FILTER (WHERE r.status = 'down') AS failing,"
            " (SELECT count(*) FROM confirmation_rounds c WHERE c.monitor_id = m.id) AS asked,"
            " (SELECT count(*) FROM notification_outbox o WHERE o.monitor_id = m.id) AS notes"
            " FROM monitors m JOIN check_results r ON r.monitor_id = m.id"
            " WHERE m.public_id = $1 GROUP BY m.id",
            uuid.UUID(public_id),
        )
    finally:
        await conn.close()
    return (0, 0, 0, 0) if row is None else tuple(row.values())


async def _due_now(url: str) -> None:
    conn = await connect(url)
    try:
        await conn.execute("UPDATE monitors SET next_due_at = now()")
    finally:
        await conn.close()


def _measure() -> bool:
    monitors = [
        Monitor(f"{mode} {interval} s", interval, mode == "after")
        for interval in INTERVALS
        for mode in ("before", "after")
    ]
    lone = Monitor("lone", 60, True)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    pipes = Pipes()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = parent.recv()
        meet = datetime.now(UTC) + timedelta(seconds=GRID_IN_S)
        asyncio.run(_seed(pipes.database_url, [*monitors, lone], ports, meet))
        common = {"NATS_URL": pipes.nats_url}
        procs.append(
            start_module(
                ["controller", "serve"],
                child_env(
                    **common,
                    DATABASE_URL=pipes.database_url,
                    SECRETS_KEY=SECRETS_KEY,
                    CONTROLLER_ROLES="scheduler,ingester,alerter",
                ),
                pipes.tmp / "controller.log",
            )
        )
        for cc in ("DE", "FR", "US"):
            private = {"AGENT_ALLOW_PRIVATE_TARGETS": "true"} if cc != "US" else {}
            procs.append(
                start_module(
                    ["agent", "--country", cc],
                    child_env(**common, **private, AGENT_METRICS_PORT=str(embedded.free_port())),
                    pipes.tmp / f"agent-{cc}.log",
                )
            )
        time.sleep(10)  # agents up, the live view warm
        asyncio.run(_due_now(pipes.database_url))  # one passing round each, then the grid
        time.sleep(max(0.0, (meet - datetime.now(UTC)).total_seconds() - 1.0))
        parent.send("down")
        assert parent.recv() == "down"
        outage = datetime.now(UTC)
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"{proc.args!r} exited early; logs in {pipes.tmp}")
        asyncio.run(_watch(pipes.database_url, monitors, time.monotonic() + max(INTERVALS) + 60))
        lone_figures = asyncio.run(_lone(pipes.database_url, lone.public_id))
    finally:
        for proc in procs:
            embedded.stop(proc)
        parent.send("stop")
        server.join(5)
        pipes.close()
    return _report(monitors, outage, lone_figures)


def _report(monitors: list[Monitor], outage: datetime, lone: tuple[int, int, int, int]) -> bool:
    ok = True
    for m in monitors:
        if m.notified is None or m.first_failure is None:
            print(f"  {m.name:>14}: no down notice queued")
            ok = ok and not m.confirm
            continue
        total = (m.notified - outage).total_seconds()
        after_first = (m.notified - m.first_failure).total_seconds()
        line = (
            f"  {m.name:>14}: outage → notification queued {total:6.1f} s"
            f" (first failure → notification {after_first:6.1f} s)"
        )
        if m.confirm:
            met = total < TARGET_S
            ok = ok and met
            line += f"   target < {TARGET_S:.0f} s: {verdict(met)}"
        print(line)
    rounds, failing, asked, notes = lone
    quiet = rounds > 0 and failing > 0 and asked == 0 and notes == 0
    print(
        f"  lone failing country (US of DE, FR, US): {failing} of {rounds} rounds failing there,"
        f" {asked} confirmations, {notes} notifications   target 0 and 0: {verdict(quiet)}"
    )
    return ok and quiet


def run() -> bool:
    discard_logs()
    print(
        f"outage → notification ({machine()}; controller serve + agents in DE, FR, US;"
        f" intervals {', '.join(map(str, INTERVALS))} s, check timeout {TIMEOUT_S} s;"
        f" takes about {GRID_IN_S + max(INTERVALS) + 20:.0f} s)"
    )
    return _measure()


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
