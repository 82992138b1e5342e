"""The readiness DNS budgets as stored (`readiness_budget`, migration 0106): what a planning
batch reads (`load`), the rounds it asked (`reserve`, as their jobs go out) and the queries
their facts reported (`settle`, in the results' transaction). The rule is
controller.sidechecks.readiness.budget's."""

from collections.abc import Sequence
from datetime import datetime

from controller.db.pool import Conn
from controller.sidechecks.frame import Arrived
from controller.sidechecks.readiness.budget import HOUR, Ledger, Spend, hour_of
from shared.messages import CheckJob
from shared.sidechecks.readiness import WIRE, Readiness
from shared.timefmt import parse_iso

_LOAD = """
SELECT organization_id, country, hour, asked, settled, spent
FROM readiness_budget
WHERE organization_id = ANY($1::bigint[]) AND hour >= $2
"""

_RESERVE = """
INSERT INTO readiness_budget AS b (organization_id, country, hour, asked)
SELECT m.organization_id, u.country, u.hour, count(*)
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS u(public_id, country, hour)
JOIN monitors m ON m.public_id = u.public_id
GROUP BY m.organization_id, u.country, u.hour
ORDER BY 1, 2, 3
ON CONFLICT (organization_id, country, hour) DO UPDATE SET asked = b.asked + EXCLUDED.asked
"""

# A round's facts settle once: those of a job already stored (a redelivery) do not.
_SETTLE = """
INSERT INTO readiness_budget AS b (organization_id, country, hour, settled, spent)
SELECT m.organization_id, u.country, u.hour, count(*), sum(u.spent)
FROM (
    SELECT DISTINCT ON (job) * FROM unnest($1::uuid[], $2::uuid[], $3::text[],
        $4::timestamptz[], $5::int[]) AS x(job, public_id, country, hour, spent)
    ORDER BY job
) u
JOIN monitors m ON m.public_id = u.public_id
WHERE NOT EXISTS (SELECT 1 FROM side_readiness s WHERE s.job = u.job)
GROUP BY m.organization_id, u.country, u.hour
ORDER BY 1, 2, 3
ON CONFLICT (organization_id, country, hour) DO UPDATE
SET settled = b.settled + EXCLUDED.settled, spent = b.spent + EXCLUDED.spent
"""

_FORGET = "DELETE FROM readiness_budget WHERE hour < $1"


async def load(conn: Conn, organization_ids: Sequence[int], now: datetime, budget: int) -> Ledger:
    """The budgets of `organization_ids` for the hours a round planned `now` may fall in (a
    late round is counted in its scheduled hour); no statement without any."""
    if not organization_ids:
        return Ledger(budget)
    rows = await conn.fetch(_LOAD, sorted(set(organization_ids)), hour_of(now) - HOUR)
    spends = {
        (r["organization_id"], r["country"], r["hour"]): Spend(r["asked"], r["settled"], r["spent"])
        for r in rows
    }
    return Ledger(budget, spends)


def _domain(job: CheckJob) -> bool:
    ask = WIRE.ask_of(job.side_checks)
    return ask is not None and bool(ask.domain)


async def reserve(conn: Conn, jobs: Sequence[CheckJob], now: datetime) -> None:
    """Count the jobs whose readiness asks a domain as asked, in their scheduled hour; the
    rows of hours a day past are dropped (rows are only added here)."""
    asked = [j for j in jobs if _domain(j)]
    if not asked:
        return  # no statement: a pass without readiness costs nothing here
    await conn.execute(
        _RESERVE,
        [j.monitor_id for j in asked],
        [j.country for j in asked],
        [hour_of(parse_iso(j.scheduled_at)) for j in asked],
    )
    await conn.execute(_FORGET, hour_of(now) - 24 * HOUR)


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
        [hour_of(a.scheduled_at) for a in asked],
        [a.facts.queries for a in asked],
    )
