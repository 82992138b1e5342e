"""A monitor with its latest result per country, for the monitor's GET, in one round trip.

`monitor_country_state` names each country's latest round (job id and scheduled time, the key of
`check_results`); the join adds what only the stored result knows (response time, end of check).
A round recorded as `no_agent` has neither. Only the countries the monitor is checked from now
are shown (the listed ones, or those of its latest round), not ones it was moved away from.
"""

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from controller.db.pool import Conn
from controller.monitors.store import COLUMNS

_GET = f"""
SELECT m.*, s.country, s.last_status, s.last_error_kind, s.last_message, s.last_scheduled_at,
       s.last_job_id, r.response_time_ms, r.finished_at
FROM (SELECT {COLUMNS}, coalesce(allowed_country_codes, round_countries) AS checked_from
      FROM monitors
      WHERE public_id = $1 AND type = ANY($2::text[])
        AND ($3::bigint IS NULL OR organization_id = $3)) m
LEFT JOIN monitor_country_state s ON s.monitor_id = m.id AND s.last_job_id <> ''
    AND (m.checked_from IS NULL OR s.country = ANY(m.checked_from))
LEFT JOIN check_results r ON r.job_id = s.last_job_id AND r.scheduled_at = s.last_scheduled_at
ORDER BY s.country
"""


async def monitor_with_latest(
    conn: Conn, public_id: UUID, types: Sequence[str], organization_id: int | None
) -> tuple[asyncpg.Record, list[asyncpg.Record]] | None:
    """The monitor's row (as `monitors.get` has it) and its countries' latest rounds, in country
    order; None when no such monitor is visible. Every record holds both column sets."""
    rows = await conn.fetch(_GET, public_id, types, organization_id)
    if not rows:
        return None
    return rows[0], [r for r in rows if r["country"] is not None]
