"""A heartbeat's mail read from a mailbox over IMAP, POP3, Microsoft Graph or Gmail: messages
that arrived after `since` whose From and Subject contain the heartbeat's `sender` and `subject`
(any case), each an `Arrival` as the receiver's are, so the controller's one rule counts both.

Read-only: IMAP fetches headers with BODY.PEEK (no \\Seen flag set), POP3 reads them with TOP,
Graph and Gmail list them; nothing is moved or deleted, so the mailbox's owner sees their mail
as it was. Bounded as the round trip's mailbox leg: the session's answers within its bounds, at
most `NEWEST` messages a folder a look (the newest), the arrival's text cut to `TEXT_MAX`, and
the job's deadline.

An IMAP folder is searched newest first, `WINDOW` messages (by sequence number) at a time, so
a SEARCH answer stays within the session's line bound however many messages match (a busy
shared inbox, or a heartbeat's mail nobody deletes). The walk stops once it has `NEWEST`
matches, or at a window whose first message arrived a day or more before `since`: a folder
lists its messages in the order they arrived.

An arrival's time is when the mailbox's server took the message: IMAP's INTERNALDATE, Graph's
receivedDateTime, Gmail's internalDate, over POP3 the newest Received line's date (the Date
header without one). Its id is derived from its Message-ID, so the same message seen on the
next look, or by another country's agent, is the same arrival, stored and counted once.
"""

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Annotated, Final
from urllib.parse import quote, urlencode

import msgspec
from aioimaplib import quoted

from agent.probers import gmail, graph, imap, pop3
from agent.probers.base import ProbeFailure, Recorder, Target
from agent.probers.roundtrip import stat_count, top_headers
from shared.arrivals import MAILBOX_LISTENER, TEXT_MAX, Arrival, arrival_id_of
from shared.gmail_units import UNITS
from shared.mailclient import imap as mailclient_imap
from shared.mailclient.imap import ImapProtocol
from shared.messages import RoundTripReceive
from shared.sidechecks.heartbeat_mail import NEWEST as NEWEST
from shared.strangers import kept
from shared.timefmt import iso_ms, parse_iso

LISTENER: Final = MAILBOX_LISTENER
_FIELDS: Final = "(UID INTERNALDATE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT MESSAGE-ID)])"
_UID: Final = re.compile(rb"UID (\d+)")
_INTERNALDATE: Final = re.compile(rb'INTERNALDATE "([^"]{20,40})"')
_parse_headers: Final = BytesHeaderParser().parsebytes
_GRAPH_SELECT: Final = "id,receivedDateTime,internetMessageHeaders"
_EXISTS: Final = re.compile(rb"^(\d+) EXISTS$")
# Messages one SEARCH looks at: its answer, UIDs of up to 10 digits, stays under the session's
# line bound (agent.probers.imap.MAILBOX_BOUNDS, 64 KiB).
WINDOW: Final = 4096


class _GraphHeader(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(max_length=1000)]
    value: str


class _GraphMessage(msgspec.Struct, rename="camel"):
    received_date_time: Annotated[str, msgspec.Meta(max_length=64)] = ""
    internet_message_headers: Annotated[
        list[_GraphHeader], msgspec.Meta(max_length=graph.HEADERS_MAX)
    ] = msgspec.field(default_factory=list)


class _GraphPage(msgspec.Struct):
    value: Annotated[list[_GraphMessage], msgspec.Meta(max_length=NEWEST)]


_graph_page: Final = msgspec.json.Decoder(_GraphPage)
_GMAIL_HEADERS: Final = ("From", "Subject", "Message-ID")


