"""Rows read as a store's Structs (controller.db.rows), on real rows of PostgreSQL: by column
name with nested jsonb converted, nulls kept, columns the Struct does not name ignored, a
value of the wrong type refused; and in column order."""

from datetime import date, datetime
from uuid import UUID

import asyncpg
import msgspec
import pytest

from controller.db import rows as typed
from shared.messages import Phases


class Reading(msgspec.Struct, frozen=True):
    id: int
    at: datetime
    phases: Phases | None
    tags: list[str]
    note: str | None


class Day(msgspec.Struct, frozen=True):
    monitor_id: int
    day: date
    up: int


_ROWS = (
    "SELECT * FROM (VALUES"
    " (1, '2026-11-27T01:00:00Z'::timestamptz, '{\"dnsMs\": 1.5, \"tlsMs\": 2}'::jsonb,"
    "  ARRAY['a', 'b'], NULL::text, 'ignored'),"
    " (2, '2026-11-27T02:00:00Z'::timestamptz, NULL::jsonb, ARRAY[]::text[], 'n', 'x')"
    ") v(id, at, phases, tags, note, other) ORDER BY id"
)


async def test_rows_become_structs_by_column_name(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        rows = await conn.fetch(_ROWS)
        missing = await conn.fetchrow("SELECT 1 AS id WHERE false")
    first, second = typed.many(Reading, rows)
    assert first.phases == Phases(dns_ms=1.5, tls_ms=2.0)
    assert (first.id, first.tags, first.note) == (1, ["a", "b"], None)
    assert first.at.isoformat() == "2026-11-27T01:00:00+00:00"
    assert (second.phases, second.tags, second.note) == (None, [], "n")
    assert typed.one(Reading, rows[0]) == first
    assert typed.maybe(Reading, missing) is None


async def test_a_value_of_another_type_is_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT 'one' AS monitor_id, current_date AS day, 1 AS up")
    assert row is not None
    with pytest.raises(msgspec.ValidationError, match="monitor_id"):
        typed.one(Day, row)


async def test_in_order_takes_the_columns_as_the_fields(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT 7::bigint AS m, '2026-11-27'::date AS d, 3 AS u UNION ALL"
            " SELECT 8, '2026-11-26', 0 ORDER BY m"
        )
    assert typed.in_order(Day, rows) == [
        Day(7, date(2026, 11, 27), 3),
        Day(8, date(2026, 11, 26), 0),
    ]
    assert typed.many(Day, []) == []


async def test_a_uuid_column_stays_a_uuid(pool: asyncpg.Pool) -> None:
    class Named(msgspec.Struct, frozen=True):
        public_id: UUID

    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT '6f1c0f2e-8a3b-4c55-9d7e-0b1a2c3d4e5f'::uuid AS public_id"
        )
    assert row is not None
    assert typed.one(Named, row).public_id == UUID("6f1c0f2e-8a3b-4c55-9d7e-0b1a2c3d4e5f")
