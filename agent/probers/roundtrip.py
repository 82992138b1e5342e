"""Round-trip prober: submit a message carrying an unguessable token over SMTP, then watch the
mailbox (IMAP: IDLE when offered, else polling with backoff; POP3: polling) until it is there,
read what its headers say about its way, and delete it, with this monitor's and country's
leftovers of earlier rounds that came too late.

A `lookOnly` job (its round's message is held back: controller.roundtrips.rules.looks) sends
nothing: it looks in the mailbox once for those leftovers, deletes them, and says whether one
addressed to `to` arrived (`_look`).

Both legs reuse the SMTP, IMAP and POP3 probers' sessions, so their TLS rules hold: no
credentials without TLS unless the monitor allows it. The send leg's phases are the result's
usual ones; the mailbox leg has its own recorder, so they are not overwritten.
"""

import asyncio
import contextlib
import re
import secrets
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.utils import formatdate, getaddresses, make_msgid
from typing import Final

import aiosmtplib
from aioimaplib import quoted

from agent.probers import gmail, graph, imap, pop3
from agent.probers.base import ProbeFailure, Recorder, Target, reply_kind
from agent.probers.delivery import (
    PROBE_HEADER,
    SUBJECT_PREFIX,
    Probe,
    arc_results,
    auth_results,
    grade,
    hops,
    is_leftover,
    parse_probe,
)
from agent.probers.smtp import close_smtp, open_smtp
from agent.probers.tls import describe_ssl_error
from shared.guards import BrokenInvariant
from shared.mailclient import imap as mailclient_imap
from shared.mailclient.errors import MailClientError, Refused
from shared.mailclient.imap import ImapProtocol
from shared.mailclient.pop3 import Pop3
from shared.messages import (
    CheckJob,
    ErrorKind,
    RoundTripCheckJob,
    RoundTripConfig,
    RoundTripReceive,
    default_port,
)

# Polling: first look again after this, then each wait this much longer, up to the cap.
POLL_FIRST_S = 0.2
POLL_FACTOR = 1.5
POLL_MAX_S = 5.0
# Kept from the deadline for deleting the message and saying goodbye once it is found.
CLEANUP_S = 1.0
# POP3 reads the headers of at most this many of the newest messages a poll.
POP3_NEWEST = 50
# IMAP fetches the headers of at most this many of the newest messages a search found.
IMAP_NEWEST = 50
STAT_DIGITS_MAX = 9  # a message count of STAT beyond a billion is not a mailbox's
TOP_MAX = 4 * 1024 * 1024  # bytes of one message's header
_UID = re.compile(rb"UID (\d+)")
_parse_headers = BytesHeaderParser().parsebytes


@dataclass(slots=True)
class Found:
    """A message of this monitor and country, deleted: the round's own or an earlier one's."""

    folder: str
    headers: Message
    seen_at: float  # perf_counter when it was first seen
    probe: Probe


def _own(found: Sequence[Found], probe: Probe) -> Found | None:
    return next((f for f in found if f.probe.token == probe.token), None)


async def probe_roundtrip(target: Target, job: CheckJob, rec: Recorder) -> None:
    if not isinstance(job, RoundTripCheckJob):
        raise TypeError(f"probe_roundtrip got a {job.monitor_type} job")
    config = job.config
    probe = Probe(
        job.monitor_id,
        job.country,
        int(rec.clock.now().timestamp() * 1000),
        secrets.token_urlsafe(24),
    )
    if job.look_only:
        await _look(target, job, probe, rec)
        return
    accepted = await _submit(target, config, probe, rec)
    everything, fetch_ms = await _mailbox_leg(target, job, probe, rec, once=False)
    found = _own(everything, probe)
    receive = config.receive
    if found is None:
        raise ProbeFailure(
            "not_delivered",
            f"not in {', '.join(receive.folders)} of {receive.hostname} within "
            f"{job.timeout_seconds:g}s of being accepted",
        )
    delivery_s = max(0.0, found.seen_at - accepted)
    rec.record("delivery", delivery_s)
    rec.record("fetch", fetch_ms / 1000)
    rec.folder = found.folder
    rec.hops = hops(found.headers)
    rec.auth_results = auth_results(found.headers)
    rec.arc = arc_results(found.headers)
    kind, why = grade(
        found.folder,
        _spam_folders(receive),
        delivery_s,
        config.slow_after_seconds,
        config.spam_is_failure,
    )
    if kind is not None:
        raise ProbeFailure(kind, why)


