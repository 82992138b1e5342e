"""Reports as they arrive, unpacked and parsed with limits; pure (no store, no I/O).

Everything here comes from strangers: a reporter, or anyone who learnt a reporting address.
Every refusal is a `Rejected` with a stable `reason` and a sentence; nothing else is raised for
bad input, and nothing grows past the limits below. It runs in the parsing worker's process
(controller/reports/sandbox.py), which bounds its memory and time besides.

- at most `MAX_PACKED` bytes arrive (the endpoint and the mailbox reader refuse more unread);
  unpacking (controller/reports/unpacking.py) is a stream bounded by construction: at most
  `MAX_RATIO` times the packed size, and `MAX_XML` (DMARC) or `MAX_JSON` (TLS-RPT) bytes;
- the kind is told from the first unpacked bytes (`{` JSON, `<` XML), and a kind not wanted
  there (`wanted`) is refused before anything is parsed (`wrong_kind`);
- XML is parsed as it streams (defusedxml's iterparse: no DTD, no entity declared, no external
  entity), at most `MAX_ELEMENTS` elements, `MAX_DEPTH` deep and `MAX_SUBTREE` elements in
  any child of the root, each record counted as it ends and dropped once read;
- JSON of more than `MAX_JSON_VALUES` values (told by counting its `{`, `[` and `,` before
  decoding, so an overcount only refuses early) or nested deeper than msgspec goes is refused;
  the rest goes through msgspec into typed Structs;
- at most `MAX_ROWS` counted rows (TLS failure details, DMARC records) a report;
- a zip holds one report: one member named `.xml` or `.json`, stored or deflate;
- a date range must be ordered, at most `MAX_RANGE` long and not in the future.
"""

import io
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from xml.etree.ElementTree import Element, ParseError

import msgspec
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from controller.reports import unpacking
from controller.reports.rejected import Rejected
from controller.reports.unpacking import MAX_PACKED, MAX_RATIO

__all__ = [
    "MAX_PACKED",
    "MAX_RATIO",
    "TLS_RESULT_TYPES",
    "Kind",
    "Rejected",
    "Report",
    "Row",
    "dmarc_report",
    "known_domains",
    "parse",
    "tls_report",
]

MAX_ROWS = 100_000  # counted rows (TLS failure details, DMARC records) of one report
MAX_XML = 128 * 1024 * 1024  # a 100,000-record report as Google writes it is ~65 MB
MAX_JSON = 32 * 1024 * 1024
MAX_JSON_VALUES = 12 * MAX_ROWS  # a failure detail is an object of at most 8 members
MAX_ELEMENTS = 30 * MAX_ROWS  # a record as Google writes it is 19 elements
MAX_DEPTH = 12  # DMARC's deepest is 5 (feedback, record, auth_results, dkim, domain)
MAX_SUBTREE = 1_000  # elements in one record, or in the metadata
MAX_RANGE = timedelta(days=31)
FUTURE_SLACK = timedelta(hours=1)
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
    values = data.count(b"{") + data.count(b"[") + data.count(b",")
    if values > MAX_JSON_VALUES:
        raise Rejected("too_large", f"JSON of more than {MAX_JSON_VALUES} values")
    try:
        raw = _tls_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise Rejected("malformed", f"not a TLS-RPT report: {exc}") from None
    except RecursionError:
        raise Rejected("too_deep", "JSON nested deeper than a TLS-RPT report goes") from None
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


class _Stream(io.RawIOBase):
    """Unpacked chunks as the file iterparse reads."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "memoryview | bytearray") -> int:  # type: ignore[override]
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = memoryview(chunk)
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


class _Counts:
    """The elements seen so far: in all, and in the root's current child."""

    def __init__(self) -> None:
        self.elements = 0
        self.subtree = 0

    def start(self, depth: int) -> None:
        self.elements += 1
        self.subtree = 1 if depth == 2 else self.subtree + 1
        if self.elements > MAX_ELEMENTS:
            raise Rejected("too_large", f"XML of more than {MAX_ELEMENTS} elements")
        if depth > MAX_DEPTH:
            raise Rejected("too_deep", f"XML nested more than {MAX_DEPTH} deep")
        if self.subtree > MAX_SUBTREE:
            raise Rejected("too_large", f"a record of more than {MAX_SUBTREE} elements")


