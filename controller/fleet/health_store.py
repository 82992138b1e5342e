"""Fleet health storage: each check's health per country as last judged (`fleet_health`), what
the checks read from PostgreSQL (rounds per country, the countries monitors list) and whom a
change is told."""

from datetime import datetime

from controller.db.pool import Conn
from controller.fleet.health import Rounds
from controller.jobs.result_kinds import SATURATED, scheduled_since
from controller.oracles.rules import Stored


async def healths(conn: Conn, *, lock: bool = False) -> dict[tuple[str, str], Stored]:
    """(check, country) → its health as last judged; `lock`: held for the watch's update."""
    rows = await conn.fetch(
        "SELECT check_name, country, state, reason, since, told FROM fleet_health"
        + (" FOR UPDATE" if lock else "")
    )
    return {
        (r["check_name"], r["country"]): Stored(r["state"], r["reason"], r["since"], r["told"])
        for r in rows
    }


async def save(conn: Conn, check: str, country: str, s: Stored) -> None:
    await conn.execute(
        "INSERT INTO fleet_health (check_name, country, state, reason, since, told)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (check_name, country) DO UPDATE"
        " SET state = EXCLUDED.state, reason = EXCLUDED.reason, since = EXCLUDED.since,"
        " told = EXCLUDED.told",
        check,
        country,
        s.state,
        s.reason,
        s.since,
        s.told,
    )


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
