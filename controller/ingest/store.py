"""Check results and the latest state per monitor and country.

`store` is the one way in, for the ingester's batches and the scheduler's `no_agent` rows alike:
one INSERT per batch, idempotent on the job id; only rows new to the table (or a real result
replacing the controller's own `missed` row, or an `inconclusive` one, for its job id) move the
per-country state (and with it the monitor's `lastCheckedAt`), so a redelivered result changes
nothing.
"""

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from controller.alerting import store as alerts
from controller.db.pool import Conn
from controller.ingest.result_kinds import INCONCLUSIVE, MISSED_KINDS, UNCOUNTED, ResultRow
from controller.logins import account_store as account_logins
from controller.logins import cap as login_cap
from shared.messages import CheckResult


class CheckedResult(CheckResult):
    """A result from the stream as the ingester decodes it: the times and the monitor id are
    checked here (PostgreSQL would also take `now` or `infinity` for a time)."""

    monitor_id: UUID  # type: ignore[assignment]
    scheduled_at: datetime  # type: ignore[assignment]
    started_at: datetime  # type: ignore[assignment]
    finished_at: datetime  # type: ignore[assignment]


decode_result = msgspec.json.Decoder(CheckedResult).decode


# A batch travels to PostgreSQL as one JSON array of results with their wire names ($1), which
# PostgreSQL parses and checks (times, UUIDs); encoding it is one msgspec call, where converting
# each field in Python cost more CPU than the rest of the ingester.
_RECORD = (
    '"jobId" text, "scheduledAt" timestamptz, "monitorId" uuid, "monitorType" text,'
    ' country text, "agentId" text, status text, "errorKind" text, message text, banner text,'
    ' "responseTimeMs" float8, phases jsonb, tls jsonb, address text, "startedAt" timestamptz,'
    ' "finishedAt" timestamptz, folder text, hops jsonb, "authResults" jsonb,'
    ' capabilities jsonb, "capabilitiesBeforeTls" jsonb, "mailDns" jsonb'
)
_MISSED = ", ".join(f"'{kind}'" for kind in sorted(MISSED_KINDS))
# The status as stored: a `down` of a missed kind is `missed` (the check did not run); status
# and error kind `inconclusive` go together, whichever of the two a failing result set.
_STATUS = f"""CASE WHEN r.status = 'down' AND r."errorKind" IN ({_MISSED}) THEN 'missed'
    WHEN r.status = '{INCONCLUSIVE}' OR (r.status = 'down' AND r."errorKind" = '{INCONCLUSIVE}')
        THEN '{INCONCLUSIVE}'
    ELSE r.status END"""
# A real result (it has an agent) replaces a synthetic row the controller wrote for its job id
# (`expired` when the round closed, before the result came): the real one is what happened. A
# synthetic row never replaces anything, and a real result never replaces another real one, so a
# redelivery changes nothing. An agent's own `expired` (a redelivered job it got after its life
# ended: the check did not run) is missed too, and a check that did run for that job replaces it.
# An `inconclusive` result (this agent's path could not tell) gives way to an `up` or `down` of
# the same job (another agent of the country ran it: that says what happened), never the other
# way round, so no agent's `inconclusive` can hide a failure another one saw.
# One row per job id per batch, a check that ran first, then a conclusive one, since an upsert
# may not touch a row twice. A new row's stored_at is now() (the transaction's start), a
# replaced one's the clock's, which is later: that tells them apart (`xmax` is not there on a
# partitioned table), so the alerter judges a replaced row's round again.
_INSERT = f"""
INSERT INTO check_results AS c (
    monitor_id, job_id, scheduled_at, monitor_public_id, monitor_type, country, agent_id, status,
    error_kind, message, banner, response_time_ms, phases, tls, address, started_at, finished_at,
    folder, hops, auth_results, capabilities, capabilities_before_tls, mail_dns)
SELECT DISTINCT ON (r."jobId", r."scheduledAt")
    m.id, r."jobId", r."scheduledAt", r."monitorId", r."monitorType", r.country, r."agentId",
    {_STATUS},
    CASE WHEN r.status = 'up' THEN NULL WHEN {_STATUS} = '{INCONCLUSIVE}' THEN '{INCONCLUSIVE}'
        ELSE r."errorKind" END,
    coalesce(r.message, ''), r.banner, r."responseTimeMs", r.phases, r.tls, r.address,
    r."startedAt", r."finishedAt", r.folder, r.hops, r."authResults", r.capabilities,
    r."capabilitiesBeforeTls", r."mailDns"
FROM json_to_recordset($1::json) AS r({_RECORD})
JOIN monitors m ON m.public_id = r."monitorId"
ORDER BY r."jobId", r."scheduledAt", r."agentId" IS NULL,
    {_STATUS} = 'missed', {_STATUS} = '{INCONCLUSIVE}'
ON CONFLICT (job_id, scheduled_at) DO UPDATE SET
    agent_id = EXCLUDED.agent_id, status = EXCLUDED.status, error_kind = EXCLUDED.error_kind,
    message = EXCLUDED.message, banner = EXCLUDED.banner,
    response_time_ms = EXCLUDED.response_time_ms, phases = EXCLUDED.phases, tls = EXCLUDED.tls,
    address = EXCLUDED.address, started_at = EXCLUDED.started_at,
    finished_at = EXCLUDED.finished_at, folder = EXCLUDED.folder, hops = EXCLUDED.hops,
    auth_results = EXCLUDED.auth_results, capabilities = EXCLUDED.capabilities,
    capabilities_before_tls = EXCLUDED.capabilities_before_tls, mail_dns = EXCLUDED.mail_dns,
    stored_at = clock_timestamp()
WHERE EXCLUDED.agent_id IS NOT NULL
    AND (c.agent_id IS NULL OR (c.status = 'missed' AND EXCLUDED.status <> 'missed')
        OR (c.status = '{INCONCLUSIVE}' AND EXCLUDED.status IN ('up', 'down')))
RETURNING monitor_id, country, job_id, scheduled_at, status, error_kind, message, finished_at,
    stored_at <> now() AS replaced
"""
_encode_rows = msgspec.json.Encoder().encode


