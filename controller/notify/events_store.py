"""The event outbox (`event_outbox`): state changes and posture notes written in the
transaction that decides them (`add_event`), published on the EVENTS stream by one replica at a
time (the alerter: `claim_events`, `delete_events`).
"""

from collections.abc import Sequence
from typing import NamedTuple

import asyncpg

from controller.db.pool import Conn


async def add_event(conn: Conn, subject: str, msg_id: str, payload: bytes) -> None:
    await conn.execute(
        "INSERT INTO event_outbox (subject, msg_id, payload) VALUES ($1, $2, $3)"
        " ON CONFLICT (msg_id) DO NOTHING",
        subject,
        msg_id,
        payload,
    )


# Any constant of its own; held by the one replica publishing events at a time.
EVENTS_LOCK = 0x6D61696C6576656E  # "maileven"


class Event(NamedTuple):
    """A state change or posture note written for the EVENTS stream, not yet published."""

    id: int
    subject: str
    msg_id: str
    payload: bytes


async def events_waiting(conn: Conn) -> bool:
    """Whether any event waits to be published: one statement outside a transaction, so a pass
    with nothing to publish takes no lock and opens no transaction."""
    waiting: bool = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM event_outbox)")
    return waiting


async def claim_events(conn: Conn, limit: int) -> list[Event] | None:
    """The oldest events, in the order written; None while another replica is publishing
    (one publisher at a time, so events leave in order). Holds the lock until the caller's
    transaction ends."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", EVENTS_LOCK):
        return None
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {', '.join(Event._fields)} FROM event_outbox ORDER BY id LIMIT $1", limit
    )
    return [Event(r["id"], r["subject"], r["msg_id"], bytes(r["payload"])) for r in rows]


async def delete_events(conn: Conn, ids: Sequence[int]) -> None:
    await conn.execute("DELETE FROM event_outbox WHERE id = ANY($1::bigint[])", list(ids))
