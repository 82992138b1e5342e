"""Mailbox API calls as stored (`api_calls`): each job over Microsoft Graph or the Gmail API
reserves what it may spend on each mailbox it calls (a round trip's sending and reading
mailboxes both), keyed by organization and mailbox, as admission lets it go. Graph counts
calls (10,000 per app and mailbox in 10 minutes), Gmail quota units (per user and minute).
A job carries its Graph calls as `apiCalls` and its Gmail units as `apiUnits`; a job that does
not fit on every mailbox carries 0 of both and its agent ends it `inconclusive` (throttled,
not sent). Which fit is the SQL function `api_calls_reserve`'s rule alone; refused jobs give
theirs back (`release`)."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, NamedTuple
from uuid import UUID

import msgspec

from controller.db.pool import Conn
from controller.monitors.mailbox_apis import GMAIL, GRAPH, Charge
from controller.scheduling.plan import PlannedRound
from controller.settings import SchedulingSettings
from shared import gmail_units
from shared.messages import CheckJob
from shared.timefmt import parse_iso

WINDOW: Final = timedelta(minutes=10)  # Graph's: 10,000 calls per app and mailbox
GMAIL_WINDOW: Final = timedelta(minutes=1)  # Gmail's: quota units per user and minute
MAILBOX_CHECK_CALLS: Final = 2  # the inbox folder, its first page
GRAPH_SEND_CALLS: Final = 1  # sendMail

_RESERVE = "SELECT job_id, calls FROM api_calls_reserve($1::uuid[], $2, $3, $4, $5, $6, $7)"
_RELEASE = "SELECT api_calls_release($1::uuid[])"


class Limit(NamedTuple):
    budget: int  # per mailbox and window
    window: timedelta


def need(charge: Charge, settings: SchedulingSettings) -> int:
    """What a job may spend on one mailbox it calls: Graph calls, or Gmail quota units. A
    round trip's whole allowance is its send leg's plus its mailbox leg's."""
    if charge.part == "look":  # a side check's read of the mailbox: what it declared
        return charge.amount
    if charge.api == GMAIL:
        if charge.part == "check":
            return gmail_units.MAILBOX_CHECK
        if charge.part == "send":
            return gmail_units.SEND
        return settings.gmail_units_per_round_trip - gmail_units.SEND
    if charge.part == "check":
        return MAILBOX_CHECK_CALLS
    if charge.part == "send":
        return GRAPH_SEND_CALLS
    return settings.graph_calls_per_round_trip - GRAPH_SEND_CALLS


def limit(api: str, settings: SchedulingSettings) -> Limit:
    if api == GMAIL:
        return Limit(settings.gmail_units_per_user, GMAIL_WINDOW)
    return Limit(settings.graph_calls_per_mailbox, WINDOW)


async def reserve(
    conn: Conn, rounds: Sequence[PlannedRound], now: datetime, settings: SchedulingSettings
) -> None:
    """Give each job of the rounds over an API (going now or logging in later) what it may
    spend on each mailbox it calls, as `api_calls_reserve` decides, all or nothing: a job
    refused on one mailbox gives back what another gave it. One statement a pass per API
    used, none without."""
    wants: dict[str, dict[tuple[str, str], tuple[datetime, int]]] = {GRAPH: {}, GMAIL: {}}
    for r in rounds:
        for job in [*r.jobs, *(j for _, j in r.deferred)]:
            for charge in r.api_charges:
                key = (job.job_id, f"{job.tenant}:{charge.mailbox}")
                at, before = wants[charge.api].get(key, (parse_iso(job.scheduled_at), 0))
                wants[charge.api][key] = (at, before + need(charge, settings))
    if not wants[GRAPH] and not wants[GMAIL]:
        return
    given: dict[str, dict[str, int]] = {GRAPH: {}, GMAIL: {}}
    refused: set[str] = set()
    for api, rows in wants.items():
        if not rows:
            continue
        budget, window = limit(api, settings)
        answers = await conn.fetch(
            _RESERVE,
            [job for job, _ in rows],
            [box for _, box in rows],
            [at for at, _ in rows.values()],
            [n for _, n in rows.values()],
            budget,
            window,
            now,
        )
        for row in answers:
            job_id = str(row["job_id"])
            if row["calls"]:
                given[api][job_id] = int(row["calls"])
            else:
                refused.add(job_id)
    back = [j for j in refused if j in given[GRAPH] or j in given[GMAIL]]
    if back:
        await conn.execute(_RELEASE, back)
    for r in rounds:
        apis = {c.api for c in r.api_charges}
        if not apis:
            continue

        def carry(job: CheckJob, apis: set[str] = apis) -> CheckJob:
            job_id = str(UUID(job.job_id))
            held = job_id in refused
            return msgspec.structs.replace(
                job,
                api_calls=(0 if held else given[GRAPH].get(job_id, 0)) if GRAPH in apis else None,
                api_units=(0 if held else given[GMAIL].get(job_id, 0)) if GMAIL in apis else None,
            )

        r.jobs = [carry(job) for job in r.jobs]
        r.deferred = [(d, carry(job)) for d, job in r.deferred]


async def release(conn: Conn, jobs: Sequence[CheckJob]) -> None:
    """Give back what jobs that will never run (refused by admission) were given."""
    given = [job.job_id for job in jobs if job.api_calls or job.api_units]
    if given:
        await conn.execute(_RELEASE, given)
