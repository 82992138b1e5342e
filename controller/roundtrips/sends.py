"""Which round-trip jobs the scheduler may send now: each is a message to the monitor's `to`
(controller.roundtrips.rules, controller.roundtrips.sends_store). A round's messages are sent
all together or none of them."""

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from controller.db.pool import Conn
from controller.ingest.result_kinds import ResultRow
from controller.roundtrips import rules
from controller.roundtrips import sends_store as mail_sends
from shared.messages import CheckJob
from shared.timefmt import parse_iso

# A round as the caps see it: its monitor and every job of it (those sent now and later).
Round = tuple[int, Sequence[CheckJob]]


async def hold(
    conn: Conn, rounds: Sequence[Round], now: datetime, per_domain: int
) -> dict[str, ResultRow]:
    """The round-trip jobs of `rounds` (in sending order) that are not to be sent, by job id,
    each as its round's missed row; the others are counted as sent. A round is held whole."""
    mail = [
        (monitor_id, mailed)
        for monitor_id, jobs in rounds
        if (mailed := [job for job in jobs if job.monitor_type == "roundtrip"])
    ]
    kinds = await mail_sends.take(
        conn, [(m, [job.job_id for job in jobs]) for m, jobs in mail], now, per_domain
    )
    return {
        job.job_id: ResultRow.missed(
            UUID(job.monitor_id),
            job.monitor_type,
            job.country,
            job.job_id,
            parse_iso(job.scheduled_at),
            kind,
            rules.held_why(kind, per_domain),
        )
        for (_, jobs), kind in zip(mail, kinds, strict=True)
        if kind is not None
        for job in jobs
    }


async def not_sent(conn: Conn, jobs: Sequence[CheckJob]) -> None:
    """Jobs counted by `hold` that are not sent after all (a login cap, a rejected login of
    their round): their messages count no more."""
    await mail_sends.release(conn, [j.job_id for j in jobs if j.monitor_type == "roundtrip"])
