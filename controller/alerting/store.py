"""Alerting: the evaluation queue, alert state, thresholds, incidents and the two outboxes.

The caller owns the transaction. The alerter is the only writer of alert state, incidents and
outbox rows; the ingester only ever touches `alert_queue`, through `mark`.
"""

from collections.abc import Mapping, Sequence, Set
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from controller.alerting.incident import Incident
from controller.alerting.rules import STATE_FIELDS, AlertState, CountryResult
from controller.alerting.thresholds import (
    DEFAULT_DOWN_AFTER_ROUNDS,
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_RECOVER_AFTER_ROUNDS,
    Thresholds,
)
from controller.db.pool import Conn
from controller.ingest.result_kinds import UNCOUNTED, scheduled_since
from controller.logins.backoff import Backoff
from controller.monitors.store import (
    WATCHED_COLUMNS,
    MonitorConfigError,
    WatchedMonitor,
    decode_watched,
)
from controller.monitors.validation import CHECK_INTERVAL_MAX, TIMEOUT_MAX
from controller.notify import channel_store
from controller.notify.recipients import CHANNELS, Outgoing
from controller.posture.facts import StoredFacts
from controller.posture.rules import (
    DEFAULT_CHANNEL_SEVERITIES,
    DEFAULT_EMAIL_SEVERITIES,
    DEFAULT_EXPIRY_DAYS,
    DEFAULT_SMS_SEVERITIES,
    SEVERITIES,
    Severity,
)
from shared.timefmt import utcnow

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
_LOCK_QUEUED = """
SELECT monitor_id FROM alert_queue WHERE monitor_id = ANY($1::bigint[])
ORDER BY monitor_id FOR UPDATE
"""

