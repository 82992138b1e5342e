"""Reading a report mailbox over IMAP, with implicit TLS (port 993) or STARTTLS (143, RFC 3501
6.2.1), logging in with a password or an OAuth2 access token (XOAUTH2): every message of
`folder` taken in and moved to `done` (created when missing), so it is read once however its
reports fared.

Spoken by the mail client (shared/mailclient/imap.py: aioimaplib's protocol, STARTTLS by the
event loop's `start_tls`), as the agent's IMAP prober speaks it, with every answer awaited at
most `timeout_s`; CAPABILITY is asked again over TLS. A server that does not offer STARTTLS, or
greets a plain connection with PREAUTH, is an error before anything is sent; so is one that
sends more in the clear after its OK (a man in the middle injecting responses).

A message larger than `MAX_MESSAGE` is moved unread and recorded as rejected (`too_large`):
its size is asked first (RFC822.SIZE), so a 2 GB message is never fetched; and while a body is
fetched, the protocol counts the bytes that arrive and drops the connection past
`MAX_MESSAGE` and `SLACK` (a server declaring 100 bytes and sending a 300 MB literal costs at
most that). Every other answer is bounded too (`BOUNDS`: a line, its lines, its bytes), so a
greeting without end or untagged lines forever cost at most that before the connection is
dropped and the read fails saying so.
Each message is noted in the ledger before its body is fetched (controller/reports/mailbox/
message.py), its id the folder's UIDVALIDITY and its UID. At most `MAX_MESSAGES` messages a
pass.
"""

import asyncio
import contextlib
import re
import ssl
from collections.abc import Awaitable
from typing import TypeVar

import aioimaplib
import asyncpg

from controller.notify.links import Links
from controller.reports import ledger_store as ledger
from controller.reports.mailbox import message
from controller.reports.mailbox.base import (
    MAX_MESSAGE,
    MAX_MESSAGES,
    MailboxError,
    Pass,
    ReportMailbox,
    address,
    context,
    no_greeting,
    sendable,
)
from controller.reports.mailbox.message import Oversized
from shared.mailclient import imap as client
from shared.mailclient.errors import AnswerTooLong, Injected, LineTooLong, Refused
from shared.mailclient.imap import Bounds, ImapProtocol
from shared.mailclient.sasl import oauth2_initial

_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
SLACK = 64 * 1024  # the FETCH response's own lines around the literal
# One answer: a SEARCH's line of every UID (half a million of 8 bytes), a few hundred lines, and
# a body over its own budget (`bound`), which is cut first.
BOUNDS = Bounds(line_max=4 * 1024 * 1024, answer_max=MAX_MESSAGE + 2 * SLACK, answer_lines_max=1024)

T = TypeVar("T")


async def _within(box: ReportMailbox, answer: Awaitable[T]) -> T:
    """An answer awaited at most the mailbox's `timeout_s` (else TimeoutError)."""
    async with asyncio.timeout(box.timeout_s):
        return await answer


def _ok(response: aioimaplib.Response, what: str) -> list[bytes]:
    if response.result != "OK":
        said = b" ".join(line for line in response.lines if isinstance(line, bytes))
        raise MailboxError(f"{what}: {said.decode(errors='replace')[:200]}")
    return [bytes(line) for line in response.lines if isinstance(line, bytes | bytearray)]


async def _connect(box: ReportMailbox) -> ImapProtocol:
    """A session past the greeting, over TLS (implicit or upgraded), not yet logged in."""
    where = await address(box)
    ctx = context(box)
    server = f"{box.host}:{box.port}"
    try:
        proto = await _within(
            box,
            client.open_imap(
                (where, box.port), ctx if box.security == "tls" else None, box.host, BOUNDS
            ),
        )
    except (OSError, TimeoutError) as exc:
        said = str(exc) or f"no answer within {box.timeout_s:g} s"
        raise MailboxError(f"cannot connect to {server}: {said}") from None
    try:
        try:
            failure = await _within(box, proto.ready)
        except (TimeoutError, OSError):
            raise MailboxError(no_greeting(box)) from None
        if isinstance(failure, LineTooLong | AnswerTooLong):
            raise MailboxError(f"{server} greeted with {failure}: the connection was dropped")
        if failure is not None:
            greeting = proto.greeting.result().decode(errors="replace")[:200]
            raise MailboxError(f"{box.host} greeted with {greeting}")
        if box.security == "starttls":
            try:
                await _within(box, _starttls(proto, box, ctx))
            except TimeoutError:
                raise MailboxError(
                    f"{server} did not finish STARTTLS within {box.timeout_s:g} s"
                ) from None
    except (LineTooLong, AnswerTooLong) as exc:
        client.close(proto)
        raise MailboxError(f"{server} sent {exc}: the connection was dropped") from None
    except BaseException:
        client.close(proto)
        raise
    return proto


