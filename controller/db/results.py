"""Check results and the latest state per monitor and country.

`store` is the one way in, for the ingester's batches and the scheduler's `no_agent` rows alike:
one INSERT per batch, idempotent on the job id; only rows new to the table move the per-country
state and `monitors.last_checked_at`, so a redelivered result changes nothing.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from controller.db import alerts
from controller.db.pool import Conn
from shared.messages import CheckResult
from shared.timefmt import parse_iso

# Error kinds of a round nobody ran in time: stored with status `missed`, neither up nor down.
MISSED_KINDS = frozenset({"no_agent", "expired"})


@dataclass(frozen=True, slots=True)
class ResultRow:
    job_id: str
    scheduled_at: datetime
    monitor_public_id: UUID
    monitor_type: str
    country: str
    agent_id: str | None
    status: str
    error_kind: str | None
    message: str
    banner: str | None = None
    response_time_ms: float | None = None
    phases: str | None = None  # JSON text
    tls: str | None = None  # JSON text
    address: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


def from_wire(result: CheckResult) -> ResultRow:
    """The row for a decoded result; ValueError when a time or the monitor id does not parse."""
    missed = result.status == "down" and result.error_kind in MISSED_KINDS
    return ResultRow(
        job_id=result.job_id,
        scheduled_at=parse_iso(result.scheduled_at),
        monitor_public_id=UUID(result.monitor_id),
        monitor_type=result.monitor_type,
        country=result.country,
        agent_id=result.agent_id,
        status="missed" if missed else result.status,
        error_kind=None if result.status == "up" else result.error_kind,
        message=result.message,
        banner=result.banner,
        response_time_ms=result.response_time_ms,
        phases=msgspec.json.encode(result.phases).decode(),
        tls=None if result.tls is None else msgspec.json.encode(result.tls).decode(),
        address=result.address,
        started_at=parse_iso(result.started_at),
        finished_at=parse_iso(result.finished_at),
    )


_FIELDS = (
    ("job_id", "text"),
    ("scheduled_at", "timestamptz"),
    ("monitor_public_id", "uuid"),
    ("monitor_type", "text"),
    ("country", "text"),
    ("agent_id", "text"),
    ("status", "text"),
    ("error_kind", "text"),
    ("message", "text"),
    ("banner", "text"),
    ("response_time_ms", "float8"),
    ("phases", "text"),
    ("tls", "text"),
    ("address", "text"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
)
_NAMES = ", ".join(name for name, _ in _FIELDS)
_SELECTS = [f"r.{n}::jsonb" if n in ("phases", "tls") else f"r.{n}" for n, _ in _FIELDS]
# The batch travels as one JSON array of rows ($1): encoding it is one msgspec call, where
# sixteen parameter arrays cost asyncpg more CPU than the rest of the ingester.
_INSERT = f"""
INSERT INTO check_results (monitor_id, {_NAMES})
SELECT m.id, {", ".join(_SELECTS)}
FROM json_to_recordset($1::json) AS r({", ".join(f"{n} {t}" for n, t in _FIELDS)})
JOIN monitors m ON m.public_id = r.monitor_public_id
ON CONFLICT (job_id, scheduled_at) DO NOTHING
RETURNING monitor_id, country, job_id, scheduled_at, status, error_kind, message, finished_at
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
    consecutive_failures =
        CASE WHEN u.reset_fail THEN 0 ELSE s.consecutive_failures END + u.add_fail,
    consecutive_successes =
        CASE WHEN u.reset_succ THEN 0 ELSE s.consecutive_successes END + u.add_succ,
    updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
            $7::text[], $8::int[], $9::bool[], $10::int[], $11::bool[])
    AS u(monitor_id, country, status, error_kind, message, scheduled_at, job_id,
         add_fail, reset_fail, add_succ, reset_succ)
WHERE s.monitor_id = u.monitor_id AND s.country = u.country
  AND u.scheduled_at >= s.last_scheduled_at
