"""Reports parsed defensively (controller/reports/parse.py): what large reporters send parses
into counts; every bad input is refused with its stable reason, as data (one row each)."""

import gzip
import io
import json
import random
import zipfile
from datetime import UTC, datetime

import pytest

from controller.reports.parse import MAX_PACKED, Rejected, Row, known_domains, parse
from controller.reports.unpacking import CHUNK
from testkit.reports import made

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
    (
        "a gzip member, then a broken one",
        lambda: _gzip_of(made.dmarc_xml(DOMAIN)) + b"\x1f\x8b\x08\x00broken",
        "bad_packing",
    ),
    ("a gzip of zeros (not a report from its first bytes)", lambda: _zeros(), "malformed"),
    ("neither JSON nor XML", lambda: b"hello", "malformed"),
    ("JSON that is no TLS-RPT report", lambda: b'{"policies": 3}', "malformed"),
    ("XML that is no feedback", lambda: b"<html/>", "malformed"),
    ("XML not well-formed", lambda: b"<feedback><report", "malformed"),
    (
        "a byte not of UTF-8 in the domain",
        lambda: made.dmarc_xml(DOMAIN).replace(b"<domain>", b"<domain>\x91", 1),
        "malformed",
    ),
    (
        "a root other than <feedback> inside <xs:schema>",
        lambda: b"<xs:schema><html><report_metadata/></html></xs:schema>",
        "malformed",
    ),
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
    (
        "a TLS date before year 1 in UTC",
        lambda: _tls(range_text=("0001-01-01T00:00:00+14:00", "0001-01-01T10:00:00+14:00")),
        "bad_date_range",
    ),
    (
        "a TLS date after year 9999 in UTC",
        lambda: _tls(range_text=("9999-12-31T00:00:00Z", "9999-12-31T23:59:59-14:00")),
        "bad_date_range",
    ),
    (
        "XML in an encoding no codec knows",
        lambda: made.dmarc_xml(DOMAIN).replace(b'encoding="UTF-8"', b'encoding="x-nope"'),
        "malformed",
    ),
    (
        "XML in a multi-byte encoding expat does not read",
        lambda: made.dmarc_xml(DOMAIN).replace(b'encoding="UTF-8"', b'encoding="big5"'),
        "malformed",
    ),
    ("a DMARC time that is no number", lambda: made.dmarc_xml(DOMAIN, begin="x"), "bad_date_range"),  # type: ignore[arg-type]
    ("bzip2 zip member", lambda: _bzip2_bomb(), "bad_packing"),
    ("LZMA zip member", lambda: made.zip_bomb(zipfile.ZIP_LZMA, mib=16), "bad_packing"),
    (
        "a bomb spread over many gzip members",
        lambda: _members(*[b"<feedback>" + b" " * (4 << 20)] * 8),
        "bomb",
    ),
    ("a zip bomb in a gzip", lambda: _gzip_of(made.zip_bomb(mib=64)), "bomb"),
    ("a gzip bomb in a zip", lambda: made.zipped("r.xml", made.gzip_bomb()), "bomb"),
    (
        "containers three deep",
        lambda: _gzip_of(_gzip_of(_gzip_of(made.dmarc_xml(DOMAIN)))),
        "bad_packing",
    ),
    ("a flood of XML elements", lambda: _xml_flood(200_000), "too_large"),
    ("a flood of XML elements in a record", lambda: _record_flood(), "too_large"),
    (
        "XML nested deeper than DMARC goes",
        lambda: b"<feedback>" + b"<a>" * 50 + b"</a>" * 50 + b"</feedback>",
        "too_deep",
    ),
    ("JSON of too many values", lambda: b'{"x":[' + b"0," * 1_300_000 + b"0]}", "too_large"),
    ("JSON nested past msgspec", lambda: b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}", "too_deep"),
    ("a long text where a leaf is read", lambda: _long_org_name(), "malformed"),
    (
        "a negative count",
        lambda: made.dmarc_xml(DOMAIN, records=[("192.0.2.1", -5, "pass", "pass")]),
        "malformed",
    ),
]


def _gzip_of(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9)


def _members(*parts: bytes) -> bytes:
    """Concatenated gzip members (RFC 1952 §2.2), as `cat a.gz b.gz` makes."""
    return b"".join(_gzip_of(p) for p in parts)


def _chunk_end(xml: bytes, after: bytes = b"") -> bytes:
    """A stored (level 0) gzip member, padded with spaces to end one byte before the
    unpacker's first chunk does; then `after`, or a second member whose magic that chunk's end
    splits."""
    pad = CHUNK - len(gzip.compress(xml, compresslevel=0))
    while len(member := gzip.compress(xml + b" " * pad, compresslevel=0)) != CHUNK - 1:
        pad += CHUNK - 1 - len(member)
    return member + (after or _gzip_of(b"\n"))


def _zeros() -> bytes:
    """100 MiB of NUL bytes gzip'd: not a report from its first unpacked byte, so refused for
    that before it unpacks past the ratio (a bomb that begins as a report is `bomb`)."""
    return _gzip_of(b"\0" * (100 << 20))


