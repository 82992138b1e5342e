"""Alert state as stored (`monitor_alert_state`) and what judging a monitor reads: its state,
thresholds and watched monitor in one statement (`inputs`, `batch_inputs`), and its results
after the cursor. The caller owns the transaction; the alerter is the only writer of alert
state, and releases a monitor's queue row with it (controller.ingest.alert_queue_store).
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

from controller.alerting.rules import STATE_FIELDS, AlertState, CountryResult
from controller.db.pool import Conn
from controller.ingest.alert_queue_store import _release
from controller.ingest.pack_rules import packed_before
from controller.jobs.result_kinds import UNCOUNTED, scheduled_since
from controller.logins.backoff import Backoff
from controller.monitors.store import (
    WATCHED_COLUMNS,
    MonitorConfigError,
    WatchedMonitor,
    decode_watched,
)
from controller.monitors.thresholds import Thresholds
from controller.monitors.thresholds_store import _ORG_COLUMNS, _OVERRIDES, _merged_thresholds
from controller.posture.facts import COLUMNS as FACT_COLUMNS
from controller.posture.facts import StoredFacts
from controller.sidechecks.facts_store import side_of
from shared.guards import BrokenInvariant

STATE_COLUMNS = ", ".join(STATE_FIELDS)


class Inputs(NamedTuple):
    """What an evaluation reads of a monitor besides its rounds, in one statement (`inputs`):
    the monitor, its alert state (locked), thresholds and login back-off, and whether the
    rarer reads are needed at all."""

    watched: WatchedMonitor
    state: AlertState
    thresholds: Thresholds
    backoff: Backoff | None
    windows: bool  # maintenance windows may cover it, now or later (its own or its customer's)
    held: bool  # a closed incident of its holds a recovery notice


# The state row is locked in the CTE (a lock cannot reach the nullable side of an outer join).
_INPUTS = (
    "WITH s AS (SELECT * FROM monitor_alert_state WHERE monitor_id = $1 FOR UPDATE)"
    " SELECT mon.*, s.monitor_id IS NOT NULL AS has_state, "
    + ", ".join(f"s.{n}" for n in STATE_FIELDS)
    + ", o.organization_id IS NOT NULL AS has_org, "
    + ", ".join(f"o.{c.strip()}" for c in _ORG_COLUMNS.split(","))
    + ", "
    + ", ".join(f"ms.{n} AS own_{n}" for n in _OVERRIDES)
    + ", b.failures AS backoff_failures, b.since AS backoff_since,"
    " b.retry_at AS backoff_retry_at, b.notified AS backoff_notified,"
    " EXISTS (SELECT 1 FROM maintenance_windows w"
    "   WHERE (w.monitor_id = $1 OR w.customer_id = mon.customer_id)"
    "   AND (w.kind <> 'once' OR w.ends_at > $2)) AS has_windows,"
    " EXISTS (SELECT 1 FROM incidents i WHERE i.monitor_id = $1 AND i.recovery_held)"
    "   AS has_held"
    f" FROM (SELECT {WATCHED_COLUMNS} FROM monitors WHERE id = $1) AS mon LEFT JOIN s ON true"
    " LEFT JOIN organization_alert_settings o ON o.organization_id = mon.organization_id"
    " LEFT JOIN monitor_alert_settings ms ON ms.monitor_id = $1"
    " LEFT JOIN login_backoff b ON b.monitor_id = $1"
)


async def inputs(conn: Conn, monitor_id: int, now: datetime) -> Inputs | None:
    """The monitor (`monitors.watched`: None when it is gone, MonitorConfigError when its config
    does not decode), `state`, `thresholds` and the login back-off together: the alerter reads
    them for every evaluation, in one round trip. The state row is locked FOR UPDATE until the
    caller's transaction ends (created first when the monitor has none yet). Its `windows` are
    those that may cover it at `now` or later: a one-off window over by `now` never will, so a
    monitor whose windows are all past is routine again."""
    row = await conn.fetchrow(_INPUTS, monitor_id, now)
    if row is not None and not row["has_state"]:
        await conn.execute(
            "INSERT INTO monitor_alert_state (monitor_id) VALUES ($1) ON CONFLICT DO NOTHING",
            monitor_id,
        )
        row = await conn.fetchrow(_INPUTS, monitor_id, now)
    if row is None:
        return None
    return _decode_inputs(row)


# `inputs` for a leased batch: the state rows locked in one statement, in monitor_id order
# (every locker of several takes them in that order, so two batches never wait on each other
# in a cycle). A monitor with no state row yet is returned without one (`has_state` false):
# the batch leaves it to `inputs`, which creates it.
_BATCH_INPUTS = (
    _INPUTS.replace(
        "WHERE monitor_id = $1 FOR UPDATE)",
        "WHERE monitor_id = ANY($1::bigint[]) ORDER BY monitor_id FOR UPDATE)",
    )
    .replace("LEFT JOIN s ON true", "LEFT JOIN s ON s.monitor_id = mon.id")
    .replace("FROM monitors WHERE id = $1", "FROM monitors WHERE id = ANY($1::bigint[])")
    .replace("= $1", "= mon.id")
)


async def batch_inputs(
    conn: Conn, monitor_ids: Sequence[int], now: datetime
) -> dict[int, Inputs | MonitorConfigError | None]:
    """`inputs` of several monitors in one statement, their state rows locked in monitor_id
    order until the caller's transaction ends. By monitor: its inputs; None when it has no
    state row yet (nothing locked: `inputs` creates it); its MonitorConfigError. A monitor gone
    is missing."""
    rows = await conn.fetch(_BATCH_INPUTS, sorted(monitor_ids), now)
    found: dict[int, Inputs | MonitorConfigError | None] = {}
    for row in rows:
        if not row["has_state"]:
            found[row["id"]] = None
            continue
        try:
            found[row["id"]] = _decode_inputs(row)
        except MonitorConfigError as exc:
            found[row["id"]] = exc
    return found


def _decode_inputs(row: asyncpg.Record) -> Inputs:
    backoff = (
        None
        if row["backoff_failures"] is None
        else Backoff(
            row["backoff_failures"],
            row["backoff_since"],
            row["backoff_retry_at"],
            row["backoff_notified"],
        )
    )
    return Inputs(
        decode_watched(row),
        AlertState(**{name: row[name] for name in STATE_FIELDS}),
        _merged_thresholds(row),
        backoff,
        row["has_windows"],
        row["has_held"],
    )


async def state(conn: Conn, monitor_id: int) -> AlertState:
    """The monitor's alert state, locked FOR UPDATE until the caller's transaction ends (a
    fresh one when it has none yet: created, then read; most have one, read at once)."""
    select = f"SELECT {STATE_COLUMNS} FROM monitor_alert_state WHERE monitor_id = $1 FOR UPDATE"
    row: asyncpg.Record | None = await conn.fetchrow(select, monitor_id)
    if row is None:
        await conn.execute(
            "INSERT INTO monitor_alert_state (monitor_id) VALUES ($1) ON CONFLICT DO NOTHING",
            monitor_id,
        )
        row = await conn.fetchrow(select, monitor_id)
    if row is None:
        raise BrokenInvariant("state_store.state: the statement returned no row")
    return AlertState(**{name: row[name] for name in STATE_FIELDS})


async def save_state(
    conn: Conn,
    monitor_id: int,
    s: AlertState,
    changed_at: datetime | None = None,
    release: tuple[datetime, datetime | None] | None = None,
    *,
    now: datetime,
) -> None:
    """Write the state at `now`; `changed_at`: when the state (`s.state`) changed, if it did;
    `release`: the lease and the due time to `release` the monitor's queue row with, in the
    same statement."""
    values: dict[str, object] = {name: getattr(s, name) for name in STATE_FIELDS}
    values["updated_at"] = now
    if changed_at is not None:
        values["changed_at"] = changed_at
    names = sorted(values)
    sets = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=2))
    update = f"UPDATE monitor_alert_state SET {sets} WHERE monitor_id = $1"
    args = [values[n] for n in names]
    if release is not None:
        lease, due_at = release
        update = f"WITH saved AS ({update}) {_release(len(args) + 2, due_at)}"
        args += [lease] if due_at is None else [lease, due_at]
    await conn.execute(update, monitor_id, *args)


_RESULT_COLUMNS = ", ".join(CountryResult._fields)
_FACTS = tuple(f for f in FACT_COLUMNS if f not in ("scheduled_at", "country"))
_FACT_COLUMNS = ", ".join(side_of("job_id") + " AS side" if f == "side" else f for f in _FACTS)


class ResultsAfter(NamedTuple):
    """`results_after`'s rows, and the facts posture reads of those that ran (the same rows,
    not missed nor inconclusive, in the same order: `controller.posture.store.rounds_after`)."""

    rows: list[CountryResult]
    facts: list[StoredFacts]


def results_view(after: datetime, now: datetime) -> str:
    """The view results scheduled after `after` are read from: `check_results_unpacked` when
    none of them may sit in a pack (`after` not before `packed_before(now)`; migration 0127),
    so the packs are not looked up for each monitor; else `check_results`."""
    return "check_results_unpacked" if after >= packed_before(now) else "check_results"


async def results_after(
    conn: Conn, monitor_id: int, after: datetime, limit: int, now: datetime
) -> ResultsAfter:
    """Results scheduled after `after`, oldest round first (read at `now`)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_RESULT_COLUMNS}, {_FACT_COLUMNS} FROM {results_view(after, now)}"
        " WHERE monitor_id = $1 AND scheduled_at > $2"
        f" AND {scheduled_since('$2::timestamptz')}"
        " ORDER BY scheduled_at, country LIMIT $3",
        monitor_id,
        after,
        limit,
    )
    n = len(CountryResult._fields)
    return ResultsAfter(
        [CountryResult(*tuple(r.values())[:n]) for r in rows],
        [
            StoredFacts(scheduled_at=r[0], country=r[1], **{f: r[f] for f in _FACTS})
            for r in rows
            if r["status"] not in UNCOUNTED
        ],
    )


