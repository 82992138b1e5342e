"""Reading a report mailbox over POP3 (RFC 1939), with implicit TLS (port 995) or STLS (110,
RFC 2595), logging in with USER/PASS or an OAuth2 access token (AUTH XOAUTH2, RFC 5034, when
the server's CAPA lists it: Dovecot does when its auth_mechanisms hold xoauth2): every message
of the maildrop taken in (its size asked first, LIST n), then deleted (DELE), POP3 having no
folder to move it to. Deletions take effect at QUIT: a pass cut short deletes nothing; the next
deletes unread what the ledger says was taken or refused (controller/reports/mailbox/
message.py: each message noted by its UIDL, RFC 1939 §7, or its number and size from a server
without UIDL) and reads the rest.

Spoken by the mail client (shared/mailclient/pop3.py, asyncio streams, as the agent's POP3
prober speaks it), with every answer awaited at most `timeout_s`; the words for its failures are
this reader's (`_Session.spoken`).

A server that does not offer STLS is an error before anything is sent; so is one that sends
more in the clear after its +OK to STLS (a man in the middle injecting responses). A message
LIST gives as larger than `MAX_MESSAGE` is deleted unread and recorded as rejected; one whose
RETR sends more than that (whatever LIST said) is refused, its connection dropped, and deleted
unread at the next pass. At most `MAX_MESSAGES` messages a pass.
"""

import asyncio
import base64
import binascii
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

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
from shared.mailclient.errors import (
    AnswerTooLong,
    ConnectionClosed,
    ConnectionFailed,
    Injected,
    LineTooLong,
    NoAnswer,
    Refused,
)
from shared.mailclient.pop3 import Pop3, SaslRefused
from shared.mailclient.sasl import oauth2_initial

# RFC 5322 §2.1.1 allows 998 characters a line; a message with a longer line than this is
# refused like one too large (and deleted unread at the next pass), and the reader's buffer
# holds at most twice this before it stops reading the socket.
LINE_MAX = 64 * 1024
RETR_MAX = MAX_MESSAGE + MAX_MESSAGE // 10  # its lines' ends and dot-stuffing
UIDL_MAX = 1024 * 1024


class _NoAnswer(MailboxError):
    pass


class _Session:
    """The mail client's session, its failures worded for the mailbox's error."""

    def __init__(self, box: ReportMailbox, pop: Pop3) -> None:
        self.server = f"{box.host}:{box.port}"
        self.timeout_s = box.timeout_s
        self.pop = pop

    @contextmanager
    def spoken(self, over: type[MailboxError] = MailboxError) -> Iterator[None]:
        """The client's failures as MailboxError; an answer past its bound as `over`."""
        try:
            yield
        except ConnectionClosed:
            raise MailboxError(f"{self.server} closed the connection") from None
        except LineTooLong as exc:
            raise over(f"{self.server} sent a line longer than {exc.limit} bytes") from None
        except AnswerTooLong as exc:
            raise over(f"{self.server} sent more than {exc.limit} bytes in one answer") from None
        except NoAnswer:
            raise _NoAnswer(f"{self.server} did not answer within {self.timeout_s:g} s") from None
        except ConnectionFailed as exc:
            raise MailboxError(f"the connection to {self.server} failed: {exc.error}") from None

    async def command(self, line: str, what: str) -> bytes:
        """Send `line`; its +OK reply, else MailboxError `what: <the reply>`."""
        with self.spoken():
            try:
                return await self.pop.command(line)
            except Refused as refused:
                raise MailboxError(f"{what}: {refused.said[:200]}") from None

    async def lines(self, limit: int) -> list[bytes]:
        with self.spoken():
            return await self.pop.lines(limit)

    async def capa(self) -> frozenset[str]:
        with self.spoken():
            return (await self.pop.capa()).names

    async def stls(self, ctx: ssl.SSLContext, host: str) -> None:
        if "STLS" not in await self.capa():
            raise MailboxError(
                f"{self.server} does not offer STLS: nothing was sent without TLS"
                " (security tls is POP3 over TLS at once, usually port 995)"
            )
        await self.command("STLS", "STLS refused")
        try:
            await self.pop.upgrade(ctx, host)
        except Injected:
            raise MailboxError(
                f"{self.server} sent more in the clear after its +OK to STLS (a man in the"
                " middle injecting responses?): nothing was sent"
            ) from None
        except (OSError, TimeoutError) as exc:
            said = str(exc) or f"no answer within {self.timeout_s:g} s"
            raise MailboxError(f"TLS after STLS with {self.server} failed: {said}") from None

    async def xoauth2(self, user: str, token: str) -> None:
        """AUTH XOAUTH2; a refusal's words, and its error challenge's, are the error's."""
        with self.spoken():
            try:
                await self.pop.authenticate("XOAUTH2", oauth2_initial("XOAUTH2", user, token), "")
            except SaslRefused as refused:
                challenge = "" if refused.challenge is None else _decoded(refused.challenge)
                words = refused.said[:200]
                raise MailboxError(f"login refused: {words} {challenge}".strip()) from None