_MARK = """
INSERT INTO alert_queue (monitor_id, due_at, revised_from)
SELECT u.id, now(), u.revised
FROM unnest($1::bigint[], $2::timestamptz[], $3::bool[]) AS u(id, revised, routine)
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
) -> None:
    """Queue monitors for evaluation (in the transaction storing their results, after their
    per-country state moved) when a round of theirs may be complete (see `_MARK`), unless the
    batch's results of it are all `routine` (`up`, stored compact) and its queue row is
    `settled`: then its due time, the close of the first round after the cursor not known
    complete, judges them (`push_settled` moves it on). Their queue rows are locked first, in
    ascending order (so concurrent ingesters lock in one order), and the rounds read after: of
    two batches completing one round together, the second sees the first's results once it
    holds the lock, so one of them queues the monitor. `default_countries`:
    DEFAULT_CHECK_COUNTRIES."""
    ids = sorted(set(monitor_ids) | set(revised or ()))
    await conn.execute(_LOCK_QUEUED, ids)
    await conn.execute(
        _MARK,
        ids,
        [(revised or {}).get(i) for i in ids],
        [i in routine for i in ids],
        default_countries,
    )
    await push_settled(conn, routine & set(ids), default_countries)


class Lease(NamedTuple):
    monitor_id: int
    lease: datetime
    revised_from: datetime | None


async def claim(conn: Conn, now: datetime, limit: int, lease_s: float) -> list[Lease]:
    """Lease due monitors, with due_at moved to the lease's end, so other replicas
    skip them and a crashed evaluation is retried. Commit at once: the ingester's `mark` waits
    on these rows only for this short transaction."""
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


async def org_thresholds(conn: Conn, organization_id: int) -> Thresholds:
    row = await conn.fetchrow(
        f"SELECT {_ORG_COLUMNS} FROM organization_alert_settings WHERE organization_id = $1",
        organization_id,
    )
    return _thresholds(row) if row is not None else Thresholds()


# cert_expiry_days and the finding severities are nullable (built-in default) where the others
# were always filled in.
_ORG_COLUMNS = (
    "failure_threshold, down_after_rounds, recover_after_rounds, cert_expiry_days,"
    " confirm_failures, finding_email_severities, finding_sms_severities,"
    " finding_channel_severities"
)


def _thresholds(row: asyncpg.Record) -> Thresholds:
    days = row["cert_expiry_days"]
    email, sms = row["finding_email_severities"], row["finding_sms_severities"]
    chans = row["finding_channel_severities"]
    return Thresholds(
        row["failure_threshold"],
        row["down_after_rounds"],
        row["recover_after_rounds"],
        DEFAULT_EXPIRY_DAYS if days is None else tuple(days),
        row["confirm_failures"],
        DEFAULT_EMAIL_SEVERITIES if email is None else severities(email),
        DEFAULT_SMS_SEVERITIES if sms is None else severities(sms),
        DEFAULT_CHANNEL_SEVERITIES if chans is None else severities(chans),
    )


def severities(stored: list[str]) -> tuple[Severity, ...]:
    """Stored severities in their order, worst first (unknown ones dropped)."""
    return tuple(s for s in SEVERITIES if s in stored)


async def put_org_thresholds(
    conn: Conn,
    organization_id: int,
    failure_threshold: float | None,
    down_after_rounds: int | None,
    recover_after_rounds: int | None,
    cert_expiry_days: list[int] | None = None,
    confirm_failures: bool | None = None,
    finding_email_severities: list[str] | None = None,
    finding_sms_severities: list[str] | None = None,
    finding_channel_severities: list[str] | None = None,
) -> Thresholds:
    """Change the values given (None: keep; the built-in default when never set)."""
    row = await conn.fetchrow(
        "INSERT INTO organization_alert_settings AS s"
        " (organization_id, failure_threshold, down_after_rounds, recover_after_rounds,"
        " cert_expiry_days, confirm_failures, finding_email_severities, finding_sms_severities,"
        " finding_channel_severities)"
        " VALUES ($1, coalesce($2::float8, $5::float8), coalesce($3::int, $6::int),"
        " coalesce($4::int, $7::int), $8::int[], coalesce($9::bool, true), $10::text[],"
        " $11::text[], $12::text[])"
        " ON CONFLICT (organization_id) DO UPDATE SET"
        " failure_threshold = coalesce($2::float8, s.failure_threshold),"
        " down_after_rounds = coalesce($3::int, s.down_after_rounds),"
        " recover_after_rounds = coalesce($4::int, s.recover_after_rounds),"
        " cert_expiry_days = coalesce($8::int[], s.cert_expiry_days),"
        " confirm_failures = coalesce($9::bool, s.confirm_failures),"
        " finding_email_severities = coalesce($10::text[], s.finding_email_severities),"
        " finding_sms_severities = coalesce($11::text[], s.finding_sms_severities),"
        " finding_channel_severities = coalesce($12::text[], s.finding_channel_severities),"
        " updated_at = now()"
        f" RETURNING {_ORG_COLUMNS}",
        organization_id,
        failure_threshold,
        down_after_rounds,
        recover_after_rounds,
        DEFAULT_FAILURE_THRESHOLD,
        DEFAULT_DOWN_AFTER_ROUNDS,
        DEFAULT_RECOVER_AFTER_ROUNDS,
        cert_expiry_days,
        confirm_failures,
        finding_email_severities,
        finding_sms_severities,
        finding_channel_severities,
    )
    assert row is not None
    return _thresholds(row)


_OVERRIDES = (
    "failure_threshold",
    "down_after_rounds",
    "recover_after_rounds",
    "cert_expiry_days",
    "confirm_failures",
    "finding_email_severities",
    "finding_sms_severities",
    "finding_channel_severities",
)


async def monitor_overrides(conn: Conn, monitor_id: int) -> dict[str, Any]:
    """The monitor's own values (None: inherited)."""
    row = await conn.fetchrow(
        f"SELECT {', '.join(_OVERRIDES)} FROM monitor_alert_settings WHERE monitor_id = $1",
        monitor_id,
    )
    return {n: None if row is None else row[n] for n in _OVERRIDES}


