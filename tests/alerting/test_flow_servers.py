"""An incident is a broken server (issue 80): Debian's Dovecot and a Postfix submitting through
Dovecot's auth socket, on loopback, watched by four monitors under four host names (IMAPS,
POP3S, a STARTTLS submission and SMTPS) that the agents' checks all connect to at one address.
Dovecot is stopped: IMAPS and POP3S fail first, Postfix notices the missing SASL backend
minutes later (later than `flows.SAME_TIME`, whatever cause word its prober gives). What the
probers really saw, their connected address included, is stored for three countries and
judged by the alerter: one flow incident of the four monitors, one notice per channel at
open, one when Postfix's monitors join, one at recovery (the e-mails one thread: each
follow-up's In-Reply-To names the first page's Message-ID); every monitor's incidents say a
notice about it was delivered."""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, Literal

import asyncpg
import httpx
import msgspec
import pytest
import trustme

from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from controller.alerting import flows
from controller.ingest import store as results
from shared.clock import WALL
from shared.messages import CheckJob, CheckResult, ImapPopConfig, SmtpAuth, SmtpConfig, TlsOptions
from shared.secret import Secret
from shared.timefmt import iso_ms, utcnow
from testkit.alerting.wired import wired_alerter
from testkit.oauth2 import dovecot, postfix
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.postfix import Postfix
from testkit.peers.jobs import make_job
from tests.alerting.conftest import LINKS, Rig

USER, PASSWORD = "alice@example.com", "alice-pa55"
TLS = TlsOptions(servername="localhost")
COUNTRIES = ("DE", "FR", "US")  # the rig's monitors' countries
# The monitors' host names: none is another's, all resolve (for the agents) to 127.0.0.1.
NAMES = {
    "imap": "imap.mail.test",
    "pop3": "pop3.mail.test",
    "submission": "smtp.mail.test",
    "smtps": "mail.test",
}


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

    def box(protocol: Literal["imap", "pop3"]) -> ImapPopConfig:
        return ImapPopConfig(protocol, USER, secret, tls=True, tls_options=TLS)

    return {
        "imap": make_job("imap", dc.ports["imaps"], box("imap"), timeout=8.0),
        "pop3": make_job("pop3", dc.ports["pop3s"], box("pop3"), timeout=8.0),
        "submission": make_job(
            "smtp", pf.ports["smtp"], SmtpConfig(auth=auth, tls_options=TLS), timeout=8.0
        ),
        "smtps": make_job(
            "smtp",
            pf.ports["smtps"],
            SmtpConfig(secure=True, auth=auth, tls_options=TLS),
            timeout=8.0,
        ),
    }


