"""The scheduler's queries on `monitors` and their due times (`monitor_due`, migration 0128):
claim due monitors, move their next due time; and what a pass looks at around them (whether
other work waits, when the next pass is due). Every move of a due time is the SQL function
`due_move`.

Claims lock a monitor's due row and its `monitors` row with `FOR NO KEY UPDATE SKIP LOCKED`:
replicas skip each other's rows instead of waiting (the due row's lock has a claim that waited
read the due time again; the monitor's keeps out a previous release's scheduler, which claims
`monitors` alone, during a rolling upgrade), and the lock does not block the foreign-key checks
of the ingester's writes. A claimed monitor comes typed (`WatchedMonitor`), or, when its stored
config does not fit its kind, as an `UnfitMonitor` the scheduler moves along its grid without
jobs.
"""

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import asyncpg
import msgspec

from controller.db.pool import Conn
from controller.monitors.store import (
    PLANNED_COLUMNS,
    WATCHED_COLUMNS,
    Monitor,
    MonitorConfigError,
    WatchedMonitor,
    decode_watched,
)
from controller.scheduling.plan import UnfitMonitor
from shared.guards import BrokenInvariant

ClaimedMonitor = WatchedMonitor | UnfitMonitor

# The claims' lock: the due row (aliased `due`) and the monitor's row.
CLAIM_LOCK = "FOR NO KEY UPDATE OF due, monitors SKIP LOCKED"


def monitor_of(claimed: ClaimedMonitor) -> Monitor | UnfitMonitor:
    """The claimed monitor's own fields (id, public id, type, interval), fit or not."""
    return claimed.monitor if isinstance(claimed, WatchedMonitor) else claimed


def _decoded(rows: Sequence[asyncpg.Record]) -> list[ClaimedMonitor]:
    return [_claimed(r) for r in rows]


# Rows decoded on the loop, at most: some 7 us a row, so at most half a millisecond there; a
# thread's hop (a wake-up of the loop and of a worker) costs as much as a few dozen rows.
DECODE_INLINE_MAX = 64


async def _decode(rows: Sequence[asyncpg.Record]) -> list[ClaimedMonitor]:
    """Rows as monitors, in a thread when there are more than `DECODE_INLINE_MAX`: a batch of a
    thousand takes some 10-20 ms of CPU, which would stall the event loop (API, ingester,
    alerter)."""
    if len(rows) > DECODE_INLINE_MAX:
        return await asyncio.to_thread(_decoded, rows)
    return _decoded(rows)


def _claimed(row: asyncpg.Record) -> ClaimedMonitor:
    try:
        return decode_watched(row)
    except MonitorConfigError as exc:
        return UnfitMonitor(
            id=row["id"],
            public_id=row["public_id"],
            type=row["type"],
            check_interval=row["check_interval"],
            next_due_at=row["next_due_at"],
            allowed_country_codes=row["allowed_country_codes"],
            round_countries=row["round_countries"],
            error=str(exc),
            rounds_since=row["rounds_since"],
        )


# The time and the limit come through scalar subqueries: a plan for the call's values (a few
# dozen monitors due) looked cheaper than the generic one, so the join was planned again at
# every claim (~0.3 ms); estimated alike either way, it runs on its generic plan.
CLAIM = (
    f"SELECT {PLANNED_COLUMNS}"
    " FROM monitor_due due JOIN monitors ON monitors.id = due.monitor_id"
    " WHERE status <> 'disabled' AND due.next_due_at <= (SELECT $1::timestamptz)"
    " AND due.monitor_id <> ALL($3::bigint[])"
    f" ORDER BY due.next_due_at LIMIT (SELECT $2::int) {CLAIM_LOCK}"
)


async def claim_due(
    conn: Conn, now: datetime, limit: int, skip: Sequence[int] = ()
) -> list[ClaimedMonitor]:
    """Due monitors, earliest first, locked until the caller's transaction ends; not those in
    `skip` (their OAuth2 tokens are being fetched). Their `last_checked_at` is not read (None):
    no round's plan needs it."""
    rows = await conn.fetch(CLAIM, now, limit, list(skip))
    return await _decode(rows)


class Unplanned(msgspec.Struct, kw_only=True, frozen=True):
    """A monitor without a due time yet: `never_run`, no round of it has gone anywhere yet;
    `countries`, how many its rounds go to."""

    id: int
    public_id: UUID
    organization_id: int
    check_interval: int
    never_run: bool
    countries: int


async def claim_unplanned(conn: Conn, limit: int, default_countries: int) -> list[Unplanned]:
    """Monitors without a due time yet (new, or interval/status just changed), locked;
    `default_countries` is what a monitor without a list goes to."""
    rows = await conn.fetch(
        "SELECT id, public_id, organization_id, check_interval,"
        " round_countries IS NULL AS never_run,"
        " planned_countries(allowed_country_codes, $2) AS countries"
        " FROM monitor_due due JOIN monitors ON monitors.id = due.monitor_id"
        " WHERE status <> 'disabled' AND due.next_due_at IS NULL"
        f" LIMIT $1 {CLAIM_LOCK}",
        limit,
        default_countries,
    )
    return [Unplanned(**dict(r)) for r in rows]


