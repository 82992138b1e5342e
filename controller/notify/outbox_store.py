"""The notification outbox (`notification_outbox`) and its history (`alert_history`): a
notification queued (`enqueue`) by the one notify entry (controller.notify.entry, whoever tells
an organization something calls it), claimed and settled by the outbox worker
(controller.notify.outbox). Each row names its source, the budget it draws on. The caller owns
the transaction.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg
import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn
from controller.notify import channel_store
from controller.notify.fair_share import Due
from controller.notify.recipients import CHANNELS, Outgoing
from controller.notify.sources import Source

# The notice an incident's e-mail ($2: its incident, $4: its channel, $5: its address)
# follows up: the first `down` e-mail to that address about the incident or another outage of
# its flow incident (`thread_key`, migration 0137); NULL for another channel or no incident.
_THREAD = (
    "CASE WHEN $4 = 'email' AND $2::bigint IS NOT NULL THEN (SELECT t.dedupe_key"
    " FROM notification_outbox t WHERE t.channel = 'email' AND lower(t.target) = lower($5)"
    " AND t.kind = 'down' AND t.incident_id IN (SELECT j.id FROM incidents j WHERE j.id = $2"
    "  UNION ALL SELECT j.id FROM incidents j, incidents i WHERE i.id = $2"
    "  AND j.flow_incident_id = i.flow_incident_id)"
    " ORDER BY t.id LIMIT 1) END"
)


async def enqueue(
    conn: Conn,
    monitor_id: int,
    incident_id: int | None,
    notes: Sequence[Outgoing],
    source: Source,
    now: datetime,
) -> None:
    """Queue `notes` from `source` (a posture notice has no incident) at `now`; a dedupe key
    already queued is skipped. The `CHANNELS` row becomes one row per notification channel of the
    monitor."""
    expanded: list[Outgoing] = []
    for n in notes:
        if n.channel == CHANNELS:
            expanded += await channel_store.fan_out(
                conn,
                monitor_id,
                incident_id,
                n.kind,
                n.dedupe_key,
                n.subject,
                now,
                details=n.text or None,
                severity=n.severity,
                flow=n.flow,
            )
        else:
            expanded.append(n)
    for n in expanded:
        await conn.execute(
            "INSERT INTO notification_outbox (monitor_id, incident_id, kind, channel, target,"
            " subject, body_text, body_html, dedupe_key, channel_id, payload, source,"
            " next_attempt_at, created_at, thread_key)"
            f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, {_THREAD})"
            " ON CONFLICT (dedupe_key) DO NOTHING",
            monitor_id,
            incident_id,
            n.kind,
            n.channel,
            n.target,
            n.subject,
            n.text,
            n.html,
            n.dedupe_key,
            n.channel_id,
            n.payload,
            source,
            now,
        )


async def enqueue_for_organization(
    conn: Conn, organization_id: int, notes: Sequence[Outgoing], source: Source, now: datetime
) -> None:
    """Queue `notes` from `source` about no monitor (a status page's subscriber mail) at `now`,
    on the organization's budget; a dedupe key already queued is skipped."""
    for n in notes:
        await conn.execute(
            "INSERT INTO notification_outbox (organization_id, kind, channel, target,"
            " subject, body_text, body_html, dedupe_key, list_unsubscribe, source,"
            " next_attempt_at, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)"
            " ON CONFLICT (dedupe_key) DO NOTHING",
            organization_id,
            n.kind,
            n.channel,
            n.target,
            n.subject,
            n.text,
            n.html,
            n.dedupe_key,
            n.list_unsubscribe,
            source,
            now,
        )


class Claimed(NamedTuple):
    """A notification leased to an outbox worker; `attempts` counts this one."""

    id: int
    monitor_id: int | None  # None: a page's subscriber mail (`organization_id` says whose)
    incident_id: int | None
    kind: str
    channel: str
    target: str
    subject: str
    body_text: str
    body_html: str | None
    attempts: int
    dedupe_key: str
    organization_id: int | None
    list_unsubscribe: str | None
    channel_id: int | None = None
    payload: dict[str, Any] | None = None  # a channel's event (channel_kinds.Event), decoded
    source: str = Source.OUTAGE  # the budget it draws on (controller.notify.sources.Source)
    thread_key: str | None = None  # the notice an e-mail follows up (its dedupe key)


OUTBOX_COLUMNS = ", ".join(Claimed._fields)
_HISTORY = (
    "INSERT INTO alert_history (outbox_id, monitor_id, incident_id, kind, channel, target,"
    " attempt, status, error)"
)
# One line per attempt and outcome (migration 0078): writing it again, as a write-back tried
# again after its commit's answer was lost does, adds nothing.
_ONCE = "ON CONFLICT (outbox_id, attempt, status) DO NOTHING"
REMINDER_DROPPED = "not sent: the incident closed before the reminder went out"

# Both only touch rows that are due, so never one a worker holds a lease on.
_GIVE_UP = f"""
WITH settled AS (
    UPDATE notification_outbox
    SET status = 'failed', last_error = coalesce(last_error, 'no outcome recorded')
    WHERE status = 'pending' AND next_attempt_at <= $1 AND attempts >= $2
    RETURNING {OUTBOX_COLUMNS}, status, last_error
)
{_HISTORY} SELECT id, monitor_id, incident_id, kind, channel, target, attempts, status, last_error
FROM settled {_ONCE}
"""
_DROP_REMINDERS = f"""
WITH settled AS (
    UPDATE notification_outbox o SET status = 'dropped', last_error = $2
    FROM incidents i
    WHERE o.status = 'pending' AND o.next_attempt_at <= $1 AND o.kind = 'reminder'
      AND i.id = o.incident_id AND i.ended_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM flow_incidents f
                      WHERE f.id = i.flow_incident_id AND f.ended_at IS NULL)
    RETURNING {", ".join(f"o.{c}" for c in OUTBOX_COLUMNS.split(", "))}, o.status, o.last_error
)
{_HISTORY} SELECT id, monitor_id, incident_id, kind, channel, target, attempts, status, last_error
FROM settled
"""
_DROP = f"""
WITH settled AS (
    UPDATE notification_outbox SET status = 'dropped', last_error = $2, attempts = attempts - 1
    WHERE id = ANY($1::bigint[]) AND status = 'pending'
    RETURNING {OUTBOX_COLUMNS}, status, last_error
)
{_HISTORY} SELECT id, monitor_id, incident_id, kind, channel, target, attempts, status, last_error
FROM settled
"""


async def drop_claimed(conn: Conn, outbox_ids: Sequence[int], reason: str) -> None:
    """Drop notifications just claimed, unsent (their claim's attempt given back), with
    `reason` in the row and its history line."""
    await conn.execute(_DROP, list(outbox_ids), reason)


async def outbox_due(conn: Conn, now: datetime) -> bool:
    """Whether a pending notification is due `now`: the only rows `settle_outbox` and
    `claim_outbox` act on, so a worker's pass without any opens no transaction."""
    due: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM notification_outbox"
        " WHERE status = 'pending' AND next_attempt_at <= $1)",
        now,
    )
    return due