class _GmailRef(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class _GmailList(msgspec.Struct):
    messages: Annotated[list[_GmailRef], msgspec.Meta(max_length=NEWEST)] = msgspec.field(
        default_factory=list
    )


class _GmailPayload(msgspec.Struct):
    headers: Annotated[list[_GraphHeader], msgspec.Meta(max_length=100)] = msgspec.field(
        default_factory=list
    )


class _GmailMessage(msgspec.Struct, rename="camel"):
    internal_date: Annotated[str, msgspec.Meta(max_length=20)] = ""  # epoch ms, as text
    payload: _GmailPayload = msgspec.field(default_factory=_GmailPayload)


_gmail_list: Final = msgspec.json.Decoder(_GmailList)
_gmail_message: Final = msgspec.json.Decoder(_GmailMessage)


@dataclass(frozen=True, slots=True)
class Sought:
    """What one look reads: the heartbeat's match and the time after which mail counts."""

    monitor_id: str
    country: str
    agent_id: str
    sender: str
    subject: str
    since: datetime  # aware


async def imap_arrivals(
    target: Target, receive: RoundTripReceive, sought: Sought, rec: Recorder
) -> list[Arrival]:
    """The matching messages of `receive.folders` that arrived after `sought.since`."""
    proto = await imap.open_imap(target, receive, rec, imap.MAILBOX_BOUNDS)
    try:
        found: list[Arrival] = []
        for folder in receive.folders:
            found += await _folder(proto, folder, target.hostname, sought, rec)
        await imap.logout(proto, rec)
        return found
    finally:
        mailclient_imap.close(proto)


def _ok(response: object, what: str) -> None:
    if getattr(response, "result", "") != "OK":
        lines = b" ".join(getattr(response, "lines", [])).decode("utf-8", "replace")
        raise ProbeFailure("protocol", f"{what} failed: {kept(lines, 200)}")


def search_keys(sought: Sought) -> list[str]:
    """The SEARCH criteria (RFC 3501 6.4.4): SINCE the day before `since` (a date of the
    server's zone, so a day's margin), FROM and SUBJECT when given (substrings, any case)."""
    day = (sought.since - timedelta(days=1)).strftime("%d-%b-%Y")
    keys = ["SINCE", day]
    if sought.sender:
        keys += ["FROM", quoted(sought.sender)]
    if sought.subject:
        keys += ["SUBJECT", quoted(sought.subject)]
    return keys


def windows(exists: int) -> Iterator[tuple[int, int]]:
    """The sequence numbers a folder of `exists` messages is searched in, newest first: spans of
    at most `WINDOW`, made as the walk asks (the count is the server's word, however large)."""
    return ((max(1, hi - WINDOW + 1), hi) for hi in range(exists, 0, -WINDOW))


def exists_of(lines: list[bytes | bytearray]) -> int | None:
    """The message count a SELECT's answer gives (`* n EXISTS`), if it gives one."""
    for line in lines:
        if isinstance(line, bytes) and (match := _EXISTS.match(line.strip())):
            return int(match.group(1))
    return None


async def _matches(proto: ImapProtocol, sought: Sought, span: list[str], rec: Recorder) -> set[int]:
    """The UIDs of the matching messages among the sequence numbers `span` (all when empty)."""
    rec.current = "search"
    response = await proto.search(*span, *search_keys(sought), charset=None, by_uid=True)
    _ok(response, "SEARCH")
    return {int(w) for line in response.lines[:-1] for w in line.split() if w.isdigit()}


async def _arrived(proto: ImapProtocol, seq: int, rec: Recorder) -> datetime | None:
    """When the message numbered `seq` arrived (its INTERNALDATE)."""
    rec.current = "fetch"
    response = await proto.fetch(str(seq), "(INTERNALDATE)")
    _ok(response, "FETCH")
    return _internaldate(b" ".join(bytes(line) for line in response.lines[:-1]))


async def _search(
    proto: ImapProtocol, sought: Sought, exists: int | None, rec: Recorder
) -> list[int]:
    """The UIDs of the newest `NEWEST` matching messages, searched window by window (see the
    module; the day's margin is for mail filed out of order). Without a message count, one
    SEARCH of the whole folder."""
    if exists is None:
        return sorted(await _matches(proto, sought, [], rec))[-NEWEST:]
    found: set[int] = set()
    for lo, hi in windows(exists):
        found |= await _matches(proto, sought, [f"{lo}:{hi}"], rec)
        if len(found) >= NEWEST or lo == 1:
            break
        arrived = await _arrived(proto, lo, rec)
        if arrived is not None and arrived < sought.since - timedelta(days=1):
            break
    return sorted(found)[-NEWEST:]


async def _folder(
    proto: ImapProtocol, folder: str, host: str, sought: Sought, rec: Recorder
) -> list[Arrival]:
    rec.current = f"select {folder}"
    selected = await proto.select(quoted(folder))
    _ok(selected, f"SELECT {folder}")
    uids = await _search(proto, sought, exists_of(selected.lines), rec)
    if not uids:
        return []
    rec.current = "fetch"
    response = await proto.fetch(",".join(map(str, uids)), _FIELDS, by_uid=True)
    _ok(response, "FETCH")
    out: list[Arrival] = []
    for internal, raw in fetched(response.lines):
        arrived = _internaldate(internal)
        if arrived is None or arrived <= sought.since:
            continue
        arrival = _arrival(_parse_headers(raw), arrived, len(raw), host, folder, sought)
        if arrival is not None:
            out.append(arrival)
    return out


def fetched(lines: list[bytes | bytearray]) -> list[tuple[bytes, bytes]]:
    """(the FETCH line's text, the header literal) of each message, as aioimaplib hands them
    over: `1 FETCH (UID 5 INTERNALDATE "…" BODY[…] {342}`, the literal (a bytearray), `)`."""
    out: list[tuple[bytes, bytes]] = []
    line_text = b""
    raw: bytes | None = None
    for line in [*lines, b" FETCH ("]:  # a sentinel closes the last message
        if isinstance(line, bytearray):
            raw = bytes(line)
            continue
        if b" FETCH (" in line:
            if raw is not None and _UID.search(line_text):
                out.append((line_text, raw))
            line_text, raw = b"", None
        line_text += bytes(line)
    return out


def _internaldate(text: bytes) -> datetime | None:
    """INTERNALDATE (`17-Jul-1996 02:44:25 -0700`, RFC 3501 date-time) as an aware time."""
    match = _INTERNALDATE.search(text)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1).decode("ascii").strip(), "%d-%b-%Y %H:%M:%S %z")
    except (UnicodeDecodeError, ValueError):
        return None


