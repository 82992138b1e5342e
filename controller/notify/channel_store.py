"""Notification channels' rows: the channels of an organization, which monitors and customers
chose each, and the outbox rows a notice fans out to. The caller owns the transaction."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn
from controller.notify import channel_kinds
from controller.notify.channel_kinds import Event, FlowFacts, IncidentFacts, MonitorFacts
from controller.notify.channel_shown import shown_url
from controller.notify.recipients import Outgoing
from shared.timefmt import iso_ms, iso_ms_or_none

_COLUMNS = (
    "c.id, c.public_id, c.organization_id, c.name, c.kind, c.url, c.url_shown, c.secret, c.chat_id,"
    " c.created_at, c.updated_at,"
    " ARRAY(SELECT m.public_id::text FROM monitor_notification_channels mc"
    "   JOIN monitors m ON m.id = mc.monitor_id WHERE mc.channel_id = c.id ORDER BY m.id)"
    "   AS monitor_ids,"
    " ARRAY(SELECT cc.customer_id FROM customer_notification_channels cc"
    "   WHERE cc.channel_id = c.id ORDER BY cc.customer_id) AS customer_ids"
)


class StoredChannel(msgspec.Struct, frozen=True, kw_only=True):
    """A notification channel: `url` as stored (sealed when it is the credential), `url_shown`
    what responses show of it (`channel_shown`, from `url` as it is read where it is not
    sealed), `secret` sealed; the monitors (public ids) and customers that chose it."""

    id: int
    public_id: UUID
    organization_id: int
    name: str
    kind: str
    url: str
    url_shown: str
    secret: str | None
    chat_id: str | None
    created_at: datetime
    updated_at: datetime
    monitor_ids: list[str]
    customer_ids: list[int]


def _read(channel: StoredChannel) -> StoredChannel:
    """`channel` as read: its URL shown by the rule of now (a sealed one as it was stored)."""
    if channel.kind in channel_kinds.SECRET_URL:
        return channel
    return msgspec.structs.replace(channel, url_shown=shown_url(channel.kind, channel.url))


class MonitorChoice(msgspec.Struct, frozen=True):
    """A monitor a channel may serve, as a picker lists it."""

    public_id: UUID
    name: str
    type: str


async def get(conn: Conn, public_id: UUID, organization_id: int | None) -> StoredChannel | None:
    """A channel by public id, of `organization_id` (None: any, for global supporters)."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM notification_channels c WHERE c.public_id = $1"
        " AND ($2::bigint IS NULL OR c.organization_id = $2)",
        public_id,
        organization_id,
    )
    found = typed.maybe(StoredChannel, row)
    return None if found is None else _read(found)


async def by_id(conn: Conn, channel_id: int) -> StoredChannel | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM notification_channels c WHERE c.id = $1", channel_id
    )
    found = typed.maybe(StoredChannel, row)
    return None if found is None else _read(found)


async def list_page(
    conn: Conn, organization_id: int | None, limit: int, offset: int
) -> tuple[list[StoredChannel], int]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM notification_channels c"
        " WHERE $1::bigint IS NULL OR c.organization_id = $1"
        " ORDER BY c.created_at DESC, c.id DESC LIMIT $2 OFFSET $3",
        organization_id,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        "SELECT count(*) FROM notification_channels WHERE $1::bigint IS NULL"
        " OR organization_id = $1",
        organization_id,
    )
    return [_read(c) for c in typed.many(StoredChannel, rows)], total


async def monitor_choices(conn: Conn, organization_id: int, limit: int) -> list[MonitorChoice]:
    """The organization's monitors by name, at most `limit`."""
    rows = await conn.fetch(
        "SELECT public_id, name, type FROM monitors WHERE organization_id = $1"
        " ORDER BY lower(name), id LIMIT $2",
        organization_id,
        limit,
    )
    return typed.many(MonitorChoice, rows)


