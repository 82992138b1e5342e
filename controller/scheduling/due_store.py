"""The scheduler's queries on `monitors`: claim due monitors, move their next due time.

Claims lock with `FOR NO KEY UPDATE SKIP LOCKED`: replicas skip each other's rows instead of
waiting, and the lock does not block the foreign-key checks of the ingester's writes.
"""

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from controller.db.pool import Conn

JOB_COLUMNS = (
    "id, public_id, organization_id, type, hostname, port, status, check_interval, timeout_seconds,"
    " allowed_country_codes, round_countries, config, next_due_at, mail_domain, mail_dns_at,"
    " (SELECT b.failures FROM login_backoff b WHERE b.monitor_id = monitors.id) AS login_failures,"
    " (SELECT b.retry_at FROM login_backoff b WHERE b.monitor_id = monitors.id) AS login_retry_at"
)


async def claim_due(conn: Conn, now: datetime, limit: int) -> list[asyncpg.Record]:
    """Due monitors, earliest first, locked until the caller's transaction ends."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM monitors"
        " WHERE status <> 'disabled' AND next_due_at <= $1"
        " ORDER BY next_due_at LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return rows


async def claim_unplanned(conn: Conn, limit: int, default_countries: int) -> list[asyncpg.Record]:
    """Monitors without a due time yet (new, or interval/status just changed), locked;
    `never_run`: no round of it has gone anywhere yet; `countries`: how many its rounds go to
    (`default_countries` without a list)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, public_id, organization_id, check_interval,"
        " round_countries IS NULL AS never_run,"
        " coalesce(cardinality(allowed_country_codes), $2) AS countries FROM monitors"
        " WHERE status <> 'disabled' AND next_due_at IS NULL"
        " LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED",
        limit,
        default_countries,
    )
    return rows


async def set_next_due(
    conn: Conn,
    ids: Sequence[int],
    due: Sequence[datetime | None],
    countries: Sequence[str | None] | None = None,
) -> None:
    """Move each monitor's next due time; with `countries` (comma-joined codes, or None to keep
    the stored ones) also record where its round went."""
    await conn.execute(
        "UPDATE monitors m SET next_due_at = u.due,"
        " round_countries = coalesce(string_to_array(u.countries, ','), m.round_countries)"
        " FROM unnest($1::bigint[], $2::timestamptz[], $3::text[]) AS u(id, due, countries)"
        " WHERE m.id = u.id",
        ids,
        due,
        countries if countries is not None else [None] * len(ids),
    )


async def earliest_due(conn: Conn) -> datetime | None:
    at: datetime | None = await conn.fetchval(
        "SELECT min(next_due_at) FROM monitors WHERE status <> 'disabled'"
    )
    return at


async def job_row(conn: Conn, monitor_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM monitors WHERE id = $1", monitor_id
    )
    return row


async def job_rows(conn: Conn, monitor_ids: Sequence[int]) -> list[asyncpg.Record]:
    """The monitors that are not disabled among `monitor_ids`."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM monitors WHERE id = ANY($1::bigint[]) AND status <> 'disabled'"
        " ORDER BY id",
        monitor_ids,
    )
    return rows


async def mail_dns_sent(conn: Conn, monitor_ids: Sequence[int], at: datetime) -> None:
    """The monitors' rounds at `at` carried their mail domain (`schedule.trigger_dns`)."""
    if monitor_ids:
        await conn.execute(
            "UPDATE monitors SET mail_dns_at = $2 WHERE id = ANY($1::bigint[])", monitor_ids, at
        )