async def pop3_arrivals(
    target: Target, receive: RoundTripReceive, sought: Sought, rec: Recorder
) -> list[Arrival]:
    """The matching messages among the inbox's `NEWEST` newest that arrived after
    `sought.since`: POP3 has no search, each one's header is read (TOP n 0) and matched here."""
    pop = await pop3.open_pop3(target, receive, rec)
    try:
        rec.current = "stat"
        count = stat_count(await pop3.command(pop, "STAT", "STAT", "protocol"))
        out: list[Arrival] = []
        for number in range(count, max(0, count - NEWEST), -1):
            rec.current = "top"
            if (raw := await top_headers(pop, number)) is None:
                continue
            headers = _parse_headers(raw)
            arrived = received_at(headers)
            if arrived is None or arrived <= sought.since:
                continue
            arrival = _arrival(headers, arrived, len(raw), target.hostname, "INBOX", sought)
            if arrival is not None:
                out.append(arrival)
        rec.current = "quit"
        await pop3.command(pop, "QUIT", "QUIT", "protocol")
    except BaseException:
        pop.abort()
        raise
    pop.close()
    return out


async def graph_arrivals(
    target: Target, receive: RoundTripReceive, sought: Sought, rec: Recorder
) -> list[Arrival]:
    """The matching messages that Graph received after `sought.since` in each folder a round
    trip's Graph look reads: one call a folder, its `NEWEST` newest (no next page followed)."""
    token = receive.access_token.reveal()
    since = iso_ms(sought.since).replace(".000Z", "Z")
    params = {"$filter": f"receivedDateTime gt {since}", "$select": _GRAPH_SELECT}
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    out: list[Arrival] = []
    async with graph.session(target, receive.user, token, rec) as api:
        for folder in graph.folders(receive)[0]:
            path = f"/v1.0/users/{quote(api.user, safe='@')}/mailFolders/{quote(folder, safe='')}"
            url = f"{api.base}{path}/messages?{query}&$top={NEWEST}"
            data = await api.call("GET", url, f"list {folder}")
            try:
                page = await asyncio.to_thread(_graph_page.decode, data)
            except msgspec.DecodeError as exc:
                raise ProbeFailure(
                    "protocol", f"Graph's listing of {folder} is not a message list: {exc}"[:300]
                ) from None
            for message in page.value:
                try:
                    arrived = parse_iso(message.received_date_time)
                except ValueError:
                    continue
                if arrived <= sought.since:
                    continue
                headers = Message()
                for header in message.internet_message_headers:
                    headers[header.name[:100]] = header.value[:8192]
                size = sum(len(h.name) + len(h.value) for h in message.internet_message_headers)
                arrival = _arrival(headers, arrived, size, target.hostname, folder, sought)
                if arrival is not None:
                    out.append(arrival)
    return out