async def put_monitor_overrides(conn: Conn, monitor_id: int, values: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO monitor_alert_settings"
        " (monitor_id, failure_threshold, down_after_rounds, recover_after_rounds,"
        " cert_expiry_days, confirm_failures, finding_email_severities, finding_sms_severities,"
        " finding_channel_severities)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (monitor_id) DO UPDATE SET"
        " failure_threshold = $2, down_after_rounds = $3, recover_after_rounds = $4,"
        " cert_expiry_days = $5, confirm_failures = $6, finding_email_severities = $7,"
        " finding_sms_severities = $8, finding_channel_severities = $9, updated_at = now()",
        monitor_id,
        values["failure_threshold"],
        values["down_after_rounds"],
        values["recover_after_rounds"],
        values.get("cert_expiry_days"),
        values.get("confirm_failures"),
        values.get("finding_email_severities"),
        values.get("finding_sms_severities"),
        values.get("finding_channel_severities"),
    )


_THRESHOLDS = (
    "SELECT o.organization_id IS NOT NULL AS has_org, "
    + ", ".join(f"o.{c.strip()}" for c in _ORG_COLUMNS.split(","))
    + ", "
    + ", ".join(f"m.{n} AS own_{n}" for n in _OVERRIDES)
    + " FROM (SELECT) AS one"
    " LEFT JOIN organization_alert_settings o ON o.organization_id = $1"
    " LEFT JOIN monitor_alert_settings m ON m.monitor_id = $2"
)


async def thresholds(conn: Conn, monitor_id: int, organization_id: int) -> Thresholds:
    """The monitor's overrides over its organization's defaults (one statement: the alerter
    reads them for every evaluation)."""
    row = await conn.fetchrow(_THRESHOLDS, organization_id, monitor_id)
    assert row is not None
    return _merged_thresholds(row)


def _merged_thresholds(row: asyncpg.Record) -> Thresholds:
    """A row with the organization's columns (and `has_org`) and the monitor's (`own_*`)."""
    base = _thresholds(row) if row["has_org"] else Thresholds()
    own = {n: row[f"own_{n}"] for n in _OVERRIDES}
    days = own["cert_expiry_days"]
    email, sms = own["finding_email_severities"], own["finding_sms_severities"]
    chans = own["finding_channel_severities"]
    return Thresholds(
        own["failure_threshold"]
        if own["failure_threshold"] is not None
        else base.failure_threshold,
        own["down_after_rounds"] or base.down_after_rounds,
        own["recover_after_rounds"] or base.recover_after_rounds,
        base.cert_expiry_days if days is None else tuple(days),
        base.confirm_failures if own["confirm_failures"] is None else own["confirm_failures"],
        base.finding_email_severities if email is None else severities(email),
        base.finding_sms_severities if sms is None else severities(sms),
        base.finding_channel_severities if chans is None else severities(chans),
    )


STATE_COLUMNS = ", ".join(STATE_FIELDS)


class Inputs(NamedTuple):
    """What an evaluation reads of a monitor besides its rounds, in one statement (`inputs`):
    the monitor, its alert state (locked), thresholds and login back-off, and whether the
    rarer reads are needed at all."""

    watched: WatchedMonitor
    state: AlertState
    thresholds: Thresholds
    backoff: Backoff | None
    windows: bool  # maintenance windows cover it (its own or its customer's)
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
    " EXISTS (SELECT 1 FROM maintenance_windows w WHERE w.monitor_id = $1"
    "   OR w.customer_id = mon.customer_id) AS has_windows,"
    " EXISTS (SELECT 1 FROM incidents i WHERE i.monitor_id = $1 AND i.recovery_held)"
    "   AS has_held"
    f" FROM (SELECT {WATCHED_COLUMNS} FROM monitors WHERE id = $1) AS mon LEFT JOIN s ON true"
    " LEFT JOIN organization_alert_settings o ON o.organization_id = mon.organization_id"
    " LEFT JOIN monitor_alert_settings ms ON ms.monitor_id = $1"
    " LEFT JOIN login_backoff b ON b.monitor_id = $1"
)


