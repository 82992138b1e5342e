"""Reports delivered by mail through Debian's Postfix into Debian's Dovecot (both on loopback,
tests/oauth2/), read by the product over IMAPS with an OAuth2 login (XOAUTH2) and a private CA:
each message's reports stored or rejected with a reason, every message moved to the folder the
product names, none read twice."""

from datetime import timedelta
from email.message import EmailMessage

import asyncpg
import httpx
import pytest
import trustme
from prometheus_client import REGISTRY

from controller.notify.links import Links
from controller.reports import intake, mailbox
from controller.reports.mailbox import ReportMailbox
from shared.secret import Secret
from shared.timefmt import utcnow
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.postfix import Postfix
from testkit.reports import made
from tests.conftest import Tenant
from tests.reports.mailing import USER, delivered, message, send
from tests.reports.test_tls_endpoint import _monitor, _posture


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
        message(
            f"Report Domain: {domain} Submitter: google.com Report-ID: <1>",
            [(tls, "application/tlsrpt+gzip", f"google.com!{domain}!1!2!1.json.gz")],
        ),
        message(
            f"Report domain: {domain} Submitter: google.com Report-ID: 2",
            [(made.dmarc_zip(domain), "application/zip", f"google.com!{domain}!1!2.zip")],
        ),
        message("Report domain: bomb", [(made.zip_bomb(), "application/zip", "bomb.zip")]),
        message(
            "Report domain: nobody.example",
            [(made.dmarc_zip("nobody.example"), "application/zip", "n.zip")],
        ),
        message("Hello", []),
    ]
    await send(submission, imap_pop, mail_ca, messages)
    await delivered(imap_pop, len(messages))

    box = ReportMailbox(
        organization_id=tenant.org_id,
        host="127.0.0.1",
        port=imap_pop.ports["imaps"],
        user=USER,
        password=Secret(imap_pop.issuer.issue(USER)),
        mechanism="XOAUTH2",
        ca_pem=mail_ca.cert_pem.bytes().decode(),
        started=utcnow(),
    )

    def counted(outcome: str, kind: str = "unknown") -> float:
        labels = {"kind": kind, "via": "mail", "outcome": outcome}
        return REGISTRY.get_sample_value("mailprobe_reports_total", labels) or 0.0

    before = {o: counted(o) for o in ("no_report", "bomb", "domain_not_monitored")}
    before["domain_not_monitored"] = counted("domain_not_monitored", "dmarc")
    done = await mailbox.read(pool, box, Links())
    assert (done.messages, done.stored, done.rejected) == (5, 2, 3)
    # Every rejection is counted, the message without a report too.
    assert counted("no_report") == before["no_report"] + 1
    assert counted("bomb") == before["bomb"] + 1
    assert counted("domain_not_monitored", "dmarc") == before["domain_not_monitored"] + 1
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
    # a mailed report's sender: its From domain (controller/reports/senders.py)
    senders = await pool.fetch(
        "SELECT sender FROM reports WHERE organization_id = $1", tenant.org_id
    )
    assert [s["sender"] for s in senders] == ["mail google.example"] * 2


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
        started=utcnow(),
    )
    with pytest.raises(mailbox.MailboxError, match="login refused"):
        await mailbox.read(pool, box, Links())
    untrusted = ReportMailbox(
        tenant.org_id, "127.0.0.1", imap_pop.ports["imaps"], USER, Secret("x"), started=utcnow()
    )
    with pytest.raises(mailbox.MailboxError, match="cannot connect"):
        await mailbox.read(pool, untrusted, Links())


