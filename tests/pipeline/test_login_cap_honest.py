"""The honest setup never caps: one probe account checked over SMTP, IMAP and POP3 from three
countries every minute, plus a round trip on the same mailbox, through the real scheduler
(jobs on NATS, sealed per country) and the ingester's store, over 15 minutes of rounds on a
moved clock. Each check attempts its logins (the round trip two, one a leg) and answers `up`.
Pins that the cap per organization and account (`LOGIN_CAP_PER_ACCOUNT`, following the
configuration with a quarter more) leaves such a setup alone: no `login_capped` result and no
`login_caps` row (a cap too tight for it, e.g. one not counting the round trip's mailbox or
the confirmation headroom, would record them)."""

from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from controller.ingest import store as results
from shared.messages import CheckResult, encode
from shared.timefmt import iso_ms, utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Clock, Countries, SchedulerWith, WiredPipeline

# 90 scheduler passes, each storing its results: 12-25 s at a load of 10-15, past the
# suite's 60 s on a loaded one (with a worker's server start-up when it runs first there).
pytestmark = [pytest.mark.breadth, pytest.mark.timeout(150)]

MINUTES = 15
HOST, USER = "mail.example.net", "probe@example.net"


async def test_one_account_over_smtp_imap_pop3_and_a_round_trip_never_caps(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    three = sorted(countries.take(3))
    for cc in three:
        await countries.live(cc)
    common: dict[str, Any] = {
        "hostname": HOST,
        "checkInterval": 60,
        "allowedCheckCountryCodes": three,
    }
    mailbox = {"user": USER, "password": "pw", "tls": True}
    monitors = [
        await create(
            api, org, **common, port=587, smtpConfig={"auth": {"user": USER, "pass": "pw"}}
        ),
        await create(api, org, "imap", **common, imapPopConfig={"protocol": "imap", **mailbox}),
        await create(
            api, org, "imap", **common, port=995, imapPopConfig={"protocol": "pop3", **mailbox}
        ),
    ]
    r = await api.post(
        "/api/roundtrip-monitors",
        json={
            "customerId": org.customer_public_id,
            "name": "Mail arrives",
            "checkInterval": 60,
            "timeoutSeconds": 50,
            "allowedCheckCountryCodes": three,
            "roundtripConfig": {
                "send": {
                    "hostname": HOST,
                    "port": 587,
                    "auth": {"user": USER, "pass": "pw"},
                    "from": USER,
                },
                "to": USER,
                "receive": {"protocol": "imap", "hostname": HOST, "port": 993, **mailbox},
            },
        },
        headers=org.auth(),
    )
    assert r.status_code == 201, r.text
    monitors.append(r.json())
    ids = [m["publicId"] for m in monitors]
    clock = Clock()
    scheduler = scheduler_with(clock=clock)
    async with pipe_pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET next_due_at = $2 WHERE public_id = ANY($1::uuid[])", ids, clock.now
        )
        # An established round trip: its mailbox has shown it receives the probe (the alerter,
        # not running here, records that), so its rounds are not held as unconfirmed.
        await conn.execute(
            "INSERT INTO roundtrip_delivery (monitor_id, confirmed_at)"
            " SELECT id, $2 FROM monitors WHERE public_id = $1::uuid",
            ids[-1],
            clock.now,
        )
    ran: set[str] = set()
    end = clock.now + timedelta(minutes=MINUTES)
    while clock.now < end:
        await scheduler.run_due()
        for cc in three:
            for job, _ in await countries.jobs(cc):
                if job.job_id in ran:
                    continue
                ran.add(job.job_id)
                done = iso_ms(clock.now + timedelta(seconds=2))
                result = CheckResult(
                    job_id=job.job_id,
                    monitor_id=job.monitor_id,
                    monitor_type=job.monitor_type,
                    country=cc,
                    agent_id=f"{cc}-a1",
                    scheduled_at=job.scheduled_at,
                    started_at=job.scheduled_at,
                    finished_at=done,
                    status="up",
                    logins=2 if job.monitor_type == "roundtrip" else 1,
                )
                async with pipe_pool.acquire() as conn, conn.transaction():
                    await results.store(conn, [results.decode_result(encode(result))], now=utcnow())
        clock.now += timedelta(seconds=10)
    async with pipe_pool.acquire() as conn:
        kinds = await conn.fetch(
            "SELECT error_kind, count(*) AS n FROM check_results"
            " WHERE monitor_public_id = ANY($1::uuid[]) GROUP BY error_kind",
            ids,
        )
        caps = await conn.fetchval(
            "SELECT count(*) FROM login_caps c JOIN monitors m ON m.id = c.monitor_id"
            " WHERE m.public_id = ANY($1::uuid[])",
            ids,
        )
    counted = {k["error_kind"]: k["n"] for k in kinds}
    assert counted.get("login_capped", 0) == 0, counted
    assert caps == 0
    # every monitor from every country, every minute: the checks did run
    assert counted.get(None, 0) >= len(ids) * len(three) * (MINUTES - 1), counted