async def monitors(rig: Rig, dc: Dovecot, pf: Postfix) -> dict[str, asyncpg.Record]:
    """The four monitors as the API would store them, each under its own host name."""
    box: dict[str, Any] = {"user": USER, "password": "x", "tls": True}
    auth = {"auth": {"user": USER, "pass": "x"}}
    return {
        "imap": await rig.monitor(
            kind="imap", name="IMAPS", hostname=NAMES["imap"], port=dc.ports["imaps"], config=box
        ),
        "pop3": await rig.monitor(
            kind="pop3",
            name="POP3S",
            hostname=NAMES["pop3"],
            port=dc.ports["pop3s"],
            config={**box, "protocol": "pop3"},
        ),
        "submission": await rig.monitor(
            name="Submission", hostname=NAMES["submission"], port=pf.ports["smtp"], config=auth
        ),
        "smtps": await rig.monitor(
            name="SMTPS",
            hostname=NAMES["smtps"],
            port=pf.ports["smtps"],
            config={**auth, "secure": True},
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
    """What the probers saw (their connected address included), as round `n` of each monitor
    from every country, decoded as the ingester decodes an agent's result."""
    at = rig.at(n)
    rows = []
    for name, m in ms.items():
        for cc in COUNTRIES:
            r = msgspec.structs.replace(
                seen[name],
                job_id=rig.job_ids.make(str(m["public_id"]), cc, at, False),
                monitor_id=str(m["public_id"]),
                country=cc,
                agent_id=f"{cc}-agent",
                scheduled_at=iso_ms(at),
                started_at=iso_ms(at),
                finished_at=iso_ms(at + timedelta(seconds=1)),
            )
            rows.append(results.decode_result(msgspec.json.encode(r)))
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())


async def notified(api: httpx.AsyncClient, rig: Rig, m: asyncpg.Record) -> list[Any]:
    """The monitor's incidents as the API lists them: (state, notified, delivery)."""
    kind = "smtp" if m["type"] == "smtp" else "imap-pop"
    r = await api.get(
        f"/api/{kind}-monitors/{m['public_id']}/incidents", headers=rig.tenant.auth("readonly")
    )
    assert r.status_code == 200, r.text
    return [(i["state"], i["notified"], i["delivery"]) for i in r.json()["items"]]


async def test_dovecot_down_is_one_incident_across_names_ports_and_protocols(
    rig: Rig, servers: tuple[Dovecot, Postfix, SslContexts], api: httpx.AsyncClient
) -> None:
    dc, pf, contexts = servers
    rig.alerter = wired_alerter(
        rig.pool,
        rig.js,
        rig.job_ids,
        incident_group_wait_seconds=30,
        incident_group_interval_seconds=300,
        links=LINKS,
        clock=rig.clock,
    )
    ms = await monitors(rig, dc, pf)
    js = jobs(dc, pf)
    up = await checked(js, contexts)
    assert {n: (r.status, r.address) for n, r in up.items()} == dict.fromkeys(
        js, ("up", "127.0.0.1")
    ), {n: r.message for n, r in up.items()}

    await dc.stop()
    down = await checked(js, contexts)
    print("Dovecot down, as the probers saw it:")
    for name, r in down.items():
        print(f"  {name}: {r.status} {r.error_kind} ({r.address}): {r.message}")
    assert {n: r.status for n, r in down.items()} == dict.fromkeys(js, "down")

    # Dovecot's monitors fail first; Postfix's are still up, as before it notices.
    dovecot_only = {**up, "imap": down["imap"], "pop3": down["pop3"]}
    await store(rig, ms, 0, up)
    for n in (1, 2):
        await store(rig, ms, n, dovecot_only)
        await rig.alerter.burst()
    rig.clock.shift += timedelta(seconds=31)
    await rig.alerter.burst()
    assert await rig.outbox().burst() == 2  # one e-mail, one SMS
    assert [m["Subject"] for m in rig.relay.messages] == ["[mailprobe] DOWN: IMAPS and 1 more"]

    # Postfix notices minutes later (beyond flows.SAME_TIME), with its own cause words.
    late = 3 + int(flows.SAME_TIME / timedelta(minutes=1))
    for n in range(3, late):
        await store(rig, ms, n, dovecot_only)
        await rig.alerter.burst()
    for n in (late, late + 1):
        await store(rig, ms, n, down)
        await rig.alerter.burst()
    assert await rig.outbox().burst() == 0  # a change waits for the group interval
    rig.clock.shift += timedelta(seconds=300)
    await rig.alerter.burst()
    opened = {n: await rig.incidents(m) for n, m in ms.items()}
    assert {n: len(i) for n, i in opened.items()} == dict.fromkeys(ms, 1)
    assert len({i[0]["flow_incident_id"] for i in opened.values()}) == 1, {
        n: i[0]["cause_kind"] for n, i in opened.items()
    }
    assert await rig.outbox().burst() == 2  # one change notice per channel
    assert [m["Subject"] for m in rig.relay.messages][1].startswith("[mailprobe]")
    for name, m in ms.items():
        assert await notified(api, rig, m) == [("open", True, "sent")], name

    await dc.start()
    again = await checked(js, contexts)
    assert {n: r.status for n, r in again.items()} == dict.fromkeys(js, "up")
    for n in (late + 2, late + 3, late + 4):
        await store(rig, ms, n, again)
        await rig.alerter.burst()
    assert await rig.outbox().burst() == 2
    subjects = [m["Subject"] for m in rig.relay.messages]
    print("notices:", subjects, len(rig.sms.requests), "SMS")
    assert subjects[2].startswith("[mailprobe] Recovered: IMAPS and 3 more after")
    assert len(subjects) == 3 and len(rig.sms.requests) == 3
    # one thread in the mail client: the change and the recovery follow up the first page
    first, *later = rig.relay.messages
    assert "In-Reply-To" not in first
    for mail in later:
        assert mail["In-Reply-To"] == mail["References"] == first["Message-ID"], mail["Subject"]
    for name, m in ms.items():
        assert await notified(api, rig, m) == [("closed", True, "sent")], name