_ENSURE_STATE = """
INSERT INTO monitor_country_state (monitor_id, country, last_status, last_scheduled_at, last_job_id)
SELECT u.monitor_id, u.country, 'missed', '-infinity', ''
FROM unnest($1::bigint[], $2::text[]) AS u(monitor_id, country)
ON CONFLICT (monitor_id, country) DO NOTHING
"""

_UPDATE_STATE = """
UPDATE monitor_country_state s SET
    last_status = u.status,
    last_error_kind = u.error_kind,
    last_message = u.message,
    last_scheduled_at = u.scheduled_at,
    last_job_id = u.job_id,
    last_checked_at = greatest(s.last_checked_at, u.checked_at),
    consecutive_failures =
        CASE WHEN u.reset_fail THEN 0 ELSE s.consecutive_failures END + u.add_fail,
    consecutive_successes =
        CASE WHEN u.reset_succ THEN 0 ELSE s.consecutive_successes END + u.add_succ,
    updated_at = now()
FROM json_to_recordset($1::json) AS u(
    monitor_id bigint, country text, status text, error_kind text, message text,
    scheduled_at timestamptz, job_id text, checked_at timestamptz,
    add_fail int, reset_fail bool, add_succ int, reset_succ bool)
WHERE s.monitor_id = u.monitor_id AND s.country = u.country
  AND u.scheduled_at >= s.last_scheduled_at
RETURNING s.monitor_id, s.country
"""


class _Fold(msgspec.Struct):
    """The effect of a batch's new results on one (monitor, country) state, in time order: its
    latest round, the end of its latest check that says something of the server (not missed,
    not inconclusive), and the counters' moves."""

    monitor_id: int
    country: str
    status: str = ""
    error_kind: str | None = None
    message: str = ""
    scheduled_at: datetime | None = None
    job_id: str = ""
    checked_at: datetime | None = None
    add_fail: int = 0
    reset_fail: bool = False
    add_succ: int = 0
    reset_succ: bool = False

    def apply(self, row: asyncpg.Record) -> None:
        """`row`: one of `_INSERT`'s RETURNING rows, for this monitor and country."""
        self.job_id, self.scheduled_at, self.status = (
            row["job_id"],
            row["scheduled_at"],
            row["status"],
        )
        self.error_kind, self.message, end = row["error_kind"], row["message"], row["finished_at"]
        if self.status in UNCOUNTED:
            return
        if end is not None and (self.checked_at is None or end > self.checked_at):
            self.checked_at = end
        if self.status == "up":
            self.add_succ, self.add_fail, self.reset_fail = self.add_succ + 1, 0, True
        else:
            self.add_fail, self.add_succ, self.reset_succ = self.add_fail + 1, 0, True


async def store(conn: Conn, rows: Sequence[ResultRow | CheckedResult]) -> int:
    """Insert the rows not stored yet, a real result over a synthetic one, and move the state
    they imply; return how many were stored (new or replacing).

    The caller owns the transaction. Rows of an unknown monitor (deleted meanwhile) are dropped.
    Raises asyncpg.DataError when PostgreSQL refuses a value (e.g. a time out of its range).
    """
    if not rows:
        return 0
    await _count_logins(conn, rows)
    inserted = await conn.fetch(_INSERT, _encode_rows(rows).decode())
    if inserted:
        await _move_state(conn, inserted)
        revised: dict[int, datetime] = {}
        for r in inserted:
            if r["replaced"]:
                at = revised.get(r["monitor_id"], r["scheduled_at"])
                revised[r["monitor_id"]] = min(at, r["scheduled_at"])
        # The alerter's queue; a replaced row's round may be judged already: judged again.
        await alerts.mark(conn, [r["monitor_id"] for r in inserted], revised)
    return len(inserted)


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