async def gmail_arrivals(
    target: Target, receive: RoundTripReceive, sought: Sought, rec: Recorder
) -> list[Arrival]:
    """The matching messages Gmail received after `sought.since` (inbox and spam, not the
    trash): one listing of the `NEWEST` newest (`after:`, no next page followed), then each
    one's metadata, its quota units charged as the round trip's are."""
    token = receive.access_token.reveal()
    out: list[Arrival] = []
    async with gmail.gmail_session(target, receive.user, token, rec) as api:
        base = f"{api.base}/gmail/v1/users/{quote(api.user, safe='@')}/messages"
        query = {
            "q": f"after:{int(sought.since.timestamp())} -in:trash",
            "includeSpamTrash": "true",
            "maxResults": str(NEWEST),
        }
        data = await api.call(
            "GET", f"{base}?{urlencode(query)}", "messages.list", cost=UNITS["messages.list"]
        )
        try:
            listing = await asyncio.to_thread(_gmail_list.decode, data)
        except msgspec.DecodeError as exc:
            raise ProbeFailure(
                "protocol", f"Gmail's listing is not a message list: {exc}"[:300]
            ) from None
        params = [("format", "metadata"), *(("metadataHeaders", h) for h in _GMAIL_HEADERS)]
        for ref in listing.messages:
            url = f"{base}/{quote(ref.id, safe='')}?{urlencode(params)}"
            data = await api.call("GET", url, "messages.get", cost=UNITS["messages.get"])
            try:
                message = await asyncio.to_thread(_gmail_message.decode, data)
            except msgspec.DecodeError as exc:
                raise ProbeFailure(
                    "protocol", f"Gmail's message is not of its shape: {exc}"[:300]
                ) from None
            if not (message.internal_date.isascii() and message.internal_date.isdigit()):
                continue
            arrived = datetime.fromtimestamp(int(message.internal_date) / 1000, UTC)
            if arrived <= sought.since:
                continue
            headers = Message()
            for header in message.payload.headers:
                headers[header.name[:100]] = header.value[:8192]
            size = sum(len(h.name) + len(h.value) for h in message.payload.headers)
            arrival = _arrival(headers, arrived, size, target.hostname, "INBOX", sought)
            if arrival is not None:
                out.append(arrival)
    return out


def received_at(headers: Message) -> datetime | None:
    """When the mailbox's server took the message: the date after the last `;` of the first
    (newest) Received line, else the Date header; None without either, or one without a zone."""
    received = [str(v) for v in headers.get_all("Received") or []]
    stamps = [received[0].rpartition(";")[2]] if received else []
    for stamp in [*stamps, str(headers.get("Date") or "")]:
        try:
            at = parsedate_to_datetime(stamp.strip())
        except (TypeError, ValueError, IndexError):
            continue
        if at.tzinfo is not None:
            return at
    return None


def _arrival(
    headers: Message, arrived: datetime, size: int, host: str, folder: str, sought: Sought
) -> Arrival | None:
    """The message as an arrival, None when its From or Subject does not match (as
    controller.arrivals.rules.Rule.matches: each a substring, any case, "" any)."""
    froms = getaddresses([str(v) for v in headers.get_all("From") or []])
    header_from = ", ".join(address for _, address in froms)
    subject = str(headers.get("Subject") or "")
    if sought.sender.lower() not in header_from.lower():
        return None
    if sought.subject.lower() not in subject.lower():
        return None
    message_id = str(headers.get("Message-ID") or "").strip()
    # The same message read again, from any country, is the same arrival: one without a
    # Message-ID is known by when it arrived, from whom and what it says.
    key = message_id or f"{iso_ms(arrived)}\n{header_from}\n{subject}"
    return Arrival(
        arrival_id=arrival_id_of(key, sought.monitor_id, "", LISTENER, folder),
        monitor_id=sought.monitor_id,
        country=sought.country,
        agent_id=sought.agent_id,
        arrived_at=iso_ms(arrived),
        peer=kept(host, TEXT_MAX),
        listener=LISTENER,
        size=size,
        header_from=kept(header_from, TEXT_MAX),
        subject=kept(subject, TEXT_MAX),
    )
