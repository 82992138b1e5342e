"""The `report_mail_messages` rows: the messages of a report mailbox whose read began, and how
far it got (`reading`, `taken`, `refused`), until the message has left the folder. The caller
opens the transaction."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.db.pool import Conn


@dataclass(frozen=True, slots=True)
class Noted:
    state: str  # reading, taken or refused
    reads: int  # reads begun


async def begin(
    conn: Conn, organization_id: int, mailbox: str, message: str, at: datetime
) -> Noted | None:
    """Note a read of the message begun at `at` (`reading`, one more read); what was noted
    before it, None for a message never read."""
    row = await conn.fetchrow(
        "WITH before AS (SELECT state, reads FROM report_mail_messages"
        "  WHERE organization_id = $1 AND mailbox = $2 AND message = $3),"
        " noted AS (INSERT INTO report_mail_messages AS m (organization_id, mailbox, message,"
        "  state, at) VALUES ($1, $2, $3, 'reading', $4)"
        "  ON CONFLICT (organization_id, mailbox, message)"
        "  DO UPDATE SET reads = m.reads + 1, at = $4"
        "  WHERE m.state = 'reading')"
        " SELECT state, reads FROM before",
        organization_id,
        mailbox,
        message,
        at,
    )
    return None if row is None else Noted(row["state"], row["reads"])


async def note(
    conn: Conn, organization_id: int, mailbox: str, message: str, state: str, at: datetime
) -> None:
    """The message's reports taken in (`taken`) or the message refused (`refused`), at `at`."""
    await conn.execute(
        "UPDATE report_mail_messages SET state = $4, at = $5"
        " WHERE organization_id = $1 AND mailbox = $2 AND message = $3",
        organization_id,
        mailbox,
        message,
        state,
        at,
    )


async def forget(
    conn: Conn, organization_id: int, mailbox: str, messages: Sequence[str], *, but: bool = False
) -> None:
    """Forget `messages` (gone from the folder); with `but`, every message of the mailbox except
    them (the folder holds only those)."""
    await conn.execute(
        "DELETE FROM report_mail_messages WHERE organization_id = $1 AND mailbox = $2"
        " AND (message = ANY($3::text[])) <> $4",
        organization_id,
        mailbox,
        list(messages),
        but,
    )