async def test_mailed_reports_refused_count_against_their_domains_hour(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    domain: str,
    imap_pop: Dovecot,
    submission: Postfix,
    mail_ca: trustme.CA,
) -> None:
    """Mailed reports refused by the parser (`malformed`, counted against the domain their
    message names: its `Report Domain:` subject) or after it (`too_old`, against the domain
    they are about) spend the domain's REPORTS_PER_HOUR as at the HTTPS address: once it is
    spent, the domain's next mailed report is refused (`too_many_reports`), before any parser
    is used. Unfixed, mail refusals counted nothing and the fifth report was stored."""
    await _monitor(http, tenant, domain)
    old = utcnow() - timedelta(days=400)
    subject = f"Report Domain: {domain} Submitter: google.com Report-ID: <{{}}>"
    name = f"google.com!{domain}!1!2!{{}}.json.gz"
    tls = "application/tlsrpt+gzip"
    messages = [message(subject.format(i), [(b"{not json", tls, name.format(i))]) for i in (1, 2)]
    messages += [
        message(
            subject.format(i),
            [(made.tls_gzip(made.tls_json(domain, begins=old, report_id=f"old-{i}")), tls, name)],
        )
        for i in (3, 4)
    ]
    messages.append(message(subject.format(5), [(made.tls_gzip(made.tls_json(domain)), tls, "")]))
    await send(submission, imap_pop, mail_ca, messages)
    await delivered(imap_pop, len(messages))
    box = ReportMailbox(
        organization_id=tenant.org_id,
        host="127.0.0.1",
        port=imap_pop.ports["imaps"],
        user=USER,
        password=Secret(imap_pop.issuer.issue(USER)),
        mechanism="XOAUTH2",
        ca_pem=mail_ca.cert_pem.bytes().decode(),
        limits=intake.Limits(reports_per_hour=4),
        started=utcnow(),
    )
    done = await mailbox.read(pool, box, Links())
    assert (done.messages, done.stored, done.rejected) == (5, 0, 5)
    r = await http.get("/api/rejected-reports", headers=tenant.auth("readonly"))
    reasons = [x["reason"] for x in sorted(r.json(), key=lambda x: x["at"])]
    assert reasons == ["malformed", "malformed", "too_old", "too_old", "too_many_reports"]


async def test_mailed_messages_refused_whole_count_against_the_named_domain_or_the_organization(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    domain: str,
    imap_pop: Dovecot,
    submission: Postfix,
    mail_ca: trustme.CA,
) -> None:
    """Messages refused whole (`no_report`; `too_deep` unparsed, its subject read from the
    head's bytes) count against the hour of the monitored domain their subject names, so that
    domain's next report is refused unparsed (`too_many_reports`); those naming none count
    against the organization's bound of such refusals, past which a message is refused
    unopened (`too_many_refused`). Unfixed, they counted against nothing: both reports were
    stored."""
    await _monitor(http, tenant, domain)
    named = f"Report Domain: {domain} Submitter: google.com Report-ID: <{{}}>"
    tls = "application/tlsrpt+gzip"

    def deep(subject: str) -> EmailMessage:
        m = message(subject, [])
        m.set_content("multipart/ " * 21)  # past MAX_MULTIPARTS: refused before it is parsed
        return m

    def report(subject: str, i: int) -> EmailMessage:
        data = made.tls_gzip(made.tls_json(domain, report_id=f"whole-{i}", successes=i))
        return message(subject, [(data, tls, f"google.com!{domain}!1!2!{i}.json.gz")])

    messages = [
        message(named.format(1), []),
        deep(named.format(2)),
        report(named.format(3), 3),
        message("A note", []),
        deep("Another note"),
        report("No domain named", 6),
    ]
    await send(submission, imap_pop, mail_ca, messages)
    await delivered(imap_pop, len(messages))
    box = ReportMailbox(
        organization_id=tenant.org_id,
        host="127.0.0.1",
        port=imap_pop.ports["imaps"],
        user=USER,
        password=Secret(imap_pop.issuer.issue(USER)),
        mechanism="XOAUTH2",
        ca_pem=mail_ca.cert_pem.bytes().decode(),
        limits=intake.Limits(reports_per_hour=2, mailed_refusals_per_hour=2),
        started=utcnow(),
    )
    done = await mailbox.read(pool, box, Links())
    assert (done.messages, done.stored, done.rejected) == (6, 0, 6)
    r = await http.get("/api/rejected-reports", headers=tenant.auth("readonly"))
    reasons = [x["reason"] for x in sorted(r.json(), key=lambda x: x["at"])]
    assert reasons == [
        "no_report",
        "too_deep",
        "too_many_reports",
        "no_report",
        "too_deep",
        "too_many_refused",
    ]
