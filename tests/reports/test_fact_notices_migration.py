"""Migration 0138 turns each monitor's report notice clock into its customer's domain's (issue
80): the latest notice, the news held by any of its monitors, the earliest digest due; one row
per organization, customer and domain."""

from datetime import UTC, datetime, timedelta

import asyncpg

from controller.db.migrate import migrate, migrations
from controller.db.pool import connect
from tests.conftest import scratch_database

FACT_NOTICES = "0138_report_fact_notices"
T = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


async def test_monitors_notice_clocks_become_their_domains(database_url: str) -> None:
    async with scratch_database(database_url, "mailprobe_0138") as url:
        conn = await connect(url)
        try:
            await _check(conn)
        finally:
            await conn.close()


async def _monitor(conn: asyncpg.Connection, org: int, customer: int, domain: str | None) -> int:
    found: int = await conn.fetchval(
        "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, status,"
        " check_interval, timeout_seconds, config, mail_domain) VALUES ($1, $2, 'smtp', 'm',"
        " 'mx1', 'active', 60, 10, '{}', $3) RETURNING id",
        org,
        customer,
        domain,
    )
    return found


async def _check(conn: asyncpg.Connection) -> None:
    await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    await conn.execute(
        "CREATE TABLE schema_migrations (version text PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for version, sql in migrations():
        if version >= FACT_NOTICES:
            break
        await conn.execute(sql)
        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
    org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('o') RETURNING id")
    one, two = [
        await conn.fetchval(
            "INSERT INTO customers (organization_id, name) VALUES ($1, $2) RETURNING id", org, n
        )
        for n in ("one", "two")
    ]
    a1, a2 = (
        await _monitor(conn, org, one, "a.example"),
        await _monitor(conn, org, one, "a.example"),
    )
    b = await _monitor(conn, org, two, "a.example")  # another customer: a fact of its own
    gone = await _monitor(conn, org, one, None)  # no mail domain any more: nothing to keep
    rows = [
        (a1, T, ["tls_failures_reported"], 3, T + timedelta(minutes=60)),
        (a2, T + timedelta(minutes=10), ["dmarc_unknown_source"], 5, T + timedelta(minutes=70)),
        (b, T, [], 0, None),
        (gone, T, ["tls_failures_reported"], 1, T + timedelta(minutes=5)),
    ]
    for monitor, told, codes, news, due in rows:
        await conn.execute(
            "INSERT INTO report_notices (monitor_id, told_at, codes, news, due_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            monitor,
            told,
            codes,
            news,
            due,
        )

    assert FACT_NOTICES in await migrate(conn)

    got = {
        r["customer_id"]: (r["domain"], r["told_at"], r["codes"], r["news"], r["due_at"])
        for r in await conn.fetch(
            "SELECT customer_id, domain, told_at, codes, news, due_at FROM report_fact_notices"
            " WHERE organization_id = $1",
            org,
        )
    }
    assert got == {
        one: (
            "a.example",
            T + timedelta(minutes=10),
            ["dmarc_unknown_source", "tls_failures_reported"],
            5,
            T + timedelta(minutes=60),
        ),
        two: ("a.example", T, [], 0, None),
    }
