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
- XML is parsed as it streams (defusedxml's expat SAX reader: no DTD, no entity declared, no
  external entity); the report is its first `<feedback>` (the root, or the one child of an
  `<xs:schema>` root some reporters wrap it in), and nothing after its end is read, as gzip(1)
  ignores bytes after a member; bytes that are not UTF-8 in a document of that encoding (declared
  or by default) are read as U+FFFD, so one stray byte in a leaf costs that leaf, not the report;
  at most `MAX_ELEMENTS` elements and `MAX_DEPTH` deep, at most
  `MAX_SUBTREE` in one child of the root and `MAX_OTHERS` children of it that are not records,
  counted as they start; only the leaves a report needs are kept (each at most 1,024
  characters), and each record becomes a row as it ends, counted then;
- names and ids are kept as shared/strangers.py keeps a stranger's text (no control
  or format characters), and a domain holding one is refused;
- JSON of more than `MAX_JSON_VALUES` values (told by counting its `{`, `[` and `,` before
  decoding, so an overcount only refuses early) or nested deeper than msgspec goes is refused;
  the rest goes through msgspec into typed Structs;
- at most `MAX_ROWS` counted rows (TLS failure details, DMARC records) a report;
- a zip holds one report: one member named `.xml` or `.json`, stored or deflate;
- every count, and their sum, at most `MAX_COUNT`;
- a date range must be ordered, at most `MAX_RANGE` long and not in the future.
"""

import codecs
import ipaddress
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from xml.sax import SAXException
from xml.sax.handler import ContentHandler

import msgspec
from defusedxml import DefusedXmlException
from defusedxml.expatreader import DefusedExpatParser

from controller.reports import unpacking
from controller.reports.rejected import Rejected
from controller.reports.unpacking import MAX_PACKED, MAX_RATIO
from shared.strangers import hidden, kept

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
MAX_ELEMENTS = 25 * MAX_ROWS  # a record as Google writes it is 19 elements
MAX_DEPTH = 12  # DMARC's deepest is 5 (feedback, record, auth_results, dkim, domain)
MAX_SUBTREE = 1_000  # elements in one child of <feedback> (a record is ~20)
MAX_OTHERS = 100  # children of <feedback> other than records (RFC 7489 has 3)
# Sessions (TLS) or messages (DMARC) one report counts in all. Every sum PostgreSQL makes of
# a domain's counts stays a bigint by it: at most REPORTS_PER_HOUR's ceiling (10,000) reports an
# hour over the 400 days the totals reach, 10,000 * 24 * 400 * 2**36 < 2**63.
MAX_COUNT = 2**36
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
    _total(rows)
    reporter = _text(raw.organization_name, "organization-name")
    report_id = _text(raw.report_id, "report-id")
    return Report("tls", reporter, report_id, begins, ends, _unique(domains), tuple(rows))


def _failure(f: _Failure) -> Row:
    _count(f.failed_session_count, "failed-session-count")
    result = _text(f.result_type, "result-type").lower()
    mx = kept(f.receiving_mx_hostname or "", MAX_TEXT).rstrip(".").lower()
    return Row(result, f.failed_session_count, mx, _ip(f.receiving_ip))


def _iso(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if value.tzinfo is None:
            raise Rejected("bad_date_range", f"{name} has no time zone: {text[:40]!r}")
        return value.astimezone(UTC)
    except (ValueError, OverflowError):  # not a time, or one outside years 1 to 9999 in UTC
        raise Rejected("bad_date_range", f"{name} is not an RFC 3339 time: {text[:40]!r}") from None


def _check_range(begins: datetime, ends: datetime, now: datetime) -> None:
    if ends < begins:  # one instant (begin = end) is a range some reporters send
        raise Rejected("bad_date_range", "the date range ends before it begins")
    if ends - begins > MAX_RANGE:
        raise Rejected("bad_date_range", f"the date range is longer than {MAX_RANGE.days} days")
    if begins > now + FUTURE_SLACK:
        raise Rejected("bad_date_range", "the date range begins in the future")


def _count(n: int, name: str) -> None:
    if n < 0 or n > MAX_COUNT:
        raise Rejected("malformed", f"{name} is not a count: {n}")


def _total(rows: Sequence[tuple[str, Row]]) -> None:
    """Refuse a report whose counts sum past `MAX_COUNT`."""
    total = sum(row.count for _, row in rows)
    if total > MAX_COUNT:
        raise Rejected(
            "malformed", f"its counts sum to {total}: a report counts at most {MAX_COUNT}"
        )


def _text(value: str, name: str) -> str:
    text = kept(value, MAX_TEXT)
    if not text:
        raise Rejected("malformed", f"{name} is empty")
    return text


def _domain(value: str) -> str:
    domain = value.strip().rstrip(".").lower()
    if not domain or len(domain) > 253 or any(c.isspace() for c in domain) or hidden(domain):
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


# The leaves read, by their path below <feedback>; every other text is dropped unread.
_META = {
    ("report_metadata", "org_name"): "org_name",
    ("report_metadata", "email"): "email",
    ("report_metadata", "report_id"): "report_id",
    ("report_metadata", "date_range", "begin"): "begin",
    ("report_metadata", "date_range", "end"): "end",
    ("policy_published", "domain"): "domain",
}
_RECORD = {
    ("record", "row", "source_ip"): "source_ip",
    ("record", "row", "count"): "count",
    ("record", "row", "policy_evaluated", "dkim"): "dkim",
    ("record", "row", "policy_evaluated", "spf"): "spf",
}
_LEAF_MAX = 1024  # characters kept of a leaf read (names are cut at MAX_TEXT after)


class _Feedback(ContentHandler):
    """A DMARC report read as it streams (SAX): the metadata's leaves kept, each record turned
    into a Row as it ends, nothing else kept; elements and depth counted as they start."""

    def __init__(self) -> None:
        super().__init__()
        self.path: list[str] = []  # below <feedback>
        self.elements = 0
        self.subtree = 0  # elements in the current child of <feedback>
        self.others = 0  # children of <feedback> that are not records
        self.leaf: str | None = None  # the name of the leaf being read
        self.text: list[str] = []
        self.kept = 0
        self.meta: dict[str, str] = {}
        self.record: dict[str, str] = {}
        self.rows: list[Row] = []
        self.wrapped = False  # the root is an <xs:schema> around <feedback>
        self.done = False  # <feedback> has ended: the report is read

    def startElement(self, name: str, attrs: object) -> None:  # SAX's names
        local = name.rpartition(":")[2]
        if self.done:
            raise _Ended
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise Rejected("too_large", f"XML of more than {MAX_ELEMENTS} elements")
        if self.elements == 1 and local == "schema":
            self.wrapped = True
            return
        if self.elements == 1 + self.wrapped:
            if local != "feedback":
                raise Rejected("malformed", "not a DMARC aggregate report (no <feedback>)")
            return
        self.path.append(local)
        self._count()
        key = tuple(self.path)
        self.leaf = _META.get(key) or _RECORD.get(key)
        self.text, self.kept = [], 0

    def _count(self) -> None:
        if len(self.path) >= MAX_DEPTH:
            raise Rejected("too_deep", f"XML nested more than {MAX_DEPTH} deep")
        if len(self.path) == 1:
            self.subtree = 0
            if self.path[0] != "record":
                self.others += 1
                if self.others > MAX_OTHERS:
                    raise Rejected(
                        "too_large", f"more than {MAX_OTHERS} children of <feedback> not records"
                    )
        self.subtree += 1
        if self.subtree > MAX_SUBTREE:
            raise Rejected("too_large", f"more than {MAX_SUBTREE} elements in one <{self.path[0]}>")

    def characters(self, content: str) -> None:
        if self.leaf is not None and self.kept < _LEAF_MAX:
            self.text.append(content)
            self.kept += len(content)

    def endElement(self, name: str) -> None:
        if not self.path:
            self.done = True
            return
        if self.leaf is not None:
            value = "".join(self.text)[:_LEAF_MAX].strip()
            (self.record if self.path[0] == "record" else self.meta)[self.leaf] = value
            self.leaf = None
        if len(self.path) == 1 and self.path[0] == "record":
            self.rows.append(_record(self.record))
            self.record = {}
            if len(self.rows) > MAX_ROWS:
                raise Rejected("too_large", f"more than {MAX_ROWS} records")
        self.path.pop()


class _Ended(Exception):
    """An element after <feedback> ended: the report is read, the rest is not."""


def dmarc_report(chunks: Iterator[bytes], now: datetime) -> Report:
    """An RFC 7489 appendix C aggregate report (XML, unpacked, as a stream of chunks)."""
    feedback = _Feedback()
    reader = DefusedExpatParser(forbid_dtd=True)
    reader.setContentHandler(feedback)
    try:
        for chunk in _utf8(chunks):
            reader.feed(chunk)
        reader.close()
    except _Ended:
        pass
    except DefusedXmlException as exc:
        raise Rejected("xml_forbidden", f"XML with a DTD or entities is refused ({exc})") from None
    except SAXException as exc:
        if not feedback.done:
            raise Rejected("malformed", f"not well-formed XML ({exc})") from None
    except (LookupError, ValueError) as exc:  # the declared encoding: unknown, or multi-byte
        raise Rejected("malformed", f"XML in an encoding this reader cannot read ({exc})") from None
    meta = feedback.meta
    reporter = _reporter(meta)
    report_id = _text(_field(meta, "report_id", "report_metadata"), "report_id")
    begins = _epoch(_field(meta, "begin", "date_range"), "begin")
    ends = _epoch(_field(meta, "end", "date_range"), "end")
    _check_range(begins, ends, now)
    domain = _domain(_field(meta, "domain", "policy_published"))
    rows = tuple((domain, row) for row in feedback.rows)
    _total(rows)
    return Report("dmarc", reporter, report_id, begins, ends, (domain,), rows)


# An XML declaration's encoding (XML 1.0 section 4.3.3), read from the document's first bytes.
_DECLARED = re.compile(rb"""<\?xml\s[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]{1,40})["']""")


