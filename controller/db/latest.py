"""The latest result per country of a monitor, for the monitor's GET.

`monitor_country_state` names each country's latest round (job id and scheduled time, the key of
`check_results`); the join adds what only the stored result knows (response time, end of check).
A round recorded as `no_agent` has neither.
"""

import asyncpg

from controller.db.pool import Conn

_LATEST = """
SELECT s.country, s.last_status, s.last_error_kind, s.last_message, s.last_scheduled_at,
       s.last_job_id, r.response_time_ms, r.finished_at
FROM monitor_country_state s
LEFT JOIN check_results r
    ON r.job_id = s.last_job_id AND r.scheduled_at = s.last_scheduled_at
WHERE s.monitor_id = $1 AND s.last_job_id <> ''
ORDER BY s.country
"""


async def latest_per_country(conn: Conn, monitor_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(_LATEST, monitor_id)
    return rows