async def _mailbox_leg(
    target: Target, job: RoundTripCheckJob, probe: Probe, rec: Recorder, *, once: bool
) -> tuple[list[Found], float]:
    """Watch the mailbox for `probe` until it is there (or look `once`); the messages of this
    monitor and country deleted, and how long reading the round's own took (ms)."""
    receive = job.config.receive
    rec.current = "mailbox leg"
    mailbox = Recorder(
        current="mailbox",
        deadline=rec.deadline,
        clock=rec.clock,
        api_calls=rec.api_calls,
        api_units=rec.api_units,
    )
    try:
        with _leg("mailbox", receive.hostname, mailbox):
            if target.reach is None:
                raise BrokenInvariant(
                    "roundtrip._mailbox_leg: run_check gives every target a reach"
                )
            if receive.api not in _APIS:
                raise ProbeFailure(
                    "protocol", f"api {receive.api[:20]!r} is not one this agent knows"
                )
            if receive.api == graph.API_GRAPH:
                port = receive.port or graph.GRAPH_PORT
                watch = _watch_graph
            elif receive.api == gmail.API_GMAIL:
                port = receive.port or gmail.GMAIL_PORT
                watch = _watch_gmail
            else:
                port = receive.port or default_port(receive.protocol, receive)
                watch = _watch_imap if receive.protocol == "imap" else _watch_pop3
            box = await target.reach(receive.hostname, port, receive.tls_options)
            timeout_ms = int(job.timeout_seconds * 1000)
            return await watch(box, receive, probe, timeout_ms, mailbox, once)
    finally:
        # The result's count is the check's: the mailbox leg's logins (each POP3 look's) too.
        rec.logins += mailbox.logins


def _held(job: RoundTripCheckJob) -> ErrorKind:
    """The missed kind of a look that found nothing: the hold its job names."""
    return "mailbox_unconfirmed" if job.look_only == "mailbox_unconfirmed" else "delivery_backoff"


def _addressed_to(headers: Message, to: str) -> bool:
    found = getaddresses([str(value) for value in headers.get_all("To") or []])
    return any(address.lower() == to.lower() for _, address in found)


async def _look(target: Target, job: RoundTripCheckJob, probe: Probe, rec: Recorder) -> None:
    """A round whose message is held back: send nothing, look once for this monitor's and
    country's messages of earlier rounds (sent longer ago than a round lasts, so none another
    round waits for), delete them, and grade the newest one addressed to `to` as a delivery
    that took as long as it has been on its way (its own round ended without it: it is late).
    None found: the round is the hold's missed round, no verdict on the server. A mailbox that
    fails is `down` as in any round, its message saying nothing was sent."""
    config = job.config
    try:
        everything, _ = await _mailbox_leg(target, job, probe, rec, once=True)
    except ProbeFailure as failure:
        raise ProbeFailure(
            failure.kind, f"{failure.message} ({job.look_only}: this round sent nothing)"
        ) from failure
    late = [f for f in everything if _addressed_to(f.headers, config.to)]
    if not late:
        raise ProbeFailure(
            _held(job),
            f"{job.look_only}: this round sent nothing; no message of an earlier round in"
            f" {', '.join(config.receive.folders)} of {config.receive.hostname}",
        )
    newest = max(late, key=lambda f: f.probe.sent_ms)
    age_s = max(0.0, rec.clock.now().timestamp() - newest.probe.sent_ms / 1000)
    rec.folder = newest.folder
    rec.hops = hops(newest.headers)
    rec.auth_results = auth_results(newest.headers)
    rec.arc = arc_results(newest.headers)
    kind, _ = grade(
        newest.folder,
        _spam_folders(config.receive),
        age_s,
        config.slow_after_seconds,
        config.spam_is_failure,
    )
    rec.note = (
        f"{job.look_only}: this round sent nothing; {len(late)} message(s) of earlier rounds"
        f" arrived late, the newest to {newest.folder}, sent {age_s:.1f}s ago"
    )
    if kind == "spam":
        raise ProbeFailure(kind, f"{rec.note}: a spam folder")
    if kind is not None:
        raise ProbeFailure(kind, f"{rec.note}, slower than {config.slow_after_seconds:g}s")


