"""Check results, their hourly rollups and the latest state per monitor and country.

`store` is the one way in, for the ingester's batches and the scheduler's `no_agent` rows alike:
one statement per batch stores the rows (compact or full, migration 0027), their rollups and the
per-country states they move, idempotent on the job id; only rows new to the table (or a real
result replacing the controller's own `missed` row, or an `inconclusive` one, for its job id)
move the per-country state (and with it the monitor's `lastCheckedAt`) and the rollups, so a
redelivered result changes nothing. Readers read the view `check_results`, which rebuilds every row.
"""

import hashlib
import operator
import re
from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Final
from uuid import UUID

import asyncpg
import msgspec
import structlog

from controller.arrivals import store as arrivals_store
from controller.arrivals import watch_store
from controller.db import rows as typed
from controller.db.pool import Conn
from controller.ingest import alert_queue_store as alert_queue
from controller.ingest.pack_rules import PACK_LOCK, packed_before
from controller.jobs.result_kinds import (
    INCONCLUSIVE,
    UNCOUNTED,
    ResultRow,
    scheduled_since,
)
from controller.logins import account_store as account_logins
from controller.logins import cap as login_cap
from controller.observability import metrics
from controller.roundtrips import rules as roundtrip_rules
from controller.roundtrips import sends_store as mail_sends
from controller.sidechecks import facts_store, legacy
from controller.sidechecks.facts_store import side_of
from controller.sidechecks.frame import Arrived, keeps_facts
from controller.sidechecks.registry import WIRED
from controller.sidechecks.stores import KEEPERS, STORES
from shared.arrivals import Arrival
from shared.guards import BrokenInvariant
from shared.messages import (
    ArcResults,
    AuthResults,
    Hop,
    Phases,
    TlsInfo,
)
from shared.sidechecks import SideCheckError

log = structlog.get_logger(__name__)


class CheckedResult(legacy.LegacyResult, kw_only=True):
    """A result from the stream as the ingester decodes it: the times and the monitor id are
    checked here (PostgreSQL would also take `now` or `infinity` for a time); what an agent that
    predates `sideChecks` sends instead is folded into `side_checks`
    (controller.sidechecks.legacy)."""

    monitor_id: UUID  # type: ignore[assignment]
    scheduled_at: datetime  # type: ignore[assignment]
    started_at: datetime  # type: ignore[assignment]
    finished_at: datetime  # type: ignore[assignment]


decode_result = msgspec.json.Decoder(CheckedResult).decode