async def set_next_due(conn: Conn, ids: Sequence[int], due: Sequence[datetime | None]) -> None:
    """Move each monitor's next due time (`due_move`)."""
    await conn.execute("SELECT due_move($1::bigint[], $2::timestamptz[])", ids, due)


async def hold_first_round(conn: Conn, monitor_id: int, until: datetime) -> None:
    """A "Check now" of a monitor none of whose rounds has gone yet holds back the first round
    the scheduler would send at once (`plan_new`) while the trigger plans its own: the monitor
    is due at `until` (its grid) unless a round of it went meanwhile. `take_first_round` then
    makes the trigger's round its first."""
    await conn.execute(
        "SELECT due_move(ARRAY[m.id], ARRAY[$2::timestamptz]) FROM monitors m"
        " WHERE m.id = $1 AND m.round_countries IS NULL",
        monitor_id,
        until,
    )


async def take_first_round(
    conn: Conn, monitor_id: int, next_due: datetime, countries: Sequence[str]
) -> bool:
    """A round sent now of a monitor none of whose rounds has gone anywhere yet is its first
    round: its grid starts at `next_due` (`rounds_since`) and `plan_new` plans no first round
    besides. Waits for a claim or plan holding the row; False when the monitor's first round
    went meanwhile."""
    taken = await conn.fetchval(
        "UPDATE monitors SET round_countries = $2::text[], rounds_since = $3"
        " WHERE id = $1 AND round_countries IS NULL RETURNING true",
        monitor_id,
        list(countries),
        next_due,
    )
    if taken:
        await conn.execute(
            "SELECT due_move(ARRAY[$1::bigint], ARRAY[$2::timestamptz])", monitor_id, next_due
        )
    return bool(taken)


async def earliest_work(conn: Conn, skip: Sequence[int] = ()) -> datetime | None:
    """The earliest due time of a monitor not in `skip` or of a deferred login: when the
    scheduler's next pass has something to send (`scheduler_earliest`, migration 0118)."""
    at: datetime | None = await conn.fetchval("SELECT scheduler_earliest($1)", list(skip))
    return at


class Waiting(NamedTuple):
    """What a pass finds after its due rounds: whether confirmation rounds asked for wait to
    be sent (`confirmations`), whether deferred logins are due (`deferred`), the earliest
    due time of a monitor or a deferred login (`earliest`, as `earliest_work`), and whether a
    monitor waits for its first due time (`unplanned`: new, or its interval or status just
    changed)."""

    confirmations: bool
    deferred: bool
    earliest: datetime | None
    unplanned: bool


async def waiting(conn: Conn, now: datetime, skip: Sequence[int] = ()) -> Waiting:
    """What else than due rounds there is to do `now`, and when the next pass is due, in one
    statement (`scheduler_waiting`, migration 0118, each part through an index): a pass claims
    confirmations and deferred logins, and plans new monitors, only when there are some."""
    row = await conn.fetchrow("SELECT * FROM scheduler_waiting($1, $2)", list(skip), now)
    if row is None:
        raise BrokenInvariant("due_store.waiting: the statement returned no row")
    return Waiting(row[0], row[1], row[2], row[3])


async def moved(
    conn: Conn,
    ids: Sequence[int],
    due: Sequence[datetime | None],
    countries: Sequence[str | None],
    now: datetime,
    skip: Sequence[int] = (),
) -> Waiting:
    """A batch of due rounds done, in one round trip (`scheduler_moved`, migration 0118): move
    each monitor's next due time and record where its round went (`countries`: comma-joined
    codes, or None to keep the stored ones); then what `waiting` says
    after that move. So a routine pass is its due rounds' transaction, nothing after it."""
    row = await conn.fetchrow(
        "SELECT * FROM scheduler_moved($1::bigint[], $2::timestamptz[], $3::text[], $4, $5)",
        list(ids),
        list(due),
        list(countries),
        list(skip),
        now,
    )
    if row is None:
        raise BrokenInvariant("due_store.moved: the statement returned no row")
    return Waiting(row[0], row[1], row[2], row[3])


async def monitor(conn: Conn, monitor_id: int) -> ClaimedMonitor | None:
    """One monitor, for a triggered round; None when it is gone."""
    row = await conn.fetchrow(f"SELECT {WATCHED_COLUMNS} FROM monitors WHERE id = $1", monitor_id)
    return None if row is None else _claimed(row)


async def monitors(conn: Conn, monitor_ids: Sequence[int]) -> list[ClaimedMonitor]:
    """The monitors that are not disabled among `monitor_ids`, for confirmation rounds."""
    rows = await conn.fetch(
        f"SELECT {WATCHED_COLUMNS} FROM monitors"
        " WHERE id = ANY($1::bigint[]) AND status <> 'disabled' ORDER BY id",
        monitor_ids,
    )
    return await _decode(rows)


async def dns_asked(conn: Conn, monitor_ids: Sequence[int], at: datetime) -> None:
    """The monitors' rounds at `at` asked the side checks of the `dns` cadence
    (`schedule.trigger_dns`)."""
    if monitor_ids:
        await conn.execute(
            "UPDATE monitors SET mail_dns_at = $2 WHERE id = ANY($1::bigint[])", monitor_ids, at
        )
