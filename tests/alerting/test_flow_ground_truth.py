"""Ground truth for one mail-flow problem (issue 66): Debian's Dovecot and a Postfix submitting
through Dovecot's auth socket, on loopback. The agent's own probers check IMAPS, POP3S, the
SMTP submission (its SASL login is Dovecot's) and a round trip (Postfix → Dovecot's maildir →
IMAPS); Dovecot is stopped and started again, and what the probers really saw is stored for two
countries and judged by the alerter: one flow incident of four monitors, one page and one
recovery per address and phone, where each monitor would have paged on its own."""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, Literal

import asyncpg
import pytest
import trustme

from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from controller.ingest import store as results
from controller.jobs.result_kinds import ResultRow
from shared.clock import WALL
from shared.messages import (
    CheckJob,
    CheckResult,
    ImapPopConfig,
    RoundTripConfig,
    RoundTripReceive,
    RoundTripSend,
    SmtpAuth,
    SmtpConfig,
    TlsOptions,
)
from shared.secret import Secret
from shared.timefmt import utcnow
from testkit.alerting.wired import wired_alerter
from testkit.oauth2 import dovecot, postfix
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.postfix import Postfix
from testkit.peers.jobs import make_job
from tests.alerting.conftest import LINKS, Rig

USER, PASSWORD = "alice@example.com", "alice-pa55"
TLS = TlsOptions(servername="localhost")
COUNTRIES = ("DE", "FR", "US")  # the rig's monitors' countries


@pytest.fixture
async def servers() -> AsyncIterator[tuple[Dovecot, Postfix, SslContexts]]:
    for why in (dovecot.missing(), postfix.missing()):
        if why is not None:
            pytest.skip(why)
    ca = trustme.CA()
    contexts = build_ssl_contexts(cadata=ca.cert_pem.bytes().decode())
    async with (
        Dovecot(ca, passwords={USER: PASSWORD}) as dc,
        Postfix(ca, dc.auth_socket, dc.homes, dc.owner) as pf,
    ):
        yield dc, pf, contexts


def jobs(dc: Dovecot, pf: Postfix) -> dict[str, CheckJob]:
    secret = Secret(PASSWORD)
    auth = SmtpAuth(user=USER, password=secret)
    send = RoundTripSend(secure=True, auth=auth, tls_options=TLS, sender=USER)
    receive = RoundTripReceive(
        hostname="127.0.0.1",
        port=dc.ports["imaps"],
        user=USER,
        password=secret,
        tls=True,
        tls_options=TLS,
    )

    def box(protocol: Literal["imap", "pop3"]) -> ImapPopConfig:
        return ImapPopConfig(protocol, USER, secret, tls=True, tls_options=TLS)

    return {
        "imap": make_job("imap", dc.ports["imaps"], box("imap"), timeout=8.0),
        "pop3": make_job("pop3", dc.ports["pop3s"], box("pop3"), timeout=8.0),
        "submission": make_job(
            "smtp",
            pf.ports["smtps"],
            SmtpConfig(secure=True, auth=auth, tls_options=TLS),
            timeout=8.0,
        ),
        "trip": make_job(
            "roundtrip",
            pf.ports["smtps"],
            RoundTripConfig(send=send, to=USER, receive=receive),
            timeout=15.0,
        ),
    }


async def monitors(rig: Rig, dc: Dovecot, pf: Postfix) -> dict[str, asyncpg.Record]:
    """The four monitors as the API would store them, on the servers' real ports."""
    box: dict[str, Any] = {"user": USER, "password": "x", "tls": True}
    smtp_auth = {"auth": {"user": USER, "pass": "x"}, "secure": True}
    return {
        "imap": await rig.monitor(
            kind="imap", name="IMAPS", hostname="127.0.0.1", port=dc.ports["imaps"], config=box
        ),
        "pop3": await rig.monitor(
            kind="pop3",
            name="POP3S",
            hostname="127.0.0.1",
            port=dc.ports["pop3s"],
            config={**box, "protocol": "pop3"},
        ),
        "submission": await rig.monitor(
            name="Submission", hostname="127.0.0.1", port=pf.ports["smtps"], config=smtp_auth
        ),
        "trip": await rig.monitor(
            kind="roundtrip",
            name="Round trip",
            hostname="127.0.0.1",
            port=pf.ports["smtps"],
            config={
                "send": smtp_auth,
                "to": USER,
                "receive": {**box, "hostname": "127.0.0.1", "port": dc.ports["imaps"]},
            },
        ),
    }


