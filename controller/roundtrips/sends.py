"""Which round-trip jobs the scheduler may send now: each is a message to the monitor's `to`
(controller.roundtrips.rules, controller.roundtrips.sends_store). A round's messages are sent
all together or none of them; a round held back by its monitor's own record still looks, where
its country's agents can (`rules.looks`)."""

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import UUID

import msgspec

from controller.db.pool import Conn
from controller.jobs.result_kinds import ResultRow
from controller.roundtrips import rounds_store, rules
from controller.roundtrips import sends_store as mail_sends
from controller.roundtrips.rounds_store import Flight, SentRound
from shared.messages import CheckJob, RoundTripCheckJob
from shared.timefmt import iso_ms, parse_iso

# A round as the caps see it: its monitor and every job of it (those sent now and later).
Round = tuple[int, Sequence[CheckJob]]


class Holds(NamedTuple):
    """What the caps make of the round-trip jobs, by job id: those not sent, each as its
    round's missed row, those that go as looks instead (`lookOnly`: no message), and of those
    the ones whose country waits for its monitor's round in flight (`waits`: they go once it
    ends, and are answered from its finding when it found its message: `answer`)."""

    held: dict[str, ResultRow]
    looks: dict[str, CheckJob]
    waits: dict[str, Flight]


def _looks(job: CheckJob) -> bool:
    return isinstance(job, RoundTripCheckJob) and bool(job.look_only)


async def hold(
    conn: Conn,
    rounds: Sequence[Round],
    now: datetime,
    per_domain: int,
    looking: Collection[str] = frozenset(),
    *,
    wait: bool = False,
) -> Holds:
    """The round-trip jobs of `rounds` (in sending order) that do not go as they are; the
    others are counted as sent. A round is held whole; in `looking` (the countries whose every
    live agent looks without sending) a job of a round its monitor's record holds goes as a
    look instead, and with `wait`, one whose country has no result yet of its monitor's round
    in flight waits for it (a look now would find nothing: that round's message is on its way,
    and that round deletes it). A job that is a look already (a later login of a held round)
    sends nothing and goes as it is."""
    mail = [
        (monitor_id, mailed)
        for monitor_id, jobs in rounds
        if (mailed := [job for job in jobs if job.monitor_type == "roundtrip" and not _looks(job)])
    ]
    kinds = await mail_sends.take(
        conn, [(m, [job.job_id for job in jobs]) for m, jobs in mail], now, per_domain
    )
    held: dict[str, ResultRow] = {}
    looks: dict[str, CheckJob] = {}
    waits: dict[str, Flight] = {}
    flying = await rounds_store.flights(
        conn, [m for (m, _), kind in zip(mail, kinds, strict=True) if kind and wait], now
    )
    for (monitor_id, jobs), kind in zip(mail, kinds, strict=True):
        if kind is None:
            continue
        for job in jobs:
            if rules.looks(kind, job.country in looking):
                looks[job.job_id] = msgspec.structs.replace(job, look_only=kind)
                flight = flying.get(monitor_id)
                if flight is not None and job.country in flight.pending:
                    waits[job.job_id] = flight
            else:
                held[job.job_id] = ResultRow.missed(
                    UUID(job.monitor_id),
                    job.monitor_type,
                    job.country,
                    job.job_id,
                    parse_iso(job.scheduled_at),
                    kind,
                    rules.held_why(kind, per_domain),
                )
    return Holds(held, looks, waits)


async def not_sent(conn: Conn, jobs: Sequence[CheckJob]) -> None:
    """Jobs counted by `hold` that are not sent after all (a login cap, a rejected login of
    their round): their messages count no more."""
    await mail_sends.release(conn, [j.job_id for j in jobs if j.monitor_type == "roundtrip"])


def went(
    monitor_id: int,
    jobs: Sequence[CheckJob],
    later: Sequence[tuple[float, CheckJob]],
    now: datetime,
) -> SentRound | None:
    """A round trip's round as it went out `now`: its jobs sent (or waiting for a slot) and its
    later logins (`later`: seconds after now, job), looks included; None for another kind's
    round, or one of which nothing went."""
    trips = [(d, j) for d, j in [*((0.0, j) for j in jobs), *later] if _roundtrip(j)]
    if not trips:
        return None
    first = trips[0][1]
    last = now + timedelta(seconds=max(d for d, _ in trips))
    return SentRound(
        monitor_id,
        parse_iso(first.scheduled_at),
        rules.ends(last, first.timeout_seconds),
        sorted((j.country, j.job_id) for _, j in trips),
    )


def _hold(job: CheckJob) -> str:
    return job.look_only if isinstance(job, RoundTripCheckJob) else ""


def _roundtrip(job: CheckJob) -> bool:
    return job.monitor_type == "roundtrip"


def answer(job: CheckJob, found_at: datetime) -> ResultRow:
    """The result of a look that waited for its monitor's round in flight, which found its
    message (that round scheduled `found_at`): `up` from that finding, sending nothing and
    logging in nowhere."""
    return ResultRow(
        job_id=job.job_id,
        scheduled_at=parse_iso(job.scheduled_at),
        monitor_id=UUID(job.monitor_id),
        monitor_type=job.monitor_type,
        country=job.country,
        agent_id=None,
        status="up",
        error_kind=None,
        message=(
            f"{_hold(job)}: this round sent nothing; the message of the round at"
            f" {iso_ms(found_at)}, on its way when this round was planned, arrived"
        ),
    )
