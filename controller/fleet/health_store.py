"""Fleet health storage: the table of each check's health per country as last judged
(`fleet_health`, read and written by controller.operator_health.store), what the checks read
from PostgreSQL (rounds per country, the countries monitors list) and whom a change is told."""

from datetime import datetime
from typing import Final

from controller.db.pool import Conn
from controller.fleet.health import Rounds
from controller.jobs.result_kinds import SATURATED, scheduled_since
from controller.operator_health.store import Table

HEALTH: Final = Table("fleet_health", "check_name")


async def rounds(conn: Conn, since: datetime) -> dict[str, Rounds]:
    """Country → its rounds scheduled since `since`, and those recorded `saturated`."""
    rows = await conn.fetch(
        "SELECT country, count(*) AS total,"
        " count(*) FILTER (WHERE status = 'missed' AND error_kind = $2) AS saturated"
        f" FROM check_results WHERE scheduled_at >= $1 AND {scheduled_since('$1::timestamptz')}"
        " GROUP BY country",
        since,
        SATURATED,
    )
    return {r["country"]: Rounds(r["total"], r["saturated"]) for r in rows if r["country"]}


async def listed_countries(conn: Conn) -> frozenset[str]:
    """The countries enabled monitors list (`allowed_country_codes`)."""
    rows = await conn.fetch(
        "SELECT DISTINCT unnest(allowed_country_codes) AS cc FROM monitors"
        " WHERE status <> 'disabled' AND allowed_country_codes IS NOT NULL"
    )
    return frozenset(r["cc"] for r in rows)


async def affected_organizations(conn: Conn, country: str) -> list[int]:
    """The organizations with enabled monitors that may run in `country` (those listing it, and
    those listing none), as the oracles' resolver notices."""
    rows = await conn.fetch(
        "SELECT DISTINCT organization_id FROM monitors WHERE status <> 'disabled'"
        " AND (allowed_country_codes IS NULL OR $1 = ANY(allowed_country_codes))"
        " ORDER BY organization_id",
        country,
    )
    return [r["organization_id"] for r in rows]
