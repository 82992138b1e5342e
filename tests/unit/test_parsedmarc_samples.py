"""Every DMARC aggregate and TLS-RPT sample parsedmarc keeps (tests/data/parsedmarc/, copied
under its Apache-2.0 licence) taken as the mailbox reader and the HTTPS endpoint take it: a mail
message's report attachments (controller/reports/mail.py), then the parser. Each sample has its
expected outcome below: a report (kind, reporter, domains, rows) or a refusal's reason; a sample
added to the folder without an outcome here fails."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.reports import mail
from controller.reports.parse import Rejected, parse

SAMPLES = Path(__file__).parents[1] / "data" / "parsedmarc"
NOW = datetime.now(UTC)

# name: (kind, reporter, domains, rows), or the reason it is refused.
Expected = tuple[str, str, tuple[str, ...], int] | str
EXPECTED: dict[str, Expected] = {
    # Reporters' own reports, as they sent them.
    "google.com!borschow.com!949348866075514174.eml": ("dmarc", "google.com", ("borschow.com",), 1),
    "twilight.eml": ("dmarc", "google.com", ("twlnet.com",), 1),
    # One gzip member and CRLF after it: gzip(1) ignores such trailing bytes, so do we.
    "mimecast-weird-gzip.eml": ("dmarc", "Mimecast", ("ab.id.au",), 1),
    "google.com_smtp_tls_report.eml": ("tls", "Google Inc.", ("cardinalhealth.ca",), 1),
    "fastmail.com!example.com!1516060800!1516147199!102675056.xml.gz": (
        "dmarc",
        "FastMail Pty Ltd",
        ("indemed.com",),
        1,
    ),
    "protection.outlook.com!example.com!1711756800!1711843200.xml": (
        "dmarc",
        "Outlook.com",
        ("example.com",),
        1,
    ),
    "mail.ru.json": ("tls", "Mail.ru", ("example.com",), 2),
    "estadocuenta1.infonacot.gob.mx!example.com!1536853302!1536939702!2940.xml.zip": (
        "dmarc",
        "XYZ Corporation",
        ("example.com",),
        1,
    ),
    "addisonfoods.com!example.com!1536105600!1536191999.xml": (
        "dmarc",
        "addisonfoods.com",
        ("example.com",),
        1,
    ),
    "example.net!example.com!1529366400!1529452799.xml": (
        "dmarc",
        "example.net",
        ("example.com",),
        1,
    ),
    "usssa.com!example.com!1538784000!1538870399.xml": ("dmarc", "usssa.com", ("example.com",), 2),
    "veeam.com!example.com!1530133200!1530219600.xml": ("dmarc", "veeam.com", ("example.com",), 1),
    # An empty org_name: the reporter is named by its contact address's domain.
    "!example.com!1538204542!1538463818.xml": (
        "dmarc",
        "accurateplastics.com",
        ("example.com",),
        1,
    ),
    "empty_reason.xml": ("dmarc", "example.org", ("example.com",), 1),
    "old_draft_from_wiki.xml": ("dmarc", "acme.com", ("example.com",), 1),
    "report_with_upper_cased_pass.xml": ("dmarc", "example.com", ("example.com",), 1),
    "rfc9990-sample.xml": ("dmarc", "Sample Reporter", ("example.com",), 1),
    "rfc9990-example.net!example.com!1700000000!1700086399.xml": (
        "dmarc",
        "example.net",
        ("example.com",),
        2,
    ),
    "nice-input.xml": ("dmarc", "google.com", ("example.com",), 20),
    "nice-input.xml.gz": ("dmarc", "google.com", ("example.com",), 20),
    "nice-input.xml.zip": ("dmarc", "google.com", ("example.com",), 20),
    "changed-input.xml": ("dmarc", "fred.com", ("example.com",), 20),
    "rfc8460.json": ("tls", "Company-X", ("company-y.example",), 4),
    "smtp_tls.json": ("tls", "Example Inc.", ("example.com",), 2),
    # IKEA's: <feedback> inside an <xs:schema> it never closes. The report is its <feedback>.
    "ikea.com!example.de!1538690400!1538776800.xml": ("dmarc", "ikea.com", ("example.de",), 1),
    # A byte not of its declared UTF-8 (0x91, Windows-1252's quote) in a leaf: read as U+FFFD.
    "invalid_utf_8.xml": ("dmarc", "accurateplastics.com", ("example.com",), 1),
    # Refused: not a report by the RFCs' schema.
    "empty.xml": "malformed",  # no byte at all
    # The veeam.com sample above with `<` in two leaves, edited by hand: markup not well-formed
    # (XML 1.0 section 1.2, a fatal error). Guessing its elements could move a count from one
    # record to another, and a report is taken whole or not at all.
    "invalid_xml.xml": "malformed",
}


def _reports(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.suffix == ".eml":
        attached = mail.opened(data)[1]
        assert len(attached) == 1, path.name
        return attached
    return [data]


def test_every_sample_has_an_expected_outcome() -> None:
    kept = {p.name for p in SAMPLES.iterdir() if p.name not in ("LICENSE", "README.md")}
    assert kept == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_parsedmarc_sample_is_taken_or_refused_as_expected(name: str) -> None:
    expected = EXPECTED[name]
    for data in _reports(SAMPLES / name):
        if isinstance(expected, str):
            with pytest.raises(Rejected) as refused:
                parse(data, NOW)
            assert refused.value.reason == expected, refused.value.message
            continue
        report = parse(data, NOW)
        assert (report.kind, report.reporter, report.domains, len(report.rows)) == expected
