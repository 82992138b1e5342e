"""Reports as they arrive, unpacked and parsed with limits; pure (no store, no I/O).

Everything here comes from strangers: a reporter, or anyone who learnt a reporting address.
Every refusal is a `Rejected` with a stable `reason` and a sentence; nothing else is raised for
bad input, and nothing grows past the limits below:

- at most `MAX_PACKED` bytes arrive (the endpoint and the mailbox reader refuse more unread);
- unpacking stops at `MAX_UNPACKED` bytes and refuses more than `MAX_RATIO` times the packed
  size (a zip or gzip bomb costs at most that much memory, read in `CHUNK` steps);
- a zip holds one report: its first member named `.xml` or `.json` (a zip of many is refused);
- XML goes through defusedxml: no DTD, no entity declared, no external entity; JSON through
  msgspec into typed Structs;
- a date range must be ordered, at most `MAX_RANGE` long and not in the future.

`unpack` takes gzip, zip or plain bytes (told by their magic bytes, not by what the sender
says); `tls_report` and `dmarc_report` parse what it returns.
"""

import io
import ipaddress
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from xml.etree.ElementTree import Element, ParseError

import msgspec
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_PACKED = 10 * 1024 * 1024
MAX_UNPACKED = 32 * 1024 * 1024
MAX_RATIO = 200
CHUNK = 256 * 1024
MAX_RANGE = timedelta(days=31)
FUTURE_SLACK = timedelta(hours=1)
MAX_ROWS = 100_000  # counted rows (TLS failure details, DMARC records) of one report
MAX_TEXT = 255  # any name or id kept

Kind = Literal["tls", "dmarc"]

# RFC 8460 §4.3: the result types of a failed session (a newer one is kept as sent).
TLS_RESULT_TYPES = (
    "starttls-not-supported",
    "certificate-host-mismatch",
    "certificate-expired",
    "certificate-not-trusted",
    "validation-failure",
    "tlsa-invalid",
    "dnssec-invalid",
    "dane-required",
    "sts-policy-fetch-error",
    "sts-policy-invalid",
    "sts-webpki-invalid",
)