async def lock_organization(conn: Conn, organization_id: int) -> None:
    """Serialise creating the organization's channels until the transaction ends (its count is
    bounded)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('channels'), $1)", organization_id)


async def count(conn: Conn, organization_id: int) -> int:
    n: int = await conn.fetchval(
        "SELECT count(*) FROM notification_channels WHERE organization_id = $1", organization_id
    )
    return n


async def insert(conn: Conn, organization_id: int, values: Mapping[str, object]) -> int:
    new_id: int = await conn.fetchval(
        "INSERT INTO notification_channels (organization_id, name, kind, url, url_shown, secret,"
        " chat_id) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        organization_id,
        values["name"],
        values["kind"],
        values["url"],
        values["url_shown"],
        values["secret"],
        values["chat_id"],
    )
    return new_id


async def update(conn: Conn, channel_id: int, values: Mapping[str, object], now: datetime) -> None:
    """Change the channel's settings, at `now`."""
    await conn.execute(
        "UPDATE notification_channels SET name = $2, url = $3, url_shown = $4, secret = $5,"
        " chat_id = $6, updated_at = $7 WHERE id = $1",
        channel_id,
        values["name"],
        values["url"],
        values["url_shown"],
        values["secret"],
        values["chat_id"],
        now,
    )


async def choose(
    conn: Conn, channel_id: int, monitor_ids: Sequence[int], customer_ids: Sequence[int]
) -> None:
    """The monitors and customers that chose the channel, replaced."""
    await conn.execute(
        "DELETE FROM monitor_notification_channels WHERE channel_id = $1", channel_id
    )
    await conn.execute(
        "DELETE FROM customer_notification_channels WHERE channel_id = $1", channel_id
    )
    await conn.execute(
        "INSERT INTO monitor_notification_channels (monitor_id, channel_id)"
        " SELECT unnest($2::bigint[]), $1",
        channel_id,
        list(monitor_ids),
    )
    await conn.execute(
        "INSERT INTO customer_notification_channels (customer_id, channel_id)"
        " SELECT unnest($2::bigint[]), $1",
        channel_id,
        list(customer_ids),
    )


async def delete(conn: Conn, channel_id: int) -> None:
    await conn.execute("DELETE FROM notification_channels WHERE id = $1", channel_id)


async def monitor_ids(conn: Conn, public_ids: Sequence[UUID], organization_id: int) -> list[int]:
    rows = await conn.fetch(
        "SELECT id FROM monitors WHERE public_id = ANY($1::uuid[]) AND organization_id = $2",
        list(public_ids),
        organization_id,
    )
    return [r["id"] for r in rows]


async def customer_ids(conn: Conn, ids: Sequence[int], organization_id: int) -> list[int]:
    rows = await conn.fetch(
        "SELECT id FROM customers WHERE id = ANY($1::bigint[]) AND organization_id = $2",
        list(ids),
        organization_id,
    )
    return [r["id"] for r in rows]


# A monitor's channels: those chosen for it, else its customer's defaults; always of its own
# organization (a join row can only be written for one, but the rule holds here too).
_FOR_MONITOR = """
WITH m AS (SELECT id, customer_id, organization_id FROM monitors WHERE id = $1),
own AS (SELECT mc.channel_id FROM monitor_notification_channels mc, m WHERE mc.monitor_id = m.id),
chosen AS (
    SELECT channel_id FROM own
    UNION ALL
    SELECT cc.channel_id FROM customer_notification_channels cc, m
    WHERE cc.customer_id = m.customer_id AND NOT EXISTS (SELECT 1 FROM own)
)
SELECT c.id, c.public_id, c.kind FROM notification_channels c, m
WHERE c.id IN (SELECT channel_id FROM chosen) AND c.organization_id = m.organization_id
ORDER BY c.id
"""

# Notices a channel is told: an incident's, and the notices of channel_kinds.NOTICE_KINDS.
INCIDENT_KINDS = frozenset({"down", "reminder", "recovered", "no_data"})