# A batch travels to PostgreSQL as one JSON array ($1), a result an array: its facts' hash, then
# its fields in `BATCH`'s order (one msgspec call for the batch, where converting each field in
# Python cost more CPU than the rest of the ingester). PostgreSQL parses it as `jsonb` and
# checks each field as it casts it (times, UUIDs). An array's elements are read by position: an
# object read by `json_to_recordset` costs a hash table of its keys. The JSON fields stay
# `jsonb`, NULL for a JSON null. Only the core check's fields: each side check's facts go to its
# own table (`_store_side`).
BATCH: Final = (
    ("jobId", "job_id", "text"), ("scheduledAt", "scheduled_at", "timestamptz"),
    ("monitorId", "monitor_id", "uuid"), ("monitorType", "monitor_type", "text"),
    ("country", "country", "text"), ("agentId", "agent_id", "text"),
    ("status", "status", "text"), ("errorKind", "error_kind", "text"),
    ("message", "message", "text"), ("banner", "banner", "text"),
    ("responseTimeMs", "response_time_ms", "float8"), ("phases", "phases", "jsonb"),
    ("tls", "tls", "jsonb"), ("address", "address", "text"),
    ("startedAt", "started_at", "timestamptz"), ("finishedAt", "finished_at", "timestamptz"),
    ("folder", "folder", "text"), ("hops", "hops", "jsonb"),
    ("authResults", "auth_results", "jsonb"), ("capabilities", "capabilities", "jsonb"),
    ("capabilitiesBeforeTls", "capabilities_before_tls", "jsonb"), ("arc", "arc", "jsonb"),
)  # fmt: skip
_WIRE = {wire: kind for wire, _, kind in BATCH}
_values = operator.attrgetter(*(attr for _, attr, _ in BATCH))
# A real result (it has an agent) replaces a synthetic row the controller wrote for its job id
# (`expired` when the round closed, before the result came): the real one is what happened. A
# synthetic row never replaces anything, and a real result never replaces another real one, so a
# redelivery changes nothing. An agent's own `expired` (a redelivered job it got after its life
# ended: the check did not run) is missed too, and a check that did run for that job replaces it.
# An `inconclusive` result (this agent's path could not tell) gives way to an `up` or `down` of
# the same job (another agent of the country ran it: that says what happened), never the other
# way round, so no agent's `inconclusive` can hide a failure another one saw.
#
# Rows are `result_rows` (migration 0027): a result whose status is `up` and whose facts are
# those of the latest full row of its monitor and country (`monitor_country_state.detail_*`, from
# the same UTC day) is stored compact, pointing at that row; any other is stored full, with a
# `result_details` row of its own; a replaced row becomes full. One row per key (monitor, round,
# country, the job id's first 16 bits: the same for the same job id) per batch, a check that ran
# first, then a conclusive one, since an upsert may not touch a row twice. The same statement
# adds the rows to their hourly rollups (a replaced row leaves the `missed` count it was in) and
# moves each (monitor, country) state by the rows it stored, and returns one row per state moved:
# what the alerter's queue needs (`alert_queue.mark`), no row per result.
#
# The statement is plain SQL, one named file for each kind of batch (`_FILES`), read once:
# store_results.sql for any batch, and the three variants `make ingest-sql` writes from it and
# store_once.sql (tools/ingest_sql.py): for a batch holding each (monitor, country) once (`r`
# without DISTINCT ON, the CTEs store_results.sql marks "once" in their one-row forms), for one
# holding a result old enough to be in a pack already (stored unless its pack has it:
# `result_pack_holds`, migration 0122; only such batches read `result_packs`, whose partitions
# a statement reading it locks and opens each time it runs), and for both. Where a statement
# spells out what Python holds too, that is checked here as it loads, a BrokenInvariant naming
# the file (the status a result is stored with is one SQL function, `result_stored_status`,
# migration 0083: tests/pipeline/test_ingest.py holds it to MISSED_KINDS).
_FILES: Final = {
    (False, False): "store_results.sql",
    (False, True): "store_results_old.sql",
    (True, False): "store_results_once.sql",
    (True, True): "store_results_once_old.sql",
}
# The batch's fields where a statement reads them: `BATCH`'s, at their positions.
_READS = re.compile(r'e->>?(\d+)[^"\n]* AS "(\w+)"')
_FIELDS_FROM, _FIELDS_TO = "(e->>0)::uuid AS facts,", "FROM jsonb_"
_UNCOUNTED = f"k.status NOT IN ({', '.join(repr(s) for s in sorted(UNCOUNTED))})"


def _fields_read(name: str, sql: str) -> str:
    """The part of statement `name` that reads the batch's fields."""
    if _FIELDS_FROM not in sql or _FIELDS_TO not in sql:
        raise BrokenInvariant(f"{name} does not read the batch's fields from $1")
    return sql[sql.index(_FIELDS_FROM) + len(_FIELDS_FROM) : sql.index(_FIELDS_TO)]


def _statement(name: str) -> str:
    """The named statement, checked (`_checked`)."""
    return _checked(name, Path(__file__).with_name(name).read_text())