async def inputs(conn: Conn, monitor_id: int) -> Inputs | None:
    """The monitor (`monitors.watched`: None when it is gone, MonitorConfigError when its config
    does not decode), `state`, `thresholds` and the login back-off together: the alerter reads
    them for every evaluation, in one round trip. The state row is locked FOR UPDATE until the
    caller's transaction ends (created first when the monitor has none yet)."""
    row = await conn.fetchrow(_INPUTS, monitor_id)
    if row is not None and not row["has_state"]:
        await conn.execute(
            "INSERT INTO monitor_alert_state (monitor_id) VALUES ($1) ON CONFLICT DO NOTHING",
            monitor_id,
        )
        row = await conn.fetchrow(_INPUTS, monitor_id)
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
    conn: Conn, monitor_ids: Sequence[int]
) -> dict[int, Inputs | MonitorConfigError | None]:
    """`inputs` of several monitors in one statement, their state rows locked in monitor_id
    order until the caller's transaction ends. By monitor: its inputs; None when it has no
    state row yet (nothing locked: `inputs` creates it); its MonitorConfigError. A monitor gone
    is missing."""
    rows = await conn.fetch(_BATCH_INPUTS, sorted(monitor_ids))
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
    assert row is not None
    return AlertState(**{name: row[name] for name in STATE_FIELDS})


async def save_state(
    conn: Conn,
    monitor_id: int,
    s: AlertState,
    changed_at: datetime | None = None,
    release: tuple[datetime, datetime | None] | None = None,
) -> None:
    """Write the state; `changed_at`: when the state (`s.state`) changed, if it did;
    `release`: the lease and the due time to `release` the monitor's queue row with, in the
    same statement."""
    values: dict[str, object] = {name: getattr(s, name) for name in STATE_FIELDS}
    if changed_at is not None:
        values["changed_at"] = changed_at
    names = sorted(values)
    sets = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=2))
    update = f"UPDATE monitor_alert_state SET {sets}, updated_at = now() WHERE monitor_id = $1"
    args = [values[n] for n in names]
    if release is not None:
        lease, due_at = release
        update = f"WITH saved AS ({update}) {_release(len(args) + 2, due_at)}"
        args += [lease] if due_at is None else [lease, due_at]
    await conn.execute(update, monitor_id, *args)


_RESULT_COLUMNS = ", ".join(CountryResult._fields)
_FACTS = tuple(f for f in StoredFacts.__struct_fields__ if f not in ("scheduled_at", "country"))
_FACT_COLUMNS = ", ".join(_FACTS)


class ResultsAfter(NamedTuple):
    """`results_after`'s rows, and the facts posture reads of those that ran (the same rows,
    not missed nor inconclusive, in the same order: `controller.posture.store.rounds_after`)."""

    rows: list[CountryResult]
    facts: list[StoredFacts]


async def results_after(conn: Conn, monitor_id: int, after: datetime, limit: int) -> ResultsAfter:
    """Results scheduled after `after`, oldest round first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_RESULT_COLUMNS}, {_FACT_COLUMNS} FROM check_results"
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
    conn: Conn, afters: Mapping[int, datetime], limit: int
) -> dict[int, ResultsAfter]:
    """`results_after` of several monitors (by monitor: its cursor) in one statement, at most
    `limit` rows each."""
    if not afters:
        return {}
    ids = sorted(afters)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT u.id AS for_monitor, r.* FROM unnest($1::bigint[], $2::timestamptz[])"
        " AS u(id, after) CROSS JOIN LATERAL ("
        f"  SELECT {_RESULT_COLUMNS}, {_FACT_COLUMNS} FROM check_results"
        "  WHERE monitor_id = u.id AND scheduled_at > u.after"
        "  AND hour >= date_trunc('hour', u.after, 'UTC')"
        # The earliest cursor ($4) bounds the days every monitor's read may open, so that the
        # planner prunes the partitions the cursors of the rows cannot (they are per row).
        f"  AND scheduled_at > $4 AND {scheduled_since('$4::timestamptz')}"
        "  ORDER BY scheduled_at, country LIMIT $3) r",
        ids,
        [afters[i] for i in ids],
        limit,
        min(afters.values()),
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


async def lock_queued(conn: Conn, monitor_ids: Sequence[int]) -> None:
    """Lock the monitors' queue rows in monitor_id order (as the ingester's `mark` does) until
    the caller's transaction ends, so its releases wait on no one after."""
    await conn.execute(_LOCK_QUEUED, sorted(monitor_ids))