async def settle_outbox(conn: Conn, now: datetime, max_attempts: int) -> None:
    """Before a claim: a row out of attempts (its last worker died before writing the outcome
    back) fails with its last error; a reminder whose problem has ended (its incident closed,
    and the flow incident it joined too: a flow incident's reminder goes out while any of its
    outages is open, whichever monitor's row carries it) is dropped, never sent. Each gets its
    line in the history."""
    await conn.execute(_GIVE_UP, now, max_attempts)
    await conn.execute(_DROP_REMINDERS, now, REMINDER_DROPPED)


# Pending notifications due now on one of the worker's channels ($2) with attempts left ($3),
# none of a channel it is sending to ($5) or that any controller is, or whose breaker is open
# (`notification_channel_state`), each organization's first
# $4 in its order: outage notices first, then the oldest due. A row waits while an older one of
# its source to the same recipient about the same monitor is pending (sending, or backing off),
# so a source's notices arrive in the order written; of a notification channel's rows only its
# first is offered (one send at a time per channel).
_DUE = """
WITH eligible AS (
    SELECT o.id, coalesce(o.organization_id, m.organization_id) AS organization_id,
           o.channel_id, o.source <> 'outage' AS later, o.next_attempt_at
    FROM notification_outbox o LEFT JOIN monitors m ON m.id = o.monitor_id
    WHERE o.status = 'pending' AND o.next_attempt_at <= $1
      AND o.channel = ANY($2::text[]) AND o.attempts < $3
      AND (o.channel_id IS NULL OR o.channel_id <> ALL($5::bigint[])
           AND o.channel_id NOT IN (SELECT channel_id FROM notification_channel_state
                                    WHERE until > $1 OR open_until > $1))
      AND NOT EXISTS (SELECT 1 FROM notification_outbox p WHERE p.status = 'pending'
        AND p.monitor_id = o.monitor_id AND p.channel = o.channel
        AND p.target = o.target AND p.source = o.source AND p.id < o.id)
), firsts AS (
    SELECT * FROM eligible WHERE channel_id IS NULL
    UNION ALL
    (SELECT DISTINCT ON (channel_id) * FROM eligible WHERE channel_id IS NOT NULL
     ORDER BY channel_id, later, next_attempt_at, id)
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY organization_id
                                 ORDER BY later, next_attempt_at, id) AS turn
    FROM firsts
)
SELECT id, organization_id, channel_id FROM ranked WHERE turn <= $4
ORDER BY turn, later, next_attempt_at, id
"""


