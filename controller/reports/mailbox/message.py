"""What becomes of one message of a report mailbox, whichever protocol read it: its reports
taken in (controller.reports.intake), or one rejection with its reason, counted in
`mailprobe_reports{via="mail"}` like every other.

Before its body is fetched, the message is noted in the ledger (controller/reports/
ledger_store.py), and its outcome after: so a message whose read never finished is not read
forever. `step` decides, from what was noted at earlier reads: read it; move it unread (its
reports were taken, or it was refused, and only its move was not seen done); or refuse it
unread (`reader_failed`) once `READS_MAX` reads of it began and none finished (the controller
killed mid-parse, the connection dropped mid-message). The protocol moves or deletes it
whatever the step said, so the folder empties.

A message is fetched only when the size the server declared is at most `MAX_MESSAGE`, and its
protocol reads no more than that of it whatever the server sends (`Oversized`: the connection
is dropped, the message refused and moved aside at the next read). Its MIME structure is read
in the parsing worker (controller/reports/sandbox.py), like its reports.
"""

from collections.abc import Awaitable, Callable
from typing import Literal

import asyncpg

from controller.notify.links import Links
from controller.reports import intake, mail, senders
from controller.reports import ledger_store as ledger
from controller.reports.ledger_store import Noted
from controller.reports.mailbox.base import MAX_MESSAGE, MailboxError, ReportMailbox
from controller.reports.rejected import Rejected
from controller.reports.sandbox import SANDBOX

READS_MAX = 2  # reads of one message begun, none finished, before it is refused unread

Step = Literal["read", "move", "refuse"]


class Oversized(MailboxError):
    """The server sent more of a message than `MAX_MESSAGE`: the connection was dropped."""


def step(noted: Noted | None) -> Step:
    """What to do with a message, from what earlier reads noted of it."""
    if noted is None:
        return "read"
    if noted.state in ("taken", "refused"):
        return "move"
    return "read" if noted.reads < READS_MAX else "refuse"


def mailbox_key(box: ReportMailbox) -> str:
    """The ledger's name of the folder read: a message's number is only unique there."""
    folder = box.folder if box.protocol == "imap" else ""
    return f"{box.protocol}://{box.user}@{box.host}:{box.port}/{folder}"


async def refuse(
    pool: asyncpg.Pool, box: ReportMailbox, exc: Rejected, where: str, size: int
) -> None:
    """One message refused whole, recorded and counted against an hour (intake's one place
    for refusals, `intake.refuse_message`)."""
    await intake.refuse_message(pool, box.organization_id, where, size, exc, now=box.started)


async def one(
    pool: asyncpg.Pool,
    box: ReportMailbox,
    message: str,
    which: str,
    size: int,
    fetch: Callable[[], Awaitable[bytes]],
    links: Links,
) -> tuple[int, int]:
    """(stored, rejected) of the message `message` (the ledger's id; `which`: as a person
    reads it) of `size` declared bytes; `fetch` reads its body."""
    org, key = box.organization_id, mailbox_key(box)
    async with pool.acquire() as conn:
        noted = await ledger.begin(conn, org, key, message, box.started)
    todo = step(noted)
    if todo == "move":
        return 0, 0
    if todo == "refuse":
        detail = f"{READS_MAX} reads of it began and none finished: moved aside unread"
        failed = Rejected("reader_failed", detail)
        await intake.refuse(pool, org, "mail", which, size, failed)  # its reader's failure
        return await _noted(pool, box, key, message)
    if size > MAX_MESSAGE:
        detail = f"a message of {size} bytes (at most {MAX_MESSAGE})"
        return await _refused(pool, box, key, message, Rejected("too_large", detail), which, size)
    try:
        raw = await fetch()
    except Oversized:
        detail = f"more than {MAX_MESSAGE} bytes sent for a message of {size} bytes declared"
        await _refused(pool, box, key, message, Rejected("too_large", detail), which, size)
        raise
    taken = await _take(pool, box, raw, size, links)
    async with pool.acquire() as conn:
        await ledger.note(conn, org, key, message, "taken", box.started)
    return taken


async def _refused(
    pool: asyncpg.Pool,
    box: ReportMailbox,
    key: str,
    message: str,
    exc: Rejected,
    which: str,
    size: int,
) -> tuple[int, int]:
    await refuse(pool, box, exc, which, size)
    return await _noted(pool, box, key, message)


async def _noted(pool: asyncpg.Pool, box: ReportMailbox, key: str, message: str) -> tuple[int, int]:
    async with pool.acquire() as conn:
        await ledger.note(conn, box.organization_id, key, message, "refused", box.started)
    return 0, 1


async def _take(
    pool: asyncpg.Pool, box: ReportMailbox, raw: bytes, size: int, links: Links
) -> tuple[int, int]:
    """(stored, rejected) of one whole message: each report attachment taken in (the domain
    its subject names counting a report its parser refuses); none is a rejection
    (`no_report`). Once the organization's messages refused whole this hour are at their
    bound, it is refused unopened (`intake.mailed_spent`)."""
    if spent := await intake.mailed_spent(pool, box.organization_id, box.started, box.limits):
        await intake.refuse(
            pool, box.organization_id, "mail", f"a message of {size} bytes", size, spent
        )
        return 0, 1
    try:
        where, parts, named, sent_by = await SANDBOX.run(
            mail.opened, raw, organization_id=box.organization_id
        )
    except Rejected as exc:
        await refuse(pool, box, exc, f"a message of {size} bytes", size)
        return 0, 1
    if not parts:
        await refuse(pool, box, Rejected("no_report", "no report attached", named), where, size)
        return 0, 1
    stored = rejected = 0
    for part in parts:
        taken = await intake.take(
            pool,
            box.organization_id,
            part,
            "mail",
            where,
            links,
            limits=box.limits,
            named=named,
            sender=senders.by_mail(sent_by),
            now=box.started,
        )
        stored, rejected = stored + taken.stored, rejected + (not taken.stored)
    return stored, rejected
