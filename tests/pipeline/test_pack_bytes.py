"""Packs in bytes (issue 24, migration 0035): a pack's numbers are byte lines that decode to
exactly the numbers encoded, and packs written in 0032's arrays read back as they were."""

import random
import uuid
from datetime import timedelta
from typing import cast

import asyncpg

from controller.db.migrate import migrate, migrations
from controller.db.pool import connect
from shared.timefmt import utcnow
from tests.conftest import _with_database

BYTES = "0035_pack_bytes"
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def _width(vals: list[int]) -> int:
    span = max(vals) - min(vals)
    return next(w for w in range(5) if span < 256**w or w == 4)


async def test_a_line_decodes_to_the_numbers_encoded(pipe_pool: asyncpg.Pool) -> None:
    rng = random.Random(34)
    cases: list[list[int]] = [
        [7],
        [-1] * 60,
        [INT_MIN, INT_MAX],
        [INT_MAX, INT_MAX - 1],
        [INT_MIN, 0, -1, 255, 256],
        [60000] * 59 + [59999],
        [0] + [60000] * 59,  # deltas: the first from the start of the hour
        [3_599_000] + [rng.randint(59_000, 61_000) for _ in range(59)],
        [INT_MIN] + [INT_MAX] * 3,
        [5, 6],
    ]
    for span in (1, 255, 256, 65535, 65536, 2**24 - 1, 2**24, 2**31):
        base = rng.randint(INT_MIN, INT_MAX - span)
        cases.append([base + rng.randint(0, span) for _ in range(rng.randint(1, 300))] + [base])
    async with pipe_pool.acquire() as conn:
        for vals in cases:
            line, back = cast(
                asyncpg.Record,
                await conn.fetchrow(
                    "SELECT result_pack_encode($1::int[]),"
                    " result_pack_decode(result_pack_encode($1::int[]), $2)",
                    vals,
                    len(vals),
                ),
            )
            assert back == vals
            # The fewest bytes, the first value apart (4 bytes more) when that is fewer.
            whole = 5 + _width(vals) * len(vals)
            apart = 9 + _width(vals[1:]) * (len(vals) - 1) if len(vals) > 1 else whole
            assert len(line) == min(whole, apart)


async def test_packs_of_0032_read_back_as_they_were_after_0035(database_url: str) -> None:
    name = f"mailprobe_0035_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    conn = await connect(_with_database(database_url, name))
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, sql in migrations():
            if version >= BYTES:
                break
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('o') RETURNING id")
        customer = await conn.fetchval(
            "INSERT INTO customers (organization_id, name) VALUES ($1, 'c') RETURNING id", org
        )
        monitor = cast(
            asyncpg.Record,
            await conn.fetchrow(
                "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port,"
                " status, check_interval, timeout_seconds, config)"
                " VALUES ($1, $2, 'smtp', 'm', 'mx.example.com', 25, 'active', 60, 30, '{}')"
                " RETURNING id, public_id",
                org,
                customer,
            ),
        )
        hour = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
        agents = [
            await conn.fetchval("INSERT INTO result_agents (name) VALUES ($1) RETURNING id", a)
            for a in ("de-1", "de-2")
        ]
        # The full row the packed results point at: an earlier hour of the day, tag -5.
        await conn.execute(
            "INSERT INTO result_details (scheduled_at, monitor_id, country, tag, stored_at,"
            " monitor_public_id, monitor_type, banner, tls)"
            " VALUES ($1, $2, result_country_code('DE'), -5, $1, $3, 'smtp', '220 mx',"
            ' \'{"version": "TLSv1.3"}\')',
            hour - timedelta(minutes=59, seconds=30),
            monitor["id"],
            monitor["public_id"],
        )
        rng = random.Random(32)
        n = 40
        at = [rng.randint(59_000, 61_000) for _ in range(n)]  # deltas, as 0032 kept them
        lines = [
            at,
            [rng.randint(59_000, 61_000) for _ in range(n)],  # stored deltas
            [rng.randint(1, 2_000_000_000) for _ in range(n)],  # response µs
            [-1] * n,  # dns
            [rng.randint(0, 90_000) for _ in range(n)],  # connect
            [rng.choice((-1, 17_123)) for _ in range(n)],  # tls
            [rng.randint(0, 300) for _ in range(n)],  # greeting
            [-1] * n,  # auth
            [rng.choice(agents) for _ in range(n)],
            [-(59 * 60_000 + 30_000)] * n,  # the full row's time after the hour
            [-5] * n,  # its tag
        ]
        spans = [[rng.randint(-30_000, 30_000) for _ in range(n)] for _ in range(2)]
        await conn.execute(
            "INSERT INTO result_packs (hour, monitor_id, country, jobs, nums, spans)"
            " VALUES ($1, $2, result_country_code('DE'), $3::uuid[], $4::int[], $5::smallint[])",
            hour,
            monitor["id"],
            [uuid.uuid4() for _ in range(n)],
            lines,
            spans,
        )
        read = "SELECT * FROM check_results ORDER BY scheduled_at, job_id"
        before = [dict(r) for r in await conn.fetch(read)]
        assert len(before) == n and before[0]["banner"] == "220 mx"
        assert await migrate(conn) == [v for v, _ in migrations() if v >= BYTES]
        # 0043 adds a column: when the full row a result's details come from was scheduled;
        # 0083 takes the side checks' facts out of the view (mail DNS: null for these rows);
        # 0162 adds a round trip's ARC verdict (null for these rows).
        added = ("detail_at", "arc")
        after = await conn.fetch(read)
        assert all(r["mail_dns"] is None for r in before)
        before = [{k: v for k, v in r.items() if k != "mail_dns"} for r in before]
        assert [{k: v for k, v in r.items() if k not in added} for r in after] == before
        assert {r["detail_at"] for r in after} == {hour - timedelta(minutes=59, seconds=30)}
        assert await conn.fetchval("SELECT results FROM result_packs") == n
    finally:
        await conn.close()
        admin = await asyncpg.connect(database_url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
