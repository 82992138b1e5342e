"""Reading a report mailbox over IMAP, with implicit TLS (port 993) or STARTTLS (143, RFC 3501
6.2.1), logging in with a password or an OAuth2 access token (XOAUTH2): every message of
`folder` taken in and moved to `done` (created when missing), so it is read once however its
reports fared.

aioimaplib has no STARTTLS (its issue #1; 2.0.3 is the newest release): after the server's OK
the transport is upgraded with the event loop's `start_tls`, as the agent's IMAP prober does,
and CAPABILITY is asked again over TLS. A server that does not offer STARTTLS, or greets a
plain connection with PREAUTH, is an error before anything is sent; so is one that sends more
in the clear after its OK (a man in the middle injecting responses).

A message larger than `MAX_MESSAGE` is moved unread and recorded as rejected (`too_large`):
its size is asked first (RFC822.SIZE), so a 2 GB message is never fetched; and while a body is
fetched, the protocol counts the bytes that arrive and drops the connection past
`MAX_MESSAGE` (a server declaring 100 bytes and sending a 300 MB literal costs at most that).
Each message is noted in the ledger before its body is fetched (controller/reports/mailbox/
message.py), its id the folder's UIDVALIDITY and its UID. At most `MAX_MESSAGES` messages a
pass.
"""

import asyncio
import contextlib
import re
import ssl
from typing import Any

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

_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
SLACK = 64 * 1024  # the FETCH response's own lines around the literal


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol, answering an AUTHENTICATE's error challenge (RFC 7628 §3.2.2:
    XOAUTH2 sends one before its NO) with the empty response, so the NO comes at once; and
    noting anything the server sends in the clear after its OK to STARTTLS."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn_lost_cb: Any = None) -> None:
        super().__init__(loop, conn_lost_cb)
        self.starttls_ok: bytes | None = None  # "<tag> OK" of a STARTTLS under way
        self.cleartext_over = False  # that OK came; TLS has not started yet
        self.injected = False
        self.refused = ""  # a greeting that was not OK or PREAUTH
        self.budget: int | None = None  # bytes the server may still send (a body fetched)
        self.overflowed = False

    def data_received(self, d: bytes) -> None:
        """aioimaplib's, within `budget`: past it, the connection is dropped and the commands
        waiting fail with Oversized at once."""
        if self.budget is not None:
            self.budget -= len(d)
            if self.budget < 0:
                self._overflow()
                return
        super().data_received(d)

    def _overflow(self) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        self.transport.abort()
        waiting = [self.pending_sync_command, *self.pending_async_commands.values()]
        for command in waiting:
            if command is not None:
                command._exception = Oversized(f"more than {MAX_MESSAGE} bytes in one message")
                command.close(b"", "NO")

    async def welcome(self, command: bytes) -> None:
        """aioimaplib's, but a greeting it refuses (a BYE, say) ends the wait for it at once
        (the LOGOUT state, the greeting kept) instead of leaving it to time out."""
        try:
            await super().welcome(command)
        except aioimaplib.AioImapException:
            self.refused = command.decode(errors="replace")[:200]
            async with self.state_condition:
                self.state = "LOGOUT"
                self.state_condition.notify_all()

    def _handle_line(self, line: bytes, current_cmd: Any) -> Any:
        if self.cleartext_over:
            self.injected = True
            return None
        if self.starttls_ok is not None and line.startswith(self.starttls_ok):
            self.cleartext_over = True
        if current_cmd is None and line.startswith(b"+"):
            self.transport.write(b"\r\n")
            return None
        return super()._handle_line(line, current_cmd)


class _Client(aioimaplib.IMAP4):  # type: ignore[misc]
    """Connects to `address` (one the rules allowed); with `ctx`, over TLS at once, checking
    the certificate for `host`."""

    def __init__(
        self, host: str, address: str, port: int, ctx: ssl.SSLContext | None, timeout: float
    ) -> None:
        self._server_name = host
        super().__init__(address, port, timeout=timeout, ssl_context=ctx)

    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Any = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        local = loop or asyncio.get_running_loop()
        self.protocol = _Protocol(local, conn_lost_cb)
        self._client_task = local.create_task(
            local.create_connection(
                lambda: self.protocol,
                host,
                port,
                ssl=ssl_context,
                server_hostname=self._server_name if ssl_context else None,
            )
        )

    async def connected(self) -> None:
        await self._client_task

    async def greeted(self) -> None:
        """Greeted; MailboxError when the greeting is a refusal."""
        await self.protocol.wait("AUTH|NONAUTH|LOGOUT")
        if self.protocol.state == "LOGOUT":
            raise MailboxError(f"{self._server_name} greeted with {self.protocol.refused}")


def _ok(response: aioimaplib.Response, what: str) -> list[bytes]:
    if response.result != "OK":
        said = b" ".join(line for line in response.lines if isinstance(line, bytes))
        raise MailboxError(f"{what}: {said.decode(errors='replace')[:200]}")
    return [bytes(line) for line in response.lines if isinstance(line, bytes | bytearray)]


