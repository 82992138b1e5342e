"""Each large provider's reports as it mails them (its attachment's content type and file name,
zip or gzip, the bytes after the report), submitted through Debian's Postfix into Debian's
Dovecot and read by the product over IMAPS: every one stored.

Where the packing comes from: Google (zip, `application/zip`), Mimecast (one gzip member with
its file name in the gzip header, then CRLF, `application/gzip`), FastMail (gzip, a unique id in
the name) and Google's TLS-RPT (`application/tlsrpt+gzip`, `.json.gz`) as parsedmarc's samples
of them (tests/data/parsedmarc/); Microsoft and Yahoo as testkit/reports/samples.py shapes
them; Proofpoint and Mail.ru as RFC 7489 §7.2.1.1 names and packs a report (`application/gzip`,
`receiver!domain!begin!end.xml.gz`), which is what their reports are known to follow."""

import gzip
import io
import zipfile
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import trustme

from controller.notify.links import Links
from controller.reports import mail, mailbox
from controller.reports.mailbox import ReportMailbox
from shared.secret import Secret
from shared.timefmt import utcnow
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.postfix import Postfix
from testkit.reports import made, samples
from tests.conftest import Tenant
from tests.reports.mailing import USER, delivered, message, send
from tests.reports.test_tls_endpoint import _monitor

PARSEDMARC = Path(__file__).parents[1] / "data" / "parsedmarc"


def _range() -> tuple[int, int]:
    begins = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0)
    begin = int(begins.replace(microsecond=0).timestamp())
    return begin, begin + 86399


def _retargeted(xml: bytes, domain: str, was: str, begin: str, end: str) -> bytes:
    """A real provider's report, about `domain` and yesterday instead of `was` and its days."""
    now = _range()
    return (
        xml.replace(f"<domain>{was}</domain>".encode(), f"<domain>{domain}</domain>".encode())
        .replace(f"<begin>{begin}</begin>".encode(), f"<begin>{now[0]}</begin>".encode())
        .replace(f"<end>{end}</end>".encode(), f"<end>{now[1]}</end>".encode())
    )


def _gzip_named(name: str, data: bytes) -> bytes:
    """A gzip member whose header names the file (FNAME), as Mimecast and gzip(1) write it."""
    out = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=out, mtime=0) as g:
        g.write(data)
    return out.getvalue()


def _zip(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return out.getvalue()


def _mimecast(domain: str) -> bytes:
    mailed = (PARSEDMARC / "mimecast-weird-gzip.eml").read_bytes()
    xml = zlib.decompressobj(31).decompress(mail.attachments(mailed)[0])  # CRLF left unused
    xml = _retargeted(xml, domain, "ab.id.au", "1693353600", "1693439999")
    begin, end = _range()
    return _gzip_named(f"mimecast.org!{domain}!{begin}!{end}!157a5fe3.xml", xml) + b"\r\n"


def _fastmail(domain: str) -> bytes:
    packed = PARSEDMARC / "fastmail.com!example.com!1516060800!1516147199!102675056.xml.gz"
    xml = gzip.decompress(packed.read_bytes())
    return gzip.compress(_retargeted(xml, domain, "indemed.com", "1516060800", "1516147199"))


def _google_tls(domain: str) -> bytes:
    return made.tls_gzip(made.tls_json(domain, reporter="Google Inc."))


def _mailru_tls(domain: str) -> bytes:
    return made.tls_gzip(made.tls_json(domain, reporter="Mail.ru", successes=17))


def _messages(domain: str) -> list[tuple[str, bytes, str, str]]:
    """(reporter, attachment, content type, file name) of each provider's report."""
    begin, end = _range()
    gz, zipped = "application/gzip", "application/zip"
    proofpoint = made.dmarc_xml(domain, reporter="Proofpoint", report_id="pp-1")
    mailru = made.dmarc_xml(domain, reporter="Mail.Ru", report_id="mr-1")
    google = made.dmarc_xml(domain, reporter="google.com", report_id="g-1")
    return [
        ("google.com", _zip(f"google.com!{domain}!{begin}!{end}.xml", google), zipped,
         f"google.com!{domain}!{begin}!{end}.zip"),
        ("Enterprise Outlook", samples.microsoft_dmarc(domain, 3), gz,
         f"enterprise.protection.outlook.com!{domain}!{begin}!{end}.xml.gz"),
        ("Yahoo", samples.yahoo_dmarc(domain, 3), gz, f"yahoo.com!{domain}!{begin}!{end}.xml.gz"),
        ("Mimecast", _mimecast(domain), gz,
         f"mimecast.org!{domain}!{begin}!{end}!157a5fe3.xml.gz"),
        ("Proofpoint", gzip.compress(proofpoint), gz,
         f"proofpoint.com!{domain}!{begin}!{end}.xml.gz"),
        ("FastMail Pty Ltd", _fastmail(domain), gz,
         f"fastmail.com!{domain}!{begin}!{end}!102675056.xml.gz"),
        ("Mail.Ru", gzip.compress(mailru), gz, f"mail.ru!{domain}!{begin}!{end}.xml.gz"),
        ("Google Inc.", _google_tls(domain), "application/tlsrpt+gzip",
         f"google.com!{domain}!{begin}!{end}!001.json.gz"),
        ("Mail.ru", _mailru_tls(domain), "application/tlsrpt+gzip",
         f"mail.ru!{domain}!{begin}!{end}.json.gz"),
    ]  # fmt: skip


async def test_each_large_providers_reports_are_taken_as_it_mails_them(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    domain: str,
    imap_pop: Dovecot,
    submission: Postfix,
    mail_ca: trustme.CA,
) -> None:
    await _monitor(http, tenant, domain)
    sent = _messages(domain)
    mailed = [
        message(f"Report Domain: {domain} Submitter: {who}", [(data, kind, name)])
        for who, data, kind, name in sent
    ]
    await send(submission, imap_pop, mail_ca, mailed)
    await delivered(imap_pop, len(mailed))
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
    done = await mailbox.read(pool, box, Links())
    r = await http.get("/api/rejected-reports", headers=tenant.auth("readonly"))
    assert r.json() == []
    assert (done.messages, done.stored, done.rejected) == (len(sent), len(sent), 0)
    r = await http.get("/api/reports", headers=tenant.auth("readonly"))
    assert sorted(x["reporter"] for x in r.json()) == sorted(who for who, *_ in sent)
