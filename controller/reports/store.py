"""Reports' rows: settings, reports taken once, their counts, the rejected ones, and what each
open report finding was told with. The caller opens the transaction."""

import hashlib
from collections.abc import Sequence
from datetime import date, datetime

import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn
from controller.monitors.store import COLUMNS, Monitor, decode
from controller.reports.parse import Report
from controller.sidechecks.reports.rules import Count, ReportSettings

REJECTED_KEPT = 1000  # newest rejected reports kept per organization


async def settings(conn: Conn, organization_id: int) -> ReportSettings:
    row = await conn.fetchrow(
        "SELECT window_days, tls_failures_min, dmarc_failures_min, dmarc_unknown_min,"
        " known_networks::text[] AS known_networks FROM report_settings"
        " WHERE organization_id = $1",
        organization_id,
    )
    if row is None:
        return ReportSettings()
    return ReportSettings(
        row["window_days"],
        row["tls_failures_min"],
        row["dmarc_failures_min"],
        row["dmarc_unknown_min"],
        tuple(row["known_networks"]),
    )


async def save_settings(conn: Conn, organization_id: int, s: ReportSettings) -> None:
    await conn.execute(
        "INSERT INTO report_settings (organization_id, window_days, tls_failures_min,"
        " dmarc_failures_min, dmarc_unknown_min, known_networks)"
        " VALUES ($1, $2, $3, $4, $5, $6::text[]::cidr[])"
        " ON CONFLICT (organization_id) DO UPDATE SET window_days = $2, tls_failures_min = $3,"
        " dmarc_failures_min = $4, dmarc_unknown_min = $5, known_networks = $6::text[]::cidr[],"
        " updated_at = now()",
        organization_id,
        s.window_days,
        s.tls_failures_min,
        s.dmarc_failures_min,
        s.dmarc_unknown_min,
        list(s.known_networks),
    )


async def monitored_domains(conn: Conn, organization_id: int) -> frozenset[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT mail_domain FROM monitors"
        " WHERE organization_id = $1 AND mail_domain IS NOT NULL",
        organization_id,
    )
    return frozenset(r["mail_domain"] for r in rows)


async def organizations_monitoring(conn: Conn, domain: str) -> list[int]:
    rows = await conn.fetch(
        "SELECT DISTINCT organization_id FROM monitors WHERE mail_domain = $1 ORDER BY 1", domain
    )
    return [r["organization_id"] for r in rows]


async def domain_monitors(conn: Conn, organization_id: int, domain: str) -> list[Monitor]:
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM monitors WHERE organization_id = $1 AND mail_domain = $2"
        " ORDER BY id",
        organization_id,
        domain,
    )
    return [decode(r) for r in rows]


async def lock_domain(conn: Conn, organization_id: int, domain: str) -> None:
    """One writer of a domain's report findings at a time (two reports arriving together)."""
    digest = hashlib.blake2b(f"{organization_id}:{domain}".encode(), digest_size=8).digest()
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1)", int.from_bytes(digest, "big", signed=True)
    )


async def insert(
    conn: Conn, organization_id: int, report: Report, via: str, size: int
) -> int | None:
    """The report's id; None when this organization has it already (same reporter and id)."""
    report_key: int | None = await conn.fetchval(
        "INSERT INTO reports (organization_id, kind, reporter, report_id, domains, begins_at,"
        " ends_at, via, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (organization_id, kind, reporter, report_id) DO NOTHING RETURNING id",
        organization_id,
        report.kind,
        report.reporter,
        report.report_id,
        list(report.domains),
        report.begins_at,
        report.ends_at,
        via,
        size,
    )
    if report_key is None:
        return None
    summed: dict[tuple[str, str, str, str], int] = {}
    for domain, row in report.rows:
        key = (domain, row.result, row.mx, row.ip)
        summed[key] = summed.get(key, 0) + row.count
    day = report.begins_at.date()
    await conn.copy_records_to_table(
        "report_counts",
        records=[
            (report_key, organization_id, d, report.kind, day, report.reporter, r, mx, ip, n)
            for (d, r, mx, ip), n in summed.items()
        ],
        columns=[
            "report_id",
            "organization_id",
            "domain",
            "kind",
            "day",
            "reporter",
            "result",
            "mx",
            "ip",
            "count",
        ],
    )
    return report_key


