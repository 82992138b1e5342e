"""Deferred jobs: a round's later logins to one account, published when due (the scheduler's
`run_deferred`). The caller owns the transaction."""

from collections.abc import Mapping, Sequence
from datetime import datetime

import msgspec

from controller.db.pool import Conn
from shared.messages import CheckJob, decode_job, encode


async def add(
    conn: Conn,
    monitor_id: int,
    account: str,
    jobs: Sequence[tuple[datetime, CheckJob]],
    after: Mapping[str, datetime] | None = None,
) -> None:
    """Keep `jobs` (publish time, job) of one monitor's round, logins to `account`; a repeat is
    a no-op. `after`: by job id, the round in flight a round trip's look waits for (its
    scheduled time)."""
    awaited = after or {}
    await conn.executemany(
        "INSERT INTO deferred_jobs (job_id, monitor_id, scheduled_at, country, publish_at,"
        " payload, account, after_round)"
        " VALUES ($1, $2, $3::text::timestamptz, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        [
            (
                job.job_id,
                monitor_id,
                job.scheduled_at,
                job.country,
                at,
                encode(job),
                account,
                awaited.get(job.job_id),
            )
            for at, job in jobs
        ],
    )


class DeferredJob(msgspec.Struct, frozen=True):
    """A later login of a monitor's round, due now: `rejected`, whether a login of its round
    was rejected already; `after_round`, the round in flight a look waited for (None: none)."""

    job: CheckJob
    monitor_id: int
    account: str
    rejected: bool
    after_round: datetime | None = None


async def claim(conn: Conn, now: datetime, limit: int) -> list[DeferredJob]:
    """Due deferred jobs, removed (the caller's transaction publishes them or rolls back)."""
    rows = await conn.fetch(
        "DELETE FROM deferred_jobs WHERE job_id IN (SELECT job_id FROM deferred_jobs"
        "   WHERE publish_at <= $1 ORDER BY publish_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " RETURNING monitor_id, payload, account, after_round, EXISTS (SELECT 1"
        "   FROM check_results r WHERE r.monitor_id = deferred_jobs.monitor_id"
        "   AND r.scheduled_at = deferred_jobs.scheduled_at AND r.error_kind = 'auth'"
        "   AND r.hour = date_trunc('hour', deferred_jobs.scheduled_at, 'UTC'))"
        "   AS rejected",
        now,
        limit,
    )
    return [
        DeferredJob(
            decode_job(bytes(r["payload"])),
            r["monitor_id"],
            r["account"],
            r["rejected"],
            r["after_round"],
        )
        for r in rows
    ]