class Rejected(Exception):
    """A report refused: `reason` is stable (the API lists it), `message` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def unpack(data: bytes) -> bytes:
    """`data` itself, or the one report inside a gzip or zip, within the limits."""
    if len(data) > MAX_PACKED:
        raise Rejected("too_large", f"more than {MAX_PACKED} bytes")
    if data[:2] == b"\x1f\x8b":
        return _gunzip(data)
    if data[:4] == b"PK\x03\x04":
        return _unzip(data)
    return data


def _limit(packed: int) -> int:
    return min(MAX_UNPACKED, max(packed, 1) * MAX_RATIO)


def _too_much(packed: int) -> Rejected:
    return Rejected(
        "bomb",
        f"unpacks to more than {_limit(packed)} bytes ({MAX_RATIO} times its size, at most "
        f"{MAX_UNPACKED})",
    )


def _gunzip(data: bytes) -> bytes:
    limit = _limit(len(data))
    out = bytearray()
    # wbits 16 + MAX_WBITS: a gzip member; one only (a second member is not read).
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = data
    try:
        while pending and not inflate.eof:
            out += inflate.decompress(pending, CHUNK)
            if len(out) > limit:
                raise _too_much(len(data))
            pending = inflate.unconsumed_tail
        if not inflate.eof:
            raise Rejected("bad_packing", "the gzip stream ends early")
    except zlib.error as exc:
        raise Rejected("bad_packing", f"not a valid gzip stream ({exc})") from None
    return bytes(out)


def _unzip(data: bytes) -> bytes:
    limit = _limit(len(data))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [i for i in archive.infolist() if not i.is_dir()]
            if len(members) != 1:
                raise Rejected("bad_packing", f"a zip of {len(members)} files, not one report")
            info = members[0]
            if not info.filename.lower().endswith((".xml", ".json")):
                raise Rejected("bad_packing", "the zip holds no .xml or .json file")
            if info.file_size > limit:  # what it says; what it holds is counted below
                raise _too_much(len(data))
            out = bytearray()
            with archive.open(info) as member:
                while chunk := member.read(CHUNK):
                    out += chunk
                    if len(out) > limit:
                        raise _too_much(len(data))
            return bytes(out)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError):
        raise Rejected("bad_packing", "not a zip archive this reader opens") from None
    except RuntimeError as exc:  # an encrypted member
        raise Rejected("bad_packing", f"the zip cannot be read ({exc})") from None


@dataclass(frozen=True, slots=True)
class Row:
    """One count of a report: sessions (TLS) or messages (DMARC) with one outcome.

    TLS: `result` is `success` or a result type, `mx` the receiving MX, `ip` the receiving IP.
    DMARC: `result` is `pass` (DKIM or SPF aligned and passing) or `fail`, `ip` the source."""

    result: str
    count: int
    mx: str = ""
    ip: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    kind: Kind
    reporter: str  # organization-name / org_name
    report_id: str
    begins_at: datetime
    ends_at: datetime
    domains: tuple[str, ...]  # the policy domains it reports on
    rows: tuple[tuple[str, Row], ...]  # (domain, row)


# RFC 8460 §4.4, as msgspec reads it: names as the schema spells them.
class _DateRange(msgspec.Struct, rename="kebab"):
    start_datetime: str
    end_datetime: str


class _Policy(msgspec.Struct, rename="kebab"):
    policy_type: str
    policy_domain: str
    policy_string: list[str] = []
    mx_host: list[str] | str | None = None


class _Summary(msgspec.Struct, rename="kebab"):
    total_successful_session_count: int = 0
    total_failure_session_count: int = 0


class _Failure(msgspec.Struct, rename="kebab"):
    result_type: str
    failed_session_count: int = 0
    sending_mta_ip: str | None = None
    receiving_mx_hostname: str | None = None
    receiving_mx_helo: str | None = None
    receiving_ip: str | None = None
    additional_information: str | None = None
    failure_reason_code: str | None = None


class _PolicyResult(msgspec.Struct, rename="kebab"):
    policy: _Policy
    summary: _Summary
    failure_details: list[_Failure] = []


class _TlsReport(msgspec.Struct, rename="kebab"):
    organization_name: str
    date_range: _DateRange
    report_id: str
    policies: list[_PolicyResult]
    contact_info: str | None = None


_tls_decoder = msgspec.json.Decoder(_TlsReport)


def tls_report(data: bytes, now: datetime) -> Report:
    """An RFC 8460 report (JSON, unpacked)."""
    try:
        raw = _tls_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise Rejected("malformed", f"not a TLS-RPT report: {exc}") from None
    begins = _iso(raw.date_range.start_datetime, "start-datetime")
    ends = _iso(raw.date_range.end_datetime, "end-datetime")
    _check_range(begins, ends, now)
    rows: list[tuple[str, Row]] = []
    domains: list[str] = []
    for p in raw.policies:
        domain = _domain(p.policy.policy_domain)
        domains.append(domain)
        s = p.summary
        _count(s.total_successful_session_count, "total-successful-session-count")
        _count(s.total_failure_session_count, "total-failure-session-count")
        if s.total_successful_session_count:
            rows.append((domain, Row("success", s.total_successful_session_count)))
        for f in p.failure_details:
            rows.append((domain, _failure(f)))
        if len(rows) > MAX_ROWS:
            raise Rejected("too_large", f"more than {MAX_ROWS} failure details")
    if not domains:
        raise Rejected("malformed", "a TLS-RPT report without policies")
    reporter = _text(raw.organization_name, "organization-name")
    report_id = _text(raw.report_id, "report-id")
    return Report("tls", reporter, report_id, begins, ends, _unique(domains), tuple(rows))


def _failure(f: _Failure) -> Row:
    _count(f.failed_session_count, "failed-session-count")
    result = _text(f.result_type, "result-type").lower()
    mx = (f.receiving_mx_hostname or "").strip().rstrip(".").lower()[:MAX_TEXT]
    return Row(result, f.failed_session_count, mx, _ip(f.receiving_ip))


def _iso(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected("bad_date_range", f"{name} is not an RFC 3339 time: {text[:40]!r}") from None
    if value.tzinfo is None:
        raise Rejected("bad_date_range", f"{name} has no time zone: {text[:40]!r}")
    return value.astimezone(UTC)


def _check_range(begins: datetime, ends: datetime, now: datetime) -> None:
    if ends <= begins:
        raise Rejected("bad_date_range", "the date range ends before it begins")
    if ends - begins > MAX_RANGE:
        raise Rejected("bad_date_range", f"the date range is longer than {MAX_RANGE.days} days")
    if begins > now + FUTURE_SLACK:
        raise Rejected("bad_date_range", "the date range begins in the future")


def _count(n: int, name: str) -> None:
    if n < 0 or n > 2**53:
        raise Rejected("malformed", f"{name} is not a count: {n}")


def _text(value: str, name: str) -> str:
    text = " ".join(value.split())[:MAX_TEXT]
    if not text:
        raise Rejected("malformed", f"{name} is empty")
    return text


def _domain(value: str) -> str:
    domain = value.strip().rstrip(".").lower()
    if not domain or len(domain) > 253 or any(c.isspace() for c in domain):
        raise Rejected("malformed", f"not a domain name: {value[:60]!r}")
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise Rejected("malformed", f"not a domain name: {value[:60]!r}") from None


def _ip(value: str | None) -> str:
    if not value:
        return ""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return ""


def _unique(domains: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(domains))


def dmarc_report(data: bytes, now: datetime) -> Report:
    """An RFC 7489 appendix C aggregate report (XML, unpacked)."""
    try:
        root = fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise Rejected("xml_forbidden", f"XML with a DTD or entities is refused ({exc})") from None
    except (ParseError, ValueError) as exc:
        raise Rejected("malformed", f"not well-formed XML ({exc})") from None
    if _local(root.tag) != "feedback":
        raise Rejected("malformed", "not a DMARC aggregate report (no <feedback>)")
    meta = _child(root, "report_metadata")
    reporter = _text(_value(meta, "org_name"), "org_name")
    report_id = _text(_value(meta, "report_id"), "report_id")
    dates = _child(meta, "date_range")
    begins = _epoch(_value(dates, "begin"), "begin")
    ends = _epoch(_value(dates, "end"), "end")
    _check_range(begins, ends, now)
    domain = _domain(_value(_child(root, "policy_published"), "domain"))
    rows: list[tuple[str, Row]] = []
    for record in root:
        if _local(record.tag) != "record":
            continue
        rows.append((domain, _record(record)))
        if len(rows) > MAX_ROWS:
            raise Rejected("too_large", f"more than {MAX_ROWS} records")
    return Report("dmarc", reporter, report_id, begins, ends, (domain,), tuple(rows))


def _record(record: Element) -> Row:
    row = _child(record, "row")
    ip = _ip(_value(row, "source_ip"))
    if not ip:
        raise Rejected("malformed", "a record without a valid source_ip")
    try:
        count = int(_value(row, "count"))
    except ValueError:
        raise Rejected("malformed", "a record whose count is not a number") from None
    _count(count, "count")
    evaluated = _child(row, "policy_evaluated")
    aligned = "pass" in (_value(evaluated, "dkim").lower(), _value(evaluated, "spf").lower())
    return Row("pass" if aligned else "fail", count, "", ip)


def _local(tag: object) -> str:
    """A tag without its namespace (DMARC reports in the wild use several or none)."""
    return str(tag).rpartition("}")[2]


def _child(parent: Element, name: str) -> Element:
    for child in parent:
        if _local(child.tag) == name:
            return child
    raise Rejected("malformed", f"no <{name}> in <{_local(parent.tag)}>")


def _value(parent: Element, name: str) -> str:
    return (_child(parent, name).text or "").strip()


def _epoch(text: str, name: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(text), UTC)
    except (ValueError, OverflowError, OSError):
        raise Rejected(
            "bad_date_range", f"{name} is not a time in seconds: {text[:40]!r}"
        ) from None


def parse(data: bytes, now: datetime) -> Report:
    """Whichever report `data` (packed or not) holds: JSON is TLS-RPT, XML is DMARC."""
    body = unpack(data)
    start = body.lstrip()[:1]
    if start == b"{":
        return tls_report(body, now)
    if start == b"<":
        return dmarc_report(body, now)
    raise Rejected("malformed", "neither a TLS-RPT (JSON) nor a DMARC (XML) report")


def known_domains(report: Report, monitored: frozenset[str]) -> None:
    """Refuse a report on a domain `monitored` does not hold (a report is all or nothing)."""
    for domain in report.domains:
        if domain not in monitored:
            raise Rejected("domain_not_monitored", f"{domain} is not a domain monitored here")
