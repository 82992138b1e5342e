"""Migration 0030 moves the results stored before it into compact storage: every row reads back
as it was, and the rollups count it."""

import hashlib
import json
import uuid
from datetime import timedelta
from typing import cast

import asyncpg

from controller.db.migrate import migrate, migrations
from controller.db.pool import connect
from shared.timefmt import utcnow
from tests.conftest import _with_database

COMPACT = "0030_compact_results"


async def test_rows_stored_before_0030_read_back_as_they_were(database_url: str) -> None:
    name = f"mailprobe_0030_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = _with_database(database_url, name)
    conn = await connect(url)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, sql in migrations():
            if version >= COMPACT:
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
        at = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
        for n, status in enumerate(("up", "up", "down", "missed", "inconclusive")):
            await conn.execute(
                "INSERT INTO check_results (job_id, scheduled_at, monitor_id, monitor_public_id,"
                " monitor_type, country, agent_id, status, error_kind, message, banner,"
                " response_time_ms, phases, tls, started_at, finished_at, capabilities)"
                " VALUES ($1, $2, $3, $4, 'smtp', 'DE', $5, $6, $7, $8, '220 mx', $9, $10::jsonb,"
                " $11::jsonb, $2::timestamptz, $2::timestamptz + interval '40.5 ms', $12::jsonb)",
                str(uuid.uuid4()) if n else "an-old-style-id",
                at + timedelta(minutes=n),
                monitor["id"],
                monitor["public_id"],
                None if status == "missed" else "de-1",
                status,
                None if status == "up" else "timeout",
                f"round {n}",
                12.345 + n if status in ("up", "down") else None,
                json.dumps({"connectMs": 1.25, "greetingMs": None}),
                json.dumps({"version": "TLSv1.3"}),
                json.dumps(["PIPELINING"]),
            )
        read = "SELECT * FROM check_results ORDER BY scheduled_at"
        before = [dict(r) for r in await conn.fetch(read)]
        assert await migrate(conn) == [v for v, _ in migrations() if v >= COMPACT]
        # The view has columns more since: the UTC hour of `scheduled_at` (0032), when its
        # details' full row was scheduled (0043); and the side checks' facts (mail DNS, null
        # here) left it for their own tables (0083); a round trip's ARC verdict came (0162).
        assert all(r["mail_dns"] is None for r in before)
        before = [{k: v for k, v in r.items() if k != "mail_dns"} for r in before]
        after = [
            {k: v for k, v in r.items() if k not in ("hour", "detail_at", "arc")}
            for r in await conn.fetch(read)
        ]
        # Job ids the controller never made (not UUID-shaped) become the UUID of their MD5.
        old_id = str(uuid.UUID(bytes=hashlib.md5(b"an-old-style-id").digest()))
        assert after == [{**before[0], "job_id": old_id}, *before[1:]]
        rollup = cast(
            asyncpg.Record,
            await conn.fetchrow(
                "SELECT result_country(country) AS country, up, down, missed, latency"
                " FROM result_rollups WHERE monitor_id = $1",
                monitor["id"],
            ),
        )
        assert dict(rollup) == {
            "country": "DE",
            "up": 2,
            "down": 1,
            "missed": 2,
            "latency": [0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        }
        assert await conn.fetchval("SELECT to_regclass('check_results_before_0030')") is None
    finally:
        await conn.close()
        admin = await asyncpg.connect(database_url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
