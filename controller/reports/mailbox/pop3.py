"""Reading a report mailbox over POP3 (RFC 1939), with implicit TLS (port 995) or STLS (110,
RFC 2595), logging in with USER/PASS or an OAuth2 access token (AUTH XOAUTH2, RFC 5034, when
the server's CAPA lists it: Dovecot does when its auth_mechanisms hold xoauth2): every message
of the maildrop taken in (its size asked first, LIST n), then deleted (DELE), POP3 having no
folder to move it to. Deletions take effect at QUIT: a pass cut short deletes nothing; the next
deletes unread what the ledger says was taken or refused (controller/reports/mailbox/
message.py: each message noted by its UIDL, RFC 1939 §7, or its number and size from a server
without UIDL) and reads the rest.

Spoken over asyncio streams, as the agent's POP3 prober does, rather than with the standard
library's poplib in a thread: poplib would need its private methods overridden to connect to
the checked address while checking the certificate for the host name (`_create_socket`), to
send AUTH (`_putcmd`), and to read a line longer than its fixed 2048 bytes (`_getline`; else
one sender's long line stops every later read of the mailbox for good), and a thread is not
stopped by the worker's timeout. The TLS is the standard library's: `create_connection(ssl=)`
and `StreamWriter.start_tls`.

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

# RFC 5322 §2.1.1 allows 998 characters a line; a message with a longer line than this is
# refused like one too large (and deleted unread at the next pass), and the reader's buffer
# holds at most twice this before it stops reading the socket.
LINE_MAX = 64 * 1024
CAPA_MAX = 64 * 1024
RETR_MAX = MAX_MESSAGE + MAX_MESSAGE // 10  # its lines' ends and dot-stuffing
UIDL_MAX = 1024 * 1024
YIELD_LINES = 256  # lines read before the event loop's other tasks get a turn


class _Reader(asyncio.StreamReader):
    """Counts the bytes that arrived, so that what came after the +OK to STLS shows."""

    arrived = 0

    def feed_data(self, data: bytes) -> None:  # type: ignore[override]  # asyncio feeds bytes
        self.arrived += len(data)
        super().feed_data(data)


class _NoAnswer(MailboxError):
    pass


class _Session:
    def __init__(self, box: ReportMailbox, reader: _Reader, writer: asyncio.StreamWriter) -> None:
        self.server = f"{box.host}:{box.port}"
        self.timeout_s = box.timeout_s
        self.reader, self.writer = reader, writer
        self.taken = 0  # the bytes `line` took

    async def line(self, over: type[MailboxError] = MailboxError) -> bytes:
        try:
            async with asyncio.timeout(self.timeout_s):
                raw = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise MailboxError(f"{self.server} closed the connection") from None
        except asyncio.LimitOverrunError:
            self.writer.transport.abort()
            raise over(f"{self.server} sent a line longer than {LINE_MAX} bytes") from None
        except TimeoutError:
            raise _NoAnswer(f"{self.server} did not answer within {self.timeout_s:g} s") from None
        except OSError as exc:
            raise MailboxError(f"the connection to {self.server} failed: {exc}") from None
        self.taken += len(raw)
        return raw.removesuffix(b"\n").removesuffix(b"\r")

    async def status(self, what: str) -> bytes:
        """The next reply line when it is +OK; else MailboxError `what: <the reply>`."""
        reply = await self.line()
        if not reply.startswith(b"+OK"):
            raise MailboxError(f"{what}: {reply.decode(errors='replace')[:200]}")
        return reply

    async def command(self, line: str, what: str) -> bytes:
        self.writer.write(line.encode() + b"\r\n")
        return await self.status(what)

    async def lines(self, limit: int, over: type[MailboxError] = MailboxError) -> list[bytes]:
        """A multi-line response's lines up to its ".", unstuffed, at most `limit` bytes (else
        `over`, the connection dropped)."""
        return (await self.text(limit, over)).split(b"\r\n")[:-1]

    async def text(self, limit: int, over: type[MailboxError] = MailboxError) -> bytes:
        """A multi-line response up to its ".", unstuffed, each line ending in CRLF, at most
        `limit` bytes (else `over`, the connection dropped)."""
        out = bytearray()
        count = 0
        while (line := await self.line(over)) != b".":
            count += 1
            if count % YIELD_LINES == 0:
                await asyncio.sleep(0)  # lines already arrived are read without a wait
            out += line[1:] if line.startswith(b".") else line
            out += b"\r\n"
            if len(out) > limit:
                self.writer.transport.abort()
                raise over(f"{self.server} sent more than {limit} bytes in one answer")
        return bytes(out)

    async def capa(self) -> set[str]:
        """CAPA's capability names, and `SASL <mechanism>` for each mechanism; none from a
        server older than RFC 2449."""
        self.writer.write(b"CAPA\r\n")
        if not (await self.line()).startswith(b"+OK"):
            return set()
        names: set[str] = set()
        for line in await self.lines(CAPA_MAX):
            words = line.decode(errors="replace").upper().split()
            if words:
                names.add(words[0])
                if words[0] == "SASL":
                    names.update(f"SASL {w}" for w in words[1:])
        return names

    async def stls(self, ctx: ssl.SSLContext, host: str) -> None:
        if "STLS" not in await self.capa():
            raise MailboxError(
                f"{self.server} does not offer STLS: nothing was sent without TLS"
                " (security tls is POP3 over TLS at once, usually port 995)"
            )
        await self.command("STLS", "STLS refused")
        if self.reader.arrived != self.taken:
            raise MailboxError(
                f"{self.server} sent more in the clear after its +OK to STLS (a man in the"
                " middle injecting responses?): nothing was sent"
            )
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.writer.start_tls(ctx, server_hostname=host)
        except (OSError, TimeoutError) as exc:
            said = str(exc) or f"no answer within {self.timeout_s:g} s"
            raise MailboxError(f"TLS after STLS with {self.server} failed: {said}") from None

    async def xoauth2(self, user: str, token: str) -> None:
        """AUTH XOAUTH2, its response after the server's empty continuation (a token does not
        fit RFC 5034's 255-octet command line); an error challenge is cancelled ("*") and
        its words are the refusal's."""
        said = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode())
        self.writer.write(b"AUTH XOAUTH2\r\n")
        reply = await self.line()
        if reply != b"+" and not reply.startswith(b"+ "):
            raise MailboxError(f"login refused: {reply.decode(errors='replace')[:200]}")
        self.writer.write(said + b"\r\n")
        reply = await self.line()
        if reply.startswith(b"+OK"):
            return
        challenge = ""
        if reply == b"+" or reply.startswith(b"+ "):
            challenge = _decoded(reply[1:].strip())
            self.writer.write(b"*\r\n")
            reply = await self.line()
        words = reply.decode(errors="replace")[:200]
        raise MailboxError(f"login refused: {words} {challenge}".strip())


