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


class Flight(NamedTuple):
    """A round in flight: its scheduled time, when it ends, and the countries (with their job
    ids) that have no result of it yet."""

    scheduled_at: datetime
    ends_at: datetime
    jobs: list[tuple[str, str]]
    pending: frozenset[str]


_FLIGHTS = (
    "SELECT r.monitor_id, r.scheduled_at, r.ends_at, r.countries, r.job_ids, a.answered"
    " FROM roundtrip_rounds r, LATERAL (SELECT ARRAY(SELECT s.country"
    "   FROM monitor_country_state s WHERE s.monitor_id = r.monitor_id"
    "   AND s.last_scheduled_at >= r.scheduled_at) AS answered) a"
    " WHERE r.monitor_id = ANY($1::bigint[])"
    " AND roundtrip_in_flight(r.countries, a.answered, r.ends_at, $2)"
)


async def flights(conn: Conn, monitor_ids: Sequence[int], at: datetime) -> dict[int, Flight]:
    """The monitors' rounds in flight `at`, by monitor id."""
    if not monitor_ids:
        return {}
    return {
        r["monitor_id"]: Flight(
            r["scheduled_at"],
            r["ends_at"],
            list(zip(r["countries"], r["job_ids"], strict=True)),
            frozenset(r["countries"]) - frozenset(r["answered"]),
        )
        for r in await conn.fetch(_FLIGHTS, sorted(set(monitor_ids)), at)
    }


async def in_flight(conn: Conn, monitor_id: int, at: datetime) -> InFlight | None:
    """The monitor's round in flight `at`, if any. Locks the monitor's row until the caller's
    transaction ends, so two check-nows (or a check-now and a round the scheduler sends) never
    both find none and both send; the scheduler's claims skip the row meanwhile."""
    # The lock first, the read after it: a statement that waited for the lock would read the
    # other tables as they were before the round that held it went.
    await conn.execute("SELECT 1 FROM monitors WHERE id = $1 FOR NO KEY UPDATE", monitor_id)
    flight = (await flights(conn, [monitor_id], at)).get(monitor_id)
    return None if flight is None else InFlight(flight.scheduled_at, flight.jobs)


class Awaited(NamedTuple):
    """A look that waited for the round in flight when it was planned (`after`: that round's
    scheduled time), in its monitor's country, of its own round (`before`)."""

    job_id: str
    monitor_id: int
    country: str
    after: datetime
    before: datetime


async def found(conn: Conn, looks: Sequence[Awaited]) -> dict[str, datetime]:
    """By job id, the looks whose awaited round (or a later one before theirs) showed the
    message arriving in their country (SQL `roundtrip_arrived`), with that round's scheduled
    time."""
    if not looks:
        return {}
    rows = await conn.fetch(
        "SELECT u.job_id, s.last_scheduled_at FROM unnest($1::text[], $2::bigint[], $3::text[],"
        "   $4::timestamptz[], $5::timestamptz[]) AS u (job_id, monitor_id, country, after,"
        "   before)"
        " JOIN monitor_country_state s ON s.monitor_id = u.monitor_id AND s.country = u.country"
        " WHERE s.last_scheduled_at >= u.after AND s.last_scheduled_at < u.before"
        " AND roundtrip_arrived(s.last_status, s.last_error_kind)",
        [a.job_id for a in looks],
        [a.monitor_id for a in looks],
        [a.country for a in looks],
        [a.after for a in looks],
        [a.before for a in looks],
    )
    return {r["job_id"]: r["last_scheduled_at"] for r in rows}