async def _connect(box: ReportMailbox) -> _Client:
    """A session past the greeting, over TLS (implicit or upgraded), not yet logged in."""
    where = await address(box)
    ctx = context(box)
    imap = _Client(box.host, where, box.port, ctx if box.security == "tls" else None, box.timeout_s)
    try:
        server = f"{box.host}:{box.port}"
        try:
            async with asyncio.timeout(box.timeout_s):
                await imap.connected()
        except (OSError, TimeoutError) as exc:
            said = str(exc) or f"no answer within {box.timeout_s:g} s"
            raise MailboxError(f"cannot connect to {server}: {said}") from None
        try:
            async with asyncio.timeout(box.timeout_s):
                await imap.greeted()
        except TimeoutError:
            raise MailboxError(no_greeting(box)) from None
        if box.security == "starttls":
            try:
                async with asyncio.timeout(box.timeout_s):
                    await _starttls(imap.protocol, box, ctx)
            except TimeoutError:
                raise MailboxError(
                    f"{server} did not finish STARTTLS within {box.timeout_s:g} s"
                ) from None
    except BaseException:
        if imap.protocol.transport is not None:
            imap.protocol.transport.close()
        raise
    return imap


async def _starttls(proto: _Protocol, box: ReportMailbox, ctx: ssl.SSLContext) -> None:
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
    loop = asyncio.get_running_loop()
    tag = proto.new_tag()
    proto.starttls_ok = f"{tag} OK".encode()
    _ok(await proto.execute(aioimaplib.Command("STARTTLS", tag, loop=loop)), "STARTTLS refused")
    if proto.injected or proto.incomplete_line:
        raise MailboxError(
            f"{server} sent more in the clear after its OK to STARTTLS (a man in the middle"
            " injecting responses?): nothing was sent"
        )
    try:
        proto.transport = await loop.start_tls(
            proto.transport, proto, ctx, server_hostname=box.host
        )
    except (OSError, ssl.SSLError) as exc:
        raise MailboxError(f"TLS after STARTTLS with {server} failed: {exc}") from None
    proto.starttls_ok, proto.cleartext_over = None, False
    await proto.capability()


async def read(pool: asyncpg.Pool, box: ReportMailbox, links: Links) -> Pass:
    """One pass over the mailbox: each message's reports taken in, the message moved."""
    sendable(box.user, box.password.reveal())
    imap = await _connect(box)
    try:
        if box.mechanism.upper() == "XOAUTH2":
            login = await imap.xoauth2(box.user, box.password.reveal())
        else:
            login = await imap.login(box.user, box.password.reveal())
        _ok(login, "login refused")
        selected = _ok(await imap.select(box.folder), f"cannot open {box.folder}")
        validity = next((m.group(1) for x in selected if (m := _UIDVALIDITY.search(x))), b"0")
        created = await imap.create(box.done)  # NO when it exists: fine
        del created
        lines = _ok(await imap.uid_search("ALL"), "search failed")
        every = [u.decode() for line in lines[:1] for u in line.split() if u.isdigit()]
        ids = {uid: f"{validity.decode()}:{uid}" for uid in every}
        async with pool.acquire() as conn:  # what left the folder otherwise is forgotten
            await ledger.forget(
                conn, box.organization_id, message.mailbox_key(box), [*ids.values()], but=True
            )
        uids = every[:MAX_MESSAGES]
        stored = rejected = 0
        for uid in uids:
            s, r = await _message(imap, pool, box, uid, ids[uid], links)
            stored, rejected = stored + s, rejected + r
        if uids:
            _ok(await imap.expunge(), "expunge failed")
            async with pool.acquire() as conn:
                moved = [ids[uid] for uid in uids]
                await ledger.forget(conn, box.organization_id, message.mailbox_key(box), moved)
        return Pass(len(uids), stored, rejected)
    finally:
        if imap.protocol.overflowed:
            imap.protocol.transport.abort()
        else:
            with contextlib.suppress(OSError, TimeoutError, aioimaplib.Abort):
                await imap.logout()


async def _message(
    imap: _Client, pool: asyncpg.Pool, box: ReportMailbox, uid: str, noted: str, links: Links
) -> tuple[int, int]:
    """(stored, rejected) of one message, which is moved to `done` whatever became of it."""
    lines = _ok(await imap.uid("fetch", uid, "(RFC822.SIZE)"), "fetch failed")
    size = next((int(m.group(1)) for line in lines if (m := _SIZE.search(line))), 0)

    async def body() -> bytes:
        imap.protocol.budget = MAX_MESSAGE + SLACK
        try:
            fetched = _ok(await imap.uid("fetch", uid, "(BODY.PEEK[])"), "fetch failed")
        finally:
            imap.protocol.budget = None
        return max((bytes(line) for line in fetched), key=len, default=b"")

    which = f"message {uid} of {box.folder}"
    stored, rejected = await message.one(pool, box, noted, which, size, body, links)
    _ok(await imap.uid("copy", uid, box.done), f"cannot copy to {box.done}")
    _ok(await imap.uid("store", uid, "+FLAGS.SILENT (\\Deleted)"), "cannot mark it read")
    return stored, rejected