async def _submit(target: Target, config: RoundTripConfig, probe: Probe, rec: Recorder) -> float:
    """Send the probe message; the perf_counter time the server accepted it."""
    message = EmailMessage()
    sender = config.send.sender or config.to
    message["From"] = sender
    message["To"] = config.to
    message["Subject"] = _subject(probe)
    message["Date"] = formatdate(probe.sent_ms / 1000, usegmt=True)
    message["Message-ID"] = make_msgid("mailprobe")
    message[PROBE_HEADER] = probe.header()
    message.set_content(
        "A mailprobe round-trip check: it deletes this message once it has found it.\n"
        f"token: {probe.token}\n"
    )
    if config.send.api not in _APIS:
        raise ProbeFailure(
            "protocol", f"send leg: api {config.send.api[:20]!r} is not one this agent knows"
        )
    if config.send.api == graph.API_GRAPH:
        rec.current = "sendMail"
        with _leg("send", target.hostname, rec):
            return await graph.send_mail(target, config, probe, _subject(probe), rec)
    if config.send.api == gmail.API_GMAIL:
        rec.current = "messages.send"
        auth = config.send.auth
        user = (auth.user if auth is not None else "") or sender
        token = auth.access_token.reveal() if auth is not None else ""
        with _leg("send", target.hostname, rec):
            return await gmail.send_raw(target, user, token, message.as_bytes(), rec)
    with _leg("send", target.hostname, rec):
        smtp = await open_smtp(target, config.send, rec)
        try:
            rec.current = "submit"
            start = time.perf_counter()
            try:
                await smtp.send_message(message, sender=sender, recipients=[config.to])
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [r.code for r in exc.recipients]
                kind = reply_kind(codes[0]) if codes else "protocol"
                raise ProbeFailure(kind, f"recipient refused: {exc.recipients[0]}") from exc
            except aiosmtplib.SMTPResponseException as exc:
                raise ProbeFailure(
                    reply_kind(exc.code), f"message refused: {exc.code} {exc.message}"
                ) from exc
            accepted = time.perf_counter()
            rec.record("submit", accepted - start)
            await close_smtp(smtp, rec)
        finally:
            smtp.close()
    return accepted


# The mailbox APIs this agent speaks beside the protocols ("").
_APIS: Final = ("", graph.API_GRAPH, gmail.API_GMAIL)


def _subject(probe: Probe) -> str:
    return f"{SUBJECT_PREFIX} {probe.token[:8]}"


def _spam_folders(receive: RoundTripReceive) -> list[str]:
    if receive.api == graph.API_GRAPH:
        return sorted(graph.folders(receive)[1])
    if receive.api == gmail.API_GMAIL:
        return [gmail.SPAM]
    return receive.spam_folders


@contextlib.contextmanager
def _leg(name: str, hostname: str, rec: Recorder) -> Iterator[None]:
    """A failure of one leg says which leg and which server: the result is one, the servers
    are two."""
    try:
        yield
    except ProbeFailure as failure:
        raise ProbeFailure(failure.kind, f"{name} leg: {failure.message}") from failure
    except ssl.SSLError as exc:
        raise ProbeFailure("tls", f"{name} leg: {describe_ssl_error(exc)}") from exc
    except MailClientError as exc:  # an answer the session cannot go on with (too long, say)
        raise ProbeFailure("protocol", f"{name} leg: {exc} (during {rec.current})") from exc
    except socket.gaierror as exc:
        raise ProbeFailure("dns", f"{name} leg: cannot resolve {hostname}") from exc
    except ConnectionRefusedError as exc:
        where = rec.dialled or hostname
        raise ProbeFailure("refused", f"{name} leg: connection refused by {where}") from exc
    except (OSError, EOFError) as exc:
        kind: ErrorKind = "refused" if rec.current == "connect" else "protocol"
        lost = f"connection lost during {rec.current} with {rec.dialled or hostname}"
        raise ProbeFailure(kind, f"{name} leg: {lost}") from exc


def _wait_s(attempt: int) -> float:
    return min(POLL_MAX_S, POLL_FIRST_S * POLL_FACTOR**attempt)


def _left_s(rec: Recorder) -> float:
    return rec.deadline - CLEANUP_S - asyncio.get_running_loop().time()


async def _watch_imap(
    target: Target,
    config: RoundTripReceive,
    probe: Probe,
    timeout_ms: int,
    rec: Recorder,
    once: bool,
) -> tuple[list[Found], float]:
    proto = await imap.open_imap(target, config, rec, imap.MAILBOX_BOUNDS)
    try:
        found: list[Found] = []
        attempt = 0
        while True:
            # Every folder each time, also after the message turned up: leftovers of earlier
            # rounds may be in any of them.
            for folder in config.folders:
                found += await _imap_folder(proto, folder, probe, timeout_ms, rec)
            if once or _own(found, probe) is not None or _left_s(rec) <= 0:
                break
            await _imap_wait(proto, config, min(_wait_s(attempt), _left_s(rec)), rec)
            attempt += 1
        mine = _own(found, probe)
        fetch_ms = 0.0 if mine is None else (time.perf_counter() - mine.seen_at) * 1000
        await imap.logout(proto, rec)
        return found, fetch_ms
    finally:
        mailclient_imap.close(proto)


