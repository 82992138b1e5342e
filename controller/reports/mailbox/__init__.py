"""Reading a report mailbox: one reader per protocol (`imap`, `pop3`), each over TLS (implicit or
upgraded before the login), with a password or an OAuth2 access token (XOAUTH2), the server's
certificate checked against the system's CAs or a private CA, at the address the rules allowed.
"""

from collections.abc import Awaitable, Callable

import asyncpg

from controller.notify.links import Links
from controller.reports.mailbox import imap, pop3
from controller.reports.mailbox.base import (
    MAX_MESSAGE,
    MAX_MESSAGES,
    SECURITIES,
    MailboxError,
    Pass,
    ReportMailbox,
)

__all__ = [
    "MAX_MESSAGE",
    "MAX_MESSAGES",
    "READERS",
    "SECURITIES",
    "MailboxError",
    "Pass",
    "ReportMailbox",
    "read",
]

Reader = Callable[[asyncpg.Pool, ReportMailbox, Links], Awaitable[Pass]]
READERS: dict[str, Reader] = {"imap": imap.read, "pop3": pop3.read}


async def read(pool: asyncpg.Pool, box: ReportMailbox, links: Links) -> Pass:
    """One pass over the mailbox with its protocol's reader; MailboxError when it cannot be
    read."""
    reader = READERS.get(box.protocol)
    if reader is None:
        raise MailboxError(f"protocol {box.protocol!r} is not one this version reads")
    if box.security not in SECURITIES:
        raise MailboxError(f"security {box.security!r} is not one this version reads")
    return await reader(pool, box, links)
