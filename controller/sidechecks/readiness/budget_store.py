"""The readiness DNS budgets as stored (`readiness_budget`, `readiness_turns`, migrations 0106,
0117 and 0126): the rounds a pass asks (`reserve`, as their jobs go out), the reservations of
those that will never run (`release`) and the queries their facts reported (`settle`, in the
results' transaction). Which rounds are asked is the SQL function `readiness_reserve`'s rule
alone (controller.sidechecks.readiness.budget), one statement per pass, under the row locks
of the pass's hours, so replicas planning at once never ask more than the budget between
them; a job settles once by its key in `readiness_settled`."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast
from uuid import UUID

import msgspec

from controller.db.pool import Conn
from controller.settings import SchedulingSettings
from controller.sidechecks.frame import Arrived, Budget
from controller.sidechecks.readiness.budget import Outcome, why_held
from shared.messages import CheckJob
from shared.sidechecks.readiness import QUERIES_MAX, WIRE, Readiness, ReadinessAsk
from shared.timefmt import parse_iso, utc_hour

_RESERVE = """
SELECT job_id, outcome
FROM readiness_reserve($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5, $6, $7, $8)
"""

_RELEASE = "SELECT readiness_release($1::uuid[], $2::text[], $3::timestamptz[])"

# A round's facts settle once, by its job's key in `readiness_settled` (a redelivery, or the
# same result stored by two controllers at once, adds nothing).
_SETTLE = """
WITH u AS (
    SELECT DISTINCT ON (job) * FROM unnest($1::uuid[], $2::uuid[], $3::text[],
        $4::timestamptz[], $5::int[]) AS x(job, public_id, country, hour, spent)
    WHERE NOT EXISTS (SELECT 1 FROM side_readiness s WHERE s.job = x.job)
    ORDER BY job
), fresh AS (
    INSERT INTO readiness_settled (job, hour) SELECT job, hour FROM u
    ON CONFLICT DO NOTHING
    RETURNING job
)
INSERT INTO readiness_budget AS b (organization_id, country, hour, settled, spent)
SELECT m.organization_id, u.country, u.hour, count(*), sum(u.spent)
FROM u JOIN fresh USING (job)
JOIN monitors m ON m.public_id = u.public_id
GROUP BY m.organization_id, u.country, u.hour
ORDER BY 1, 2, 3
ON CONFLICT (organization_id, country, hour) DO UPDATE
SET settled = b.settled + EXCLUDED.settled, spent = b.spent + EXCLUDED.spent
"""


def _domain(job: CheckJob) -> bool:
    ask = WIRE.ask_of(job.side_checks)
    return ask is not None and bool(ask.domain)


async def reserve(
    conn: Conn, jobs: Sequence[CheckJob], now: datetime, budget: int, window: timedelta
) -> dict[str, CheckJob]:
    """Reserve the rounds of the jobs whose readiness asks a domain, each in its scheduled
    hour, as `readiness_reserve` decides (`window`: DNS_POSTURE_INTERVAL_SECONDS, a monitor's
    readiness cadence); return, by job id, the jobs it holds, their readiness held instead
    (asked nothing, saying why). A job whose monitor is gone is held. Rows of hours a day
    before `now` are dropped."""
    asked = [j for j in jobs if _domain(j)]
    if not asked:
        return {}  # no statement: a pass without readiness costs nothing here
    rows = await conn.fetch(
        _RESERVE,
        [j.job_id for j in asked],
        [j.monitor_id for j in asked],
        [j.country for j in asked],
        [parse_iso(j.scheduled_at) for j in asked],
        QUERIES_MAX,
        budget,
        window,
        now,
    )
    outcome = {str(r["job_id"]): cast(Outcome, r["outcome"]) for r in rows}
    out: dict[str, CheckJob] = {}
    for job in asked:
        at = parse_iso(job.scheduled_at)
        why = why_held(outcome.get(str(UUID(job.job_id)), "spent"), budget, job.country, at)
        if why is not None:
            side = {**job.side_checks, WIRE.name: ReadinessAsk(held=why)}
            out[job.job_id] = msgspec.structs.replace(job, side_checks=side)
    return out


async def release(conn: Conn, jobs: Sequence[CheckJob]) -> None:
    """Give back the reservations of jobs that will never run (refused by admission): those
    whose readiness asks a domain, each reserved when its round was planned; their monitors
    wait their turn as if held."""
    given = [j for j in jobs if _domain(j)]
    if not given:
        return
    await conn.execute(
        _RELEASE,
        [j.monitor_id for j in given],
        [j.country for j in given],
        [parse_iso(j.scheduled_at) for j in given],
    )


async def _reserve(
    conn: Conn, jobs: Sequence[CheckJob], now: datetime, settings: SchedulingSettings
) -> dict[str, CheckJob]:
    """`reserve` as admission calls it, of READINESS_QUERIES_PER_HOUR and
    DNS_POSTURE_INTERVAL_SECONDS (a monitor's readiness cadence, its turn's due time)."""
    window = timedelta(seconds=settings.dns_posture_interval_seconds)
    return await reserve(conn, jobs, now, settings.readiness_queries_per_hour, window)


# Readiness's DNS budget as admission takes it (controller.sidechecks.budgets).
BUDGET = Budget(_reserve, release)


async def settle(conn: Conn, arrived: Sequence[Arrived[Readiness]]) -> None:
    """Count the queries of each arrived round that was asked a domain (before its facts'
    rows are written)."""
    asked = [a for a in arrived if a.facts.domain]
    if not asked:
        return
    await conn.execute(
        _SETTLE,
        [a.job_id for a in asked],
        [a.monitor_id for a in asked],
        [a.country for a in asked],
        [utc_hour(a.scheduled_at) for a in asked],
        [a.facts.queries for a in asked],
    )
