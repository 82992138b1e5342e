"""The reports in a mail message, pure: the attachments reporters send them as (RFC 8460 §5.3:
`application/tlsrpt+gzip` or `+json`; RFC 7489 §7.2.1.1: a gzip or zip of the XML, named
`receiver!domain!begin!end.xml.gz`), read with the standard library's RFC 5322 parser.

That parser's cost grows with a message's parts, its multipart nesting (faster than linearly:
900 levels in 59 KB took 10 s of CPU, 5,000 overflowed its stack) and its header lines, so a
message is first measured by counting bytes, and refused unparsed past `MAX_BOUNDARIES` lines
beginning with `--` (its parts' boundaries, and any other such line: an overcount only refuses
early), `MAX_MULTIPARTS` mentions of `multipart/` or `MAX_HEADER_LINES` lines that look like a
header field. A reporter's message has a few of each."""

import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import NamedTuple

from controller.reports.rejected import Rejected
from shared.guards import BrokenInvariant
from shared.strangers import kept

MAX_PARTS = 5  # reports taken from one message; reporters send one
MAX_BOUNDARIES = 1_000
MAX_MULTIPARTS = 20
MAX_HEADER_LINES = 10_000
_BOUNDARY = re.compile(rb"^--", re.MULTILINE)
_MULTIPART = re.compile(rb"multipart/", re.IGNORECASE)
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:", re.MULTILINE)  # RFC 5322 2.2: a field name, a colon
# RFC 7489 7.2.1.1 and RFC 8460 5.3: "Report Domain: example.com Submitter: ..."
_REPORT_DOMAIN = re.compile(r"\breport\s+domain:\s*([a-z0-9.-]{1,253})", re.IGNORECASE)
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_SUBJECT = re.compile(rb"^subject:([^\n]*(?:\n[ \t][^\n]*)*)", re.IGNORECASE | re.MULTILINE)

REPORT_TYPES = frozenset(
    {
        "application/tlsrpt+gzip",
        "application/tlsrpt+json",
        "application/gzip",
        "application/x-gzip",
        "application/zip",
        "application/x-zip-compressed",
        "application/json",
        "application/xml",
        "text/xml",
    }
)
REPORT_NAMES = (".gz", ".zip", ".xml", ".json")


class Opened(NamedTuple):
    source: str  # who sent it and about what, as the rejected-reports list shows it
    attachments: list[bytes]
    domain: str  # the domain its subject says its reports are about (unverified); "": none
    sender: str  # its From address's domain, lower case; "": none


def opened(raw: bytes) -> Opened:
    """Who sent `raw` (a whole message) and about what, the domain it names, its report
    attachments and its From domain; Rejected (`too_large`, `too_deep`) unparsed past the
    bounds above, naming the domain its subject names (`head_named`)."""
    try:
        measured(raw)
    except Rejected as exc:
        raise Rejected(exc.reason, exc.message, head_named(raw)) from None
    return Opened(source(raw), attachments(raw), named_domain(raw), from_domain(raw))


def measured(raw: bytes) -> None:
    """Refuse a message the parser would spend too long on, from its bytes alone."""
    if _more_than(_MULTIPART, raw, MAX_MULTIPARTS):
        raise Rejected("too_deep", f"a message of more than {MAX_MULTIPARTS} multiparts")
    if _more_than(_BOUNDARY, raw, MAX_BOUNDARIES):
        raise Rejected("too_large", f"a message of more than {MAX_BOUNDARIES} MIME parts")
    if _more_than(_HEADER_LINE, raw, MAX_HEADER_LINES):
        raise Rejected("too_large", f"a message of more than {MAX_HEADER_LINES} header lines")


def _more_than(pattern: re.Pattern[bytes], raw: bytes, most: int) -> bool:
    """Whether `pattern` is found in `raw` more than `most` times (counted up to one more)."""
    return any(n == most for n, _ in enumerate(pattern.finditer(raw)))


def source(raw: bytes) -> str:
    """Who sent it and about what, as the rejected-reports list shows it."""
    message = message_from_bytes(raw, policy=policy.default)
    said = kept(str(message.get("Subject", "")), 200)
    return f"mail from {kept(str(message.get('From', '')), 80)}: {said}"


def from_domain(raw: bytes) -> str:
    """The domain of the message's From address, lower case; "" when it has none."""
    message = message_from_bytes(raw, policy=policy.default)
    try:
        addresses = message["From"].addresses if message["From"] is not None else ()
    except (AttributeError, IndexError, ValueError):  # a From header the parser could not read
        return ""
    return addresses[0].domain.lower().strip(".")[:253] if addresses else ""


def named_domain(raw: bytes) -> str:
    """The domain the message's subject names its reports about (`Report Domain: d`, as
    reporters write it), lower case; "" when it names none. A stranger's claim: it only says
    which domain's hour a report the parser refuses counts against."""
    message = message_from_bytes(raw, policy=policy.default)
    found = _REPORT_DOMAIN.search(str(message.get("Subject", "")))
    return found.group(1).lower().strip(".") if found else ""


def head_named(raw: bytes) -> str:
    """The domain the first Subject field of `raw`'s head names, read from its bytes without
    the parser (a message refused unparsed); "" when it names none."""
    head = _HEAD_END.split(raw, maxsplit=1)[0]
    subject = _SUBJECT.search(head)
    found = _REPORT_DOMAIN.search(subject.group(1).decode("latin-1")) if subject else None
    return found.group(1).lower().strip(".") if found else ""


def attachments(raw: bytes) -> list[bytes]:
    """The report attachments of `raw` (a whole message), at most `MAX_PARTS`."""
    message = message_from_bytes(raw, policy=policy.default)
    if not isinstance(message, EmailMessage):
        raise BrokenInvariant("mail.attachments: expected isinstance(message, EmailMessage)")
    found: list[bytes] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type().lower()
        name = (part.get_filename() or "").lower()
        if kind in REPORT_TYPES or name.endswith(REPORT_NAMES):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and payload:
                found.append(payload)
        if len(found) == MAX_PARTS:
            break
    return found
