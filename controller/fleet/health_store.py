"""Fleet health storage: the table of each check's health per country as last judged
(`fleet_health`, read and written by controller.operator_health.store), what the checks read
from PostgreSQL (rounds per country, the countries monitors list) and whom a change is told."""

from datetime import datetime
from typing import Final

from controller.db.pool import Conn
from controller.fleet.health import Rounds, served
from controller.jobs.result_kinds import SATURATED, scheduled_since
from controller.operator_health.store import Table, healths

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


async def affected_organizations(conn: Conn, country: str, served: bool) -> list[int]:
    """The organizations told of `country`'s fleet: those whose enabled monitors list it, and,
    when the fleet serves it (`served`: `health.served`), those whose monitors list no country
    (they run wherever an agent is). A country only a tenant lists is told to no one else."""
    rows = await conn.fetch(
        "SELECT DISTINCT organization_id FROM monitors WHERE status <> 'disabled'"
        " AND ($1 = ANY(allowed_country_codes) OR ($2 AND allowed_country_codes IS NULL))"
        " ORDER BY organization_id",
        country,
        served,
    )
    return [r["organization_id"] for r in rows]


async def organization_countries(
    conn: Conn, organization_id: int, served: frozenset[str]
) -> frozenset[str]:
    """The countries whose fleet `organization_id` is told of (`affected_organizations`'
    rule from the other side): those its enabled monitors list, and every `served` one when
    one of them lists none."""
    row = await conn.fetchrow(
        "SELECT coalesce(array_agg(DISTINCT cc) FILTER (WHERE cc IS NOT NULL), '{}') AS listed,"
        " bool_or(allowed_country_codes IS NULL) AS everywhere"
        " FROM monitors LEFT JOIN LATERAL unnest(allowed_country_codes) AS cc ON true"
        " WHERE organization_id = $1 AND status <> 'disabled'",
        organization_id,
    )
    listed = frozenset(row["listed"]) if row is not None else frozenset()
    everywhere = bool(row is not None and row["everywhere"])
    return listed | served if everywhere else listed


async def countries_of(conn: Conn, organization_id: int, at: datetime) -> frozenset[str]:
    """The countries an organization's owners are told of, and so read, of the fleet and the
    oracles (`organization_countries`, with the countries the fleet serves at `at`)."""
    return await organization_countries(
        conn, organization_id, served(await healths(conn, HEALTH), at)
    )