async def due(
    conn: Conn,
    now: datetime,
    channels: Sequence[str],
    max_attempts: int,
    per_organization: int,
    waiting_channels: Sequence[int] = (),
) -> list[Due]:
    """The notifications that may be sent `now` (`_DUE`): each organization's first
    `per_organization`, in its order (outage notices first, then the oldest due), none of the
    notification channels `waiting_channels`. Which of them go is
    `controller.notify.fair_share.choose`'s to say."""
    rows = await conn.fetch(
        _DUE, now, list(channels), max_attempts, per_organization, list(waiting_channels)
    )
    return [Due(r["id"], r["organization_id"], r["channel_id"]) for r in rows]


async def claim_outbox(
    conn: Conn, now: datetime, ids: Sequence[int], lease_s: float, max_attempts: int
) -> list[Claimed]:
    """The notifications `ids` that are still due (no other worker claimed them since), leased
    to the caller: attempts counted, and hidden from other workers for `lease_s` (the caller
    renews it while it sends: `renew`). Rows another transaction holds are skipped. A
    notification channel's row also takes its channel's lease for as long
    (`notification_channel_state`, in channel order): only while no other send to the channel
    holds it and its breaker is closed, else the row is not claimed."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "WITH due AS (SELECT id, channel_id, attempts FROM notification_outbox"
        "   WHERE id = ANY($2::bigint[]) AND status = 'pending' AND next_attempt_at <= $1"
        "     AND attempts < $4 FOR UPDATE SKIP LOCKED),"
        " leased AS (INSERT INTO notification_channel_state AS s"
        "   (channel_id, outbox_id, attempt, until)"
        "   SELECT DISTINCT ON (channel_id) channel_id, id, attempts + 1,"
        "     $1 + make_interval(secs => $3)"
        "   FROM due WHERE channel_id IS NOT NULL ORDER BY channel_id, id"
        "   ON CONFLICT (channel_id) DO UPDATE SET outbox_id = excluded.outbox_id,"
        "     attempt = excluded.attempt, until = excluded.until"
        "   WHERE (s.until IS NULL OR s.until <= $1)"
        "     AND (s.open_until IS NULL OR s.open_until <= $1)"
        "   RETURNING outbox_id)"
        " UPDATE notification_outbox SET attempts = attempts + 1,"
        " next_attempt_at = $1 + make_interval(secs => $3)"
        " WHERE id IN (SELECT id FROM due WHERE channel_id IS NULL"
        "   UNION ALL SELECT outbox_id FROM leased)"
        f" RETURNING {OUTBOX_COLUMNS}",
        now,
        list(ids),
        lease_s,
        max_attempts,
    )
    return [Claimed(*r.values()) for r in rows]


async def renew(conn: Conn, rows: Sequence[Claimed], until: datetime) -> int:
    """Extend the caller's leases on `rows` to `until` (those it still holds: same attempt,
    still pending), their channels' with them (in channel order); how many it still held."""
    await conn.execute(
        "UPDATE notification_channel_state SET until = $3"
        " WHERE channel_id IN (SELECT channel_id FROM notification_channel_state"
        "   WHERE (outbox_id, attempt) IN (SELECT * FROM unnest($1::bigint[], $2::int[]))"
        "   ORDER BY channel_id FOR UPDATE)",
        [r.id for r in rows if r.channel_id is not None],
        [r.attempts for r in rows if r.channel_id is not None],
        until,
    )
    held: int = await conn.fetchval(
        "WITH renewed AS (UPDATE notification_outbox SET next_attempt_at = $3"
        " WHERE (id, attempts) IN (SELECT * FROM unnest($1::bigint[], $2::int[]))"
        " AND status = 'pending' RETURNING 1) SELECT count(*) FROM renewed",
        [r.id for r in rows],
        [r.attempts for r in rows],
        until,
    )
    return held