def _checked(name: str, sql: str) -> str:
    """`sql`, statement `name`, once checked to read the batch where `BATCH` puts it and to
    count the statuses UNCOUNTED does not; a BrokenInvariant saying which when it does not."""
    fields = _fields_read(name, sql)
    expected = [(str(n), wire) for n, (wire, _, _) in enumerate(BATCH, start=1)]
    if _READS.findall(fields) != expected:
        raise BrokenInvariant(f"{name} reads the batch elsewhere than BATCH puts it")
    if _UNCOUNTED not in sql:
        raise BrokenInvariant(f"{name} does not leave out UNCOUNTED's statuses: {_UNCOUNTED}")
    return sql


# The statements by batch: (each (monitor, country) once, old enough to be packed).
_STATEMENTS = {key: _statement(name) for key, name in _FILES.items()}
_INSERT = _STATEMENTS[False, False]
_FIELDS = _fields_read(_FILES[False, False], _INSERT)
_INSERT_OLD = _STATEMENTS[False, True]
_ONCE = _STATEMENTS[True, False]
# Agent ids new to `result_agents`, in a statement of their own so that the batch's statement
# sees them (the sequence moves only for a name not there yet). The names come as a JSON array:
# PostgreSQL estimates `unnest` of an array parameter by the array's length, which a generic
# plan cannot know, so it planned that form again for every batch (~0.1 ms); the rows of
# `jsonb_array_elements_text` are estimated alike either way, and its plan is made once.
_AGENTS = """
INSERT INTO result_agents (name)
SELECT DISTINCT n FROM jsonb_array_elements_text($1::text::jsonb) AS n
WHERE NOT EXISTS (SELECT 1 FROM result_agents a WHERE md5(a.name) = md5(n))
ON CONFLICT DO NOTHING
"""
_encode = msgspec.json.Encoder().encode


def facts_of(row: ResultRow | CheckedResult) -> str:
    """The hash of what a result says of the server, as its wire values: two results with the
    same hash store the same facts, so a routine one may be stored compact, pointing at the
    other's full row (the statement compares it with the state's `detail_facts`)."""
    said = (
        row.status, row.error_kind, row.message, getattr(row, "banner", None),
        getattr(row, "tls", None), getattr(row, "address", None), getattr(row, "folder", None),
        getattr(row, "hops", None), getattr(row, "auth_results", None),
        getattr(row, "capabilities", None), getattr(row, "capabilities_before_tls", None),
        None, row.monitor_type, row.monitor_id,  # None: mail DNS's place before side checks
        getattr(row, "arc", None),
    )  # fmt: skip
    return hashlib.md5(_encode(said), usedforsecurity=False).hexdigest()


def _fields(row: ResultRow | CheckedResult) -> tuple[object, ...]:
    """A row's fields in `BATCH`'s order; None for those a controller's own row leaves out."""
    if isinstance(row, CheckedResult):
        values: tuple[object, ...] = _values(row)
        return values
    return tuple(getattr(row, attr, None) for _, attr, _ in BATCH)


def _encode_rows(rows: Sequence[ResultRow | CheckedResult]) -> str:
    """The batch's JSON array ($1): each result's facts' hash, then its fields."""
    return _encode([(facts_of(r), *_fields(r)) for r in rows]).decode()


_ENSURE_STATE = """
INSERT INTO monitor_country_state (monitor_id, country, last_status, last_scheduled_at, last_job_id)
SELECT u.monitor_id, u.country, 'missed', '-infinity', ''
FROM unnest($1::bigint[], $2::text[]) AS u(monitor_id, country)
ON CONFLICT (monitor_id, country) DO NOTHING
"""

_UPDATE_STATE = Path(__file__).with_name("store_state.sql").read_text()