def _bzip2_bomb() -> bytes:
    """As the issue's: a zip whose .xml member is bzip2 of 32 MiB of spaces, a few hundred bytes
    packed (the issue's unpacked to 3.28 GB from 1,287 bytes)."""
    return made.zip_bomb(zipfile.ZIP_BZIP2, mib=32)


def _xml_flood(elements: int) -> bytes:
    """Tiny elements of random names in a report's root, gzip'd (as the issue's: ~7 MB packed,
    3 times that unpacked): a flood well inside the bytes and the ratio allowed."""
    letters = bytes.maketrans(b"0123456789", b"ghijklmnop")
    names = random.Random(7).randbytes(elements * 2).hex().encode().translate(letters)
    tags = b"".join(b"<" + names[i : i + 4] + b"/>" for i in range(0, len(names), 4))
    return _gzip_of(b"<feedback>" + tags + b"</feedback>")


def _record_flood() -> bytes:
    xml = made.dmarc_xml(DOMAIN)
    return xml.replace(b"<record>", b"<record>" + b"<a/>" * 100_000, 1)


def _long_org_name() -> bytes:
    """An 8 MB org_name: read up to 1,024 characters; the report then fails for its empty
    report_id, not for its memory."""
    xml = made.dmarc_xml(DOMAIN, report_id=" ")
    text = random.Random(8).randbytes(4 << 20).hex().encode()
    return xml.replace(b"<org_name>", b"<org_name>" + text, 1)


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


def test_a_zip_member_of_a_method_not_read_is_refused_by_name_unopened() -> None:
    bomb = _bzip2_bomb()
    assert len(bomb) < 2_000  # a gigabyte, had it been inflated
    with pytest.raises(Rejected) as refused:
        parse(bomb, NOW)
    assert "bzip2" in refused.value.message


@pytest.mark.parametrize(
    ("what", "pack"),
    [
        ("gzip members", lambda x: _members(x[:200], x[200:])),
        ("a zip in a gzip", lambda x: _gzip_of(made.zipped("r.xml", x))),
        ("a gzip in a zip", lambda x: made.zipped("r.xml.gz", _gzip_of(x))),
        ("a gzip member and CRLF (Mimecast)", lambda x: _gzip_of(x) + b"\r\n"),
        ("a gzip member and NUL padding", lambda x: _gzip_of(x) + b"\0" * 512),
        ("gzip members and bytes that are no member", lambda x: _members(x[:9], x[9:]) + b"\n"),
        ("a gzip member and one byte of a magic", lambda x: _gzip_of(x) + b"\x1f"),
        ("a second gzip member whose magic a chunk's end splits", lambda x: _chunk_end(x)),
        ("a gzip member, then text a chunk's end splits", lambda x: _chunk_end(x, b"end\r\n")),
        (
            "a gzip in a zip, CRLF after it",
            lambda x: made.zipped("r.xml.gz", _gzip_of(x) + b"\r\n"),
        ),
        ("a byte order mark and white space", lambda x: b"\xef\xbb\xbf \n\t" + x.lstrip()),
        ("a namespace", lambda x: x.replace(b"<feedback>", b'<feedback xmlns="urn:x">', 1)),
        ("text after its end", lambda x: x + b"\r\n--boundary--\r\n<junk"),
        (
            "an <xs:schema> around it, never closed",
            lambda x: x.replace(b"<feedback>", b'<xs:schema xmlns:xs="urn:xs"><feedback>', 1),
        ),
        ("a byte not of UTF-8 in a leaf not read", lambda x: x.replace(b"</p>", b"\x91</p>", 1)),
        (
            "a Latin-1 document, declared so",
            lambda x: x.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"').replace(
                b"</p>", b"\xe9</p>", 1
            ),
        ),
    ],
)
def test_a_dmarc_report_packed_as_reporters_pack_it_parses(what: str, pack: object) -> None:
    xml = made.dmarc_xml(DOMAIN, report_id="d1")
    report = parse(pack(xml), NOW)  # type: ignore[operator]
    assert report.report_id == "d1" and len(report.rows) == 3, what


@pytest.mark.parametrize(
    ("data", "wanted"),
    [
        (made.BILLION_LAUGHS, "tls"),
        (made.dmarc_xml(DOMAIN), "tls"),
        (json.dumps(made.tls_json(DOMAIN)).encode(), "dmarc"),
    ],
    ids=["entities", "dmarc", "tls"],
)
def test_the_wrong_kind_is_refused_from_its_first_bytes_before_any_parse(
    data: bytes, wanted: str
) -> None:
    with pytest.raises(Rejected) as refused:
        parse(data, NOW, wanted)  # type: ignore[arg-type]
    assert refused.value.reason == "wrong_kind"


def test_records_are_counted_as_they_come_and_every_kept_value_is_the_reports() -> None:
    records = [(f"192.0.2.{i % 250 + 1}", i + 1, "pass", "fail") for i in range(3_000)]
    report = parse(made.dmarc_xml(DOMAIN, records=records), NOW)
    assert [r.count for _, r in report.rows] == list(range(1, 3_001))
    assert {r.result for _, r in report.rows} == {"pass"}
