"""What every report mailbox reader shares: the mailbox as the worker hands it over, how a pass
went, the error a person reads, the address checked before connecting (and then the one
connected to) and the TLS context. What becomes of one message is message.py's.

TLS is never optional: implicit (`tls`) or upgraded before any login (`starttls`); a server
that does not offer the upgrade is an error, never a login in the clear.
"""

import asyncio
import socket
import ssl
from dataclasses import KW_ONLY, dataclass
from datetime import datetime

from controller.reports import intake
from controller.reports.unpacking import MAX_PACKED
from shared.addresses import is_blocked
from shared.secret import Secret
from shared.tls import system_trust

MAX_MESSAGE = MAX_PACKED + MAX_PACKED // 2  # base64 makes a report a third larger
MAX_MESSAGES = 200
TIMEOUT_S = 30.0

SECURITIES = ("tls", "starttls")


class MailboxError(Exception):
    """The mailbox could not be read (connection, TLS, login, folder): a message for a person."""


@dataclass(frozen=True, slots=True)
class ReportMailbox:
    organization_id: int
    host: str
    port: int
    user: str
    password: Secret  # the password, or the OAuth2 access token with `mechanism` XOAUTH2
    mechanism: str = ""  # "" (LOGIN, USER/PASS) or "XOAUTH2"
    ca_pem: str | None = None  # a private CA the server's certificate must chain to
    folder: str = "INBOX"  # IMAP only: POP3 has the one maildrop
    done: str = "mailprobe-read"  # IMAP only: POP3 deletes what it read
    allow_private: bool = True  # False: only a host whose addresses are all public is read
    protocol: str = "imap"  # a key of controller.reports.mailbox.READERS
    security: str = "tls"  # implicit TLS, or "starttls" (POP3: STLS) before the login
    timeout_s: float = TIMEOUT_S  # for each answer awaited (a connection, a reply, a line)
    limits: intake.Limits = intake.DEFAULT_LIMITS  # the organization's bounds per domain
    _: KW_ONLY
    started: datetime  # when the read began: its messages are taken at this instant


@dataclass(frozen=True, slots=True)
class Pass:
    messages: int
    stored: int
    rejected: int


def context(box: ReportMailbox) -> ssl.SSLContext:
    """TLS 1.2 at least (Python's default floor for a client context, set again for a CA
    of the mailbox's own), verified against the mailbox's own CA when it names one, else the
    system's (`shared.tls.system_trust`, one per process)."""
    if not box.ca_pem:
        return system_trust()
    ctx = ssl.create_default_context(cadata=box.ca_pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def sendable(*values: str) -> None:
    """Refuse a user or secret a line break (or NUL) would turn into a second command."""
    if any(c in value for value in values for c in "\r\n\0"):
        raise MailboxError("the user or secret holds a line break: nothing was sent")


def no_greeting(box: ReportMailbox) -> str:
    """A silent server is often one of the other security at that port (STARTTLS sent to an
    implicit TLS port waits for a handshake that never comes)."""
    other = "starttls" if box.security == "tls" else "tls"
    return (
        f"{box.host}:{box.port} sent no greeting within {box.timeout_s:g} s"
        f" (a port for security {other}?)"
    )


async def address(box: ReportMailbox) -> str:
    """The address to connect to: the host's first, once every one is allowed (a name that
    resolves elsewhere between the check and the connection changes nothing)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(box.host, box.port, type=socket.SOCK_STREAM), box.timeout_s
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