def _imap_ok(response: object, what: str) -> None:
    result = getattr(response, "result", "")
    if result != "OK":
        lines = b" ".join(getattr(response, "lines", [])).decode("utf-8", "replace")
        raise ProbeFailure("protocol", f"{what} failed: {result} {lines}")


async def _imap_folder(
    proto: ImapProtocol, folder: str, probe: Probe, timeout_ms: int, rec: Recorder
) -> list[Found]:
    """Look in `folder` for this monitor's and country's probes: delete the round's own one
    and leftovers of earlier rounds (returned)."""
    rec.current = f"select {folder}"
    _imap_ok(await proto.select(quoted(folder)), f"SELECT {folder}")
    rec.current = "search"
    response = await proto.search(
        "HEADER", PROBE_HEADER, quoted(probe.search_key()), charset=None, by_uid=True
    )
    _imap_ok(response, "SEARCH")
    seen_at = time.perf_counter()
    # aioimaplib hands the untagged `* SEARCH 1 2` over as `1 2` (or `SEARCH 1 2`), and the
    # tagged line's text last.
    words = {word for line in response.lines[:-1] for word in line.split() if word.isdigit()}
    uids = sorted((w.decode() for w in words), key=lambda uid: (len(uid), uid))[-IMAP_NEWEST:]
    if not uids:
        return []
    rec.current = "fetch"
    response = await proto.fetch(",".join(uids), "(UID BODY.PEEK[HEADER])", by_uid=True)
    _imap_ok(response, "FETCH")
    found: list[Found] = []
    doomed: list[str] = []
    for uid, raw in _fetched(response.lines):
        headers = _parse_headers(raw)
        other = parse_probe(headers.get(PROBE_HEADER))
        if other is not None and (
            other.token == probe.token or is_leftover(other, probe, timeout_ms)
        ):
            found.append(Found(folder, headers, seen_at, other))
            doomed.append(uid)
    if doomed:
        rec.current = "delete"
        uid_set = ",".join(doomed)
        _imap_ok(await proto.store(uid_set, "+FLAGS.SILENT", r"(\Deleted)", by_uid=True), "STORE")
        # UID EXPUNGE (UIDPLUS) removes only these; a plain EXPUNGE also what others flagged.
        if "UIDPLUS" in proto.capabilities:
            _imap_ok(await proto.expunge(uid_set, by_uid=True), "UID EXPUNGE")
        else:
            _imap_ok(await proto.expunge(), "EXPUNGE")
    return found


def _fetched(lines: list[bytes | bytearray]) -> list[tuple[str, bytes]]:
    """(UID, header bytes) of each message of a FETCH response, as aioimaplib hands it over:
    `1 FETCH (UID 5 BODY[HEADER] {342}`, the literal (a bytearray), then `)`; a server may
    also put the UID after the literal (` UID 5)`)."""
    out: list[tuple[str, bytes]] = []
    uid: str | None = None
    raw: bytes | None = None
    for line in [*lines, b" FETCH ("]:  # a sentinel closes the last message
        if isinstance(line, bytearray):
            raw = bytes(line)
            continue
        if b" FETCH (" in line:
            if uid is not None and raw is not None:
                out.append((uid, raw))
            uid = raw = None
        if uid is None and (match := _UID.search(line)):
            uid = match.group(1).decode()
    return out


async def _imap_wait(
    proto: ImapProtocol, config: RoundTripReceive, wait_s: float, rec: Recorder
) -> None:
    """Until something happens in the first folder (IDLE) or `wait_s` passed."""
    if wait_s <= 0:
        return
    if "IDLE" not in proto.capabilities:
        rec.current = "poll wait"
        await asyncio.sleep(wait_s)
        return
    rec.current = "idle"
    _imap_ok(await proto.select(quoted(config.folders[0])), f"SELECT {config.folders[0]}")
    idle = asyncio.ensure_future(proto.idle())
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await proto.wait_for_idle_response()
                await proto.idle_queue.get()  # an EXISTS, or anything the server pushes
        if proto.has_pending_idle_command():
            proto.idle_done()
        _imap_ok(await idle, "IDLE")
    finally:
        idle.cancel()
    while not proto.idle_queue.empty():
        proto.idle_queue.get_nowait()


async def _poll(
    look: Callable[[], Awaitable[list[Found]]], probe: Probe, rec: Recorder, once: bool
) -> tuple[list[Found], float]:
    """Look until the round's own probe is found or the round's time is out, waiting between
    looks with POP3's backoff: (all found, ms from the own probe's sighting to its return)."""
    attempt = 0
    found: list[Found] = []
    while True:
        found += await look()
        if (mine := _own(found, probe)) is not None:
            return found, (time.perf_counter() - mine.seen_at) * 1000
        left = _left_s(rec)
        if once or left <= 0:
            return found, 0.0
        rec.current = "poll wait"
        await asyncio.sleep(min(_wait_s(attempt), left))
        attempt += 1