async def store(
    conn: Conn,
    rows: Sequence[ResultRow | CheckedResult],
    default_countries: int = 2,
    *,
    now: datetime,
) -> int:
    """Insert the rows not stored yet, a real result over a synthetic one, and move the state
    they imply; return how many were stored (new or replacing). `default_countries`:
    DEFAULT_CHECK_COUNTRIES, how many countries a round of a monitor without a list expects;
    `now`: the writer's clock (rows' `stored_at`, the alert queue's due time, which results
    may sit in a pack).

    The caller owns the transaction. Rows of an unknown monitor (deleted meanwhile) are dropped.
    Raises asyncpg.DataError when PostgreSQL refuses a value (e.g. a time out of its range).
    """
    if not rows:
        return 0
    await _count_logins(conn, rows)
    await _count_mail(conn, rows)
    agents = sorted({r.agent_id for r in rows if r.agent_id is not None})
    if agents:
        await conn.execute(_AGENTS, _encode(agents).decode())
    # Results old enough to fall in an hour a packer may be packing wait for it (or it for
    # them), so that the statement sees the pack and stores none of them twice.
    old = packed_before(now)
    packed = any(r.scheduled_at < old for r in rows)
    if packed:
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", PACK_LOCK)
    once = len({(r.monitor_id, r.country) for r in rows}) == len(rows)
    moved = await conn.fetch(_STATEMENTS[once, packed], _encode_rows(rows), old, now)
    await _store_side(
        conn, [r for r in rows if isinstance(r, CheckedResult) and r.side_checks], now
    )
    if not moved:
        return 0
    if lost := [r for r in moved if r["lost"] is not None]:
        await _move_lost(conn, lost, now)
    revised: dict[int, datetime] = {}
    routine: set[int] = set()
    eventful: set[int] = set()
    for r in moved:
        monitor = r["monitor_id"]
        if (at := r["revised"]) is not None:
            revised[monitor] = min(at, revised.get(monitor, at))
        (routine if r["routine"] else eventful).add(monitor)
    # The alerter's queue; a replaced row's round may be judged already: judged again.
    await alert_queue.mark(
        conn,
        [r["monitor_id"] for r in moved],
        revised,
        routine - eventful,
        default_countries=default_countries,
        now=now,
    )
    return sum(r["stored"] for r in moved)


async def _move_lost(conn: Conn, lost: list[asyncpg.Record], now: datetime) -> None:
    """Move the states another transaction made while the batch's statement ran (`_INSERT`'s
    rows with a `lost` fold, the batch's effect on the state): made here if gone again, then
    moved as the statement would have, in (monitor, country) order."""
    lost = sorted(lost, key=lambda r: (r["monitor_id"], r["country"]))
    await conn.execute(_ENSURE_STATE, [r["monitor_id"] for r in lost], [r["country"] for r in lost])
    await conn.execute(_UPDATE_STATE, "[" + ",".join(r["lost"] for r in lost) + "]", now)


async def _store_side(conn: Conn, rows: Sequence[CheckedResult], now: datetime) -> None:
    """Each side check's facts of `rows`, by its store (the ingester has bounded them), as the
        frame keeps them (`keeps_facts`: none of an `inconclusive` result; a job's first, which,
        that kept, are those of the result that stands). Facts that do not fit their side check's
        types are dropped (logged), the result kept. Counted: the facts taken (a redelivered
    result's, whichever store keeps them, are not)."""
    for check in WIRED.values():
        if check.wire is None:
            raise BrokenInvariant("store._store_side: check.wire is unset")
        arrived: list[Arrived[msgspec.Struct]] = []
        for r in rows:
            if not keeps_facts(r.status):
                if check.name in r.side_checks:
                    metrics.side_facts_dropped(check.name, "inconclusive")
                continue
            try:
                facts = check.wire.facts_of(r.side_checks)
            except SideCheckError as exc:
                log.warning("side facts dropped", job_id=r.job_id, error=str(exc)[:200])
                continue
            if facts is not None:
                at = Arrived(
                    r.job_id, r.monitor_id, r.country, r.scheduled_at, r.finished_at, facts
                )
                arrived.append(at)
        own = STORES.get(check.name)
        if own is None:
            arrived = await facts_store.unseen(conn, check.name, arrived)
        if not arrived:
            continue
        if (keeper := KEEPERS.get(check.name)) is not None:
            await keeper(conn, arrived)
        if check.arrivals is not None:
            found = [a for at in arrived for a in check.arrivals(at)]
            await _heartbeats_mail(conn, found, now)
        if own is None:
            stored = await facts_store.record(conn, check.name, arrived)
        else:
            stored = await own(conn, arrived)
        metrics.side_check_facts(check.name, stored)


