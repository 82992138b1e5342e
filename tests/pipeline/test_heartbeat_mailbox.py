"""A heartbeat read from a mailbox, end to end on real parts (issue 83): the heartbeat names an
IMAP monitor of its organization (`mailboxMonitorId`); the real scheduler's round of that
monitor asks its agent to read the heartbeat's mail (the side check `heartbeat_mail`); the
agent's check runner logs in to Debian's Dovecot with the monitor's sealed credentials and reads
the matching messages read-only; the ingester stores them as the heartbeat's arrivals; the
alerter (on a ManualClock) judges the heartbeat by them: up, late and down with one incident
once the mail stops for a period and its grace, up again once it comes back. The API refuses a
mailbox that is not an IMAP/POP or round-trip monitor of the organization, naming the field."""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import trustme

from agent.check_runner import CheckRunner
from agent.probers.tls import build_ssl_contexts
from controller.jobs.rules import JobIds
from controller.notify.links import Links
from controller.runtime.pipeline import build_alerter
from controller.settings import ControllerSettings
from controller.sidechecks.heartbeat_mail.store import HeartbeatReaders
from shared.clock import WALL, ManualClock
from shared.messages import CheckJob, CheckResult, encode
from shared.sidechecks.heartbeat_mail import WIRE, HeartbeatMail
from shared.subjects import results_subject
from shared.timefmt import parse_iso, utcnow
from testkit.oauth2.dovecot import Dovecot
from testkit.sealing import KeyRing
from tests.api.helpers import assert_error, create
from tests.conftest import Tenant, make_tenant
from tests.pipeline.conftest import Countries, SchedulerWith, WiredPipeline
from tests.probers.test_heartbeat_box import (
    PASSWORD,
    SENDER,
    USER,
    _empty,
    box,
    deliver,
    mail_ca,
)

__all__ = ["box", "mail_ca"]  # the Dovecot mailbox fixtures, shared with test_heartbeat_box.py

FIELD = "heartbeatConfig.mailboxMonitorId"