async def _move_state(conn: Conn, inserted: list[asyncpg.Record]) -> None:
    folds: dict[tuple[int, str], _Fold] = {}
    for row in sorted(inserted, key=lambda r: r["scheduled_at"]):
        key = (row["monitor_id"], row["country"])
        fold = folds.get(key)
        if fold is None:
            fold = folds[key] = _Fold(*key)
        fold.apply(row)
    # Rows are locked in one order everywhere, so concurrent ingesters cannot deadlock. Most
    # states exist: update first, and create only those the update did not find (or skipped as
    # newer than this batch, which the second update skips again).
    keys = sorted(folds)
    rows = await conn.fetch(_UPDATE_STATE, _encode_rows([folds[k] for k in keys]).decode())
    updated = {(r["monitor_id"], r["country"]) for r in rows}
    if missing := [k for k in keys if k not in updated]:
        await conn.execute(_ENSURE_STATE, [k[0] for k in missing], [k[1] for k in missing])
        await conn.execute(_UPDATE_STATE, _encode_rows([folds[k] for k in missing]).decode())


async def ensure_partitions(conn: Conn, first_day: datetime, days: int = 4) -> int:
    """Create the daily partitions from `first_day` (UTC) on; return how many were new."""
    created: int = await conn.fetchval(
        "SELECT ensure_check_result_partitions($1::date, $2)", first_day.date(), days
    )
    return created


async def drop_partitions_before(conn: Conn, day: date) -> list[str]:
    """Drop the daily partitions of days before `day`; return their names. A drop locks the
    table for a moment, so it runs at most once a day per partition (`keep_partitions`)."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'check_results'::regclass AND c.relname ~ '^check_results_p[0-9]{8}$'"
        " AND to_date(substr(c.relname, 16), 'YYYYMMDD') < $1 ORDER BY c.relname",
        day,
    )
    names: list[str] = [r["relname"] for r in rows]
    for name in names:
        await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
    return names


RESULT_COLUMNS = (
    "job_id, scheduled_at, monitor_public_id, monitor_type, country, agent_id, status,"
    " error_kind, message, banner, response_time_ms, phases, tls, address, started_at,"
    " finished_at, stored_at, folder, hops, auth_results, capabilities, capabilities_before_tls,"
    " mail_dns"
)


async def list_page(
    conn: Conn,
    monitor_id: int,
    *,
    country: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    """A monitor's results, newest first, by scheduled time (`since` inclusive, `until` not)."""
    where = (
        "monitor_id = $1 AND ($2::text IS NULL OR country = $2)"
        " AND ($3::timestamptz IS NULL OR scheduled_at >= $3)"
        " AND ($4::timestamptz IS NULL OR scheduled_at < $4)"
    )
    args: tuple[Any, ...] = (monitor_id, country, since, until)
    rows = await conn.fetch(
        f"SELECT {RESULT_COLUMNS} FROM check_results WHERE {where}"
        " ORDER BY scheduled_at DESC, country, job_id LIMIT $5 OFFSET $6",
        *args,
        limit,
        offset,
    )
    total: int = await conn.fetchval(f"SELECT count(*) FROM check_results WHERE {where}", *args)
    return rows, total


async def counts(
    conn: Conn, monitor_id: int, windows: Sequence[datetime], until: datetime
) -> list[asyncpg.Record]:
    """Per country, counts of up/down/missed since each of `windows` (the earliest first);
    inconclusive results count as missed."""
    statuses = {"up": "('up')", "down": "('down')", "missed": f"('missed', '{INCONCLUSIVE}')"}
    selects = ", ".join(
        f"count(*) FILTER (WHERE status IN {values} AND scheduled_at >= ${i}) AS {name}_{i - 3}"
        for i in range(3, 3 + len(windows))
        for name, values in statuses.items()
    )
    return await conn.fetch(
        f"SELECT country, {selects} FROM check_results"
        " WHERE monitor_id = $1 AND scheduled_at >= $3 AND scheduled_at < $2"
        " GROUP BY country ORDER BY country",
        monitor_id,
        until,
        *windows,
    )


async def country_states(conn: Conn, monitor_id: int) -> list[asyncpg.Record]:
    """The latest state of each country the monitor is checked from now (listed, or those of
    its latest round)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT s.country, s.last_status, s.last_error_kind, s.last_message,"
        " s.last_scheduled_at, s.last_job_id, s.consecutive_failures, s.consecutive_successes"
        " FROM monitor_country_state s JOIN monitors m ON m.id = s.monitor_id"
        " WHERE s.monitor_id = $1 AND (coalesce(m.allowed_country_codes, m.round_countries)"
        " IS NULL OR s.country = ANY(coalesce(m.allowed_country_codes, m.round_countries)))"
        " ORDER BY s.country",
        monitor_id,
    )
    return rows