# The batch's states (a jsonb array of rows) and every release of its leases (`_FORGET`'s and
# `_LATER`'s) in one statement: a queue row the ingester marked again meanwhile (due_at no
# longer the lease) stays due. The rows are found by their keys (`= ANY`), so that no join
# may read either table whole.
_SAVE_BATCH = (
    "WITH saved AS (UPDATE monitor_alert_state s SET "
    + ", ".join(f"{n} = j.{n}" for n in STATE_FIELDS)
    + ", updated_at = now()"
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
    conn: Conn, states: Mapping[int, AlertState], releases: Sequence[Release]
) -> None:
    """`save_state` of several monitors (their state unchanged: no `changed_at`) and the
    `release` of several leases, in one statement."""
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
    )


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
# DEFAULT_CHECK_COUNTRIES).
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
FROM m JOIN monitor_alert_state a ON a.monitor_id = m.id
WHERE q.monitor_id = m.id AND q.settled AND q.revised_from IS NULL
    AND q.watch_step = m.check_interval AND q.due_at = q.watch_at + m.closes_after
    AND q.due_at > now() AND q.watch_at + m.step <= a.last_round_at + $2 * m.step
    AND (SELECT count(DISTINCT r.country) FROM result_rows r
        WHERE r.monitor_id = m.id AND r.scheduled_at = q.watch_at AND r.status = 0
            AND r.detail_ms IS NOT NULL
            -- The round pushed closes after now(), so it began at most the longest close
            -- ago (that of the longest interval and timeout, $3 and $5): only the partitions
            -- from that day on are read.
            AND r.scheduled_at >= date_trunc('day', now() - round_closes_after($3, $5), 'UTC'))
        >= m.expected
"""


async def push_settled(
    conn: Conn, monitor_ids: Set[int], default_countries: int, rounds: int = PUSH_ROUNDS
) -> None:
    """`mark`'s last step: move the settled queue rows of `monitor_ids` (their batch's results
    all routine, their rows locked) on by a round each where `_PUSH` allows, at most `rounds`
    rounds past the alerter's cursor."""
    if monitor_ids:
        await conn.execute(
            _PUSH,
            sorted(monitor_ids),
            rounds,
            CHECK_INTERVAL_MAX,
            default_countries,
            TIMEOUT_MAX,
        )


async def unwatch(conn: Conn, monitor_id: int) -> None:
    """A round off the monitor's grid is on its way (a triggered one): its settled row no
    longer moves on by itself, so that round is judged by its close at the latest."""
    await conn.execute(
        "UPDATE alert_queue SET watch_at = NULL, watch_step = NULL WHERE monitor_id = $1",
        monitor_id,
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


async def open_incident(
    conn: Conn,
    monitor_id: int,
    started_at: datetime,
    cause_kind: str,
    cause: str,
    countries: Sequence[str],
) -> Incident:
    row: asyncpg.Record | None = await conn.fetchrow(
        "INSERT INTO incidents (monitor_id, started_at, cause_kind, cause, countries)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {INCIDENT_COLUMNS}",
        monitor_id,
        started_at,
        cause_kind,
        cause,
        list(countries),
    )
    assert row is not None
    return _incident(row)


INCIDENT_COLUMNS = (
    "id, public_id, monitor_id, started_at, opened_at, ended_at, duration_seconds, cause_kind,"
    " cause, countries, notified, reminders, end_reason, recovery_held"
)


def _incident(row: asyncpg.Record) -> Incident:
    return Incident(**{name: row[name] for name in Incident.__struct_fields__})


async def incident(conn: Conn, incident_id: int) -> Incident | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1", incident_id
    )
    return None if row is None else _incident(row)