async def reject(
    conn: Conn, organization_id: int, via: str, reason: str, detail: str, source: str, size: int
) -> None:
    """Record a refused report; only the newest `REJECTED_KEPT` of the organization stay."""
    await conn.execute(
        "INSERT INTO rejected_reports (organization_id, via, reason, detail, source, bytes)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        organization_id,
        via,
        reason,
        detail[:500],
        source[:300],
        size,
    )
    await conn.execute(
        "DELETE FROM rejected_reports WHERE organization_id = $1 AND id <= ("
        " SELECT id FROM rejected_reports WHERE organization_id = $1"
        " ORDER BY id DESC OFFSET $2 LIMIT 1)",
        organization_id,
        REJECTED_KEPT,
    )


async def window_counts(conn: Conn, organization_id: int, domain: str, since: date) -> list[Count]:
    rows = await conn.fetch(
        "SELECT kind, reporter, result, mx, ip, sum(count)::bigint AS n FROM report_counts"
        " WHERE organization_id = $1 AND domain = $2 AND day >= $3"
        " GROUP BY kind, reporter, result, mx, ip",
        organization_id,
        domain,
        since,
    )
    return [Count(r["kind"], r["reporter"], r["result"], r["mx"], r["ip"], r["n"]) for r in rows]


async def items(conn: Conn, monitor_id: int) -> dict[str, list[str]]:
    rows = await conn.fetch(
        "SELECT code, items FROM report_finding_items WHERE monitor_id = $1", monitor_id
    )
    return {r["code"]: list(r["items"]) for r in rows}


async def save_items(conn: Conn, monitor_id: int, code: str, told: Sequence[str]) -> None:
    await conn.execute(
        "INSERT INTO report_finding_items (monitor_id, code, items) VALUES ($1, $2, $3)"
        " ON CONFLICT (monitor_id, code) DO UPDATE SET items = $3",
        monitor_id,
        code,
        list(told),
    )


async def drop_items(conn: Conn, monitor_id: int, code: str) -> None:
    await conn.execute(
        "DELETE FROM report_finding_items WHERE monitor_id = $1 AND code = $2", monitor_id, code
    )


async def alert_state(conn: Conn, monitor_id: int) -> str:
    state: str | None = await conn.fetchval(
        "SELECT state FROM monitor_alert_state WHERE monitor_id = $1", monitor_id
    )
    return state or "unknown"


class OrganizationDomain(msgspec.Struct, frozen=True):
    organization_id: int
    domain: str


async def domains_with_findings(conn: Conn) -> list[OrganizationDomain]:
    """The organization and mail domain of every monitor with an open report finding."""
    rows = await conn.fetch(
        "SELECT DISTINCT m.organization_id, m.mail_domain AS domain FROM posture_findings f"
        " JOIN monitors m ON m.id = f.monitor_id"
        " WHERE f.cleared_at IS NULL AND m.mail_domain IS NOT NULL"
        " AND f.code IN ('tls_failures_reported', 'dmarc_failures_reported',"
        " 'dmarc_unknown_source')"
    )
    return typed.many(OrganizationDomain, rows)


class DomainMonitors(msgspec.Struct, frozen=True):
    """A mail domain of the organization's monitors, and how many monitors name it."""

    domain: str
    monitors: int


async def domains_monitored(conn: Conn, organization_id: int) -> list[DomainMonitors]:
    """The organization's monitors' mail domains, by name."""
    rows = await conn.fetch(
        "SELECT mail_domain AS domain, count(*) AS monitors FROM monitors"
        " WHERE organization_id = $1 AND mail_domain IS NOT NULL"
        " GROUP BY mail_domain ORDER BY mail_domain",
        organization_id,
    )
    return typed.many(DomainMonitors, rows)


class DayTotal(msgspec.Struct, frozen=True):
    """The sum of counts of one day, kind and result."""

    day: date
    kind: str
    result: str
    n: int


class DayCount(msgspec.Struct, frozen=True):
    """The sum of counts of one day, kind, reporter, result and source IP ('' for TLS)."""

    day: date
    kind: str
    reporter: str
    result: str
    ip: str
    n: int


class Failures(msgspec.Struct, frozen=True):
    """Failures of one kind, reporter, result, MX and IP."""

    kind: str
    reporter: str
    result: str
    mx: str
    ip: str
    n: int


class Rejected(msgspec.Struct, frozen=True):
    """A report refused: how it came, why, and from where (`source`)."""

    via: str
    reason: str
    detail: str
    source: str
    bytes: int
    at: datetime


