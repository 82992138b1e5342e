"""The readiness DNS budgets as stored (`readiness_budget`, migrations 0106 and 0117): what a
planning batch reads (`load`), the rounds it asked (`reserve`, as their jobs go out) and the
queries their facts reported (`settle`, in the results' transaction). The rule is
controller.sidechecks.readiness.budget's; what is reserved is decided by the SQL function
`readiness_reserve` under the hour's row lock, so replicas planning at once never ask more
than the budget between them, and a job settles once by its key in `readiness_settled`."""

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

import msgspec

from controller.db.pool import Conn
from controller.sidechecks.frame import Arrived
from controller.sidechecks.readiness.budget import HOUR, Key, Ledger, Spend, hour_of, spent
from shared.messages import CheckJob
from shared.sidechecks.readiness import QUERIES_MAX, WIRE, Readiness, ReadinessAsk
from shared.timefmt import parse_iso

_LOAD = """
SELECT organization_id, country, hour, asked, settled, spent
FROM readiness_budget
WHERE organization_id = ANY($1::bigint[]) AND hour >= $2
"""

# One organization's country and hour at a time, in key order: replicas reserving several
# lock their rows in one order, never each other's.
_RESERVE = "SELECT readiness_reserve($1, $2, $3, $4, $5, $6)"

_ORGS = "SELECT public_id, organization_id FROM monitors WHERE public_id = ANY($1::uuid[])"

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

# Rounds reserved that will never run give their reservation back (never below what settled).
_RELEASE = """
UPDATE readiness_budget SET asked = GREATEST(asked - $4, settled)
WHERE organization_id = $1 AND country = $2 AND hour = $3
"""

_FORGET = "DELETE FROM readiness_budget WHERE hour < $1"
_FORGET_SETTLED = "DELETE FROM readiness_settled WHERE hour < $1"


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


async def reserve(
    conn: Conn, jobs: Sequence[CheckJob], now: datetime, budget: int
) -> dict[str, CheckJob]:
    """Reserve the rounds of the jobs whose readiness asks a domain, in their scheduled hour,
    as far as `budget` leaves room (`readiness_reserve`, one key at a time in key order, its
    jobs in order); return, by job id, the jobs that found none, their readiness held instead
    (asked nothing, saying why). The rows of hours a day past are dropped."""
    asked = [j for j in jobs if _domain(j)]
    if not asked:
        return {}  # no statement: a pass without readiness costs nothing here
    keys = await _keys(conn, asked)
    got: dict[Key, int] = {}
    for wanted, n in sorted(Counter(k for k in keys if k is not None).items()):
        got[wanted] = await conn.fetchval(_RESERVE, *wanted, n, QUERIES_MAX, budget)
    out: dict[str, CheckJob] = {}
    for job, key in zip(asked, keys, strict=True):
        if key is not None and got.get(key, 0) > 0:
            got[key] -= 1
            continue
        why = spent(budget, job.country, parse_iso(job.scheduled_at))
        side = {**job.side_checks, WIRE.name: ReadinessAsk(held=why)}
        out[job.job_id] = msgspec.structs.replace(job, side_checks=side)
    await conn.execute(_FORGET, hour_of(now) - 24 * HOUR)
    await conn.execute(_FORGET_SETTLED, hour_of(now) - 24 * HOUR)
    return out


async def release(conn: Conn, jobs: Sequence[CheckJob]) -> None:
    """Give back the reservations of jobs that will never run (refused by admission): those
    whose readiness asks a domain, each reserved when its round was planned."""
    given = [j for j in jobs if _domain(j)]
    if not given:
        return
    keys = await _keys(conn, given)
    for given_back, n in sorted(Counter(k for k in keys if k is not None).items()):
        await conn.execute(_RELEASE, *given_back, n)


async def _keys(conn: Conn, jobs: Sequence[CheckJob]) -> list[Key | None]:
    """Each job's organization, country and scheduled hour (None: its monitor is gone)."""
    ids = [j.monitor_id for j in jobs]
    orgs = {str(r["public_id"]): r["organization_id"] for r in await conn.fetch(_ORGS, ids)}
    return [
        (org, j.country, hour_of(parse_iso(j.scheduled_at)))
        if (org := orgs.get(str(j.monitor_id))) is not None
        else None
        for j in jobs
    ]


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
