"""Migration 0065 turns the reports' stored counts into the running aggregates (the DMARC source's
network as `rules.network` computes it, an IPv4-mapped one as its IPv4 network), the day totals
and each domain's stored rows; what findings were told with into one row per item; and keeps
every report, a duplicate now decided by content."""

import asyncpg

from controller.db.migrate import migrate, migrations
from controller.db.pool import connect
from controller.sidechecks.reports.rules import network
from tests.conftest import scratch_database

AGGREGATES = "0065_report_aggregates"

# (report, domain, kind, day, reporter, result, mx, ip, count) as stored before 0065.
COUNTS = [
    (0, "a.example", "tls", "2026-11-20", "Google", "success", "", "", 100),
    (0, "a.example", "tls", "2026-11-20", "Google", "certificate-expired", "mx1", "203.0.113.5", 4),
    (1, "a.example", "tls", "2026-11-20", "Google", "certificate-expired", "mx1", "203.0.113.5", 3),
    (2, "a.example", "dmarc", "2026-11-21", "g.com", "pass", "", "192.0.2.10", 50),
    (2, "a.example", "dmarc", "2026-11-21", "g.com", "fail", "", "::ffff:192.0.2.11", 5),
    (2, "a.example", "dmarc", "2026-11-21", "g.com", "fail", "", "2001:db8:abcd:1ff::1", 7),
]


async def test_counts_become_aggregates_and_told_items_rows(database_url: str) -> None:
    async with scratch_database(database_url, "mailprobe_0065") as url:
        conn = await connect(url)
        try:
            await _check(conn)
        finally:
            await conn.close()


async def _check(conn: asyncpg.Connection) -> None:
    await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    await conn.execute(
        "CREATE TABLE schema_migrations (version text PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for version, sql in migrations():
        if version >= AGGREGATES:
            break
        await conn.execute(sql)
        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
    org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('o') RETURNING id")
    reports = [
        await conn.fetchval(
            "INSERT INTO reports (organization_id, kind, reporter, report_id, domains, begins_at,"
            " ends_at, via, bytes) VALUES ($1, $2, 'r', $3, '{a.example}', now(), now(),"
            " 'https', 1) RETURNING id",
            org,
            kind,
            f"id-{i}",
        )
        for i, kind in enumerate(["tls", "tls", "dmarc"])
    ]
    for i, domain, kind, day, reporter, result, mx, ip, n in COUNTS:
        await conn.execute(
            "INSERT INTO report_counts (report_id, organization_id, domain, kind, day, reporter,"
            " result, mx, ip, count) VALUES ($1, $2, $3, $4, $5::text::date, $6, $7, $8, $9, $10)",
            reports[i],
            org,
            domain,
            kind,
            day,
            reporter,
            result,
            mx,
            ip,
            n,
        )
    customer = await conn.fetchval(
        "INSERT INTO customers (organization_id, name) VALUES ($1, 'c') RETURNING id", org
    )
    monitor = await conn.fetchval(
        "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, status,"
        " check_interval, timeout_seconds, config) VALUES ($1, $2, 'smtp', 'm', 'mx1', 'active',"
        " 60, 10, '{}') RETURNING id",
        org,
        customer,
    )
    await conn.execute(
        "INSERT INTO report_finding_items (monitor_id, code, items)"
        " VALUES ($1, 'tls_failures_reported', '{certificate-expired|mx1,starttls|mx2}')",
        monitor,
    )

    assert AGGREGATES in await migrate(conn)

    items = {
        (r["kind"], r["result"], r["ip"]): (r["net"], r["count"])
        for r in await conn.fetch("SELECT kind, result, ip, net, count FROM report_items")
    }
    assert items == {
        ("tls", "success", ""): ("", 100),
        ("tls", "certificate-expired", "203.0.113.5"): ("", 7),  # two reports' rows summed
        ("dmarc", "pass", "192.0.2.10"): (network("192.0.2.10"), 50),
        ("dmarc", "fail", "::ffff:192.0.2.11"): (network("::ffff:192.0.2.11"), 5),
        ("dmarc", "fail", "2001:db8:abcd:1ff::1"): (network("2001:db8:abcd:1ff::1"), 7),
    }
    totals = {
        (r["kind"], r["result"]): (r["count"], r["items"])
        for r in await conn.fetch("SELECT kind, result, count, items FROM report_day_totals")
    }
    assert totals == {
        ("tls", "success"): (100, 1),
        ("tls", "certificate-expired"): (7, 1),
        ("dmarc", "pass"): (50, 1),
        ("dmarc", "fail"): (12, 2),
    }
    assert await conn.fetchval("SELECT rows FROM report_domain_rows") == 5
    assert await conn.fetchval("SELECT count(*) FROM reports WHERE digest IS NOT NULL") == 3
    told = await conn.fetch("SELECT item FROM report_told ORDER BY item")
    assert [r["item"] for r in told] == ["certificate-expired|mx1", "starttls|mx2"]