async def _imap_monitor(
    api: httpx.AsyncClient, org: Tenant, port: int, cc: str, password: str = PASSWORD
) -> dict[str, Any]:
    r = await api.post(
        "/api/imap-pop-monitors",
        headers=org.auth(),
        json={
            "customerId": org.customer_id,
            "name": "ERP mailbox",
            "hostname": "127.0.0.1",
            "port": port,
            "allowedCheckCountryCodes": [cc],
            "imapPopConfig": {
                "protocol": "imap",
                "tls": True,
                "tlsOptions": {"servername": "localhost"},
                "user": USER,
                "password": password,
            },
        },
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _heartbeat(api: httpx.AsyncClient, org: Tenant, mailbox: str) -> httpx.Response:
    return await api.post(
        "/api/heartbeat-monitors",
        headers=org.auth(),
        json={
            "customerId": org.customer_id,
            "name": "ERP nightly",
            "heartbeatConfig": {
                "everyMinutes": 10,
                "graceMinutes": 2,
                "sender": SENDER,
                "subject": "nightly",
                "mailboxMonitorId": mailbox,
            },
        },
    )


class Rounds:
    """The IMAP monitor's rounds: scheduled now by the real scheduler, run by a real agent's
    check runner against Dovecot, their results stored by the real ingester. The scheduler's
    clock stands still in a pass: the monitor is due at its now, so the round sent is the one
    due however long the pass takes (no grid point passes in between)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        pipeline: WiredPipeline,
        countries: Countries,
        scheduler_with: SchedulerWith,
        seal_keys: KeyRing,
        mail_ca: trustme.CA,
        cc: str,
    ) -> None:
        self.pool, self.pipeline, self.countries, self.cc = pool, pipeline, countries, cc
        self.readers = HeartbeatReaders(pool)
        self.clock = ManualClock(utcnow())
        self.scheduler = scheduler_with(readers=self.readers, clock=self.clock.now)
        contexts = build_ssl_contexts(cadata=mail_ca.cert_pem.bytes().decode())
        self.agent = CheckRunner(
            f"{cc}-a1",
            allow_private=True,
            ssl_contexts=contexts,
            seal_keys=seal_keys.opening(cc),
            clock=WALL,
        )
        self.seen: set[str] = set()

    async def run(self, monitor: str) -> tuple[CheckJob, CheckResult]:
        await self.readers.refresh()
        self.clock.set(utcnow())
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE monitors SET next_due_at = $1 WHERE public_id = $2",
                self.clock.now(),
                monitor,
            )
        await self.scheduler.run_due()
        jobs = [j for j, _ in await self.countries.jobs(self.cc) if j.job_id not in self.seen]
        [job] = [j for j in jobs if j.monitor_id == monitor]
        self.seen.add(job.job_id)
        result = await self.agent.checked(job)
        assert job.asks_seal, "the publisher seals what a job asks"
        # as the agent's result sink sends it: the asks and their seal echoed
        result = msgspec.structs.replace(result, asks=job.side_checks, asks_seal=job.asks_seal)
        subject = results_subject(self.cc, job.monitor_type, job.monitor_id)
        await self.pipeline.js.publish(subject, encode(result))
        assert self.pipeline.ingester is not None
        assert await self.pipeline.ingester.burst() >= 1
        return job, result


async def _arrivals(pool: asyncpg.Pool, heartbeat: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT a.arrived_at, a.header_from, a.subject, a.listener, a.country"
                " FROM arrivals a JOIN monitors m ON m.id = a.monitor_id"
                " WHERE m.public_id = $1 ORDER BY a.arrived_at",
                heartbeat,
            )
        )


async def _state(pool: asyncpg.Pool, heartbeat: str) -> str:
    async with pool.acquire() as conn:
        state: str = await conn.fetchval(
            "SELECT coalesce((SELECT s.state FROM monitor_alert_state s JOIN monitors m"
            " ON m.id = s.monitor_id WHERE m.public_id = $1), 'unknown')",
            heartbeat,
        )
    return state


async def test_a_heartbeat_read_from_an_imap_mailbox_goes_down_late_and_recovers(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
    seal_keys: KeyRing,
    settings: ControllerSettings,
    job_ids: JobIds,
    box: Dovecot,
    mail_ca: trustme.CA,
) -> None:
    (cc,) = countries.take()
    await countries.live(cc)
    _empty(box)
    now0 = datetime.now(UTC).replace(microsecond=0)
    first = now0 - timedelta(minutes=1)
    deliver(box, now0 - timedelta(minutes=30), "before-the-window")
    deliver(box, first, "first")
    deliver(box, first, "another-sender", sender="spam@example.net")
    imap = await _imap_monitor(api, org, box.ports["imaps"], cc)
    r = await _heartbeat(api, org, imap["publicId"])
    assert r.status_code == 201, r.text
    heartbeat = r.json()
    assert heartbeat["heartbeatConfig"]["mailboxMonitorId"] == imap["publicId"]
    rounds = Rounds(pipe_pool, pipeline, countries, scheduler_with, seal_keys, mail_ca, cc)

    job, result = await rounds.run(imap["publicId"])
    asked = WIRE.ask_of(job.side_checks)
    assert asked is not None and [look.monitor_id for look in asked.looks] == [
        heartbeat["publicId"]
    ]
    assert asked.looks[0].sender == SENDER
    assert result.status == "up", result.message
    assert result.logins == 1  # the look's login is its own session's, counted by the cap
    read = [
        (a["arrived_at"], a["listener"], a["country"])
        for a in await _arrivals(pipe_pool, heartbeat["publicId"])
    ]
    assert read == [(first, "mailbox", cc)]

    clock = ManualClock(utcnow())
    alerter = build_alerter(
        settings, pipe_pool, pipeline.js, job_ids, Links("https://mp.test"), clock=clock.now
    )
    await alerter.burst()
    assert await _state(pipe_pool, heartbeat["publicId"]) == "up"

    await rounds.run(imap["publicId"])  # the same message read again: one arrival
    assert len(await _arrivals(pipe_pool, heartbeat["publicId"])) == 1

    # late a period and its grace after the last mail, judged once it has been watched as long
    watched = parse_iso(heartbeat["createdAt"]) + timedelta(minutes=12)
    looked = watched + timedelta(minutes=1)
    clock.set(looked)
    await alerter.burst()
    assert await _state(pipe_pool, heartbeat["publicId"]) == "down"

    again = (watched + timedelta(minutes=1, seconds=30)).replace(microsecond=0)
    deliver(box, again, "again", subject="[ok] NIGHTLY report")
    await rounds.run(imap["publicId"])
    clock.set(again + timedelta(seconds=30))
    await alerter.burst()
    assert await _state(pipe_pool, heartbeat["publicId"]) == "up"
    assert [a["arrived_at"] for a in await _arrivals(pipe_pool, heartbeat["publicId"])] == [
        first,
        again,
    ]
    async with pipe_pool.acquire() as conn:
        incidents = await conn.fetch(
            "SELECT i.started_at, i.ended_at, i.cause_kind FROM incidents i"
            " JOIN monitors m ON m.id = i.monitor_id WHERE m.public_id = $1",
            heartbeat["publicId"],
        )
    # late since its first full window ended (it was pending before: watched from its creation,
    # the API's createdAt in milliseconds), found by the look after
    [incident] = incidents
    assert incident["cause_kind"] == "late" and incident["started_at"] < looked
    assert abs(incident["started_at"] - watched) < timedelta(milliseconds=1)
    assert incident["ended_at"] is not None


async def test_a_mailbox_whose_login_is_refused_reads_nothing_and_says_why(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
    seal_keys: KeyRing,
    box: Dovecot,
    mail_ca: trustme.CA,
) -> None:
    (cc,) = countries.take()
    await countries.live(cc)
    _empty(box)
    deliver(box, datetime.now(UTC).replace(microsecond=0), "refused")
    imap = await _imap_monitor(api, org, box.ports["imaps"], cc, password="not the password")
    r = await _heartbeat(api, org, imap["publicId"])
    assert r.status_code == 201, r.text
    rounds = Rounds(pipe_pool, pipeline, countries, scheduler_with, seal_keys, mail_ca, cc)
    job, result = await rounds.run(imap["publicId"])
    assert result.status == "down" and result.error_kind == "auth"
    assert result.logins == 1, "no second login with credentials just refused"
    facts = WIRE.facts_of(result.side_checks)
    assert isinstance(facts, HeartbeatMail)
    assert [(look.error_kind, look.arrivals) for look in facts.looks] == [("auth", [])]
    assert await _arrivals(pipe_pool, r.json()["publicId"]) == []
    async with pipe_pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT facts FROM side_heartbeat_mail WHERE job = $1", job.job_id
        )
    assert stored["looks"][0]["errorKind"] == "auth", stored


async def test_the_mailbox_must_be_a_mailbox_monitor_of_the_organization(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool, box: Dovecot
) -> None:
    smtp = await create(api, org)
    other = await make_tenant(pipe_pool)
    theirs = await _imap_monitor(api, other, box.ports["imaps"], "DE")
    ours = await _imap_monitor(api, org, box.ports["imaps"], "DE")
    for mailbox, said in [
        (smtp["publicId"], "reads no mailbox"),
        (theirs["publicId"], "no monitor of the organization"),
        ("0b9f3c1e-8a42-4d55-9a1b-2f6c7d8e9f01", "no monitor of the organization"),
        ("not-a-uuid", "no monitor id"),
    ]:
        r = await _heartbeat(api, org, mailbox)
        body = assert_error(r, 400)
        assert said in r.text and "mailboxMonitorId" in r.text, (mailbox, body)
    for _ in range(4):
        assert (await _heartbeat(api, org, ours["publicId"])).status_code == 201
    r = await _heartbeat(api, org, ours["publicId"])
    assert_error(r, 400, fields=[FIELD])
    assert "already read" in r.text