@dataclass(slots=True)
class _Feedback:
    """What a DMARC report's children said, as they end."""

    metadata: Element | None = None
    domain: str = ""
    rows: list[Row] = field(default_factory=list)

    def child(self, element: Element) -> None:
        name = _local(element.tag)
        if name == "record":
            self.rows.append(_record(element))
            if len(self.rows) > MAX_ROWS:
                raise Rejected("too_large", f"more than {MAX_ROWS} records")
        elif name == "report_metadata":
            self.metadata = element
        elif name == "policy_published":
            self.domain = _domain(_value(element, "domain"))


def dmarc_report(chunks: Iterator[bytes], now: datetime) -> Report:
    """An RFC 7489 appendix C aggregate report (XML, unpacked, as a stream of chunks): each
    child of the root read as it ends, then dropped."""
    feedback = _Feedback()
    _stream_feedback(chunks, feedback)
    if feedback.metadata is None:
        raise Rejected("malformed", "no <report_metadata> in <feedback>")
    if not feedback.domain:
        raise Rejected("malformed", "no <policy_published> in <feedback>")
    meta = feedback.metadata
    reporter = _text(_value(meta, "org_name"), "org_name")
    report_id = _text(_value(meta, "report_id"), "report_id")
    dates = _child(meta, "date_range")
    begins = _epoch(_value(dates, "begin"), "begin")
    ends = _epoch(_value(dates, "end"), "end")
    _check_range(begins, ends, now)
    domain = feedback.domain
    rows = tuple((domain, row) for row in feedback.rows)
    return Report("dmarc", reporter, report_id, begins, ends, (domain,), rows)


def _stream_feedback(chunks: Iterator[bytes], feedback: _Feedback) -> None:
    open_: list[Element] = []
    counts = _Counts()
    try:
        for event, element in iterparse(_Stream(chunks), ("start", "end"), forbid_dtd=True):
            if event == "start":
                open_.append(element)
                counts.start(len(open_))
                if len(open_) == 1 and _local(element.tag) != "feedback":
                    raise Rejected("malformed", "not a DMARC aggregate report (no <feedback>)")
                continue
            open_.pop()
            if len(open_) == 1:
                feedback.child(element)
                open_[0].remove(element)
    except DefusedXmlException as exc:
        raise Rejected("xml_forbidden", f"XML with a DTD or entities is refused ({exc})") from None
    except (ParseError, ValueError) as exc:
        raise Rejected("malformed", f"not well-formed XML ({exc})") from None


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


_KINDS: dict[bytes, Kind] = {b"{": "tls", b"<": "dmarc"}
_BOM = b"\xef\xbb\xbf"


def parse(data: bytes, now: datetime, wanted: Kind | None = None) -> Report:
    """Whichever report `data` (packed or not) holds: JSON is TLS-RPT, XML is DMARC; a kind
    other than `wanted` (when given) is refused from its first bytes, unparsed."""
    stream = unpacking.chunks(data, MAX_XML)
    first, stream = _start(stream)
    kind = _KINDS.get(first[:1])
    if kind is None:
        raise Rejected("malformed", "neither a TLS-RPT (JSON) nor a DMARC (XML) report")
    if wanted is not None and kind != wanted:
        raise Rejected("wrong_kind", f"a {kind} report where {wanted} reports go")
    if kind == "tls":
        return tls_report(_whole(first, stream), now)
    return dmarc_report(_then(first, stream), now)


def _start(stream: Iterator[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """The stream's first chunk that holds more than white space (and a byte order mark),
    from its first other byte; what comes before it is dropped as it comes."""
    for index, chunk in enumerate(stream):
        text = chunk.removeprefix(_BOM) if index == 0 else chunk
        if body := text.lstrip():
            return body, stream
    return b"", stream


def _then(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _whole(first: bytes, rest: Iterator[bytes]) -> bytes:
    out = bytearray(first)
    for chunk in rest:
        out += chunk
        if len(out) > MAX_JSON:
            raise Rejected("too_large", f"JSON of more than {MAX_JSON} bytes")
    return bytes(out)


def known_domains(report: Report, monitored: frozenset[str]) -> None:
    """Refuse a report on a domain `monitored` does not hold (a report is all or nothing)."""
    for domain in report.domains:
        if domain not in monitored:
            raise Rejected("domain_not_monitored", f"{domain} is not a domain monitored here")
