"""Each round-trip monitor's latest round that went out (`roundtrip_rounds`), and whether it is
in flight (SQL `roundtrip_in_flight`, controller.roundtrips.rules.in_flight): a check-now then
joins it. A country has answered a round when its latest result (`monitor_country_state`) is of
that round or a later one. The caller owns the transaction."""

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from controller.db.pool import Conn


class SentRound(NamedTuple):
    """A round that went out: its scheduled time as its jobs carry it, when it is over at the
    latest (`rules.ends`), and its (country, job id) pairs."""

    monitor_id: int
    scheduled_at: datetime
    ends_at: datetime
    jobs: Sequence[tuple[str, str]]


class InFlight(NamedTuple):
    """The round a check-now joined: its scheduled time and (country, job id) pairs."""

    scheduled_at: datetime
    jobs: list[tuple[str, str]]


async def sent(conn: Conn, rounds: Sequence[SentRound]) -> None:
    """Record the rounds as their monitors' latest (an older one never replaces a newer)."""
    if not rounds:
        return
    await conn.executemany(
        "INSERT INTO roundtrip_rounds (monitor_id, scheduled_at, ends_at, countries, job_ids)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (monitor_id) DO UPDATE SET"
        " scheduled_at = EXCLUDED.scheduled_at, ends_at = EXCLUDED.ends_at,"
        " countries = EXCLUDED.countries, job_ids = EXCLUDED.job_ids"
        " WHERE roundtrip_rounds.scheduled_at <= EXCLUDED.scheduled_at",
        [
            (
                r.monitor_id,
                r.scheduled_at,
                r.ends_at,
                [c for c, _ in r.jobs],
                [j for _, j in r.jobs],
            )
            for r in rounds
        ],
    )


async def in_flight(conn: Conn, monitor_id: int, at: datetime) -> InFlight | None:
    """The monitor's round in flight `at`, if any. Locks the monitor's row until the caller's
    transaction ends, so two check-nows (or a check-now and a round the scheduler sends) never
    both find none and both send; the scheduler's claims skip the row meanwhile."""
    # The lock first, the read after it: a statement that waited for the lock would read the
    # other tables as they were before the round that held it went.
    await conn.execute("SELECT 1 FROM monitors WHERE id = $1 FOR NO KEY UPDATE", monitor_id)
    row = await conn.fetchrow(
        "SELECT r.scheduled_at, r.countries, r.job_ids FROM roundtrip_rounds r"
        " WHERE r.monitor_id = $1 AND roundtrip_in_flight(r.countries,"
        "   ARRAY(SELECT s.country FROM monitor_country_state s"
        "     WHERE s.monitor_id = r.monitor_id AND s.last_scheduled_at >= r.scheduled_at),"
        "   r.ends_at, $2)",
        monitor_id,
        at,
    )
    if row is None:
        return None
    return InFlight(row["scheduled_at"], list(zip(row["countries"], row["job_ids"], strict=True)))