async def close_incident(
    conn: Conn,
    incident_id: int,
    ended_at: datetime,
    *,
    reason: str | None = None,
    hold_recovery: bool = False,
) -> Incident:
    """`reason`: why it ended other than by recovering; `hold_recovery`: its recovery notice, if
    it was notified at all, waits until notifications are no longer held (`held_recoveries`)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "UPDATE incidents SET ended_at = $2, end_reason = $3, recovery_held = $4 AND notified"
        f" WHERE id = $1 RETURNING {INCIDENT_COLUMNS}",
        incident_id,
        ended_at,
        reason,
        hold_recovery,
    )
    assert row is not None
    return _incident(row)


async def held_recoveries(conn: Conn, monitor_id: int) -> list[Incident]:
    """Closed incidents whose recovery notice is still held, oldest first; each is released
    (the caller queues its notice in the same transaction)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "UPDATE incidents SET recovery_held = false"
        " WHERE monitor_id = $1 AND recovery_held"
        f" RETURNING {INCIDENT_COLUMNS}",
        monitor_id,
    )
    return sorted((_incident(r) for r in rows), key=lambda i: i.id)


async def set_incident_notified(conn: Conn, incident_id: int, reminders: int) -> None:
    await conn.execute(
        "UPDATE incidents SET notified = true, reminders = $2 WHERE id = $1",
        incident_id,
        reminders,
    )


async def list_incidents(
    conn: Conn, monitor_id: int, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    """A page of the monitor's incidents, newest first, each with the counts of its notices
    (the recovery's left out) `queued`, `delivered` and still `waiting` to go out."""
    rows = await conn.fetch(
        f"SELECT {INCIDENT_COLUMNS}, d.queued, d.delivered, d.waiting FROM incidents i"
        " CROSS JOIN LATERAL (SELECT count(*) AS queued,"
        "   count(*) FILTER (WHERE o.status = 'sent') AS delivered,"
        "   count(*) FILTER (WHERE o.status = 'pending') AS waiting"
        "   FROM notification_outbox o"
        "   WHERE o.incident_id = i.id AND o.kind NOT IN ('recovered', 'no_data')) d"
        " WHERE i.monitor_id = $1"
        " ORDER BY i.started_at DESC, i.id DESC LIMIT $2 OFFSET $3",
        monitor_id,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        "SELECT count(*) FROM incidents WHERE monitor_id = $1", monitor_id
    )
    return rows, total


async def enqueue(
    conn: Conn, monitor_id: int, incident_id: int | None, notes: Sequence[Outgoing]
) -> None:
    """Queue `notes` (a posture notice has no incident); a dedupe key already queued is skipped.
    The `CHANNELS` row becomes one row per notification channel of the monitor."""
    expanded: list[Outgoing] = []
    for n in notes:
        if n.channel == CHANNELS:
            expanded += await channel_store.fan_out(
                conn,
                monitor_id,
                incident_id,
                n.kind,
                n.dedupe_key,
                n.subject,
                utcnow(),
                details=n.text or None,
                severity=n.severity,
            )
        else:
            expanded.append(n)
    for n in expanded:
        await conn.execute(
            "INSERT INTO notification_outbox (monitor_id, incident_id, kind, channel, target,"
            " subject, body_text, body_html, dedupe_key, channel_id, payload)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            " ON CONFLICT (dedupe_key) DO NOTHING",
            monitor_id,
            incident_id,
            n.kind,
            n.channel,
            n.target,
            n.subject,
            n.text,
            n.html,
            n.dedupe_key,
            n.channel_id,
            n.payload,
        )


async def enqueue_for_organization(
    conn: Conn, organization_id: int, notes: Sequence[Outgoing]
) -> None:
    """Queue `notes` about no monitor (a status page's subscriber mail), on the organization's
    budget; a dedupe key already queued is skipped."""
    for n in notes:
        await conn.execute(
            "INSERT INTO notification_outbox (organization_id, kind, channel, target,"
            " subject, body_text, body_html, dedupe_key, list_unsubscribe)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (dedupe_key) DO NOTHING",
            organization_id,
            n.kind,
            n.channel,
            n.target,
            n.subject,
            n.text,
            n.html,
            n.dedupe_key,
            n.list_unsubscribe,
        )


class Claimed(NamedTuple):
    """A notification leased to an outbox worker; `attempts` counts this one."""

    id: int
    monitor_id: int | None  # None: a page's subscriber mail (`organization_id` says whose)
    incident_id: int | None
    kind: str
    channel: str
    target: str
    subject: str
    body_text: str
    body_html: str | None
    attempts: int
    dedupe_key: str
    organization_id: int | None
    list_unsubscribe: str | None
    channel_id: int | None = None
    payload: dict[str, Any] | None = None  # a channel's event (channel_kinds.Event), decoded


OUTBOX_COLUMNS = ", ".join(Claimed._fields)
_HISTORY = (
    "INSERT INTO alert_history (outbox_id, monitor_id, incident_id, kind, channel, target,"
    " attempt, status, error)"
)
REMINDER_DROPPED = "not sent: the incident closed before the reminder went out"

# Both only touch rows that are due, so never one a worker holds a lease on.
_GIVE_UP = f"""
WITH settled AS (
    UPDATE notification_outbox
    SET status = 'failed', last_error = coalesce(last_error, 'no outcome recorded')
    WHERE status = 'pending' AND next_attempt_at <= $1 AND attempts >= $2
    RETURNING {OUTBOX_COLUMNS}, status, last_error
)
{_HISTORY} SELECT id, monitor_id, incident_id, kind, channel, target, attempts, status, last_error
FROM settled
"""
_DROP_REMINDERS = f"""
WITH settled AS (
    UPDATE notification_outbox o SET status = 'dropped', last_error = $2
    FROM incidents i
    WHERE o.status = 'pending' AND o.next_attempt_at <= $1 AND o.kind = 'reminder'
      AND i.id = o.incident_id AND i.ended_at IS NOT NULL
    RETURNING {", ".join(f"o.{c}" for c in OUTBOX_COLUMNS.split(", "))}, o.status, o.last_error
)
{_HISTORY} SELECT id, monitor_id, incident_id, kind, channel, target, attempts, status, last_error
FROM settled
"""
_DROP = f"""
WITH settled AS (
    UPDATE notification_outbox SET status = 'dropped', last_error = $2, attempts = attempts - 1
    WHERE id = ANY($1::bigint[]) AND status = 'pending'
    RETURNING {OUTBOX_COLUMNS}, status, last_error
)
{_HISTORY} SELECT id, monitor_id, incident_id, kind, channel, target, attempts, status, last_error
FROM settled
"""


async def drop_claimed(conn: Conn, outbox_ids: Sequence[int], reason: str) -> None:
    """Drop notifications just claimed, unsent (their claim's attempt given back), with
    `reason` in the row and its history line."""
    await conn.execute(_DROP, list(outbox_ids), reason)


async def outbox_due(conn: Conn, now: datetime) -> bool:
    """Whether a pending notification is due `now`: the only rows `settle_outbox` and
    `claim_outbox` act on, so a worker's pass without any opens no transaction."""
    due: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM notification_outbox"
        " WHERE status = 'pending' AND next_attempt_at <= $1)",
        now,
    )
    return due


