"""A monitor with its latest result per country, for the monitor's GET, in one round trip.

`monitor_country_state` names each country's latest round (job id and scheduled time, the key of
`check_results`); the join adds what only the stored result knows (response time, end of check).
A round recorded as `no_agent` has neither. Only the countries the monitor is checked from now
are shown (the listed ones, or those of its latest round), not ones it was moved away from.
"""

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec

from controller.db.pool import Conn
from controller.monitors.store import COLUMNS, Monitor, decode

_GET = f"""
SELECT m.*, s.country, s.last_status, s.last_error_kind, s.last_message, s.last_scheduled_at,
       s.last_job_id, r.response_time_ms, r.finished_at
FROM (SELECT {COLUMNS}, round_countries
      FROM monitors
      WHERE public_id = $1 AND type = ANY($2::text[])
        AND ($3::bigint IS NULL OR organization_id = $3)) m
LEFT JOIN monitor_country_state s ON s.monitor_id = m.id AND s.last_job_id <> ''
    AND checked_from(m.allowed_country_codes, m.round_countries, s.country)
-- LIMIT keeps the subquery a subquery: one index lookup per country (pulled up into the join,
-- its conditions would no longer reach the indexes of the view's relations)
LEFT JOIN LATERAL (SELECT r.response_time_ms, r.finished_at FROM check_results r
    WHERE r.monitor_id = s.monitor_id AND r.scheduled_at = s.last_scheduled_at
    AND r.hour = date_trunc('hour', s.last_scheduled_at, 'UTC')
    AND r.country = s.country AND r.job_id = s.last_job_id LIMIT 1) r ON true
ORDER BY s.country
"""


class LatestRound(msgspec.Struct, kw_only=True, frozen=True):
    """A country's latest round of a monitor (`response_time_ms` and `finished_at`: None when
    it did not run)."""

    country: str
    last_status: str
    last_error_kind: str | None
    last_message: str
    last_scheduled_at: datetime
    last_job_id: str
    response_time_ms: float | None
    finished_at: datetime | None


def _latest(row: asyncpg.Record) -> LatestRound:
    return LatestRound(**{name: row[name] for name in LatestRound.__struct_fields__})


async def monitor_with_latest(
    conn: Conn, public_id: UUID, types: Sequence[str], organization_id: int | None
) -> tuple[Monitor, list[LatestRound]] | None:
    """The monitor (as `monitors.get` has it) and its countries' latest rounds, in country
    order; None when no such monitor is visible."""
    rows = await conn.fetch(_GET, public_id, types, organization_id)
    if not rows:
        return None
    return decode(rows[0]), [_latest(r) for r in rows if r["country"] is not None]
