"""Reports delivered by mail through Debian's Postfix into Debian's Dovecot (both on loopback,
tests/oauth2/), read by the product over IMAPS with an OAuth2 login (XOAUTH2) and a private CA:
each message's reports stored or rejected with a reason, every message moved to the folder the
product names, none read twice."""

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import asyncpg
import httpx
import pytest
import trustme

from controller.notify.links import Links
from controller.reports import mailbox
from controller.reports.mailbox import ReportMailbox
from shared.secret import Secret
from tests.conftest import Tenant
from tests.oauth2 import dovecot, postfix
from tests.oauth2.dovecot import Dovecot
from tests.oauth2.postfix import Postfix
from tests.reports import made
from tests.reports.test_tls_endpoint import _monitor, _posture

USER = "alice@example.com"


@pytest.fixture(scope="module")
def mail_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
async def imap_pop(mail_ca: trustme.CA) -> AsyncIterator[Dovecot]:
    if (why := dovecot.missing()) is not None:
        pytest.skip(why)
    async with Dovecot(mail_ca) as server:
        yield server


@pytest.fixture(scope="module")
async def submission(mail_ca: trustme.CA, imap_pop: Dovecot) -> AsyncIterator[Postfix]:
    if (why := postfix.missing()) is not None:
        pytest.skip(why)
    async with Postfix(mail_ca, imap_pop.auth_socket, imap_pop.homes, imap_pop.owner) as server:
        yield server


def _message(subject: str, parts: list[tuple[bytes, str, str]]) -> EmailMessage:
    m = EmailMessage()
    m["From"] = "noreply-dmarc-support@google.example"
    m["To"] = USER
    m["Subject"] = subject
    m.set_content("This is an aggregate report.")
    for data, kind, name in parts:
        main, sub = kind.split("/")
        m.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return m


async def _send(pf: Postfix, dc: Dovecot, ca: trustme.CA, messages: list[EmailMessage]) -> None:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    token = dc.issuer.issue(USER)
    smtp = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=pf.ports["smtps"], use_tls=True, tls_context=ctx
    )
    await smtp.connect()
    said = base64.b64encode(f"user={USER}\x01auth=Bearer {token}\x01\x01".encode()).decode()
    code, text = await smtp.execute_command(b"AUTH", b"XOAUTH2", said.encode())
    assert code == 235, text
    for m in messages:
        await smtp.send_message(m)
    await smtp.quit()


async def _delivered(dc: Dovecot, n: int) -> None:
    new = dc.homes / "alice" / "Maildir" / "new"
    for _ in range(200):
        if new.exists() and len(list(new.iterdir())) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not delivered: {list(new.iterdir()) if new.exists() else 'no Maildir'}")


async def test_reports_mailed_through_postfix_are_read_from_dovecot_and_moved(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    domain: str,
    imap_pop: Dovecot,
    submission: Postfix,
    mail_ca: trustme.CA,
) -> None:
    monitor = await _monitor(http, tenant, domain)
    tls = made.tls_gzip(made.tls_json(domain))
    messages = [
        _message(
            f"Report Domain: {domain} Submitter: google.com Report-ID: <1>",
            [(tls, "application/tlsrpt+gzip", f"google.com!{domain}!1!2!1.json.gz")],
        ),
        _message(
            f"Report domain: {domain} Submitter: google.com Report-ID: 2",
            [(made.dmarc_zip(domain), "application/zip", f"google.com!{domain}!1!2.zip")],
        ),
        _message("Report domain: bomb", [(made.zip_bomb(), "application/zip", "bomb.zip")]),
        _message(
            "Report domain: nobody.example",
            [(made.dmarc_zip("nobody.example"), "application/zip", "n.zip")],
        ),
        _message("Hello", []),
    ]
    await _send(submission, imap_pop, mail_ca, messages)
    await _delivered(imap_pop, len(messages))

    box = ReportMailbox(
        organization_id=tenant.org_id,
        host="127.0.0.1",
        port=imap_pop.ports["imaps"],
        user=USER,
        password=Secret(imap_pop.issuer.issue(USER)),
        mechanism="XOAUTH2",
        ca_pem=mail_ca.cert_pem.bytes().decode(),
    )
    done = await mailbox.read(pool, box, Links())
    assert (done.messages, done.stored, done.rejected) == (5, 2, 3)
    again = await mailbox.read(pool, box, Links())
    assert again.messages == 0
    maildir = imap_pop.homes / "alice" / "Maildir"
    assert not list((maildir / "new").iterdir()) and not list((maildir / "cur").iterdir())
    moved = maildir / ".mailprobe-read"
    assert len([*(moved / "cur").iterdir(), *(moved / "new").iterdir()]) == 5

    found = await _posture(http, tenant, monitor)
    assert set(found) == {
        "tls_failures_reported",
        "dmarc_failures_reported",
        "dmarc_unknown_source",
    }
    assert found["dmarc_failures_reported"]["detail"] == (
        "40 messages from 1 networks failed DMARC alignment: 192.0.2.0/24: 40 messages (500 passed)"
    )
    assert "198.51.100.0/24: 25 messages" in found["dmarc_unknown_source"]["detail"]
    r = await http.get("/api/rejected-reports", headers=tenant.auth("readonly"))
    assert sorted(x["reason"] for x in r.json()) == ["bomb", "domain_not_monitored", "no_report"]
    assert all(x["via"] == "mail" for x in r.json())


async def test_a_wrong_login_is_a_mailbox_error_naming_it(
    pool: asyncpg.Pool, tenant: Tenant, imap_pop: Dovecot, mail_ca: trustme.CA
) -> None:
    box = ReportMailbox(
        tenant.org_id,
        "127.0.0.1",
        imap_pop.ports["imaps"],
        USER,
        Secret(imap_pop.issuer.issue(USER, expires_in=-60)),
        "XOAUTH2",
        mail_ca.cert_pem.bytes().decode(),
    )
    with pytest.raises(mailbox.MailboxError, match="login refused"):
        await mailbox.read(pool, box, Links())
    untrusted = ReportMailbox(
        tenant.org_id, "127.0.0.1", imap_pop.ports["imaps"], USER, Secret("x")
    )
    with pytest.raises(mailbox.MailboxError, match="cannot connect"):
        await mailbox.read(pool, untrusted, Links())