async def batch_results_after(
    conn: Conn, afters: Mapping[int, datetime], limit: int, now: datetime
) -> dict[int, ResultsAfter]:
    """`results_after` of several monitors (by monitor: its cursor) in one statement, at most
    `limit` rows each."""
    if not afters:
        return {}
    ids = sorted(afters)
    earliest = min(afters.values())
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT u.id AS for_monitor, r.* FROM unnest($1::bigint[], $2::timestamptz[])"
        " AS u(id, after) CROSS JOIN LATERAL ("
        f"  SELECT {_RESULT_COLUMNS}, {_FACT_COLUMNS} FROM {results_view(earliest, now)}"
        "  WHERE monitor_id = u.id AND scheduled_at > u.after"
        "  AND hour >= date_trunc('hour', u.after, 'UTC')"
        # The earliest cursor ($4) bounds the days every monitor's read may open, so that the
        # planner prunes the partitions the cursors of the rows cannot (they are per row).
        f"  AND scheduled_at > $4 AND {scheduled_since('$4::timestamptz')}"
        "  ORDER BY scheduled_at, country LIMIT $3) r",
        ids,
        [afters[i] for i in ids],
        limit,
        earliest,
    )
    found = {i: ResultsAfter([], []) for i in ids}
    n = len(CountryResult._fields)
    for r in rows:
        read = found[r["for_monitor"]]
        values = tuple(r.values())[1 : n + 1]
        read.rows.append(CountryResult(*values))
        if r["status"] not in UNCOUNTED:
            read.facts.append(
                StoredFacts(scheduled_at=values[0], country=values[1], **{f: r[f] for f in _FACTS})
            )
    return found


