"""Microsoft Graph calls per mailbox as stored (`api_calls`, migration 0175): each job of a
round over Graph reserves the calls it may make against its organization's mailbox (the
round's account) as admission lets it go, and carries them as `apiCalls`; a job that does not
fit carries 0 and its agent ends it `inconclusive` (throttled, not sent). Which fit is the SQL
function `api_calls_reserve`'s rule alone; refused jobs give theirs back (`release`)."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

import msgspec

from controller.db.pool import Conn
from controller.scheduling.plan import PlannedRound
from controller.settings import SchedulingSettings
from shared.messages import CheckJob, RoundTripCheckJob
from shared.timefmt import parse_iso

WINDOW: Final = timedelta(minutes=10)  # Graph's: 10,000 calls per app and mailbox
MAILBOX_CHECK_CALLS: Final = 2  # the inbox folder, its first page

_RESERVE = "SELECT job_id, calls FROM api_calls_reserve($1::uuid[], $2, $3, $4, $5, $6, $7)"
_RELEASE = "SELECT api_calls_release($1::uuid[])"


def need(job: CheckJob, settings: SchedulingSettings) -> int:
    """The calls a job over Graph may make."""
    if isinstance(job, RoundTripCheckJob):
        return settings.graph_calls_per_round_trip
    return MAILBOX_CHECK_CALLS


async def reserve(
    conn: Conn, rounds: Sequence[PlannedRound], now: datetime, settings: SchedulingSettings
) -> None:
    """Give each job of the rounds over Graph (going now or logging in later) its calls, as
    `api_calls_reserve` decides, keyed by organization and mailbox; one statement a pass, none
    without Graph."""
    jobs = [
        (r, job)
        for r in rounds
        if r.graph and r.account
        for job in [*r.jobs, *(j for _, j in r.deferred)]
    ]
    if not jobs:
        return
    rows = await conn.fetch(
        _RESERVE,
        [job.job_id for _, job in jobs],
        [f"{job.tenant}:{r.account}" for r, job in jobs],
        [parse_iso(job.scheduled_at) for _, job in jobs],
        [need(job, settings) for _, job in jobs],
        settings.graph_calls_per_mailbox,
        WINDOW,
        now,
    )
    given = {str(row["job_id"]): int(row["calls"]) for row in rows}
    for r in {id(r): r for r, _ in jobs}.values():

        def carry(job: CheckJob) -> CheckJob:
            return msgspec.structs.replace(job, api_calls=given.get(str(UUID(job.job_id)), 0))

        r.jobs = [carry(job) for job in r.jobs]
        r.deferred = [(d, carry(job)) for d, job in r.deferred]


async def release(conn: Conn, jobs: Sequence[CheckJob]) -> None:
    """Give back the calls of jobs that will never run (refused by admission)."""
    given = [job.job_id for job in jobs if job.api_calls]
    if given:
        await conn.execute(_RELEASE, given)
