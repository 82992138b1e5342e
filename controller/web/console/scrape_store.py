"""Scrape tokens (one organization's Prometheus series each) and the rows those series come from."""

from uuid import UUID

import asyncpg

from controller.db.pool import Conn


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


async def latest(conn: Conn, organization_id: int) -> list[asyncpg.Record]:
    """Per monitor of the organization and country it is checked from now: the latest round's
    status and, when it ran, its response time, phases and TLS facts."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT m.public_id, s.country, s.last_status, s.last_scheduled_at,"
        " r.response_time_ms, r.phases, r.tls"
        " FROM monitors m"
        " JOIN monitor_country_state s ON s.monitor_id = m.id AND s.last_job_id <> ''"
        "  AND (coalesce(m.allowed_country_codes, m.round_countries) IS NULL"
        "       OR s.country = ANY(coalesce(m.allowed_country_codes, m.round_countries)))"
        " LEFT JOIN LATERAL (SELECT r.response_time_ms, r.phases, r.tls FROM check_results r"
        "  WHERE r.monitor_id = s.monitor_id AND r.scheduled_at = s.last_scheduled_at"
        "  AND r.hour = date_trunc('hour', s.last_scheduled_at, 'UTC')"
        "  AND r.country = s.country AND r.job_id = s.last_job_id) r ON true"
        " WHERE m.organization_id = $1 ORDER BY m.public_id, s.country",
        organization_id,
    )
    return rows
