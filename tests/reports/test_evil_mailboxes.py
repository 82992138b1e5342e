"""Report mailboxes whose servers lie (tests/reports/evil_mail.py), read by the real readers over
TLS into real PostgreSQL, the controller's process watched (tests/reports/watching.py: its
memory asserted, its loop's lag printed):

- a server declaring a 100-byte message and sending 300 MB: the reader takes at most
  `MAX_MESSAGE` of it, drops the connection, records the refusal; the next read moves the
  message aside unread and reads the rest;
- an IMAP greeting without end, or untagged lines forever after SEARCH: the reader drops the
  connection at its bound (`BOUNDS`) and the read fails saying so;
- a message whose reads never finish (the connection drops mid-body, as it would for a
  controller killed mid-parse: the ledger is left the same): read twice, then refused unread
  (`reader_failed`) and moved aside, never read forever."""

import ssl
from email import policy

import asyncpg
import httpx
import pytest
import trustme

from controller.notify.links import Links
from controller.reports import mailbox
from controller.reports.mailbox import MAX_MESSAGE, MailboxError, ReportMailbox
from controller.reports.mailbox.base import TIMEOUT_S
from controller.reports.mailbox.imap import BOUNDS
from controller.settings import ControllerSettings
from shared.secret import Secret
from shared.timefmt import utcnow
from testkit.reports import made
from testkit.reports.watching import watch
from tests.conftest import Tenant
from tests.reports.evil_mail import EvilImap, EvilPop3, Held
from tests.reports.mailing import message
from tests.reports.test_tls_endpoint import _monitor

pytestmark = pytest.mark.breadth

FLOOD = 300 * 1024 * 1024
# What the reader's buffer (POP3: a line may be MAX_MESSAGE long) and the sockets' hold besides,
# when the reader stops.
SLACK = MAX_MESSAGE + 8 * 1024 * 1024
SERVERS = {"imap": EvilImap, "pop3": EvilPop3}


@pytest.fixture(scope="module")
def evil_tls(mail_ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    mail_ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


def _report_mail(domain: str) -> bytes:
    m = message(f"Report domain: {domain}", [(made.dmarc_zip(domain), "application/zip", "d.zip")])
    return m.as_bytes(policy=policy.SMTP)


def _box(
    tenant: Tenant, port: int, ca: trustme.CA, protocol: str, timeout_s: float = 1.0
) -> ReportMailbox:
    return ReportMailbox(
        organization_id=tenant.org_id,
        host="127.0.0.1",
        port=port,
        user="alice",
        password=Secret("s3cret"),
        ca_pem=ca.cert_pem.bytes().decode(),
        protocol=protocol,
        security="tls",
        timeout_s=timeout_s,
        started=utcnow(),
    )


async def _rejections(pool: asyncpg.Pool, tenant: Tenant) -> list[str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT reason FROM rejected_reports WHERE organization_id = $1 AND via = 'mail'"
            " ORDER BY id",
            tenant.org_id,
        )
    return [r["reason"] for r in rows]


async def _stored(pool: asyncpg.Pool, tenant: Tenant) -> int:
    async with pool.acquire() as conn:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM reports WHERE organization_id = $1", tenant.org_id
        )
    return n


async def _ledger(pool: asyncpg.Pool, tenant: Tenant) -> int:
    async with pool.acquire() as conn:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM report_mail_messages WHERE organization_id = $1", tenant.org_id
        )
    return n


@pytest.mark.parametrize("protocol", list(SERVERS))
async def test_a_message_larger_than_declared_is_cut_at_the_limit_then_moved_aside(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    tenant: Tenant,
    domain: str,
    mail_ca: trustme.CA,
    evil_tls: ssl.SSLContext,
    protocol: str,
) -> None:
    await _monitor(http, tenant, domain)
    held = [Held(declared=100, flood=FLOOD), Held(_report_mail(domain))]
    links = Links.of(settings.notify)
    async with SERVERS[protocol](evil_tls, held) as server:
        # The mailbox's own timeout: the flood's first MAX_MESSAGE bytes over TLS are one
        # answer, which a loaded machine may take more than a second to read up to the cut.
        box = _box(tenant, server.port, mail_ca, protocol, TIMEOUT_S)
        async with watch() as watched:
            with pytest.raises(MailboxError, match="more than"):
                await mailbox.read(pool, box, links)
        print(
            f"{protocol}: 100 bytes declared, {server.seen.flooded} sent: {watched.said()}",
            flush=True,
        )
        assert server.seen.flooded <= MAX_MESSAGE + SLACK
        assert watched.growth_mb <= 100, watched.said()
        assert await _rejections(pool, tenant) == ["too_large"]

        done = await mailbox.read(pool, box, links)
        assert (done.messages, done.stored, done.rejected) == (2, 1, 0)
        assert server.seen.fetched == [1, 2]  # the flood's body was not asked for again
        assert 1 not in server.held and 2 not in server.held
    assert await _rejections(pool, tenant) == ["too_large"]
    assert await _stored(pool, tenant) == 1
    assert await _ledger(pool, tenant) == 0


@pytest.mark.parametrize("protocol", list(SERVERS))
async def test_a_message_whose_reads_never_finish_is_refused_unread_after_two(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    tenant: Tenant,
    domain: str,
    mail_ca: trustme.CA,
    evil_tls: ssl.SSLContext,
    protocol: str,
) -> None:
    await _monitor(http, tenant, domain)
    held = [Held(_report_mail(domain), drop=True), Held(_report_mail(domain))]
    links = Links.of(settings.notify)
    async with SERVERS[protocol](evil_tls, held) as server:
        box = _box(tenant, server.port, mail_ca, protocol)
        for _ in range(2):
            with pytest.raises(Exception):  # noqa: B017  # whichever way the read fails
                await mailbox.read(pool, box, links)
        assert server.seen.fetched == [1, 1]
        done = await mailbox.read(pool, box, links)
        assert (done.messages, done.stored, done.rejected) == (2, 1, 1)
        assert server.seen.fetched == [1, 1, 2]
        assert not server.held
    assert await _rejections(pool, tenant) == ["reader_failed"]
    assert await _ledger(pool, tenant) == 0


@pytest.mark.parametrize("endless", ["greeting", "search"])
async def test_an_imap_answer_without_end_is_cut_at_its_bound(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    tenant: Tenant,
    domain: str,
    mail_ca: trustme.CA,
    evil_tls: ssl.SSLContext,
    endless: str,
) -> None:
    await _monitor(http, tenant, domain)
    async with EvilImap(evil_tls, [Held(_report_mail(domain))]) as server:
        server.endless = endless
        box = _box(tenant, server.port, mail_ca, "imap", TIMEOUT_S)
        async with watch() as watched:
            with pytest.raises(MailboxError, match="the connection was dropped"):
                await mailbox.read(pool, box, Links.of(settings.notify))
        print(f"imap {endless} without end, {server.seen.flooded} sent: {watched.said()}")
        assert server.seen.flooded <= max(BOUNDS.line_max, BOUNDS.answer_max) + SLACK
        assert watched.growth_mb <= 100, watched.said()
    assert await _stored(pool, tenant) == 0