class Received(msgspec.Struct, frozen=True, kw_only=True):
    """A report taken in."""

    kind: str
    reporter: str
    report_id: str
    domains: list[str]
    begins_at: datetime
    ends_at: datetime
    via: str
    bytes: int
    received_at: datetime


class DomainTotal(msgspec.Struct, frozen=True):
    """A monitored domain's counts of one kind and result; `newest`: when the newest report of
    the domain and kind ended."""

    domain: str
    kind: str
    result: str
    n: int
    newest: datetime


async def totals(conn: Conn, organization_id: int, domain: str, since: date) -> list[DayTotal]:
    """Per day, kind and result: the sum of counts, oldest day first."""
    rows = await conn.fetch(
        "SELECT day, kind, result, sum(count)::bigint AS n FROM report_counts"
        " WHERE organization_id = $1 AND domain = $2 AND day >= $3"
        " GROUP BY day, kind, result ORDER BY day, kind, result",
        organization_id,
        domain,
        since,
    )
    return typed.many(DayTotal, rows)


async def daily(conn: Conn, organization_id: int, domain: str, since: date) -> list[DayCount]:
    """Per day, kind, reporter, result and source IP (DMARC; '' for TLS): the sum of counts,
    oldest day first (the console's charts)."""
    rows = await conn.fetch(
        "SELECT day, kind, reporter, result, CASE WHEN kind = 'dmarc' THEN ip ELSE '' END AS ip,"
        " sum(count)::bigint AS n FROM report_counts"
        " WHERE organization_id = $1 AND domain = $2 AND day >= $3"
        " GROUP BY 1, 2, 3, 4, 5 ORDER BY 1",
        organization_id,
        domain,
        since,
    )
    return typed.many(DayCount, rows)


async def breakdown(
    conn: Conn, organization_id: int, domain: str, since: date, limit: int
) -> list[Failures]:
    """Failures by kind, reporter, result, MX and IP over the days since `since`, largest first."""
    rows = await conn.fetch(
        "SELECT kind, reporter, result, mx, ip, sum(count)::bigint AS n FROM report_counts"
        " WHERE organization_id = $1 AND domain = $2 AND day >= $3"
        " AND result NOT IN ('success', 'pass')"
        " GROUP BY kind, reporter, result, mx, ip ORDER BY n DESC, kind, reporter, result, mx, ip"
        " LIMIT $4",
        organization_id,
        domain,
        since,
        limit,
    )
    return typed.many(Failures, rows)


async def rejected(conn: Conn, organization_id: int, limit: int) -> list[Rejected]:
    rows = await conn.fetch(
        "SELECT via, reason, detail, source, bytes, at FROM rejected_reports"
        " WHERE organization_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        organization_id,
        limit,
    )
    return typed.many(Rejected, rows)


async def received(conn: Conn, organization_id: int, limit: int) -> list[Received]:
    rows = await conn.fetch(
        "SELECT kind, reporter, report_id, domains, begins_at, ends_at, via, bytes, received_at"
        " FROM reports WHERE organization_id = $1 ORDER BY received_at DESC, id DESC LIMIT $2",
        organization_id,
        limit,
    )
    return typed.many(Received, rows)


async def scrape_totals(conn: Conn, organization_id: int, since: date) -> list[DomainTotal]:
    """Per monitored domain, kind and result: the counts since `since`, and per domain and kind
    when the newest report's range ended (`newest`, the same on each of its rows); the
    `/metrics/reports` series."""
    rows = await conn.fetch(
        "WITH c AS (SELECT domain, kind, result, report_id, count FROM report_counts"
        "  WHERE organization_id = $1 AND day >= $2 AND domain IN ("
        "   SELECT mail_domain FROM monitors WHERE organization_id = $1))"
        " SELECT c.domain, c.kind, c.result, sum(c.count)::bigint AS n,"
        " max(max(r.ends_at)) OVER (PARTITION BY c.domain, c.kind) AS newest"
        " FROM c JOIN reports r ON r.id = c.report_id"
        " GROUP BY c.domain, c.kind, c.result ORDER BY c.domain, c.kind, c.result",
        organization_id,
        since,
    )
    return typed.many(DomainTotal, rows)


async def forget_before(conn: Conn, before: datetime) -> tuple[int, int]:
    """Reports (with their counts) and rejected reports received before `before`, deleted."""
    reports: str = await conn.execute("DELETE FROM reports WHERE received_at < $1", before)
    rejected_: str = await conn.execute("DELETE FROM rejected_reports WHERE at < $1", before)
    return int(reports.split()[-1]), int(rejected_.split()[-1])