async def _heartbeats_mail(conn: Conn, found: Sequence[Arrival], at: datetime) -> None:
    """Mail a side check read for heartbeats, stored as their arrivals (each once) and their
    judge woken at `at` (the writer's clock: an agent's own clock could put it off)."""
    if not found:
        return
    await arrivals_store.keep(conn, found)
    await watch_store.wake(conn, sorted({a.monitor_id for a in found}), at)


async def _count_logins(conn: Conn, rows: Sequence[ResultRow | CheckedResult]) -> None:
    """Tell the login cap what the rows' checks attempted (controller.logins.cap)."""
    said = [
        (
            r.job_id,
            login_cap.attempted(
                r.status,
                r.error_kind,
                r.logins,
                r.phases.auth_ms,
            )
            if isinstance(r, CheckedResult)
            else login_cap.attempted(r.status, r.error_kind, None, None),
        )
        for r in rows
    ]
    await account_logins.attempted(conn, [j for j, _ in said], [n for _, n in said])


async def _count_mail(conn: Conn, rows: Sequence[ResultRow | CheckedResult]) -> None:
    """Tell the round-trip caps which messages a server may hold (controller.roundtrips.rules):
    only an agent's result says; the controller's own rows (`expired` at a round's close) leave
    the message counted."""
    said = [
        (r.job_id, roundtrip_rules.accepted(r.status, r.message, r.phases.submit_ms))
        for r in rows
        if isinstance(r, CheckedResult) and r.monitor_type == "roundtrip"
    ]
    if said:
        await mail_sends.settle(conn, [j for j, _ in said], [a for _, a in said])


async def ensure_partitions(conn: Conn, first_day: datetime, days: int = 4) -> int:
    """Create the daily partitions from `first_day` (UTC) on; return how many were new."""
    created: int = await conn.fetchval(
        "SELECT ensure_check_result_partitions($1::date, $2)", first_day.date(), days
    )
    return created


# What each retention keeps: raw rows, packs and their details (CHECK_RAW_DAYS), the hourly rollups
# (CHECK_HISTORY_DAYS).
RAW_TABLES = ("result_rows", "result_details", "result_packs")
ROLLUP_TABLES = ("result_rollups",)


