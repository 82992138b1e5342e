"""Logins never lock the account, scheduler to server: an hour of one-minute rounds from five
countries with a wrong password against a real SMTP server that bans an account after 5
rejected logins in 10 minutes (fail2ban's default; mailcow's is 10), played in seconds on a
moved clock.
Every round goes through the real scheduler (jobs on NATS, sealed per country), each job is
opened with its country's key and run by the agent's prober against the server, the results
are stored as the ingester stores them and judged by the real alerter."""

from datetime import timedelta

import asyncpg
import httpx

from agent.probers.run import run_check
from agent.probers.tls import build_ssl_contexts
from controller.ingest import store as results
from controller.jobs.rules import JobIds
from shared.clock import WALL
from shared.messages import encode
from shared.timefmt import utcnow
from testkit.alerting.wired import wired_alerter
from testkit.peers.smtp import Lockout, SmtpPeer
from testkit.sealing import KeyRing
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Clock, Countries, SchedulerWith, WiredPipeline

ROUNDS = 60  # an hour at the one-minute interval
SPACING = 5.0  # LOGIN_SPACING_SECONDS' default


async def test_an_hour_of_wrong_logins_from_five_countries_never_gets_the_account_banned(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    seal_keys: KeyRing,
    job_ids: JobIds,
    scheduler_with: SchedulerWith,
) -> None:
    five = sorted(countries.take(5))
    for cc in five:
        await countries.live(cc)
    clock = Clock()
    scheduler = scheduler_with(
        login_spacing_s=SPACING,
        clock=clock,
    )
    alerter = wired_alerter(pipe_pool, pipeline.js, job_ids, clock=clock)
    lockout = Lockout(clock, max_failures=5)
    contexts = build_ssl_contexts()
    ran: set[str] = set()
    async with SmtpPeer(users={"alice": "right"}, auth_in_clear=True, lockout=lockout) as peer:
        monitor = await create(
            api,
            org,
            hostname="127.0.0.1",
            port=peer.port,
            timeoutSeconds=5,
            allowedCheckCountryCodes=five,
            notificationEmail="owner@customer.test",
            smtpConfig={"auth": {"user": "alice", "pass": "wrong"}, "allowPlaintextAuth": True},
        )
        pid = monitor["publicId"]
        async with pipe_pool.acquire() as conn:
            await conn.execute(
                "UPDATE monitors SET next_due_at = $2 WHERE public_id = $1", pid, clock.now
            )
        for _ in range(ROUNDS):
            await scheduler.run_due()
            for _ in five:  # each country's turn to log in, SPACING apart
                for cc in five:
                    for job, _ in await countries.jobs(cc):
                        if job.job_id in ran:
                            continue
                        ran.add(job.job_id)
                        opened = seal_keys.opened(job)
                        result = await run_check(opened, f"{cc}-a1", True, contexts, clock=WALL)
                        async with pipe_pool.acquire() as conn, conn.transaction():
                            await results.store(
                                conn, [results.decode_result(encode(result))], now=utcnow()
                            )
                clock.now += timedelta(seconds=SPACING)
                await scheduler.run_deferred()
            clock.now += timedelta(seconds=10)  # the round's results are in: judge it
            await alerter.burst()
            async with pipe_pool.acquire() as conn:
                due = await conn.fetchval(
                    "SELECT next_due_at FROM monitors WHERE public_id = $1", pid
                )
            clock.now = max(clock.now, due)

    offsets = [round((t - lockout.failures[0]).total_seconds()) for t in lockout.failures]
    assert lockout.bans == [], f"banned; rejected logins at {offsets} s"
    first = lockout.failures[0]
    # One rejected login a round while the back-off is found (the others are not sent), then
    # one at about 2, 6, 14 and 30 minutes.
    assert len(lockout.failures) <= 6
    assert clock.now - first >= timedelta(minutes=ROUNDS - 1)
    for at in lockout.failures:
        assert sum(at <= t < at + lockout.window for t in lockout.failures) <= 3
    async with pipe_pool.acquire() as conn:
        held = await conn.fetchval(
            "SELECT count(*) FROM check_results WHERE monitor_public_id = $1"
            " AND error_kind = 'auth_backoff'",
            pid,
        )
        incidents = await conn.fetch(
            "SELECT i.cause_kind FROM incidents i JOIN monitors m ON m.id = i.monitor_id"
            " WHERE m.public_id = $1",
            pid,
        )
        notices = await conn.fetchval(
            "SELECT count(*) FROM notification_outbox o JOIN monitors m ON m.id = o.monitor_id"
            " WHERE m.public_id = $1 AND o.kind = 'credentials'",
            pid,
        )
    assert held > 200  # most country-rounds did not log in
    assert [i["cause_kind"] for i in incidents] == ["auth"]  # still down, for the credentials
    assert notices == 1  # told once, by e-mail