"""

_LAST_CHECKED = """
UPDATE monitors m SET last_checked_at = u.at
FROM unnest($1::bigint[], $2::timestamptz[]) AS u(id, at)
WHERE m.id = u.id AND (m.last_checked_at IS NULL OR m.last_checked_at < u.at)
"""


@dataclass(slots=True)
class _Fold:
    """The effect of a batch's new results on one (monitor, country) state, in time order."""

    latest: asyncpg.Record
    add_fail: int = 0
    reset_fail: bool = False
    add_succ: int = 0
    reset_succ: bool = False

    def apply(self, row: asyncpg.Record) -> None:
        self.latest = row
        if row["status"] == "up":
            self.add_succ, self.add_fail, self.reset_fail = self.add_succ + 1, 0, True
        elif row["status"] == "down":
            self.add_fail, self.add_succ, self.reset_succ = self.add_fail + 1, 0, True


async def store(conn: Conn, rows: Sequence[ResultRow]) -> int:
    """Insert the rows not stored yet and move the state they imply; return how many were new.

    The caller owns the transaction. Rows of an unknown monitor (deleted meanwhile) are dropped.
    """
    if not rows:
        return 0
    inserted = await conn.fetch(_INSERT, _encode_rows(rows).decode())
    if inserted:
        await _move_state(conn, inserted)
        await alerts.mark(conn, [r["monitor_id"] for r in inserted])  # alerter's queue
    return len(inserted)


async def _move_state(conn: Conn, inserted: list[asyncpg.Record]) -> None:
    folds: dict[tuple[int, str], _Fold] = {}
    checked: dict[int, datetime] = {}
    for row in sorted(inserted, key=lambda r: r["scheduled_at"]):
        key = (row["monitor_id"], row["country"])
        fold = folds.get(key)
        if fold is None:
            fold = folds[key] = _Fold(row)
        fold.apply(row)
        if row["status"] != "missed" and row["finished_at"] is not None:
            at = row["finished_at"]
            checked[row["monitor_id"]] = max(at, checked.get(row["monitor_id"], at))
    # Lock rows in one order everywhere, so concurrent ingesters cannot deadlock.
    keys = sorted(folds)
    await conn.execute(_ENSURE_STATE, [k[0] for k in keys], [k[1] for k in keys])
    latest = [folds[k].latest for k in keys]
    await conn.execute(
        _UPDATE_STATE,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [r["status"] for r in latest],
        [r["error_kind"] for r in latest],
        [r["message"] for r in latest],
        [r["scheduled_at"] for r in latest],
        [r["job_id"] for r in latest],
        [folds[k].add_fail for k in keys],
        [folds[k].reset_fail for k in keys],
        [folds[k].add_succ for k in keys],
        [folds[k].reset_succ for k in keys],
    )
    if checked:
        ids = sorted(checked)
        await conn.execute(_LAST_CHECKED, ids, [checked[i] for i in ids])


async def ensure_partitions(conn: Conn, first_day: datetime, days: int = 4) -> int:
    """Create the daily partitions from `first_day` (UTC) on; return how many were new."""
    created: int = await conn.fetchval(
        "SELECT ensure_check_result_partitions($1::date, $2)", first_day.date(), days
    )
    return created


RESULT_COLUMNS = (
    "job_id, scheduled_at, monitor_public_id, monitor_type, country, agent_id, status,"
    " error_kind, message, banner, response_time_ms, phases, tls, address, started_at,"
    " finished_at, stored_at"
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
    """Per country, counts of up/down/missed since each of `windows` (the earliest first)."""
    selects = ", ".join(
        f"count(*) FILTER (WHERE status = '{status}' AND scheduled_at >= ${i}) AS {status}_{i - 3}"
        for i in range(3, 3 + len(windows))
        for status in ("up", "down", "missed")
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
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT country, last_status, last_error_kind, last_message, last_scheduled_at,"
        " last_job_id, consecutive_failures, consecutive_successes"
        " FROM monitor_country_state WHERE monitor_id = $1 ORDER BY country",
        monitor_id,
    )
    return rows