async def _starttls(proto: ImapProtocol, box: ReportMailbox, ctx: ssl.SSLContext) -> None:
    """STARTTLS, the handshake (the certificate checked for the host), then CAPABILITY again:
    RFC 3501 6.2.1 has the client forget what it learnt in the clear."""
    server = f"{box.host}:{box.port}"
    if proto.state != "NONAUTH":
        raise MailboxError(f"{server} logged the plain connection in (PREAUTH) before TLS")
    if "STARTTLS" not in proto.capabilities:
        raise MailboxError(
            f"{server} does not offer STARTTLS: nothing was sent without TLS"
            " (security tls is IMAP over TLS at once, usually port 993)"
        )
    try:
        await client.starttls(proto, ctx, box.host)
    except Refused as refused:
        raise MailboxError(f"STARTTLS refused: {refused.said[:200]}") from None
    except Injected:
        raise MailboxError(
            f"{server} sent more in the clear after its OK to STARTTLS (a man in the middle"
            " injecting responses?): nothing was sent"
        ) from None
    except OSError as exc:  # ssl.SSLError among them
        raise MailboxError(f"TLS after STARTTLS with {server} failed: {exc}") from None
    await proto.capability()


async def _login(proto: ImapProtocol, box: ReportMailbox) -> aioimaplib.Response:
    secret = box.password.reveal()
    if box.mechanism.upper() == "XOAUTH2":
        initial = oauth2_initial("XOAUTH2", box.user, secret)
        response, _ = await _within(box, client.authenticate(proto, "XOAUTH2", initial, ""))
        return response
    return await _within(box, client.login(proto, box.user, secret))


async def read(pool: asyncpg.Pool, box: ReportMailbox, links: Links) -> Pass:
    """One pass over the mailbox: each message's reports taken in, the message moved."""
    sendable(box.user, box.password.reveal())
    proto = await _connect(box)
    try:
        _ok(await _login(proto, box), "login refused")
        selected = _ok(await _within(box, proto.select(box.folder)), f"cannot open {box.folder}")
        validity = next((m.group(1) for x in selected if (m := _UIDVALIDITY.search(x))), b"0")
        # NO when it exists: fine
        await _within(box, proto.simple_command("CREATE", box.done))
        lines = _ok(await _within(box, proto.search("ALL", by_uid=True)), "search failed")
        every = [u.decode() for line in lines[:1] for u in line.split() if u.isdigit()]
        ids = {uid: f"{validity.decode()}:{uid}" for uid in every}
        async with pool.acquire() as conn:  # what left the folder otherwise is forgotten
            await ledger.forget(
                conn, box.organization_id, message.mailbox_key(box), [*ids.values()], but=True
            )
        uids = every[:MAX_MESSAGES]
        stored = rejected = 0
        for uid in uids:
            s, r = await _message(proto, pool, box, uid, ids[uid], links)
            stored, rejected = stored + s, rejected + r
        if uids:
            _ok(await _within(box, proto.expunge()), "expunge failed")
            async with pool.acquire() as conn:
                moved = [ids[uid] for uid in uids]
                await ledger.forget(conn, box.organization_id, message.mailbox_key(box), moved)
        return Pass(len(uids), stored, rejected)
    except (LineTooLong, AnswerTooLong) as exc:
        server = f"{box.host}:{box.port}"
        raise MailboxError(f"{server} sent {exc}: the connection was dropped") from None
    finally:
        if not proto.overflowed:
            with contextlib.suppress(OSError, TimeoutError, aioimaplib.Abort):
                await _within(box, proto.logout())
        client.close(proto)


async def _message(
    proto: ImapProtocol, pool: asyncpg.Pool, box: ReportMailbox, uid: str, noted: str, links: Links
) -> tuple[int, int]:
    """(stored, rejected) of one message, which is moved to `done` whatever became of it."""
    asked = await _within(box, proto.uid("fetch", uid, "(RFC822.SIZE)"))
    lines = _ok(asked, "fetch failed")
    size = next((int(m.group(1)) for line in lines if (m := _SIZE.search(line))), 0)

    async def body() -> bytes:
        proto.bound(MAX_MESSAGE + SLACK)
        try:
            answer = await _within(box, proto.uid("fetch", uid, "(BODY.PEEK[])"))
        except AnswerTooLong:
            raise Oversized(f"more than {MAX_MESSAGE} bytes in one message") from None
        finally:
            proto.bound(None)
        fetched = _ok(answer, "fetch failed")
        return max((bytes(line) for line in fetched), key=len, default=b"")

    which = f"message {uid} of {box.folder}"
    stored, rejected = await message.one(pool, box, noted, which, size, body, links)
    copied = await _within(box, proto.uid("copy", uid, box.done))
    _ok(copied, f"cannot copy to {box.done}")
    marked = await _within(box, proto.uid("store", uid, "+FLAGS.SILENT (\\Deleted)"))
    _ok(marked, "cannot mark it read")
    return stored, rejected