def _decoded(challenge: bytes) -> str:
    try:
        return base64.b64decode(challenge, validate=True).decode(errors="replace")[:200]
    except (binascii.Error, ValueError):
        return challenge.decode(errors="replace")[:200]


async def _open(box: ReportMailbox) -> _Session:
    """A session past the greeting, over TLS (implicit or upgraded), not yet logged in."""
    where = await address(box)
    ctx = context(box)
    tls = box.security == "tls"
    loop = asyncio.get_running_loop()
    reader = _Reader(limit=LINE_MAX)
    protocol = asyncio.StreamReaderProtocol(reader)
    try:
        async with asyncio.timeout(box.timeout_s):
            transport, _ = await loop.create_connection(
                lambda: protocol,
                where,
                box.port,
                ssl=ctx if tls else None,
                server_hostname=box.host if tls else None,
            )
    except (OSError, TimeoutError) as exc:
        said = str(exc) or f"no answer within {box.timeout_s:g} s"
        raise MailboxError(f"cannot connect to {box.host}:{box.port}: {said}") from None
    session = _Session(box, reader, asyncio.StreamWriter(transport, protocol, reader, loop))
    try:
        await _greeting(session, box)
        if not tls:
            await session.stls(ctx, box.host)
    except BaseException:
        session.writer.transport.abort()
        raise
    return session


async def _greeting(session: _Session, box: ReportMailbox) -> None:
    try:
        await session.status("bad greeting")
    except _NoAnswer:
        raise MailboxError(no_greeting(box)) from None


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
    session.writer.write(b"UIDL\r\n")
    if not (await session.line()).startswith(b"+OK"):
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
        session.writer.transport.abort()


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
        return await session.text(RETR_MAX, Oversized)

    which = f"message {number} of the POP3 maildrop"
    return await message.one(pool, box, noted, which, size, body, links)
