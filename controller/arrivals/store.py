"""The arrivals kept (`arrivals`, migration 0143): what the receivers said of each message,
keyed by its arrival id, so one stored twice (a redelivery) is one row. An arrival naming no
monitor of this deployment is not kept; one older than the check history's days goes
(`expire`). The caller owns the transaction."""

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import msgspec

from controller.db.pool import Conn
from controller.db.rows import many
from controller.monitors.store import COLUMNS as MONITOR_COLUMNS
from controller.monitors.store import Monitor
from controller.monitors.store import decode as decode_monitor
from shared.arrivals import LISTENERS, MAILBOX_LISTENER, Arrival
from shared.timefmt import parse_iso

_KEEP = """
INSERT INTO arrivals (arrival_id, monitor_id, country, agent_id, arrived_at, peer, helo,
    mail_from, header_from, subject, tls_version, tls_cipher, size, spf, dkim, dkim_domains,
    dmarc, dmarc_policy, arc, starttls_offered, listener)
SELECT u.arrival_id, m.id, u.country, u.agent_id, u.arrived_at, u.peer, u.helo, u.mail_from,
    u.header_from, u.subject, u.tls_version, u.tls_cipher, u.size, u.spf, u.dkim,
    string_to_array(u.dkim_domains, ' '), u.dmarc, u.dmarc_policy, u.arc, u.starttls_offered,
    u.listener
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int[],
    $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::bool[],
    $21::text[])
    AS u(arrival_id, public_id, country, agent_id, arrived_at, peer, helo, mail_from,
         header_from, subject, tls_version, tls_cipher, size, spf, dkim, dkim_domains, dmarc,
         dmarc_policy, arc, starttls_offered, listener)
JOIN monitors m ON m.public_id = u.public_id
ON CONFLICT (arrival_id) DO NOTHING
RETURNING monitor_id
"""

_SINCE = """
SELECT arrived_at, country, peer, mail_from, header_from, subject, tls_version,
    starttls_offered, spf, dkim, dmarc, arc
FROM arrivals WHERE monitor_id = $1 AND arrived_at > $2 AND arrived_at <= $3
ORDER BY arrived_at
"""


# The test twin an arrival reached ('' for the address's own port): its listener, or for an
# agent that predates `listener`, 'plain' where no STARTTLS was offered.
_TWIN = (
    "CASE WHEN {a}.listener <> '' THEN {a}.listener WHEN {a}.starttls_offered = false"
    " THEN 'plain' ELSE '' END"
)

# What grading reads of a monitor: its newest `GRADED_ROWS` arrivals a receiver took (the
# arrivals' index walked backwards), so a pass costs the same however long the history kept;
# mail read from a mailbox says nothing of how it was sent to mailprobe.
GRADED_ROWS = 500
_RECENT = f"""
WITH recent AS (
    SELECT r.* FROM unnest($1::bigint[]) AS m(id) CROSS JOIN LATERAL (
        SELECT a.monitor_id, a.country, a.arrived_at, a.tls_version, a.starttls_offered,
            a.dkim, a.dmarc, {_TWIN.format(a="a")} AS twin
        FROM arrivals a WHERE a.monitor_id = m.id AND a.listener <> '{MAILBOX_LISTENER}'
        ORDER BY a.arrived_at DESC LIMIT {GRADED_ROWS}
    ) AS r
)
"""

# Per monitor and receiving country, the newest verdicts grading reads (grading.Latest) at the
# address's own port.
_LATEST = (
    _RECENT
    + """
SELECT c.monitor_id, c.country,
    (SELECT coalesce(n.tls_version, '') FROM recent n
        WHERE n.monitor_id = c.monitor_id AND n.country = c.country AND n.starttls_offered
        AND n.twin = '' ORDER BY n.arrived_at DESC LIMIT 1) AS normal_tls,
    (SELECT d.dkim FROM recent d
        WHERE d.monitor_id = c.monitor_id AND d.country = c.country AND d.dkim IS NOT NULL
        ORDER BY d.arrived_at DESC LIMIT 1) AS dkim,
    (SELECT d.dmarc FROM recent d
        WHERE d.monitor_id = c.monitor_id AND d.country = c.country AND d.dmarc IS NOT NULL
        ORDER BY d.arrived_at DESC LIMIT 1) AS dmarc
FROM (SELECT DISTINCT monitor_id, country FROM recent) AS c
ORDER BY c.monitor_id, c.country
"""
)

# Per monitor, receiving country and test twin: when the twin last took its mail, and the
# newest arrival over TLS at the address's own port at least `settle` old with no arrival at
# that twin within `settle` of it (a twin is looked for in every country: one message's
# deliveries may reach two countries' receivers).
_TWINS = (
    _RECENT
    + """
SELECT c.monitor_id, c.country, t.twin,
    (SELECT max(p.arrived_at) FROM recent p
        WHERE p.monitor_id = c.monitor_id AND p.country = c.country AND p.twin = t.twin) AS at,
    (SELECT max(n.arrived_at) FROM recent n
        WHERE n.monitor_id = c.monitor_id AND n.country = c.country AND n.starttls_offered
        AND n.twin = '' AND n.tls_version IS NOT NULL
        AND n.arrived_at <= $2::timestamptz - $3::interval
        AND NOT EXISTS (SELECT 1 FROM recent p
            WHERE p.monitor_id = n.monitor_id AND p.twin = t.twin
            AND p.arrived_at BETWEEN n.arrived_at - $3::interval AND n.arrived_at + $3::interval)
    ) AS refused_at
FROM (SELECT DISTINCT monitor_id, country FROM recent) AS c
CROSS JOIN unnest($4::text[]) AS t(twin)
ORDER BY c.monitor_id, c.country, t.twin
"""
)