async def settle_outbox(conn: Conn, now: datetime, max_attempts: int) -> None:
    """Before a claim: a row out of attempts (its last worker died before writing the outcome
    back) fails with its last error; a reminder whose incident has closed is dropped, never
    sent. Each gets its line in the history."""
    await conn.execute(_GIVE_UP, now, max_attempts)
    await conn.execute(_DROP_REMINDERS, now, REMINDER_DROPPED)


async def claim_outbox(
    conn: Conn,
    now: datetime,
    limit: int,
    lease_s: float,
    channels: Sequence[str],
    max_attempts: int,
) -> list[Claimed]:
    """Pending notifications now due on one of `channels` with attempts left, leased to the
    caller: attempts counted, and hidden from other workers for `lease_s` (longer than the
    batch may take). A row waits while an older one to the same recipient about the same
    monitor is pending (sending, or backing off), so notices arrive in the order written."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "UPDATE notification_outbox SET attempts = attempts + 1,"
        " next_attempt_at = $1 + make_interval(secs => $3)"
        " WHERE id IN (SELECT o.id FROM notification_outbox o"
        "   WHERE o.status = 'pending' AND o.next_attempt_at <= $1"
        "     AND o.channel = ANY($4::text[]) AND o.attempts < $5"
        "     AND NOT EXISTS (SELECT 1 FROM notification_outbox p WHERE p.status = 'pending'"
        "       AND p.monitor_id = o.monitor_id AND p.channel = o.channel"
        "       AND p.target = o.target AND p.id < o.id)"
        "   ORDER BY o.next_attempt_at, o.id LIMIT $2 FOR UPDATE SKIP LOCKED)"
        f" RETURNING {OUTBOX_COLUMNS}",
        now,
        limit,
        lease_s,
        list(channels),
        max_attempts,
    )
    return [Claimed(*r.values()) for r in rows]


async def record_attempt(
    conn: Conn,
    row: Claimed,
    error: str | None,
    *,
    retry_at: datetime | None,
) -> bool:
    """The outcome of one lease: sent, to retry at `retry_at`, or failed for good; and its
    line in the history. False when the lease was lost (another worker claimed the row again
    since, or it was settled): the row is then left to its new owner; the line is written."""
    if error is None:
        status = "sent"
        updated = await conn.fetchval(
            "UPDATE notification_outbox SET status = 'sent', sent_at = now(), last_error = NULL"
            " WHERE id = $1 AND attempts = $2 AND status = 'pending' RETURNING id",
            row.id,
            row.attempts,
        )
    else:
        status = "failed"
        updated = await conn.fetchval(
            "UPDATE notification_outbox SET last_error = $3,"
            " status = CASE WHEN $4::timestamptz IS NULL THEN 'failed' ELSE 'pending' END,"
            " next_attempt_at = coalesce($4, next_attempt_at)"
            " WHERE id = $1 AND attempts = $2 AND status = 'pending' RETURNING id",
            row.id,
            row.attempts,
            error,
            retry_at,
        )
    await conn.execute(
        f"{_HISTORY} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        row.id,
        row.monitor_id,
        row.incident_id,
        row.kind,
        row.channel,
        row.target,
        row.attempts,
        status,
        error,
    )
    return updated is not None


async def list_history(
    conn: Conn, monitor_id: int, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(
        "SELECT h.id, h.kind, h.channel, h.target, h.attempt, h.status, h.error, h.at,"
        " i.public_id AS incident_public_id"
        " FROM alert_history h LEFT JOIN incidents i ON i.id = h.incident_id"
        " WHERE h.monitor_id = $1 ORDER BY h.at DESC, h.id DESC LIMIT $2 OFFSET $3",
        monitor_id,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        "SELECT count(*) FROM alert_history WHERE monitor_id = $1", monitor_id
    )
    return rows, total


async def add_event(conn: Conn, subject: str, msg_id: str, payload: bytes) -> None:
    await conn.execute(
        "INSERT INTO event_outbox (subject, msg_id, payload) VALUES ($1, $2, $3)"
        " ON CONFLICT (msg_id) DO NOTHING",
        subject,
        msg_id,
        payload,
    )


# Any constant of its own; held by the one replica publishing events at a time.
EVENTS_LOCK = 0x6D61696C6576656E  # "maileven"


class Event(NamedTuple):
    """A state change or posture note written for the EVENTS stream, not yet published."""

    id: int
    subject: str
    msg_id: str
    payload: bytes


async def events_waiting(conn: Conn) -> bool:
    """Whether any event waits to be published: one statement outside a transaction, so a pass
    with nothing to publish takes no lock and opens no transaction."""
    waiting: bool = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM event_outbox)")
    return waiting


async def claim_events(conn: Conn, limit: int) -> list[Event] | None:
    """The oldest events, in the order written; None while another replica is publishing
    (one publisher at a time, so events leave in order). Holds the lock until the caller's
    transaction ends."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", EVENTS_LOCK):
        return None
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {', '.join(Event._fields)} FROM event_outbox ORDER BY id LIMIT $1", limit
    )
    return [Event(r["id"], r["subject"], r["msg_id"], bytes(r["payload"])) for r in rows]


async def delete_events(conn: Conn, ids: Sequence[int]) -> None:
    await conn.execute("DELETE FROM event_outbox WHERE id = ANY($1::bigint[])", list(ids))
