"""The reports in a mail message, pure: the attachments reporters send them as (RFC 8460 §5.3:
`application/tlsrpt+gzip` or `+json`; RFC 7489 §7.2.1.1: a gzip or zip of the XML, named
`receiver!domain!begin!end.xml.gz`), read with the standard library's RFC 5322 parser."""

from email import message_from_bytes, policy
from email.message import EmailMessage

from controller.reports.strangers import kept

MAX_PARTS = 5  # reports taken from one message; reporters send one

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


def opened(raw: bytes) -> tuple[str, list[bytes]]:
    """Who sent `raw` (a whole message) and about what, and its report attachments."""
    return source(raw), attachments(raw)


def source(raw: bytes) -> str:
    """Who sent it and about what, as the rejected-reports list shows it."""
    message = message_from_bytes(raw, policy=policy.default)
    said = kept(str(message.get("Subject", "")), 200)
    return f"mail from {kept(str(message.get('From', '')), 80)}: {said}"


def attachments(raw: bytes) -> list[bytes]:
    """The report attachments of `raw` (a whole message), at most `MAX_PARTS`."""
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
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