_EXPIRE = """
DELETE FROM arrivals WHERE arrival_id IN (
    SELECT arrival_id FROM arrivals WHERE arrived_at < $1 LIMIT $2
)
"""


class ArrivalRow(msgspec.Struct, frozen=True, kw_only=True):
    arrived_at: datetime
    country: str
    peer: str
    mail_from: str
    header_from: str
    subject: str
    tls_version: str | None
    starttls_offered: bool | None
    spf: str | None
    dkim: str | None
    dmarc: str | None
    arc: str | None


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _text(value: str) -> str:
    """What PostgreSQL's text takes: no NUL (the agent cut and cleaned the rest)."""
    return value.replace("\x00", "")


async def keep(conn: Conn, arrivals: Sequence[Arrival]) -> list[int]:
    """Store `arrivals` (those naming a monitor of this deployment, each once); the monitor id
    of each new one."""
    rows = [
        (a, aid, mid)
        for a in arrivals
        if (aid := _uuid(a.arrival_id)) is not None and (mid := _uuid(a.monitor_id)) is not None
    ]
    if not rows:
        return []
    columns: list[list[object]] = [[] for _ in range(21)]
    for a, aid, mid in rows:
        v = a.verdicts
        values: tuple[object, ...] = (
            aid,
            mid,
            _text(a.country),
            _text(a.agent_id),
            parse_iso(a.arrived_at),
            _text(a.peer),
            _text(a.helo),
            _text(a.mail_from),
            _text(a.header_from),
            _text(a.subject),
            a.tls_version,
            a.tls_cipher,
            a.size,
            v.spf,
            v.dkim,
            " ".join(v.dkim_domains),
            v.dmarc,
            v.dmarc_policy,
            v.arc,
            a.starttls_offered,
            a.listener if a.listener in (*LISTENERS, MAILBOX_LISTENER) else "",
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return [r["monitor_id"] for r in await conn.fetch(_KEEP, *columns)]


async def between(conn: Conn, monitor_id: int, after: datetime, upto: datetime) -> list[ArrivalRow]:
    """The monitor's arrivals after `after` and up to `upto`, oldest first."""
    return many(ArrivalRow, await conn.fetch(_SINCE, monitor_id, after, upto))


class GradedMonitor(NamedTuple):
    monitor: Monitor
    alert_state: str


class LatestRow(msgspec.Struct, frozen=True, kw_only=True):
    """grading.Latest's newest verdicts of one monitor and receiving country."""

    monitor_id: int
    country: str
    normal_tls: str | None
    dkim: str | None
    dmarc: str | None


class TwinRow(msgspec.Struct, frozen=True, kw_only=True):
    """grading.Twin of one monitor, receiving country and test twin."""

    monitor_id: int
    country: str
    twin: str
    at: datetime | None
    refused_at: datetime | None


async def latest(conn: Conn, monitor_ids: Sequence[int]) -> list[LatestRow]:
    """The newest verdicts grading reads of each of `monitor_ids`' receiving countries (among
    each monitor's newest `GRADED_ROWS` arrivals)."""
    return many(LatestRow, await conn.fetch(_LATEST, sorted(set(monitor_ids))))


async def twins(
    conn: Conn, monitor_ids: Sequence[int], now: datetime, settle: timedelta
) -> list[TwinRow]:
    """Each test twin's last arrival and last refusal seen, per monitor and country, at `now`
    (among each monitor's newest `GRADED_ROWS` arrivals)."""
    rows = await conn.fetch(_TWINS, sorted(set(monitor_ids)), now, settle, list(LISTENERS))
    return many(TwinRow, rows)


async def expire(conn: Conn, before: datetime, most: int = 10_000) -> int:
    """Delete at most `most` arrivals older than `before`; how many went."""
    status = await conn.execute(_EXPIRE, before, most)
    return int(status.rsplit(" ", 1)[-1])


async def lock_grading(conn: Conn, monitor_ids: Sequence[int]) -> None:
    """One grader of each of `monitor_ids` at a time (two intake replicas), in id order."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('sender_grading'), m::int)"
        " FROM unnest($1::bigint[]) AS m ORDER BY m",
        sorted(set(monitor_ids)),
    )


async def graded_monitors(conn: Conn, monitor_ids: Sequence[int]) -> list[GradedMonitor]:
    """`monitor_ids` as monitors, with their alert state ('unknown' before the first verdict)."""
    rows = await conn.fetch(
        f"SELECT {MONITOR_COLUMNS}, coalesce((SELECT a.state FROM monitor_alert_state a"
        " WHERE a.monitor_id = monitors.id), 'unknown') AS alert_state FROM monitors"
        " WHERE id = ANY($1::bigint[]) ORDER BY id",
        sorted(set(monitor_ids)),
    )
    return [GradedMonitor(decode_monitor(r), r["alert_state"]) for r in rows]
