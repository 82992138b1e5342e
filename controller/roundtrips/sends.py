"""Which round-trip jobs the scheduler may send now: each is a message to the monitor's `to`
(controller.roundtrips.rules, controller.roundtrips.sends_store)."""

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from controller.db.pool import Conn
from controller.ingest.result_kinds import ResultRow
from controller.roundtrips import rules
from controller.roundtrips import sends_store as mail_sends
from shared.messages import CheckJob
from shared.timefmt import parse_iso


async def hold(
    conn: Conn, jobs: Sequence[tuple[int, CheckJob]], now: datetime, per_domain: int
) -> dict[str, ResultRow]:
    """The round-trip jobs among `jobs` ((monitor id, job), in sending order) that are not to
    be sent, by job id, each as its round's missed row; the others are counted as sent."""
    mail = [(monitor_id, job) for monitor_id, job in jobs if job.monitor_type == "roundtrip"]
    kinds = await mail_sends.take(conn, [m for m, _ in mail], now, per_domain)
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
        for (_, job), kind in zip(mail, kinds, strict=True)
        if kind is not None
    }