async def fan_out(
    conn: Conn,
    monitor_id: int,
    incident_id: int | None,
    kind: str,
    key: str,
    summary: str,
    now: datetime,
    *,
    details: str | None = None,
    severity: str | None = None,
    flow: FlowFacts | None = None,
) -> list[Outgoing]:
    """One outbox row per channel of the monitor for an incident's notice or another notice
    about the monitor (`kind`, its dedupe `key`, `summary`, a notice's `details` and
    `severity`); none for other kinds. A flow incident's notice (`flow`) names the outage
    that opened the flow incident `incident_id` is part of, whichever member tells it."""
    notice = kind in channel_kinds.NOTICE_KINDS
    if not notice and (kind not in INCIDENT_KINDS or incident_id is None):
        return []
    channels = await conn.fetch(_FOR_MONITOR, monitor_id)
    if not channels:
        return []
    if notice:
        return await _notices(
            conn, monitor_id, channels, kind, key, summary, now, details, severity
        )
    facts = await conn.fetchrow(
        _FLOW_OPENING if flow is not None else _OWN, monitor_id, incident_id
    )
    if facts is None:
        return []
    notes = []
    for c in channels:
        dedupe = _key(key, c)
        event = Event(
            id=channel_kinds.event_id(dedupe),
            kind=kind,
            state=channel_kinds.STATE_OF[kind],
            at=iso_ms(now),
            summary=summary,
            monitor=MonitorFacts(
                str(facts["public_id"]),
                facts["name"],
                facts["type"],
                facts["hostname"],
                facts["port"],
            ),
            incident=IncidentFacts(
                str(facts["incident"]),
                iso_ms(facts["started_at"]),
                iso_ms_or_none(facts["ended_at"]),
                facts["cause"],
                facts["cause_kind"],
                list(facts["countries"] or []),
            ),
            console_url=None,  # the sender's PUBLIC_URL: a property of the deployment
            flow=flow,
        )
        notes.append(_outgoing(kind, c, summary, dedupe, event))
    return notes


_FACTS = (
    "SELECT m.public_id, m.name, m.type, m.hostname, m.port, i.public_id AS incident,"
    " i.started_at, i.ended_at, i.cause, i.cause_kind, i.countries"
    " FROM monitors m JOIN incidents i ON i.monitor_id = m.id"
)
# The incident `$2` of the monitor `$1`.
_OWN = _FACTS + " WHERE m.id = $1 AND i.id = $2"
# The outage that opened the flow incident the monitor `$1`'s incident `$2` is part of (its
# first written: an outage joining later names it though it started earlier, and the flow
# incidents merged into it are younger): every notice of the flow incident names the same one,
# the one a first notice told alone as its own named too.
_FLOW_OPENING = (
    _FACTS + " WHERE i.flow_incident_id = (SELECT o.flow_incident_id FROM incidents o"
    "  WHERE o.id = $2 AND o.monitor_id = $1)"
    " ORDER BY i.id LIMIT 1"
)


def _key(key: str, channel: asyncpg.Record) -> str:
    return f"{key}:ch:{channel['id']}"


def _outgoing(kind: str, channel: asyncpg.Record, summary: str, dedupe: str, e: Event) -> Outgoing:
    return Outgoing(
        kind,
        channel["kind"],
        str(channel["public_id"]),
        summary,
        "",
        None,
        dedupe,
        channel_id=channel["id"],
        payload=e,
    )


async def _notices(
    conn: Conn,
    monitor_id: int,
    channels: Sequence[asyncpg.Record],
    kind: str,
    key: str,
    summary: str,
    now: datetime,
    details: str | None,
    severity: str | None,
) -> list[Outgoing]:
    """A notice that is no incident's (channel_kinds.NOTICE_KINDS), one row per channel."""
    m = await conn.fetchrow(
        "SELECT public_id, name, type, hostname, port FROM monitors WHERE id = $1", monitor_id
    )
    if m is None:
        return []
    facts = MonitorFacts(str(m["public_id"]), m["name"], m["type"], m["hostname"], m["port"])
    notes = []
    for c in channels:
        dedupe = _key(key, c)
        event = Event(
            id=channel_kinds.event_id(dedupe),
            kind=kind,
            state="notice",
            at=iso_ms(now),
            summary=summary,
            monitor=facts,
            incident=None,
            console_url=None,
            severity=severity or channel_kinds.NOTICE_SEVERITY,
            details=(details or "")[: channel_kinds.MAX_DETAILS] or None,
        )
        notes.append(_outgoing(kind, c, summary, dedupe, event))
    return notes
