"""Pure rules of a round trip: the probe header, what a delivered message says about its way
(Received hops, Authentication-Results), and how a delivery is graded."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime

import dkim.util

from agent.probers.redact import valid_utf8
from shared.messages import ArcResults, AuthResults, DkimSignature, ErrorKind, Hop
from shared.timefmt import iso_ms

# `<monitor public id> <country> <sent at, ms since the epoch> <token>`: the monitor and the
# country let a round find (and clean up) only its own messages in a shared mailbox; the time
# says when a leftover is old enough to be no other round's in-flight message.
PROBE_HEADER = "X-Mailprobe-Probe"
_FROM_BY = re.compile(r"\b(from|by)\s+([^\s;()]+)", re.IGNORECASE)
_METHOD = re.compile(r"\b(spf|dkim|dmarc)\s*=\s*([A-Za-z]+)", re.IGNORECASE)
# Whoever runs a server on the path writes these headers: a result carries at most this much of
# them (the newest hops, nearest the mailbox, are kept).
MAX_HOPS = 30
SIGNATURES_MAX = 4
NAME_MAX = 255
ARC_TEXT_MAX = 512
ARC_INSTANCES_MAX = 50  # RFC 8617 5.1.1.5: a chain of more than 50 sets is invalid
_ARC_TAG = re.compile(r"(?:^|;)\s*(i|cv)\s*=\s*([A-Za-z0-9]+)", re.IGNORECASE)
# What the round trip's probe messages are called: a mailbox API's listing filters on it.
SUBJECT_PREFIX = "mailprobe round trip"


@dataclass(frozen=True, slots=True)
class Probe:
    monitor_id: str
    country: str
    sent_ms: int
    token: str

    def header(self) -> str:
        return f"{self.monitor_id} {self.country} {self.sent_ms} {self.token}"

    def search_key(self) -> str:
        """What every probe message of this monitor and country has in its header."""
        return f"{self.monitor_id} {self.country} "


def parse_probe(value: str | None) -> Probe | None:
    """The probe header's fields; None for a header that is not one (anyone can send mail)."""
    parts = (value or "").split()
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return Probe(parts[0], parts[1], int(parts[2]), parts[3])


def is_leftover(found: Probe, mine: Probe, timeout_ms: int) -> bool:
    """A message of an earlier round of the same monitor and country, sent longer ago than a
    round lasts: nobody is waiting for it any more. Another monitor's, another country's, or a
    message young enough to be in flight for a round running now, is never one."""
    return (
        found.monitor_id == mine.monitor_id
        and found.country == mine.country
        and found.token != mine.token
        and found.sent_ms < mine.sent_ms - timeout_ms
    )


def _when(text: str) -> datetime | None:
    try:
        at = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _text(raw: object) -> str:
    """A header's value unfolded, as valid UTF-8 (a server may write any bytes there)."""
    return valid_utf8(" ".join(str(raw).split()))


def _name(value: str | None) -> str | None:
    return None if value is None else value[:NAME_MAX]


def hops(message: Message) -> list[Hop]:
    """The `Received` headers, oldest first, each with the delay since the one before (the
    first: since the message's `Date`, when the submission was stamped); the newest MAX_HOPS."""
    previous = _when(str(message.get("Date", "")))
    out: list[Hop] = []
    for raw in reversed(message.get_all("Received") or []):
        text = _text(raw)
        head, _, stamp = text.rpartition(";")
        names = {k.lower(): v for k, v in reversed(_FROM_BY.findall(head or text))}
        at = _when(stamp) if head else None
        delay = None
        if at is not None and previous is not None:
            delay = max(0.0, round((at - previous).total_seconds() * 1000, 3))
        out.append(
            Hop(
                by=_name(names.get("by")),
                sender=_name(names.get("from")),
                at=None if at is None else iso_ms(at),
                delay_ms=delay,
            )
        )
        previous = at
    return out[-MAX_HOPS:]


def auth_results(message: Message) -> AuthResults | None:
    """The topmost (the receiving server's own) `Authentication-Results` and the message's
    DKIM signatures, or None without either."""
    raw = message.get("Authentication-Results")
    signed = signatures(message)
    if raw is None:
        return AuthResults(signatures=signed) if signed else None
    text = _text(raw)
    server, _, rest = text.partition(";")
    found = {k.lower(): v.lower()[:32] for k, v in reversed(_METHOD.findall(rest))}
    return AuthResults(
        authserv_id=_name(server.split()[0]) if server.split() else None,
        spf=found.get("spf"),
        dkim=found.get("dkim"),
        dmarc=found.get("dmarc"),
        signatures=signed,
    )


def _arc_tags(raw: object) -> dict[str, str]:
    return {k.lower(): v.lower()[:16] for k, v in _ARC_TAG.findall(_text(raw))}


def _instance(tags: dict[str, str]) -> int:
    number = tags.get("i", "")
    return int(number) if number.isdigit() and len(number) <= 3 else 0


def arc_results(message: Message) -> ArcResults | None:
    """The message's ARC chain (RFC 8617): the highest instance among its ARC-Seal headers,
    that seal's `cv`, and the `ARC-Authentication-Results` of that instance; None without an
    ARC header."""
    seals = [_arc_tags(raw) for raw in message.get_all("ARC-Seal") or []]
    results = message.get_all("ARC-Authentication-Results") or []
    if not seals and not results:
        return None
    top = max(seals, key=_instance, default={})
    instances = min(max((_instance(s) for s in seals), default=0), ARC_INSTANCES_MAX)
    said = None
    for raw in results:
        text = _text(raw)
        if _instance(_arc_tags(text.split(";", 1)[0])) == instances or said is None:
            said = text[:ARC_TEXT_MAX]
    return ArcResults(instances=instances, cv=top.get("cv"), authentication_results=said)


def signatures(message: Message) -> list[DkimSignature]:
    """The `d=` and `s=` of the message's `DKIM-Signature` headers (RFC 6376 3.5, parsed by
    dkimpy), topmost first, at most SIGNATURES_MAX; one that does not parse is left out."""
    out: list[DkimSignature] = []
    for raw in (message.get_all("DKIM-Signature") or [])[:SIGNATURES_MAX]:
        try:
            tags = dkim.util.parse_tag_value(_text(raw).encode("utf-8"))
        except dkim.util.InvalidTagValueList:
            continue
        domain = tags.get(b"d", b"").decode("ascii", "replace").strip().lower()
        selector = tags.get(b"s", b"").decode("ascii", "replace").strip().lower()
        if domain and selector:
            out.append(DkimSignature(domain=_name(domain) or "", selector=selector[:63]))
    return out


def grade(
    folder: str,
    spam_folders: list[str],
    delivery_s: float,
    slow_after_s: float | None,
    spam_is_failure: bool,
) -> tuple[ErrorKind | None, str]:
    """A delivered message's verdict: (None, why) for up, else (error kind, why). Spam
    placement and slowness fail only when the monitor says so; spam is named first."""
    took = f"delivered to {folder} in {delivery_s:.1f}s"
    if folder in spam_folders and spam_is_failure:
        return "spam", f"{took}: a spam folder"
    if slow_after_s is not None and delivery_s > slow_after_s:
        return "slow_delivery", f"{took}, slower than {slow_after_s:g}s"
    return None, took