def _utf8(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The document's chunks, with what is not UTF-8 in a UTF-8 document (declared so, or by
    default) read as U+FFFD; a document declared in another encoding as it is."""
    first = next(chunks, b"")
    declared = _DECLARED.match(first[:256])
    if declared is not None and declared[1].lower() not in (b"utf-8", b"utf8"):
        yield first
        yield from chunks
        return
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    for chunk in itertools.chain((first,), chunks):
        if text := decoder.decode(chunk):
            yield text.encode()
    if tail := decoder.decode(b"", final=True):
        yield tail.encode()


def _reporter(meta: dict[str, str]) -> str:
    """The report's org_name, or the domain of its contact `email` when the org_name is empty
    (as some reporters' software sends it)."""
    named = kept(_field(meta, "org_name", "report_metadata"), MAX_TEXT)
    return named or _text(meta.get("email", "").rpartition("@")[2], "org_name")


def _field(read: dict[str, str], name: str, within: str) -> str:
    if name not in read:
        raise Rejected("malformed", f"no <{name}> in <{within}>")
    return read[name]


def _record(record: dict[str, str]) -> Row:
    ip = _ip(record.get("source_ip"))
    if not ip:
        raise Rejected("malformed", "a record without a valid source_ip")
    try:
        count = int(_field(record, "count", "row"))
    except ValueError:
        raise Rejected("malformed", "a record whose count is not a number") from None
    _count(count, "count")
    dkim = _field(record, "dkim", "policy_evaluated").lower()
    spf = _field(record, "spf", "policy_evaluated").lower()
    return Row("pass" if "pass" in (dkim, spf) else "fail", count, "", ip)


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
        return tls_report(unpacking.whole(first, stream, MAX_JSON, "JSON"), now)
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


def known_domains(report: Report, monitored: frozenset[str]) -> None:
    """Refuse a report on a domain `monitored` does not hold (a report is all or nothing)."""
    for domain in report.domains:
        if domain not in monitored:
            raise Rejected("domain_not_monitored", f"{domain} is not a domain monitored here")