class Release(NamedTuple):
    """A leased monitor done with: come back at `due_at`, or forget it (None); `settled`: its
    routine rounds may wait for `due_at` (`batch.settled`); `watch`: the round of its grid
    whose close `due_at` is, for a settled monitor whose routine rounds may move it on
    (`push_settled`), with the interval `step` it was worked out for."""

    monitor_id: int
    lease: datetime
    due_at: datetime | None
    settled: bool = False
    watch: datetime | None = None
    step: int | None = None


# The batch's states (a jsonb array of rows) and every release of its leases (`_FORGET`'s and
# `_LATER`'s) in one statement: a queue row the ingester marked again meanwhile (due_at no
# longer the lease) stays due. The rows are found by their keys (`= ANY`), so that no join
# may read either table whole.
_SAVE_BATCH = (
    "WITH saved AS (UPDATE monitor_alert_state s SET "
    + ", ".join(f"{n} = j.{n}" for n in STATE_FIELDS)
    + ", updated_at = $8::timestamptz"
    " FROM jsonb_populate_recordset(NULL::monitor_alert_state, $1::jsonb) j"
    " WHERE s.monitor_id = j.monitor_id AND s.monitor_id = ANY(ARRAY("
    "   SELECT (e->>'monitor_id')::bigint FROM jsonb_array_elements($1::jsonb) e))),"
    " u AS (SELECT * FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[],"
    "   $5::bool[], $6::timestamptz[], $7::int[]) AS u(id, lease, due, settled, watch, step)),"
    " forgotten AS (DELETE FROM alert_queue q USING u"
    "   WHERE u.due IS NULL AND q.monitor_id = u.id AND q.due_at = u.lease"
    "   AND q.monitor_id = ANY($2::bigint[]))"
    " UPDATE alert_queue q SET due_at = u.due, revised_from = NULL, settled = u.settled,"
    " watch_at = CASE WHEN u.settled THEN u.watch END,"
    " watch_step = CASE WHEN u.settled AND u.watch IS NOT NULL THEN u.step END FROM u"
    " WHERE u.due IS NOT NULL AND q.monitor_id = u.id AND q.due_at = u.lease"
    " AND q.monitor_id = ANY($2::bigint[])"
)


