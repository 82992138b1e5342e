"""Reports parsed defensively (controller/reports/parse.py): what large reporters send parses
into counts; every bad input is refused with its stable reason, as data (one row each)."""

import gzip
import io
import json
import zipfile
from datetime import UTC, datetime

import pytest

from controller.reports.parse import MAX_PACKED, Rejected, Row, known_domains, parse
from tests.reports import made

NOW = datetime.now(UTC)
DOMAIN = "example.com"


def test_a_gzipped_tls_report_of_two_policies_counts_sessions_per_result_mx_and_ip() -> None:
    report = parse(made.tls_gzip(made.tls_json(DOMAIN)), NOW)
    assert report.kind == "tls" and report.reporter == "Google LLC"
    assert report.domains == (DOMAIN,)
    rows = [row for _, row in report.rows]
    assert Row("success", 5326) in rows and Row("success", 10) in rows
    assert Row("certificate-expired", 100, "mx1.example.com", "203.0.113.56") in rows
    assert Row("starttls-not-supported", 200, "mx2.example.com", "203.0.113.57") in rows
    assert Row("validation-failure", 3, "mx-backup.example.com", "203.0.113.58") in rows


def test_a_plain_json_tls_report_parses_like_the_gzipped_one() -> None:
    body = made.tls_json(DOMAIN, report_id="r1")
    assert parse(json.dumps(body).encode(), NOW) == parse(made.tls_gzip(body), NOW)


@pytest.mark.parametrize("pack", ["zip", "gzip", "plain"])
def test_a_dmarc_report_counts_aligned_and_failing_messages_per_source(pack: str) -> None:
    xml = made.dmarc_xml(DOMAIN, report_id="d1")
    data = {"zip": made.zipped("r.xml", xml), "gzip": gzip.compress(xml), "plain": xml}[pack]
    report = parse(data, NOW)
    assert report.kind == "dmarc" and report.report_id == "d1" and report.domains == (DOMAIN,)
    assert [row for _, row in report.rows] == [
        Row("pass", 500, "", "192.0.2.10"),
        Row("fail", 40, "", "192.0.2.11"),
        Row("fail", 25, "", "198.51.100.7"),
    ]


def _tls(**kwargs: object) -> bytes:
    return made.tls_gzip(made.tls_json(DOMAIN, **kwargs))  # type: ignore[arg-type]


BAD = [
    ("zip bomb", made.zip_bomb, "bomb"),
    ("gzip bomb", made.gzip_bomb, "bomb"),
    ("more than the packed limit", lambda: b"{" + b" " * MAX_PACKED, "too_large"),
    ("XML entity expansion", lambda: made.BILLION_LAUGHS, "xml_forbidden"),
    ("XML external entity", lambda: made.EXTERNAL_ENTITY, "xml_forbidden"),
    ("a zip of two files", lambda: _two_files(), "bad_packing"),
    ("a gzip cut short", lambda: made.tls_gzip(made.tls_json(DOMAIN))[:-20], "bad_packing"),
    ("neither JSON nor XML", lambda: b"hello", "malformed"),
    ("JSON that is no TLS-RPT report", lambda: b'{"policies": 3}', "malformed"),
    ("XML that is no feedback", lambda: b"<html/>", "malformed"),
    ("XML not well-formed", lambda: b"<feedback><report", "malformed"),
    (
        "a TLS date range ending before it begins",
        lambda: _tls(range_text=("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z")),
        "bad_date_range",
    ),
    (
        "a TLS date that is no date",
        lambda: _tls(range_text=("yesterday", "2026-01-01T00:00:00Z")),
        "bad_date_range",
    ),
    (
        "a DMARC range of a year",
        lambda: made.dmarc_xml(DOMAIN, begin=0, end=31_536_000),
        "bad_date_range",
    ),
    (
        "a DMARC range in the future",
        lambda: made.dmarc_xml(DOMAIN, begin=4_000_000_000, end=4_000_086_400),
        "bad_date_range",
    ),
    ("a DMARC time that is no number", lambda: made.dmarc_xml(DOMAIN, begin="x"), "bad_date_range"),  # type: ignore[arg-type]
    (
        "a negative count",
        lambda: made.dmarc_xml(DOMAIN, records=[("192.0.2.1", -5, "pass", "pass")]),
        "malformed",
    ),
]


def _two_files() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("a.xml", made.dmarc_xml(DOMAIN))
        z.writestr("b.xml", made.dmarc_xml(DOMAIN))
    return out.getvalue()


@pytest.mark.parametrize(("what", "make", "reason"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_report_is_refused_with_its_reason(what: str, make: object, reason: str) -> None:
    with pytest.raises(Rejected) as refused:
        parse(make(), NOW)  # type: ignore[operator]
    assert refused.value.reason == reason, (what, refused.value.message)
    assert refused.value.message


def test_a_report_on_a_domain_nobody_here_monitors_is_refused() -> None:
    report = parse(made.tls_gzip(made.tls_json(DOMAIN, extra_policy_domain="other.example")), NOW)
    assert report.domains == (DOMAIN, "other.example")
    with pytest.raises(Rejected) as refused:
        known_domains(report, frozenset({DOMAIN}))
    assert refused.value.reason == "domain_not_monitored"
    known_domains(report, frozenset({DOMAIN, "other.example"}))