def _sighted(seen: Sequence[graph.Seen | gmail.Seen]) -> list[Found]:
    """What an API look saw, as sighted now."""
    at = time.perf_counter()
    return [Found(s.folder, s.headers, at, s.probe) for s in seen]


async def _watch_pop3(
    target: Target,
    config: RoundTripReceive,
    probe: Probe,
    timeout_ms: int,
    rec: Recorder,
    once: bool,
) -> tuple[list[Found], float]:
    """POP3 shows a session the mailbox as it was at login: a new session per look."""
    return await _poll(lambda: _pop3_look(target, config, probe, timeout_ms, rec), probe, rec, once)


async def _watch_graph(
    target: Target,
    config: RoundTripReceive,
    probe: Probe,
    timeout_ms: int,
    rec: Recorder,
    once: bool,
) -> tuple[list[Found], float]:
    """Graph: a look (every folder, every page) per poll, with the same backoff as POP3."""
    async with graph.session(target, config.user, config.access_token.reveal(), rec) as api:

        async def look() -> list[Found]:
            return _sighted(await graph.look(api, config, probe, timeout_ms))

        return await _poll(look, probe, rec, once)


async def _watch_gmail(
    target: Target,
    config: RoundTripReceive,
    probe: Probe,
    timeout_ms: int,
    rec: Recorder,
    once: bool,
) -> tuple[list[Found], float]:
    """Gmail: a look (the round's token, every page) per poll, with the same backoff as POP3."""
    token = config.access_token.reveal()
    async with gmail.gmail_session(target, config.user, token, rec) as api:

        async def look() -> list[Found]:
            return _sighted(await gmail.look(api, config, probe))

        return await _poll(look, probe, rec, once)


async def _pop3_look(
    target: Target, config: RoundTripReceive, probe: Probe, timeout_ms: int, rec: Recorder
) -> list[Found]:
    """One session: this monitor's and country's probes among the newest messages, the
    round's own and leftovers of earlier rounds, deleted (returned)."""
    pop = await pop3.open_pop3(target, config, rec)
    try:
        rec.current = "stat"
        count = stat_count(await pop3.command(pop, "STAT", "STAT", "protocol"))
        seen_at = time.perf_counter()
        found: list[Found] = []
        for number in range(count, max(0, count - POP3_NEWEST), -1):
            rec.current = "top"
            if (raw := await top_headers(pop, number)) is None:
                continue
            headers = _parse_headers(raw)
            other = parse_probe(headers.get(PROBE_HEADER))
            if other is None or not (
                other.token == probe.token or is_leftover(other, probe, timeout_ms)
            ):
                continue
            found.append(Found("INBOX", headers, seen_at, other))
            rec.current = "delete"
            await pop3.command(pop, f"DELE {number}", "DELE", "protocol")
        # QUIT commits the deletions (RFC 1939 UPDATE state): not a goodbye to skip.
        rec.current = "quit"
        await pop3.command(pop, "QUIT", "QUIT", "protocol")
    except BaseException:
        pop.abort()
        raise
    pop.close()
    return found


def stat_count(reply: str) -> int:
    """The message count of a STAT reply (`+OK 2 320`, RFC 1939 5); a reply without one the
    look cannot go on with."""
    words = reply.split()
    count = words[1] if len(words) > 1 else ""
    if not (count.isascii() and count.isdigit() and len(count) <= STAT_DIGITS_MAX):
        raise ProbeFailure("protocol", f"STAT answered without a message count: {reply}")
    return int(count)


async def top_headers(pop: Pop3, number: int) -> bytes | None:
    """A message's header (TOP n 0, RFC 1939 7), dot-unstuffed, as text (UTF-8 or replaced);
    None when the server no longer has it: it answers TOP with -ERR while its CAPA lists TOP
    (RFC 2449), as when another session (a monitor reading the same mailbox over IMAP) deleted
    the message since this session's STAT. A server that does not list TOP fails the look."""
    with pop3.spoken:
        try:
            await pop.command(f"TOP {number} 0")
        except Refused as refused:
            if "TOP" in (await pop.capa()).names:
                return None
            raise ProbeFailure("protocol", f"TOP failed: {refused.said}") from None
        raw = await pop.text(TOP_MAX)
    return raw.decode("utf-8", "replace").encode()
