"""Scrape tokens (one organization's Prometheus series each) and the rows those series come from."""

from uuid import UUID

import asyncpg

from controller.db.pool import Conn
from controller.web.console import store as console


async def create(conn: Conn, organization_id: int, name: str, digest: bytes) -> None:
    await conn.execute(
        "INSERT INTO scrape_tokens (organization_id, name, token_hash) VALUES ($1, $2, $3)",
        organization_id,
        name,
        digest,
    )


async def of_organization(conn: Conn, organization_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT public_id, name, created_at FROM scrape_tokens WHERE organization_id = $1"
        " ORDER BY created_at, id",
        organization_id,
    )
    return rows


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


# The wire's phase keys, in the order the series list them; the first five are a compact row's
# columns (`<phase>_us`: microseconds, -1 when not reached), every one may be in a full row's
# `phases` (`<phase>Ms`).
PHASES = ("dns", "connect", "tls", "greeting", "auth", "submit", "delivery", "fetch")
COMPACT_PHASES = PHASES[:5]
# A monitor of the organization in the asked shard: its internal id modulo the shard count.
_IN_SHARD = "m.organization_id = $1 AND m.id % $2 = $3"
_UUID = "'^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$'"


def _latest_sql(phases: bool) -> str:
    """The latest result of each (monitor, country) of the shard, looked up by its key in the
    open rows (`result_rows`, the full row it points at in `result_details`); only a result
    of an hour already packed is read through `check_results`."""
    phase_columns = (
        ", CASE WHEN r.detail_ms IS NULL THEN coalesce(d.phases, p.phases) END AS phases"
        + "".join(f", r.{p}_us" for p in COMPACT_PHASES)
        if phases
        else ""
    )
    return (
        "SELECT m.public_id::text AS monitor, s.country, s.last_status,"
        " extract(epoch FROM s.last_scheduled_at)::float8 AS due,"
        " coalesce(r.response_time_ms, p.response_time_ms) AS response_time_ms"
        f"{phase_columns}, coalesce(d.tls, p.tls)->>'certNotAfter' AS not_after"
        " FROM monitors m"
        " JOIN monitor_country_state s ON s.monitor_id = m.id AND s.last_job_id <> ''"
        "  AND (coalesce(m.allowed_country_codes, m.round_countries) IS NULL"
        "       OR s.country = ANY(coalesce(m.allowed_country_codes, m.round_countries)))"
        " LEFT JOIN result_rows r ON r.monitor_id = s.monitor_id"
        "  AND r.scheduled_at = s.last_scheduled_at AND r.country = result_country_code(s.country)"
        f"  AND r.tag = CASE WHEN s.last_job_id ~* {_UUID}"
        "   THEN result_tag(s.last_job_id::uuid) END"
        "  AND r.job::text = lower(s.last_job_id)"
        " LEFT JOIN result_details d ON d.monitor_id = r.monitor_id AND d.country = r.country"
        "  AND d.scheduled_at = r.scheduled_at - coalesce(r.detail_ms, 0) * interval '1 ms'"
        "  AND d.tag = CASE WHEN r.detail_ms IS NULL THEN r.tag ELSE r.ref_tag END"
        " LEFT JOIN LATERAL (SELECT c.response_time_ms, c.phases, c.tls FROM check_results c"
        "  WHERE r.monitor_id IS NULL AND c.monitor_id = s.monitor_id"
        "  AND c.scheduled_at = s.last_scheduled_at"
        "  AND c.hour = date_trunc('hour', s.last_scheduled_at, 'UTC')"
        "  AND c.country = s.country AND c.job_id = s.last_job_id LIMIT 1) p ON true"
        f" WHERE {_IN_SHARD} ORDER BY m.id, s.country"
    )


_LATEST = {phases: _latest_sql(phases) for phases in (False, True)}


async def monitors(
    conn: Conn, organization_id: int, shard: int, shards: int
) -> list[asyncpg.Record]:
    """The shard's monitors: public id (text), name, kind, customer and shown state."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT m.public_id::text AS monitor, m.name, m.type, c.name AS customer,"
        f" {console.STATE} AS state"
        " FROM monitors m JOIN customers c ON c.id = m.customer_id"
        f" {console.STATE_JOINS}"
        f" WHERE {_IN_SHARD} ORDER BY m.id",
        organization_id,
        shards,
        shard,
    )
    return rows


async def latest(
    conn: Conn, organization_id: int, shard: int, shards: int, *, phases: bool
) -> list[asyncpg.Record]:
    """Per monitor of the shard and country it is checked from now: the latest round's status,
    when it was due (Unix time) and, when it ran, its response time, its certificate's expiry
    as the agent wrote it and, when asked, its phases: a full (or packed) row's `phases`, else
    a compact row's `<phase>_us` columns (`phase_ms` reads either)."""
    rows: list[asyncpg.Record] = await conn.fetch(_LATEST[phases], organization_id, shards, shard)
    return rows


def phase_ms(row: asyncpg.Record) -> list[float | None]:
    """The phases (ms, by `PHASES`) of a `latest(..., phases=True)` row; None where not reached
    or not a number."""
    full = row["phases"]
    if isinstance(full, dict):
        return [v if type(v) in _NUMBERS else None for v in map(full.get, _PHASE_KEYS)]
    compact = [row[c] for c in _COMPACT_COLUMNS]
    return [None if us is None or us < 0 else us / 1000 for us in compact] + _NOT_COMPACT


_PHASE_KEYS = tuple(f"{p}Ms" for p in PHASES)
_COMPACT_COLUMNS = tuple(f"{p}_us" for p in COMPACT_PHASES)
_NOT_COMPACT: list[float | None] = [None] * (len(PHASES) - len(COMPACT_PHASES))
_NUMBERS = (int, float)  # not bool, a subclass of int
