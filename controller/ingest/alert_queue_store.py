"""The alert queue: which monitors the alerter is to judge, and when (`alert_queue`).

The results store marks a monitor here in the transaction that stores its results (`mark`);
the alerter leases due rows (`claim`) and releases them (`release`, or with its state in
controller.alerting.state_store); the scheduler unwatches a row when a round off the grid is on
its way (`unwatch`). The caller owns the transaction.
"""

from collections.abc import Mapping, Sequence, Set
from datetime import datetime
from typing import NamedTuple

from controller.db.pool import Conn
from controller.monitors.validation import CHECK_INTERVAL_MAX, TIMEOUT_MAX

# Rounds are judged once complete (or closed: the alerter comes back for that by itself, the
# queue row's due_at). A batch queues a monitor for now only when a round after its cursor may
# be complete: at least as many countries as a round expects (`round_expected`, migration 0053:
# its listed countries, else those of its latest round, else DEFAULT_CHECK_COUNTRIES, $4) have a
# result after the cursor. That is necessary for any
# round to be complete, so no evaluation that could judge one is skipped; the first country of
# a round no longer costs an evaluation that finds nothing to judge. A revision, or a monitor
# with no queue row, is queued whatever its rounds. A batch whose results of a monitor are all
# routine leaves a `settled` row due as it was (migration 0039, `batch.settled`): its due time
# judges them, moved on by `push_settled` when they complete the round it waits on. Each queue
# row is looked up by key (as the ingester's batch statement looks up monitors and states).
# The monitors' arrays come through scalar subqueries, so a plan for the call's values estimates
# them as the generic plan does: with the array's own length, a batch of a few monitors looked
# cheaper planned again, and was, at every call (~0.2 ms a batch).
_LOCK_QUEUED = """
SELECT monitor_id FROM alert_queue WHERE monitor_id = ANY((SELECT $1::bigint[])::bigint[])
ORDER BY monitor_id FOR UPDATE
"""

_MARK = """
INSERT INTO alert_queue (monitor_id, due_at, revised_from)
SELECT u.id, $5::timestamptz, u.revised
FROM unnest((SELECT $1::bigint[]), (SELECT $2::timestamptz[]), (SELECT $3::bool[]))
    AS u(id, revised, routine)
LEFT JOIN LATERAL (SELECT q.settled FROM alert_queue q WHERE q.monitor_id = u.id OFFSET 0) q
    ON true
WHERE u.revised IS NOT NULL
    OR q.settled IS NULL
    OR (NOT (u.routine AND q.settled)
      AND (SELECT count(*) FROM monitor_country_state s
        LEFT JOIN monitor_alert_state a ON a.monitor_id = s.monitor_id
        WHERE s.monitor_id = u.id
          AND s.last_scheduled_at > coalesce(a.last_round_at, '-infinity'::timestamptz))
       >= (SELECT round_expected(m.allowed_country_codes, m.round_countries, $4)
           FROM monitors m WHERE m.id = u.id))
ORDER BY u.id
ON CONFLICT (monitor_id) DO UPDATE SET due_at = least(alert_queue.due_at, EXCLUDED.due_at),
    revised_from = least(alert_queue.revised_from, EXCLUDED.revised_from)
WHERE EXCLUDED.due_at < alert_queue.due_at OR EXCLUDED.revised_from IS NOT NULL
"""


async def mark(
    conn: Conn,
    monitor_ids: Sequence[int],
    revised: Mapping[int, datetime] | None = None,
    routine: Set[int] = frozenset(),
    *,
    default_countries: int,
    now: datetime,
) -> None:
    """Queue monitors for evaluation (in the transaction storing their results, after their
    per-country state moved) when a round of theirs may be complete (see `_MARK`), unless the
    batch's results of it are all `routine` (`up`, stored compact) and its queue row is
    `settled`: then its due time, the close of the first round after the cursor not known
    complete, judges them (`push_settled` moves it on). Their queue rows are locked first, in
    ascending order (so concurrent ingesters lock in one order), and the rounds read after: of
    two batches completing one round together, the second sees the first's results once it
    holds the lock, so one of them queues the monitor. `default_countries`:
    DEFAULT_CHECK_COUNTRIES; `now`: the writer's clock (the due time of what it queues)."""
    ids = sorted(set(monitor_ids) | set(revised or ()))
    await conn.execute(_LOCK_QUEUED, ids)
    await conn.execute(
        _MARK,
        ids,
        [(revised or {}).get(i) for i in ids],
        [i in routine for i in ids],
        default_countries,
        now,
    )
    await push_settled(conn, routine & set(ids), default_countries, now)


class Lease(NamedTuple):
    monitor_id: int
    lease: datetime
    revised_from: datetime | None


async def claim(conn: Conn, now: datetime, limit: int, lease_s: float) -> list[Lease]:
    """Lease due monitors, with due_at moved to the lease's end, so other replicas
    skip them and a crashed evaluation is retried. Run it alone, outside a transaction (it is
    its own, committed at once): the ingester's `mark` waits on these rows only for it."""
    rows = await conn.fetch(
        "UPDATE alert_queue SET due_at = $1 + make_interval(secs => $3)"
        " WHERE monitor_id IN (SELECT monitor_id FROM alert_queue WHERE due_at <= $1"
        "   ORDER BY due_at, monitor_id LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " RETURNING monitor_id, due_at, revised_from",
        now,
        limit,
        lease_s,
    )
    return [Lease(*r.values()) for r in rows]


