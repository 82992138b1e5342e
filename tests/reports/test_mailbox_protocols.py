"""The report mailbox read over IMAP with STARTTLS and over POP3 (implicit TLS and STLS), with a
password or an OAuth2 token (XOAUTH2), from Debian's Dovecot, reports mailed through Debian's
Postfix (tests/oauth2/): each message's reports stored or rejected, IMAP's moved, POP3's
deleted. Servers that offer no upgrade, refuse it, or slip responses in the clear after it
(loopback peers that record what they heard) get no login; their failures are errors a person
reads."""

import os
import ssl
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import trustme

from controller.notify.links import Links
from controller.reports import mailbox
from controller.reports.mailbox import MailboxError, ReportMailbox
from shared.secret import Secret
from shared.timefmt import utcnow
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.postfix import Postfix
from testkit.peers.imap import ImapPeer
from testkit.peers.pop3 import Pop3Peer
from testkit.reports import made
from tests.conftest import Tenant
from tests.reports.mailing import PASSWORD, USER, delivered, message, send
from tests.reports.test_tls_endpoint import _monitor

# (protocol, security) and the Dovecot listener it reads.
WAYS = [("imap", "starttls", "imap"), ("pop3", "tls", "pop3s"), ("pop3", "starttls", "pop3")]
LOGIN_VERBS = {"LOGIN", "AUTHENTICATE", "USER", "PASS", "AUTH"}


def _box(
    tenant: Tenant, port: int, ca: trustme.CA | None, protocol: str, security: str, **more: object
) -> ReportMailbox:
    given: dict[str, Any] = {"password": Secret(PASSWORD), **more}
    return ReportMailbox(
        organization_id=tenant.org_id,
        host="127.0.0.1",
        port=port,
        user=USER,
        ca_pem=ca.cert_pem.bytes().decode() if ca is not None else None,
        protocol=protocol,
        security=security,
        **given,
        started=utcnow(),
    )


def _files(*dirs: Path) -> int:
    return sum(len(list(d.iterdir())) for d in dirs if d.exists())


@pytest.mark.parametrize("oauth2", [False, True], ids=["password", "xoauth2"])
@pytest.mark.parametrize(("protocol", "security", "listener"), WAYS)
async def test_mailed_reports_are_read_over_starttls_and_pop3(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    domain: str,
    imap_pop: Dovecot,
    submission: Postfix,
    mail_ca: trustme.CA,
    protocol: str,
    security: str,
    listener: str,
    oauth2: bool,
) -> None:
    await _monitor(http, tenant, domain)
    tls = made.tls_gzip(made.tls_json(domain))
    mails = [
        message(f"Report Domain: {domain}", [(tls, "application/tlsrpt+gzip", "r.json.gz")]),
        message(f"Report domain: {domain}", [(made.dmarc_zip(domain), "application/zip", "d.zip")]),
        message("Hello", []),
    ]
    maildir = imap_pop.homes / "alice" / "Maildir"
    moved = maildir / ".mailprobe-read"
    moved_before = _files(moved / "cur", moved / "new")
    await send(submission, imap_pop, mail_ca, mails)
    await delivered(imap_pop, len(mails))

    login = (
        {"password": Secret(imap_pop.issuer.issue(USER)), "mechanism": "XOAUTH2"} if oauth2 else {}
    )
    box = _box(tenant, imap_pop.ports[listener], mail_ca, protocol, security, **login)
    done = await mailbox.read(pool, box, Links())
    assert (done.messages, done.stored, done.rejected) == (3, 2, 1)
    assert (await mailbox.read(pool, box, Links())).messages == 0

    assert _files(maildir / "new", maildir / "cur") == 0
    # IMAP moves what it read; POP3 has no folders and deletes it.
    assert _files(moved / "cur", moved / "new") - moved_before == (3 if protocol == "imap" else 0)
    r = await http.get("/api/reports", headers=tenant.auth("readonly"))
    assert sorted((x["kind"], x["via"]) for x in r.json()) == [("dmarc", "mail"), ("tls", "mail")]
    r = await http.get("/api/rejected-reports", headers=tenant.auth("readonly"))
    assert [x["reason"] for x in r.json()] == ["no_report"]


@pytest.mark.parametrize(("protocol", "security", "listener"), WAYS)
async def test_bad_logins_and_untrusted_certificates_are_errors_naming_them(
    pool: asyncpg.Pool,
    tenant: Tenant,
    imap_pop: Dovecot,
    mail_ca: trustme.CA,
    protocol: str,
    security: str,
    listener: str,
) -> None:
    port = imap_pop.ports[listener]
    wrong = _box(tenant, port, mail_ca, protocol, security, password=Secret("not-it"))
    with pytest.raises(MailboxError, match=r"^login refused"):
        await mailbox.read(pool, wrong, Links())
    expired = _box(
        tenant,
        port,
        mail_ca,
        protocol,
        security,
        password=Secret(imap_pop.issuer.issue(USER, expires_in=-60)),
        mechanism="XOAUTH2",
    )
    with pytest.raises(MailboxError, match=r"^login refused"):
        await mailbox.read(pool, expired, Links())
    untrusted = _box(tenant, port, None, protocol, security)
    said = "cannot connect" if security == "tls" else "TLS after STARTTLS|TLS after STLS"
    with pytest.raises(MailboxError, match=said):
        await mailbox.read(pool, untrusted, Links())
    strict = _box(tenant, port, mail_ca, protocol, security, allow_private=False)
    with pytest.raises(MailboxError, match="private or reserved address"):
        await mailbox.read(pool, strict, Links())