async def partitions_before(conn: Conn, day: date, parents: Sequence[str]) -> list[str]:
    """The names of the daily partitions of `parents` of days before `day`."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_class p ON p.oid = i.inhparent JOIN unnest($2::text[]) AS n(parent)"
        "  ON p.relname = n.parent AND p.relnamespace = c.relnamespace"
        " WHERE c.relname = n.parent || '_p' || substr(c.relname, length(n.parent) + 3)"
        "  AND substr(c.relname, length(n.parent) + 3) ~ '^[0-9]{8}$'"
        "  AND to_date(substr(c.relname, length(n.parent) + 3), 'YYYYMMDD') < $1"
        "  AND pg_table_is_visible(c.oid)"
        " ORDER BY c.relname",
        day,
        list(parents),
    )
    return [r["relname"] for r in rows]


def partition_day(name: str) -> date:
    """The UTC day of a daily partition (`<parent>_pYYYYMMDD`)."""
    return datetime.strptime(name.rsplit("_p", 1)[1], "%Y%m%d").date()


async def drop_partitions_before(
    conn: Conn, day: date, parents: Sequence[str] = RAW_TABLES
) -> list[str]:
    """Drop the daily partitions of `parents` of days before `day`; return their names. A drop
    locks the table for a moment, so it runs at most once a day per partition
    (`keep_partitions`)."""
    names = await partitions_before(conn, day, parents)
    for name in names:
        await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
    return names


RESULT_COLUMNS = (
    "job_id, scheduled_at, monitor_public_id, monitor_type, country, agent_id, status,"
    " error_kind, message, banner, response_time_ms, phases, tls, address, started_at,"
    " finished_at, stored_at, folder, hops, auth_results, capabilities, capabilities_before_tls,"
    " arc"
)


class StoredResult(msgspec.Struct, frozen=True, kw_only=True):
    """A stored result as the view `check_results` rebuilds it (RESULT_COLUMNS)."""

    job_id: str
    scheduled_at: datetime
    monitor_public_id: UUID
    monitor_type: str
    country: str
    agent_id: str | None
    status: str
    error_kind: str | None
    message: str
    banner: str | None
    response_time_ms: float | None
    phases: Phases | None
    tls: TlsInfo | None
    address: str | None
    started_at: datetime | None
    finished_at: datetime | None
    stored_at: datetime
    folder: str | None
    hops: list[Hop] | None
    auth_results: AuthResults | None
    capabilities: list[str] | None
    capabilities_before_tls: list[str] | None
    arc: ArcResults | None = None
    # Each side check's facts of the result, by name (JSON values: its wire types them).
    side: dict[str, object] = msgspec.field(default_factory=dict)


# How far back from its end a page of results is looked for first (a page of the newest results
# reads a few hours of packs, not all of them); the last try is unbounded.
_PAGE_WINDOWS = (timedelta(hours=3), timedelta(days=2), None)


async def list_page(
    conn: Conn,
    monitor_id: int,
    *,
    country: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
    now: datetime,
) -> tuple[list[StoredResult], int]:
    """A monitor's results, newest first, by scheduled time (`since` inclusive, `until` not);
    `now` (the reader's clock) ends the first windows looked in when `until` is not given."""
    args: list[object] = [monitor_id]
    where = ["monitor_id = $1"]
    if country is not None:
        args.append(country)
        where.append(f"country = ${len(args)}")
    if since is not None:
        args.append(since)
        where.append(
            f"scheduled_at >= ${len(args)} AND {scheduled_since(f'${len(args)}::timestamptz')}"
        )
    if until is not None:
        args.append(until)
        where.append(f"scheduled_at < ${len(args)} AND hour <= ${len(args)}")
    cond = " AND ".join(where)
    end = until or now
    rows: list[asyncpg.Record] = []
    for window in _PAGE_WINDOWS:
        # Rows of [end - window, end) come before all older ones: when that window holds the
        # whole page, the page is right; else a wider window is read.
        bounded = window is not None and (since is None or end - window > since)
        extra = f" AND {scheduled_since(f'${len(args) + 3}::timestamptz')}" if bounded else ""
        rows = await conn.fetch(
            f"SELECT {RESULT_COLUMNS}, {side_of('job_id')} AS side"
            f" FROM check_results WHERE {cond}{extra}"
            f" ORDER BY scheduled_at DESC, country, job_id LIMIT ${len(args) + 1}"
            f" OFFSET ${len(args) + 2}",
            *args,
            limit,
            offset,
            *([_hour(end - window)] if bounded and window is not None else []),
        )
        if len(rows) == limit or not bounded:
            break
    total: int = await conn.fetchval(f"SELECT count(*) FROM check_results WHERE {cond}", *args)
    return typed.many(StoredResult, rows), total


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _next_hour(at: datetime) -> datetime:
    return at if _hour(at) == at else _hour(at) + timedelta(hours=1)


class Counted(msgspec.Struct, frozen=True):
    """Rounds up, down and missed (inconclusive included) in one window."""

    up: int
    down: int
    missed: int


class CountryCounts(msgspec.Struct, frozen=True):
    """One country's counts, one per window asked for, in their order."""

    country: str
    windows: list[Counted]


async def counts(
    conn: Conn, monitor_id: int, windows: Sequence[datetime], until: datetime
) -> list[CountryCounts]:
    """Per country, counts of up/down/missed since each of `windows` (UTC times, the earliest
    first) until `until`; inconclusive results count as missed.

    The whole UTC hours of a window come from the hourly rollups; its partial first and last
    hours from the raw rows (where these are past CHECK_RAW_DAYS, that first partial hour
    counts nothing)."""
    # $2: until, $3: its hour; window i: $(4 + 2i) its start, $(5 + 2i) its first whole hour.
    args: list[datetime] = [until, _hour(until)]
    for since in windows:
        args += [since, _next_hour(since)]
    last = "$3::timestamptz"

    def start(i: int) -> str:
        return f"${4 + 2 * i}::timestamptz"

    def edge(i: int) -> str:
        return f"${5 + 2 * i}::timestamptz"

    def counted(i: int) -> str:
        """Whether a row of the union below counts in window i."""
        return (
            f"CASE WHEN raw THEN at >= {start(i)} AND (at < {edge(i)} OR at >= {last})"
            f" ELSE at >= {edge(i)} AND at < {last} END"
        )

    n = len(windows)
    leading = " OR ".join(
        f"(scheduled_at >= {start(i)} AND scheduled_at < {edge(i)})" for i in range(n)
    )
    hours = ", ".join(f"date_trunc('hour', {start(i)}, 'UTC')" for i in range(n))
    selects = ", ".join(
        f"coalesce(sum({name}) FILTER (WHERE {counted(i)}), 0)::int AS {name}_{i}"
        for i in range(n)
        for name in ("up", "down", "missed")
    )
    rows = await conn.fetch(
        f"SELECT country, {selects} FROM ("
        "  SELECT result_country(country) AS country, hour AS at, false AS raw, up, down, missed"
        f"  FROM result_rollups WHERE monitor_id = $1 AND hour >= {edge(0)} AND hour < {last}"
        "  UNION ALL"
        "  SELECT country, scheduled_at, true, (status = 'up')::int, (status = 'down')::int,"
        f"  (status IN ('missed', '{INCONCLUSIVE}'))::int"
        "  FROM check_results WHERE monitor_id = $1 AND scheduled_at < $2::timestamptz"
        f"  AND (scheduled_at >= {last} OR {leading}) AND hour <= $2::timestamptz"
        f"  AND (hour >= {last} OR hour IN ({hours}))"
        ") x GROUP BY country HAVING "
        + " OR ".join(f"sum(up + down + missed) FILTER (WHERE {counted(i)}) > 0" for i in range(n))
        + " ORDER BY country",
        monitor_id,
        *args,
    )
    return [
        CountryCounts(
            r["country"],
            [Counted(r[f"up_{i}"], r[f"down_{i}"], r[f"missed_{i}"]) for i in range(n)],
        )
        for r in rows
    ]


class StateTime(msgspec.Struct, frozen=True):
    """One country's time up and down in a window (SQL `uptime_ms`, the one rule) and when the
    window's known time really starts."""

    country: str
    up_ms: int
    down_ms: int
    covered_from: datetime


async def state_time(
    conn: Conn, monitor_id: int, since: datetime, until: datetime
) -> list[StateTime]:
    """Per country, the time the monitor was up and down in [since, until) (`uptime_ms`)."""
    rows = await conn.fetch(
        "SELECT result_country(country) AS country, up_ms, down_ms, covered_from"
        " FROM uptime_ms($1, $2, $3) ORDER BY country",
        monitor_id,
        since,
        until,
    )
    return typed.in_order(StateTime, rows)


LATENCY_BOUNDS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class HourRollup(msgspec.Struct, frozen=True):
    """One monitor's counts in one country and UTC hour; `latency`: results that ran per
    response-time bucket (up to each of LATENCY_BOUNDS_MS, then the rest)."""

    hour: datetime
    country: str
    up: int
    down: int
    missed: int
    latency: list[int]

    def percentile_ms(self, p: float) -> float | None:
        """The bound of the bucket holding the p-th percentile (0-100) of the response times;
        None without any, inf in the last (open) bucket."""
        total = sum(self.latency)
        if not total:
            return None
        rank, seen = p / 100 * total, 0
        for bound, count in zip([*LATENCY_BOUNDS_MS, float("inf")], self.latency, strict=True):
            seen += count
            if seen >= rank:
                return float(bound)
        return float("inf")


async def rollups(
    conn: Conn, monitor_id: int, since: datetime, until: datetime
) -> list[HourRollup]:
    """A monitor's hourly rollups with hours in [`since`, `until`), oldest first."""
    rows = await conn.fetch(
        "SELECT hour, result_country(country) AS country, up, down, missed, latency"
        " FROM result_rollups WHERE monitor_id = $1 AND hour >= $2 AND hour < $3"
        " ORDER BY hour, country",
        monitor_id,
        since,
        until,
    )
    return [HourRollup(*r.values()) for r in rows]


class CountryState(msgspec.Struct, frozen=True):
    """A monitor's latest state in one country."""

    country: str
    last_status: str
    last_error_kind: str | None
    last_message: str
    last_scheduled_at: datetime
    last_job_id: str
    consecutive_failures: int
    consecutive_successes: int


# Addresses read a monitor at most: a host name has a few.
ADDRESSES_MAX = 16


# The addresses the monitor `{monitor}`'s results scheduled from `{since}` to `{until}` (the
# reader's now) connected to: those of its latest `{limit}` rows that name one, read newest
# first along the primary key (one rule for `recent_addresses` and the confirmation siblings
# of `controller.scheduling`). The upper bound keeps the days' partitions made ahead (and the
# default one) out of the read: a monitor costs a probe of the days it spans, not of every
# partition after `since`.
RECENT_ADDRESSES = (
    "(SELECT d.address FROM result_details d WHERE d.monitor_id = {monitor}"
    " AND d.scheduled_at >= {since} AND d.scheduled_at <= {until} AND d.address IS NOT NULL"
    " ORDER BY d.scheduled_at DESC LIMIT {limit})"
)


async def recent_addresses(
    conn: Conn, monitor_ids: Collection[int], since: datetime, until: datetime
) -> dict[int, set[str]]:
    """The addresses the monitors' results scheduled from `since` to `until` (the reader's
    now) connected to (their full rows', whatever their status: a down server's checks often
    connected to none): those of each monitor's latest `ADDRESSES_MAX` rows that name one (read
    newest first along the key, so a monitor costs a few rows while its checks connect)."""
    rows = await conn.fetch(
        "SELECT DISTINCT m.id, a.address FROM unnest($1::bigint[]) AS m(id) CROSS JOIN LATERAL"
        f" {RECENT_ADDRESSES.format(monitor='m.id', since='$2', until='$4', limit='$3')} a",
        list(monitor_ids),
        since,
        ADDRESSES_MAX,
        until,
    )
    found: dict[int, set[str]] = {}
    for r in rows:
        found.setdefault(r["id"], set()).add(r["address"])
    return found


async def country_states(conn: Conn, monitor_id: int) -> list[CountryState]:
    """The latest state of each country the monitor is checked from now (listed, or those of
    its latest round)."""
    rows = await conn.fetch(
        "SELECT s.country, s.last_status, s.last_error_kind, s.last_message,"
        " s.last_scheduled_at, s.last_job_id, s.consecutive_failures, s.consecutive_successes"
        " FROM monitor_country_state s JOIN monitors m ON m.id = s.monitor_id"
        " WHERE s.monitor_id = $1"
        "  AND checked_from(m.allowed_country_codes, m.round_countries, s.country)"
        " ORDER BY s.country",
        monitor_id,
    )
    return typed.many(CountryState, rows)
