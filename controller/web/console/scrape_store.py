"""Scrape tokens (one organization's Prometheus series each) and the rows those series come from."""

from datetime import datetime
from uuid import UUID

import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn


class ScrapeToken(msgspec.Struct, frozen=True):
    """A scrape token as listed (never its hash)."""

    public_id: UUID
    name: str
    created_at: datetime


class ScrapeMonitor(msgspec.Struct, frozen=True):
    """A monitor of a shard: its public id (text), name, kind, customer's name and the
    alerter's state (`judged`, None before it judged a round)."""

    monitor: str
    name: str
    type: str
    customer: str
    judged: str | None


class ScrapeLatest(msgspec.Struct, frozen=True):
    """A monitor's latest round in one country: its status, when it was due (Unix time), its
    response time (ms), its phases (ms by PHASES; None: the result had none, or not asked) and
    its certificate's expiry as the agent wrote it."""

    monitor: str
    country: str
    last_status: str
    due: float
    response_time_ms: float | None
    phases: list[float | None] | None
    not_after: str | None


async def create(conn: Conn, organization_id: int, name: str, digest: bytes) -> None:
    await conn.execute(
        "INSERT INTO scrape_tokens (organization_id, name, token_hash) VALUES ($1, $2, $3)",
        organization_id,
        name,
        digest,
    )


async def of_organization(conn: Conn, organization_id: int) -> list[ScrapeToken]:
    rows = await conn.fetch(
        "SELECT public_id, name, created_at FROM scrape_tokens WHERE organization_id = $1"
        " ORDER BY created_at, id",
        organization_id,
    )
    return typed.many(ScrapeToken, rows)


async def delete(conn: Conn, organization_id: int, public_id: UUID) -> None:
    await conn.execute(
        "DELETE FROM scrape_tokens WHERE organization_id = $1 AND public_id = $2",
        organization_id,
        public_id,
    )


async def organization_for(conn: Conn, digest: bytes) -> int | None:
    org: int | None = await conn.fetchval(
        "SELECT organization_id FROM scrape_tokens WHERE token_hash = $1", digest
    )
    return org


# The phases, in the order the series list them and `monitor_country_state.last_phases_ms`
# keeps them (migration 0037).
PHASES = ("dns", "connect", "tls", "greeting", "auth", "submit", "delivery", "fetch")
# A monitor of the organization in the asked shard: its internal id modulo the shard count.
_IN_SHARD = "m.organization_id = $1 AND m.id % $2 = $3"


def _latest_sql(phases: bool) -> str:
    """Each country's state row of the shard's monitors: the ingester keeps the latest
    round's values on it, so nothing else is read."""
    return (
        "SELECT m.public_id::text AS monitor, s.country, s.last_status,"
        " extract(epoch FROM s.last_scheduled_at)::float8 AS due,"
        " s.last_response_time_ms AS response_time_ms,"
        f"{' s.last_phases_ms AS phases,' if phases else ''}"
        " s.last_cert_not_after AS not_after"
        " FROM monitors m"
        " JOIN monitor_country_state s ON s.monitor_id = m.id AND s.last_job_id <> ''"
        "  AND checked_from(m.allowed_country_codes, m.round_countries, s.country)"
        f" WHERE {_IN_SHARD} ORDER BY m.id, s.country"
    )


_LATEST = {phases: _latest_sql(phases) for phases in (False, True)}


async def monitors(
    conn: Conn, organization_id: int, shard: int, shards: int
) -> list[ScrapeMonitor]:
    """The shard's monitors: public id (text), name, kind, customer and the alerter's state
    (`judged`, None before it judged a round; `paused` for a paused monitor, whatever it was
    last); `console.state_from_rows` of it and the statuses of
    `latest`'s rows is the state shown."""
    rows = await conn.fetch(
        "SELECT m.public_id::text AS monitor, m.name, m.type, c.name AS customer,"
        " CASE WHEN m.status = 'disabled' THEN 'paused' ELSE a.state END AS judged"
        " FROM monitors m JOIN customers c ON c.id = m.customer_id"
        " LEFT JOIN monitor_alert_state a ON a.monitor_id = m.id"
        f" WHERE {_IN_SHARD} ORDER BY m.id",
        organization_id,
        shards,
        shard,
    )
    # Positional, in the columns' order: a scrape reads thousands of rows.
    return [ScrapeMonitor(*r) for r in rows]


async def latest(
    conn: Conn, organization_id: int, shard: int, shards: int, *, phases: bool
) -> list[ScrapeLatest]:
    """Per monitor of the shard and country it is checked from now: the latest round's status,
    when it was due (Unix time) and, when it ran, its response time, its certificate's expiry
    as the agent wrote it and, when asked, its phases (`phases`: ms by PHASES, None where not
    reached; the whole list None when the result had none)."""
    rows = await conn.fetch(_LATEST[phases], organization_id, shards, shard)
    if phases:
        return [ScrapeLatest(m, cc, st, due, ms, ph, na) for m, cc, st, due, ms, ph, na in rows]
    return [ScrapeLatest(m, cc, st, due, ms, None, na) for m, cc, st, due, ms, na in rows]