def _peer(protocol: str, **options: object) -> ImapPeer | Pop3Peer:
    users = {USER: PASSWORD}
    if protocol == "imap":
        return ImapPeer(users, **options)  # type: ignore[arg-type]
    return Pop3Peer(users, **options)  # type: ignore[arg-type]


def _server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


def _no_login(peer: ImapPeer | Pop3Peer) -> None:
    assert not LOGIN_VERBS & set(peer.commands), peer.commands
    assert not any(PASSWORD in line for _, line in peer.heard)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_a_server_without_the_upgrade_gets_no_login(
    pool: asyncpg.Pool, tenant: Tenant, mail_ca: trustme.CA, protocol: str
) -> None:
    """A plain server that does not offer STARTTLS (STLS) is refused before any login: the
    password never goes in the clear."""
    async with _peer(protocol) as peer:
        box = _box(tenant, peer.port, mail_ca, protocol, "starttls")
        with pytest.raises(MailboxError, match=r"does not offer (STARTTLS|STLS): nothing was sent"):
            await mailbox.read(pool, box, Links())
    _no_login(peer)


@pytest.mark.parametrize(
    ("protocol", "options", "said"),
    [
        ("imap", {"after_starttls": b"* OK [CAPABILITY IMAP4rev1]\r\n"}, "man in the middle"),
        ("pop3", {"after_starttls": b"+OK injected\r\n"}, "man in the middle"),
        ("imap", {"starttls_reply": "NO STARTTLS not now"}, "STARTTLS refused: STARTTLS not now"),
        ("pop3", {"stls_reply": "-ERR not now"}, "STLS refused: -ERR not now"),
        ("imap", {"greeting": "* BYE too busy"}, "too busy"),
        ("pop3", {"greeting": b"-ERR too busy\r\n"}, "bad greeting: -ERR too busy"),
    ],
    ids=["imap-injected", "pop3-injected", "imap-refused", "pop3-refused", "imap-bye", "pop3-err"],
)
async def test_bad_answers_to_the_upgrade_are_errors_and_get_no_login(
    pool: asyncpg.Pool,
    tenant: Tenant,
    mail_ca: trustme.CA,
    protocol: str,
    options: dict[str, object],
    said: str,
) -> None:
    async with _peer(protocol, starttls=_server_tls(mail_ca), **options) as peer:
        box = _box(tenant, peer.port, mail_ca, protocol, "starttls")
        with pytest.raises(MailboxError, match=said):
            await mailbox.read(pool, box, Links())
    _no_login(peer)


async def test_a_pop3_server_without_xoauth2_is_told_before_the_token_goes(
    pool: asyncpg.Pool, tenant: Tenant, mail_ca: trustme.CA
) -> None:
    async with _peer("pop3", starttls=_server_tls(mail_ca)) as peer:
        box = _box(
            tenant,
            peer.port,
            mail_ca,
            "pop3",
            "starttls",
            password=Secret("tok"),
            mechanism="XOAUTH2",
        )
        with pytest.raises(MailboxError, match="does not offer XOAUTH2 for POP3"):
            await mailbox.read(pool, box, Links())
    _no_login(peer)


@pytest.mark.parametrize(("protocol", "listener"), [("imap", "imaps"), ("pop3", "pop3s")])
async def test_starttls_at_an_implicit_tls_port_says_which_security_the_port_may_be(
    pool: asyncpg.Pool,
    tenant: Tenant,
    imap_pop: Dovecot,
    mail_ca: trustme.CA,
    protocol: str,
    listener: str,
) -> None:
    """Such a server waits for a handshake and never greets: no login, and a hint."""
    port = imap_pop.ports[listener]
    box = _box(tenant, port, mail_ca, protocol, "starttls", timeout_s=1.0)
    with pytest.raises(MailboxError) as raised:
        await mailbox.read(pool, box, Links())
    assert str(raised.value) == (
        f"127.0.0.1:{port} sent no greeting within 1 s (a port for security tls?)"
    )


@pytest.mark.parametrize(("protocol", "listener"), [("imap", "imaps"), ("pop3", "pop3s")])
async def test_a_message_with_a_line_longer_than_poplibs_cap_is_read_like_any(
    pool: asyncpg.Pool,
    tenant: Tenant,
    imap_pop: Dovecot,
    mail_ca: trustme.CA,
    protocol: str,
    listener: str,
) -> None:
    """A 10,000-byte line (RFC 5322 allows 998; the standard library's poplib refuses past
    2,048 and would leave the message to fail every later read) is one more message."""
    home = imap_pop.homes / "alice"
    new = home / "Maildir" / "new"
    for made_ in (home, home / "Maildir", home / "Maildir" / "cur", home / "Maildir" / "tmp", new):
        made_.mkdir(exist_ok=True)
        os.chown(made_, *imap_pop.owner)
    raw = (
        b"From: someone@example.org\r\nTo: alice@example.com\r\nSubject: long\r\n\r\n"
        + b"x" * 10_000
        + b"\r\n.a line that starts with a dot\r\n"
    )
    dropped = new / f"1.long{protocol}.localhost"
    dropped.write_bytes(raw)
    os.chown(dropped, *imap_pop.owner)
    box = _box(tenant, imap_pop.ports[listener], mail_ca, protocol, "tls")
    done = await mailbox.read(pool, box, Links())
    assert (done.messages, done.stored, done.rejected) == (1, 0, 1)
    assert not list(new.iterdir())
