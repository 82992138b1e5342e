"""Reading a report mailbox: IMAP over TLS (implicit, port 993), logging in with a password or
an OAuth2 access token (XOAUTH2), the server's certificate checked against the system's CAs or
a private CA; every message of `folder` taken in (controller.reports.intake) and moved to
`done` (created when missing), so it is read once however its reports fared.

A message larger than `MAX_MESSAGE` is moved unread and recorded as rejected (`too_large`):
its size is asked first (RFC822.SIZE), so a 2 GB message is never fetched. At most
`MAX_MESSAGES` messages a pass.
"""

import asyncio
import contextlib
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import aioimaplib
import asyncpg
import structlog

from controller.notify.links import Links
from controller.reports import intake, mail
from controller.reports import store as db
from controller.reports.parse import MAX_PACKED
from shared.addresses import is_blocked
from shared.secret import Secret

log = structlog.get_logger(__name__)

MAX_MESSAGE = MAX_PACKED + MAX_PACKED // 2  # base64 makes a report a third larger
MAX_MESSAGES = 200
TIMEOUT_S = 30.0
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class MailboxError(Exception):
    """The mailbox could not be read (connection, TLS, login, folder): a message for a person."""


@dataclass(frozen=True, slots=True)
class ReportMailbox:
    organization_id: int
    host: str
    port: int
    user: str
    password: Secret  # the password, or the OAuth2 access token with `mechanism` XOAUTH2
    mechanism: str = ""  # "" (LOGIN) or "XOAUTH2"
    ca_pem: str | None = None  # a private CA the server's certificate must chain to
    folder: str = "INBOX"
    done: str = "mailprobe-read"
    allow_private: bool = True  # False: only a host whose addresses are all public is read


@dataclass(frozen=True, slots=True)
class Pass:
    messages: int
    stored: int
    rejected: int


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol, answering an AUTHENTICATE's error challenge (RFC 7628 §3.2.2:
    XOAUTH2 sends one before its NO) with the empty response, so the NO comes at once."""

    def _handle_line(self, line: bytes, current_cmd: Any) -> Any:
        if current_cmd is None and line.startswith(b"+"):
            self.transport.write(b"\r\n")
            return None
        return super()._handle_line(line, current_cmd)


class _Client(aioimaplib.IMAP4_SSL):  # type: ignore[misc]
    """Connects to `address` (one the rules allowed), checking the certificate for `host`."""

    def __init__(self, host: str, address: str, port: int, ctx: ssl.SSLContext) -> None:
        self._server_name = host
        super().__init__(address, port, timeout=TIMEOUT_S, ssl_context=ctx)

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
                server_hostname=self._server_name,
            )
        )


def _context(box: ReportMailbox) -> ssl.SSLContext:
    ctx = (
        ssl.create_default_context(cadata=box.ca_pem)
        if box.ca_pem
        else ssl.create_default_context()
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _ok(response: aioimaplib.Response, what: str) -> list[bytes]:
    if response.result != "OK":
        said = b" ".join(line for line in response.lines if isinstance(line, bytes))
        raise MailboxError(f"{what}: {said.decode(errors='replace')[:200]}")
    return [bytes(line) for line in response.lines if isinstance(line, bytes | bytearray)]


async def _address(box: ReportMailbox) -> str:
    """The address to connect to: the host's first, once every one is allowed (a name that
    resolves elsewhere between the check and the connection changes nothing)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(box.host, box.port, type=socket.SOCK_STREAM), TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        raise MailboxError(f"{box.host} does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise MailboxError(f"{box.host} does not resolve")
    if not box.allow_private and any(is_blocked(a) for a in addresses):
        raise MailboxError(
            f"{box.host} resolves to a private or reserved address"
            " (REPORTS_MAILBOX_ALLOW_PRIVATE allows it)"
        )
    return addresses[0]


async def read(pool: asyncpg.Pool, box: ReportMailbox, links: Links) -> Pass:
    """One pass over the mailbox: each message's reports taken in, the message moved."""
    address = await _address(box)
    imap = _Client(box.host, address, box.port, _context(box))
    try:
        await imap.wait_hello_from_server()
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise MailboxError(f"cannot connect to {box.host}:{box.port}: {exc}") from None
    try:
        if box.mechanism.upper() == "XOAUTH2":
            login = await imap.xoauth2(box.user, box.password.reveal())
        else:
            login = await imap.login(box.user, box.password.reveal())
        _ok(login, "login refused")
        _ok(await imap.select(box.folder), f"cannot open {box.folder}")
        created = await imap.create(box.done)  # NO when it exists: fine
        del created
        lines = _ok(await imap.uid_search("ALL"), "search failed")
        uids = [u for line in lines[:1] for u in line.split() if u.isdigit()][:MAX_MESSAGES]
        stored = rejected = 0
        for uid in uids:
            s, r = await _message(imap, pool, box, uid.decode(), links)
            stored, rejected = stored + s, rejected + r
        if uids:
            _ok(await imap.expunge(), "expunge failed")
        return Pass(len(uids), stored, rejected)
    finally:
        with contextlib.suppress(OSError, TimeoutError, aioimaplib.Abort):
            await imap.logout()


async def _message(
    imap: _Client, pool: asyncpg.Pool, box: ReportMailbox, uid: str, links: Links
) -> tuple[int, int]:
    """(stored, rejected) of one message, which is moved to `done` whatever became of it."""
    lines = _ok(await imap.uid("fetch", uid, "(RFC822.SIZE)"), "fetch failed")
    size = next((int(m.group(1)) for line in lines if (m := _SIZE.search(line))), 0)
    stored = rejected = 0
    if size > MAX_MESSAGE:
        async with pool.acquire() as conn:
            await db.reject(
                conn,
                box.organization_id,
                "mail",
                "too_large",
                f"a message of {size} bytes (at most {MAX_MESSAGE})",
                f"message {uid} of {box.folder}",
                size,
            )
        rejected = 1
    else:
        fetched = _ok(await imap.uid("fetch", uid, "(BODY.PEEK[])"), "fetch failed")
        raw = max((bytes(line) for line in fetched), key=len, default=b"")
        where = mail.source(raw)
        parts = mail.attachments(raw)
        if not parts:
            async with pool.acquire() as conn:
                await db.reject(
                    conn,
                    box.organization_id,
                    "mail",
                    "no_report",
                    "no report attached",
                    where,
                    size,
                )
            rejected = 1
        for part in parts:
            taken = await intake.take(pool, box.organization_id, part, "mail", where, links)
            stored, rejected = stored + taken.stored, rejected + (not taken.stored)
    _ok(await imap.uid("copy", uid, box.done), f"cannot copy to {box.done}")
    _ok(await imap.uid("store", uid, "+FLAGS.SILENT (\\Deleted)"), "cannot mark it read")
    return stored, rejected