async def record_attempt(
    conn: Conn,
    row: Claimed,
    error: str | None,
    *,
    retry_at: datetime | None,
    now: datetime,
) -> bool:
    """The outcome of one lease: sent, to retry at `retry_at`, or failed for good; and its
    line in the history. False when the lease was lost (another worker claimed the row again
    since, or it was settled): the row is then left to its new owner; the line is written.
    Written again (the answer to the first commit was lost), it lands the same and adds no
    second line."""
    if error is None:
        status = "sent"
        updated = await conn.fetchval(
            "UPDATE notification_outbox SET status = 'sent', sent_at = coalesce(sent_at, $3),"
            " last_error = NULL WHERE id = $1 AND attempts = $2 AND status IN ('pending', 'sent')"
            " RETURNING id",
            row.id,
            row.attempts,
            now,
        )
    else:
        status = "failed"
        updated = await conn.fetchval(
            "UPDATE notification_outbox SET last_error = $3,"
            " status = CASE WHEN $4::timestamptz IS NULL THEN 'failed' ELSE 'pending' END,"
            " next_attempt_at = coalesce($4, next_attempt_at)"
            " WHERE id = $1 AND attempts = $2"
            " AND status IN ('pending', CASE WHEN $4::timestamptz IS NULL THEN 'failed'"
            " ELSE 'pending' END)"
            " RETURNING id",
            row.id,
            row.attempts,
            error,
            retry_at,
        )
    await conn.execute(
        f"{_HISTORY} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) {_ONCE}",
        row.id,
        row.monitor_id,
        row.incident_id,
        row.kind,
        row.channel,
        row.target,
        row.attempts,
        status,
        error,
    )
    return updated is not None


async def record_attempts(
    conn: Conn,
    rows: Sequence[Claimed],
    outcomes: Sequence[tuple[str | None, datetime | None]],
    now: datetime,
) -> list[Claimed]:
    """Each row's outcome (its error, None when sent, and when to retry: `record_attempt`) in
    the caller's transaction; the rows whose lease was lost. The rows' monitors are locked
    first, in id order (`FOR KEY SHARE`): a monitor deleted meanwhile waits for the write-back,
    where its cascade to the outbox rows and the history's reference to the monitor would wait
    on each other (a deadlock); a row whose monitor was deleted before has nothing left to
    write (its outbox row and history went with it)."""
    ids = sorted({r.monitor_id for r in rows if r.monitor_id is not None})
    present = {
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM monitors WHERE id = ANY($1::bigint[]) ORDER BY id FOR KEY SHARE", ids
        )
    }
    lost: list[Claimed] = []
    for row, (error, retry_at) in zip(rows, outcomes, strict=True):
        if row.monitor_id is not None and row.monitor_id not in present:
            continue
        if not await record_attempt(conn, row, error, retry_at=retry_at, now=now):
            lost.append(row)
    return lost


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt to deliver a notification."""

    id: int
    kind: str
    channel: str
    target: str
    attempt: int
    status: str
    error: str | None
    at: datetime
    incident_public_id: UUID | None
    # A notification channel's name (its `target` is the channel's public id); None for
    # e-mail and SMS, or a channel since deleted.
    target_name: str | None = None


async def list_history(
    conn: Conn, monitor_id: int, limit: int, offset: int
) -> tuple[list[Attempt], int]:
    """A page of the monitor's notification attempts, newest first, and how many it has: its
    own, and those of a flow incident's notice that names one of its outages
    (`notice_incidents`, whichever member's the notice was queued for), each once and shown
    against the monitor's own outage."""
    rows = await conn.fetch(
        f"WITH {_NAMED}"
        " SELECT h.id, h.kind, h.channel, h.target, h.attempt, h.status, h.error, h.at,"
        " coalesce(n.incident_public_id, i.public_id) AS incident_public_id,"
        " c.name AS target_name"
        " FROM alert_history h LEFT JOIN incidents i ON i.id = h.incident_id"
        " LEFT JOIN named n ON n.outbox_id = h.outbox_id"
        " LEFT JOIN notification_channels c ON h.channel NOT IN ('email', 'sms')"
        "   AND c.public_id::text = h.target"
        "   AND c.organization_id = (SELECT organization_id FROM monitors WHERE id = $1)"
        f" WHERE {_LISTED} ORDER BY h.at DESC, h.id DESC LIMIT $2 OFFSET $3",
        monitor_id,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        f"WITH {_NAMED} SELECT count(*) FROM alert_history h WHERE {_LISTED}", monitor_id
    )
    return typed.many(Attempt, rows), total


# The notices (outbox rows) of flow incidents that name one of monitor $1's outages, with the
# outage named (its first, should a notice name two).
_NAMED = (
    "named AS (SELECT DISTINCT ON (x.outbox_id) x.outbox_id, j.public_id AS incident_public_id"
    " FROM notice_incidents x JOIN incidents j ON j.id = x.incident_id"
    " WHERE j.monitor_id = $1 ORDER BY x.outbox_id, j.id)"
)
# A monitor's attempts: those queued for it, and those of a notice naming it (an array, so
# each side of the OR is read by its index).
_LISTED = "(h.monitor_id = $1 OR h.outbox_id = ANY(ARRAY(SELECT outbox_id FROM named)))"


async def pending(pool: asyncpg.Pool) -> int:
    """How many notifications wait to go out."""
    async with pool.acquire() as conn:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM notification_outbox WHERE status = 'pending'"
        )
    return n