async def checked(js: dict[str, CheckJob], contexts: SslContexts) -> dict[str, CheckResult]:
    return {
        name: await run_check(job, "agent-truth", True, contexts, clock=WALL)
        for name, job in js.items()
    }


async def store(
    rig: Rig, ms: dict[str, asyncpg.Record], n: int, seen: dict[str, CheckResult]
) -> None:
    """What the probers saw, as round `n` of each monitor from every country."""
    at = rig.at(n)
    rows = []
    for name, m in ms.items():
        r = seen[name]
        for cc in COUNTRIES:
            rows.append(
                ResultRow(
                    job_id=rig.job_ids.make(str(m["public_id"]), cc, at, False),
                    scheduled_at=at,
                    monitor_id=m["public_id"],
                    monitor_type=m["type"],
                    country=cc,
                    agent_id=f"{cc}-agent",
                    status=r.status,
                    error_kind=r.error_kind,
                    message=r.message,
                    finished_at=at + timedelta(seconds=1),
                )
            )
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())


async def test_dovecot_down_under_four_monitors_pages_once_and_recovers_once(
    rig: Rig, servers: tuple[Dovecot, Postfix, SslContexts]
) -> None:
    dc, pf, contexts = servers
    rig.alerter = wired_alerter(
        rig.pool, rig.js, rig.job_ids, incident_group_wait_seconds=30, links=LINKS, clock=rig.clock
    )
    ms = await monitors(rig, dc, pf)
    js = jobs(dc, pf)
    up = await checked(js, contexts)
    assert {n: r.status for n, r in up.items()} == dict.fromkeys(js, "up"), {
        n: r.message for n, r in up.items()
    }

    await dc.stop()
    down = await checked(js, contexts)
    print("Dovecot down, as the probers saw it:")
    for name, r in down.items():
        print(f"  {name}: {r.status} {r.error_kind}: {r.message}")
    assert {n: r.status for n, r in down.items()} == dict.fromkeys(js, "down")

    for n, seen in enumerate([up, down, down, down]):
        await store(rig, ms, n, seen)
        await rig.alerter.burst()
    for name, m in ms.items():
        found = await rig.incidents(m)
        assert len(found) == 1, (name, dict(await rig.state(m)))
        assert found[0]["ended_at"] is None
    flows = {(await rig.incidents(m))[0]["flow_incident_id"] for m in ms.values()}
    assert len(flows) == 1, {n: (await rig.incidents(m))[0]["cause_kind"] for n, m in ms.items()}

    rig.clock.shift += timedelta(seconds=31)
    await rig.alerter.burst()
    assert await rig.outbox().burst() == 2  # one e-mail, one SMS, for four monitors
    (page,) = rig.relay.messages
    assert page["Subject"] == "[mailprobe] DOWN: IMAPS and 3 more"

    await dc.start()
    again = await checked(js, contexts)
    assert {n: r.status for n, r in again.items()} == dict.fromkeys(js, "up"), {
        n: r.message for n, r in again.items()
    }
    for n in (4, 5, 6):
        await store(rig, ms, n, again)
        await rig.alerter.burst()
    assert await rig.outbox().burst() == 2
    print("notices:", [m["Subject"] for m in rig.relay.messages], len(rig.sms.requests), "SMS")
    assert [m["Subject"] for m in rig.relay.messages][1].startswith(
        "[mailprobe] Recovered: IMAPS and 3 more after"
    )
    assert len(rig.relay.messages) == 2 and len(rig.sms.requests) == 2
