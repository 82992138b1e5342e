"""Migrations 0080-0083 move the side checks' facts stored before them (columns of
`result_details`) into each side check's own table, by job id, and leave `check_results` the
core check's: a full row and a compact row pointing at it both keep their facts."""

import uuid
from datetime import timedelta
from typing import cast

import asyncpg

from controller.db.migrate import migrate, migrations
from controller.db.pool import connect
from shared.timefmt import utcnow
from tests.conftest import _with_database

FRAME = "0080_side_checks"
MAIL_DNS = {"domain": "example.com", "mx": ["mx.example.com"], "errors": {}, "truncated": []}
REVERSE = {"addresses": [{"address": "192.0.2.1", "names": ["mx.example.com"]}]}
RELAY = {"sender": "s@example.org", "recipient": "r@example.net", "rcptTo": "554 no"}


async def test_side_facts_stored_before_the_frame_move_to_their_tables(database_url: str) -> None:
    name = f"mailprobe_0080_{uuid.uuid4().hex[:8]}"
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
            if version >= FRAME:
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
        at = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
        full, compact, plain = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        # A full row with all three facts, a compact row a minute later pointing at it (its
        # facts are the full row's), and a full row without any.
        rows = [(full, at, None, True), (compact, at + timedelta(minutes=1), 60_000, True),
                (plain, at + timedelta(minutes=2), None, False)]  # fmt: skip
        for job, when, detail_ms, has_facts in rows:
            tag = await conn.fetchval("SELECT result_tag($1::uuid)", job)
            await conn.execute(
                "INSERT INTO result_rows (scheduled_at, monitor_id, job, detail_ms, country,"
                " status, tag, ref_tag, started_ms, finished_ms, stored_ms)"
                " VALUES ($1, $2, $3, $4, result_country_code('DE'), 0, $5, $6, 1, 2, 3)",
                when,
                monitor["id"],
                job,
                detail_ms,
                tag,
                0 if detail_ms is None else await conn.fetchval("SELECT result_tag($1)", full),
            )
            if detail_ms is None:
                await conn.execute(
                    "INSERT INTO result_details (scheduled_at, monitor_id, country, tag,"
                    " stored_at, monitor_public_id, monitor_type, mail_dns, reverse_dns, relay)"
                    " VALUES ($1, $2, result_country_code('DE'), $3, now(), $4, 'smtp',"
                    " $5::jsonb, $6::jsonb, $7::jsonb)",
                    when,
                    monitor["id"],
                    tag,
                    monitor["public_id"],
                    *((MAIL_DNS, REVERSE, RELAY) if has_facts else (None, None, None)),
                )
        read = "SELECT job_id FROM check_results ORDER BY scheduled_at"
        assert [r["job_id"] for r in await conn.fetch(read)] == [
            str(full),
            str(compact),
            str(plain),
        ]
        assert "0083_core_results" in await migrate(conn)
        for table, facts in (("mail_dns", MAIL_DNS), ("reverse_dns", REVERSE), ("relay", RELAY)):
            moved = await conn.fetch(
                f"SELECT job, monitor_id, country, scheduled_at, facts FROM side_{table}"
                " ORDER BY scheduled_at"
            )
            assert [(r["job"], r["monitor_id"], r["country"], r["facts"]) for r in moved] == [
                (full, monitor["id"], "DE", facts),
                (compact, monitor["id"], "DE", facts),
            ], table
        view = await conn.fetch("SELECT * FROM check_results ORDER BY scheduled_at")
        assert [r["job_id"] for r in view] == [str(full), str(compact), str(plain)]
        assert not {"mail_dns", "reverse_dns", "relay"} & set(view[0].keys())
    finally:
        await conn.close()
        admin = await asyncpg.connect(database_url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