async def save_batch(
    conn: Conn, states: Mapping[int, AlertState], releases: Sequence[Release], now: datetime
) -> None:
    """`save_state` of several monitors at `now` (their state unchanged: no `changed_at`) and
    the `release` of several leases, in one statement."""
    if not states and not releases:
        return
    rows = [
        {"monitor_id": monitor_id}
        | {
            n: v.isoformat() if isinstance(v, datetime) else v
            for n, v in ((n, getattr(s, n)) for n in STATE_FIELDS)
        }
        for monitor_id, s in sorted(states.items())
    ]
    ordered = sorted(releases)
    await conn.execute(
        _SAVE_BATCH,
        rows,
        [r.monitor_id for r in ordered],
        [r.lease for r in ordered],
        [r.due_at for r in ordered],
        [r.settled for r in ordered],
        [r.watch for r in ordered],
        [r.step for r in ordered],
        now,
    )


async def results_before(
    conn: Conn, monitor_id: int, after: datetime, until: datetime, limit: int
) -> list[CountryResult]:
    """Results scheduled in (`after`, `until`], oldest round first; the newest `limit` of them."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT * FROM (SELECT {_RESULT_COLUMNS}"
        "  FROM check_results WHERE monitor_id = $1 AND scheduled_at > $2 AND scheduled_at <= $3"
        f"  AND {scheduled_since('$2::timestamptz')} AND hour <= $3"
        "  ORDER BY scheduled_at DESC, country DESC LIMIT $4) r ORDER BY scheduled_at, country",
        monitor_id,
        after,
        until,
        limit,
    )
    return [CountryResult(*r.values()) for r in rows]