_FORGET = "DELETE FROM alert_queue WHERE monitor_id = $1 AND due_at = ${0}"
_LATER = (
    "UPDATE alert_queue SET due_at = ${1}, revised_from = NULL, settled = false,"
    " watch_at = NULL, watch_step = NULL"
    " WHERE monitor_id = $1 AND due_at = ${0}"
)


def _release(lease_arg: int, due_at: datetime | None) -> str:
    """The statement releasing monitor $1's queue row leased until ${lease_arg} (`due_at`, if
    any, is the next argument)."""
    return (_FORGET if due_at is None else _LATER).format(lease_arg, lease_arg + 1)


async def release(conn: Conn, monitor_id: int, lease: datetime, due_at: datetime | None) -> None:
    """Done with a leased monitor: forget it, or come back at `due_at` (its revision handled);
    unless the ingester marked it again meanwhile (due_at is no longer the lease), then it stays
    due, with whatever revision came since."""
    args = [lease] if due_at is None else [lease, due_at]
    await conn.execute(_release(2, due_at), monitor_id, *args)


async def lock_queued(conn: Conn, monitor_ids: Sequence[int]) -> None:
    """Lock the monitors' queue rows in monitor_id order (as the ingester's `mark` does) until
    the caller's transaction ends, so its releases wait on no one after."""
    await conn.execute(_LOCK_QUEUED, sorted(monitor_ids))


# How many rounds past the alerter's cursor the ingester moves a settled row on at most: a
# healthy monitor is judged about once per this many rounds (its cursor, up-round count and
# posture cursor wait that long; nothing anyone is told does).
PUSH_ROUNDS = 6

# A settled row moves on by a round when the round it waits on (`watch_at`) has a routine
# result (`up`, stored compact, replacing nothing) from as many countries as a round expects
# (as `_MARK` and the alerter count them): its due time becomes the next round's close, so that
# round is judged at its close as before, and the complete ones wait for it. Only a row whose
# due time is still the watched round's close under the monitor's interval and timeout now,
# not yet due, with no revision, and at most $2 rounds past the alerter's cursor. The close is
# `round_closes_after` (migration 0053; `rules.closes_at`), the countries `round_expected` ($4:
# DEFAULT_CHECK_COUNTRIES). The queue rows are found by their keys (`= ANY`), so that no join
# reads the queue whole (a hash join over all of it was the generic plan's choice); the alert
# states likewise (a merge join read their index whole).
_PUSH = """
WITH m AS (
    SELECT m.id, make_interval(secs => m.check_interval) AS step,
        round_closes_after(m.check_interval, m.timeout_seconds) AS closes_after,
        round_expected(m.allowed_country_codes, m.round_countries, $4) AS expected,
        m.check_interval
    FROM monitors m WHERE m.id = ANY($1::bigint[])
)
UPDATE alert_queue q
SET due_at = q.watch_at + m.step + m.closes_after, watch_at = q.watch_at + m.step
FROM m JOIN monitor_alert_state a ON a.monitor_id = m.id AND a.monitor_id = ANY($1::bigint[])
WHERE q.monitor_id = m.id AND q.monitor_id = ANY($1::bigint[])
    AND q.settled AND q.revised_from IS NULL
    AND q.watch_step = m.check_interval AND q.due_at = q.watch_at + m.closes_after
    AND q.due_at > $6::timestamptz AND q.watch_at + m.step <= a.last_round_at + $2 * m.step
    AND (SELECT count(DISTINCT r.country) FROM result_rows r
        WHERE r.monitor_id = m.id AND r.scheduled_at = q.watch_at AND r.status = 0
            AND r.detail_ms IS NOT NULL
            -- The round pushed closes after $6 (now), so it began at most the longest close
            -- ago (that of the longest interval and timeout, $3 and $5): only the partitions
            -- from that day on are read.
            AND r.scheduled_at
                >= date_trunc('day', $6::timestamptz - round_closes_after($3, $5), 'UTC'))
        >= m.expected
"""


async def push_settled(
    conn: Conn,
    monitor_ids: Set[int],
    default_countries: int,
    now: datetime,
    rounds: int = PUSH_ROUNDS,
) -> None:
    """`mark`'s last step: move the settled queue rows of `monitor_ids` (their batch's results
    all routine, their rows locked) on by a round each where `_PUSH` allows, at most `rounds`
    rounds past the alerter's cursor; `now`: the writer's clock (a row due by then stays)."""
    if monitor_ids:
        await conn.execute(
            _PUSH,
            sorted(monitor_ids),
            rounds,
            CHECK_INTERVAL_MAX,
            default_countries,
            TIMEOUT_MAX,
            now,
        )


async def unwatch(conn: Conn, monitor_id: int) -> None:
    """A round off the monitor's grid is on its way (a triggered one): its settled row no
    longer moves on by itself, so that round is judged by its close at the latest."""
    await conn.execute(
        "UPDATE alert_queue SET watch_at = NULL, watch_step = NULL WHERE monitor_id = $1",
        monitor_id,
    )
