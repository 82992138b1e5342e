"""The arrivals kept (`arrivals`, migration 0143): what the receivers said of each message,
keyed by its arrival id, so one stored twice (a redelivery) is one row. An arrival naming no
monitor of this deployment is not kept; one older than the check history's days goes
(`expire`). The caller owns the transaction."""

import uuid
from collections.abc import Sequence
from datetime import datetime

import msgspec

from controller.db.pool import Conn
from controller.db.rows import many
from shared.arrivals import Arrival
from shared.timefmt import parse_iso

_KEEP = """
INSERT INTO arrivals (arrival_id, monitor_id, country, agent_id, arrived_at, peer, helo,
    mail_from, header_from, subject, tls_version, tls_cipher, size, spf, dkim, dkim_domains,
    dmarc, dmarc_policy, arc, starttls_offered)
SELECT u.arrival_id, m.id, u.country, u.agent_id, u.arrived_at, u.peer, u.helo, u.mail_from,
    u.header_from, u.subject, u.tls_version, u.tls_cipher, u.size, u.spf, u.dkim,
    string_to_array(u.dkim_domains, ' '), u.dmarc, u.dmarc_policy, u.arc, u.starttls_offered
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int[],
    $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::bool[])
    AS u(arrival_id, public_id, country, agent_id, arrived_at, peer, helo, mail_from,
         header_from, subject, tls_version, tls_cipher, size, spf, dkim, dkim_domains, dmarc,
         dmarc_policy, arc, starttls_offered)
JOIN monitors m ON m.public_id = u.public_id
ON CONFLICT (arrival_id) DO NOTHING
"""

_SINCE = """
SELECT arrived_at, country, peer, mail_from, header_from, subject, tls_version,
    starttls_offered, spf, dkim, dmarc, arc
FROM arrivals WHERE monitor_id = $1 AND arrived_at > $2 AND arrived_at <= $3
ORDER BY arrived_at
"""


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


async def keep(conn: Conn, arrivals: Sequence[Arrival]) -> int:
    """Store `arrivals` (those naming a monitor of this deployment, each once); how many new."""
    rows = [
        (a, aid, mid)
        for a in arrivals
        if (aid := _uuid(a.arrival_id)) is not None and (mid := _uuid(a.monitor_id)) is not None
    ]
    if not rows:
        return 0
    columns: list[list[object]] = [[] for _ in range(20)]
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
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    status = await conn.execute(_KEEP, *columns)
    return int(status.rsplit(" ", 1)[-1])


async def between(conn: Conn, monitor_id: int, after: datetime, upto: datetime) -> list[ArrivalRow]:
    """The monitor's arrivals after `after` and up to `upto`, oldest first."""
    return many(ArrivalRow, await conn.fetch(_SINCE, monitor_id, after, upto))


async def expire(conn: Conn, before: datetime, most: int = 10_000) -> int:
    """Delete at most `most` arrivals older than `before`; how many went."""
    status = await conn.execute(_EXPIRE, before, most)
    return int(status.rsplit(" ", 1)[-1])