def _decoded(challenge: str) -> str:
    try:
        return base64.b64decode(challenge, validate=True).decode(errors="replace")[:200]
    except (binascii.Error, ValueError):
        return challenge[:200]


async def _open(box: ReportMailbox) -> _Session:
    """A session past the greeting, over TLS (implicit or upgraded), not yet logged in."""
    where = await address(box)
    ctx = context(box)
    tls = box.security == "tls"
    try:
        async with asyncio.timeout(box.timeout_s):
            pop = await Pop3.open(
                (where, box.port),
                ctx if tls else None,
                box.host,
                line_max=LINE_MAX,
                timeout_s=box.timeout_s,
            )
    except (OSError, TimeoutError) as exc:
        said = str(exc) or f"no answer within {box.timeout_s:g} s"
        raise MailboxError(f"cannot connect to {box.host}:{box.port}: {said}") from None
    session = _Session(box, pop)
    try:
        await _greeting(session, box)
        if not tls:
            await session.stls(ctx, box.host)
    except BaseException:
        pop.abort()
        raise
    return session


async def _greeting(session: _Session, box: ReportMailbox) -> None:
    try:
        with session.spoken():
            greeting = await session.pop.line()
    except _NoAnswer:
        raise MailboxError(no_greeting(box)) from None
    if not greeting.startswith(b"+OK"):
        raise MailboxError(f"bad greeting: {greeting.decode(errors='replace')[:200]}")


async def _login(session: _Session, box: ReportMailbox) -> None:
    secret = box.password.reveal()
    if box.mechanism.upper() == "XOAUTH2":
        if "SASL XOAUTH2" not in await session.capa():
            raise MailboxError(
                f"{session.server} does not offer XOAUTH2 for POP3 (CAPA SASL): nothing was sent"
            )
        await session.xoauth2(box.user, secret)
        return
    await session.command(f"USER {box.user}", "login refused")
    await session.command(f"PASS {secret}", "login refused")


def _number(reply: bytes, index: int, what: str) -> int:
    """The `index`th word of a +OK reply as a number (STAT's count, LIST's size)."""
    words = reply.split()
    if len(words) <= index or not words[index].isdigit():
        raise MailboxError(f"{what}: {reply.decode(errors='replace')[:200]}")
    return int(words[index])


async def _uidls(session: _Session) -> dict[int, str]:
    """Each message's UIDL by its number; none from a server without UIDL."""
    session.pop.send("UIDL")
    with session.spoken():
        if not (await session.pop.line()).startswith(b"+OK"):
            return {}
    out: dict[int, str] = {}
    for line in await session.lines(UIDL_MAX):
        words = line.decode(errors="replace").split()
        if len(words) == 2 and words[0].isdigit():
            out[int(words[0])] = words[1][:70]
    return out


async def read(pool: asyncpg.Pool, box: ReportMailbox, links: Links) -> Pass:
    """One pass over the maildrop: each message's reports taken in, the message deleted."""
    sendable(box.user, box.password.reveal())
    session = await _open(box)
    key = message.mailbox_key(box)
    try:
        await _login(session, box)
        count = _number(await session.command("STAT", "STAT failed"), 1, "a bad STAT answer")
        uidls = await _uidls(session)
        if uidls:  # what left the maildrop otherwise is forgotten
            async with pool.acquire() as conn:
                await ledger.forget(conn, box.organization_id, key, [*uidls.values()], but=True)
        numbers = range(1, min(count, MAX_MESSAGES) + 1)
        stored = rejected = 0
        deleted: list[str] = []
        for number in numbers:
            listed = await session.command(f"LIST {number}", "LIST failed")
            size = _number(listed, 2, "a bad LIST answer")
            noted = uidls.get(number) or f"{number}:{size}"
            s, r = await _message(session, pool, box, number, noted, size, links)
            stored, rejected = stored + s, rejected + r
            await session.command(f"DELE {number}", "DELE failed")
            deleted.append(noted)
        await session.command("QUIT", "QUIT failed, so nothing read was deleted")
        async with pool.acquire() as conn:
            await ledger.forget(conn, box.organization_id, key, deleted)
        return Pass(len(numbers), stored, rejected)
    finally:
        session.pop.abort()


async def _message(
    session: _Session,
    pool: asyncpg.Pool,
    box: ReportMailbox,
    number: int,
    noted: str,
    size: int,
    links: Links,
) -> tuple[int, int]:
    async def body() -> bytes:
        await session.command(f"RETR {number}", "RETR failed")
        with session.spoken(Oversized):
            return await session.pop.text(RETR_MAX)

    which = f"message {number} of the POP3 maildrop"
    return await message.one(pool, box, noted, which, size, body, links)
