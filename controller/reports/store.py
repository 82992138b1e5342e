"""Reports' rows: settings, reports taken once (by content), their running aggregates (per
day and item, and per day and result), what each organization's domain took this hour and
stores, the rejected ones, its token's generation, and what each open report finding was told
with and when. The caller opens the transaction."""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn
from controller.monitors.store import COLUMNS, Monitor, decode
from controller.reports.parse import Report
from controller.sidechecks.reports.rules import (
    SHOWN,
    Failure,
    NetCount,
    ReportSettings,
    Window,
    network,
)
from shared.guards import BrokenInvariant

REJECTED_KEPT = 1000  # newest rejected reports kept per organization
# Items an open report finding of a monitor remembers it was told with, the newest: an item
# forgotten and reported again is news once more (one more item in a digest), never a row more.
TOLD_KEPT = 10_000


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


async def save_settings(conn: Conn, organization_id: int, s: ReportSettings, now: datetime) -> None:
    """Store the organization's report settings, at `now`."""
    await conn.execute(
        "INSERT INTO report_settings (organization_id, window_days, tls_failures_min,"
        " dmarc_failures_min, dmarc_unknown_min, known_networks, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6::text[]::cidr[], $7)"
        " ON CONFLICT (organization_id) DO UPDATE SET window_days = $2, tls_failures_min = $3,"
        " dmarc_failures_min = $4, dmarc_unknown_min = $5, known_networks = $6::text[]::cidr[],"
        " updated_at = $7",
        organization_id,
        s.window_days,
        s.tls_failures_min,
        s.dmarc_failures_min,
        s.dmarc_unknown_min,
        list(s.known_networks),
        now,
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


@dataclass(frozen=True, slots=True)
class Summed:
    """A report's rows summed per domain, result, MX and IP: what its aggregates add."""

    domains: list[str]
    results: list[str]
    mxs: list[str]
    ips: list[str]
    nets: list[str]
    counts: list[int]

    def rows(self, domain: str) -> int:
        return sum(1 for d in self.domains if d == domain)


def summed(report: Report) -> Summed:
    by: dict[tuple[str, str, str, str], int] = {}
    for domain, row in report.rows:
        key = (domain, row.result, row.mx, row.ip)
        by[key] = by.get(key, 0) + row.count
    out = Summed([], [], [], [], [], [])
    for (d, result, mx, ip), n in by.items():
        out.domains.append(d)
        out.results.append(result)
        out.mxs.append(mx)
        out.ips.append(ip)
        out.nets.append(network(ip) if report.kind == "dmarc" and ip else "")
        out.counts.append(n)
    return out


async def insert(
    conn: Conn,
    organization_id: int,
    report: Report,
    rows: Summed,
    digest: bytes,
    via: str,
    size: int,
    sender: str,
    received_at: datetime,
) -> int | None:
    """The report's id (from `sender`, received at `received_at`), its rows
    (`summed(report)`) added to the running aggregates; None when this organization has a
    report of the same content (`digest`) already."""
    report_key: int | None = await conn.fetchval(
        "INSERT INTO reports (organization_id, kind, reporter, report_id, domains, begins_at,"
        " ends_at, via, bytes, digest, sender, received_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT (organization_id, kind, digest) DO NOTHING RETURNING id",
        organization_id,
        report.kind,
        report.reporter,
        report.report_id,
        list(report.domains),
        report.begins_at,
        report.ends_at,
        via,
        size,
        digest,
        sender,
        received_at,
    )
    if report_key is None:
        return None
    await conn.execute(
        "WITH new AS (SELECT * FROM unnest($5::text[], $6::text[], $7::text[], $8::text[],"
        "  $9::text[], $10::bigint[]) AS t(domain, result, mx, ip, net, count)),"
        " up AS (INSERT INTO report_items AS i (organization_id, domain, kind, day, reporter,"
        "  result, mx, ip, net, count)"
        "  SELECT $1, domain, $2, $3, $4, result, mx, ip, net, count FROM new"
        "  ON CONFLICT (organization_id, domain, kind, day, reporter, result, mx, ip)"
        "  DO UPDATE SET count = i.count + excluded.count"
        "  RETURNING domain, result, (xmax = 0) AS added),"
        " added AS (SELECT domain, result, count(*) FILTER (WHERE added) AS n FROM up"
        "  GROUP BY domain, result),"
        " sums AS (SELECT domain, result, sum(count) AS count FROM new GROUP BY domain, result),"
        " totals AS (INSERT INTO report_day_totals AS t (organization_id, domain, kind, day,"
        "  reporter, result, count, items)"
        "  SELECT $1, s.domain, $2, $3, $4, s.result, s.count, a.n FROM sums s"
        "  JOIN added a ON a.domain = s.domain AND a.result = s.result"
        "  ON CONFLICT (organization_id, domain, kind, day, reporter, result)"
        "  DO UPDATE SET count = t.count + excluded.count, items = t.items + excluded.items)"
        " INSERT INTO report_domain_rows AS r (organization_id, domain, rows)"
        " SELECT $1, domain, sum(n) FROM added GROUP BY domain"
        " ON CONFLICT (organization_id, domain) DO UPDATE SET rows = r.rows + excluded.rows",
        organization_id,
        report.kind,
        report.begins_at.date(),
        report.reporter,
        rows.domains,
        rows.results,
        rows.mxs,
        rows.ips,
        rows.nets,
        rows.counts,
    )
    return report_key


@dataclass(frozen=True, slots=True)
class Taken:
    """What a domain took in the hour (with the report at hand) and stores."""

    reports: int
    rows: int
    stored: int


async def hour_reports(conn: Conn, organization_id: int, domain: str, hour: datetime) -> int:
    """Reports the domain took in the hour beginning `hour`."""
    taken: int | None = await conn.fetchval(
        "SELECT reports FROM report_intake WHERE organization_id = $1 AND domain = $2"
        " AND hour = $3",
        organization_id,
        domain,
        hour,
    )
    return taken or 0


async def take_hour(
    conn: Conn, organization_id: int, domain: str, hour: datetime, rows: int
) -> Taken:
    """Count one report of `rows` rows against the domain's hour (undone with the caller's
    transaction when the report is refused), and say what the domain stores."""
    row = await conn.fetchrow(
        "WITH t AS (INSERT INTO report_intake AS h (organization_id, domain, hour, reports, rows)"
        " VALUES ($1, $2, $3, 1, $4) ON CONFLICT (organization_id, domain, hour)"
        " DO UPDATE SET reports = h.reports + 1, rows = h.rows + $4 RETURNING reports, rows)"
        " SELECT t.reports, t.rows, coalesce((SELECT rows FROM report_domain_rows"
        "  WHERE organization_id = $1 AND domain = $2), 0) AS stored FROM t",
        organization_id,
        domain,
        hour,
        rows,
    )
    if row is None:
        raise BrokenInvariant("store.take_hour: the statement returned no row")
    return Taken(row["reports"], row["rows"], row["stored"])


async def established(
    conn: Conn, organization_id: int, domain: str, days: int
) -> set[tuple[str, str]]:
    """The (reporter, sender) pairs whose reports about `domain` were received on at least
    `days` different days (UTC) among the reports kept."""
    rows = await conn.fetch(
        "SELECT reporter, sender FROM reports"
        " WHERE organization_id = $1 AND $2 = ANY(domains) AND sender <> ''"
        " GROUP BY reporter, sender"
        " HAVING count(DISTINCT (received_at AT TIME ZONE 'UTC')::date) >= $3",
        organization_id,
        domain,
        days,
    )
    return {(r["reporter"], r["sender"]) for r in rows}


async def stored_days(conn: Conn, organization_id: int, domain: str) -> list[tuple[str, date, int]]:
    """Each reporter and day the domain stores aggregate rows of, with how many (from its day
    totals)."""
    rows = await conn.fetch(
        "SELECT reporter, day, sum(items)::bigint AS n FROM report_day_totals"
        " WHERE organization_id = $1 AND domain = $2 GROUP BY reporter, day",
        organization_id,
        domain,
    )
    return [(r["reporter"], r["day"], r["n"]) for r in rows]


async def drop_days(
    conn: Conn, organization_id: int, domain: str, days: Sequence[tuple[str, date]]
) -> int:
    """The domain's aggregates of each (reporter, day) of `days` deleted (its stored rows
    counted down); how many rows went."""
    gone: int = await conn.fetchval(
        "WITH d AS (SELECT * FROM unnest($3::text[], $4::date[]) AS d(reporter, day)),"
        " gone AS (DELETE FROM report_items i USING d WHERE i.organization_id = $1"
        "  AND i.domain = $2 AND i.reporter = d.reporter AND i.day = d.day RETURNING 1),"
        " totals AS (DELETE FROM report_day_totals t USING d WHERE t.organization_id = $1"
        "  AND t.domain = $2 AND t.reporter = d.reporter AND t.day = d.day),"
        " n AS (SELECT count(*) AS n FROM gone),"
        " down AS (UPDATE report_domain_rows r SET rows = greatest(r.rows - n.n, 0) FROM n"
        "  WHERE r.organization_id = $1 AND r.domain = $2)"
        " SELECT n FROM n",
        organization_id,
        domain,
        [r for r, _ in days],
        [d for _, d in days],
    )
    return gone


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


# Rows read per day for the largest: a day's largest failing rows of one kind, by the index
# `report_items_largest`, the days those of the day totals ($1 organization, $2 domain, $3
# since, $4 kind, $5 rows a day; a query using it adds its own from $6).
LARGEST_PER_DAY = 1000
_LARGEST_PER_DAY = (
    "SELECT r.day, r.reporter, r.result, r.mx, r.ip, r.net, r.count FROM"
    " (SELECT DISTINCT day FROM report_day_totals WHERE organization_id = $1 AND domain = $2"
    "  AND kind = $4 AND day >= $3) d,"
    " LATERAL (SELECT day, reporter, result, mx, ip, net, count FROM report_items"
    "  WHERE organization_id = $1 AND domain = $2 AND kind = $4 AND day = d.day"
    "  AND result NOT IN ('success', 'pass') ORDER BY count DESC LIMIT $5) r"
)


# The DMARC source networks worth reading ($1 organization, $2 domain, $3 since, $4 'dmarc',
# $5 rows a day):
# every network that passed in the window (few: the domain's own senders), and those among each
# day's largest failing rows; each read whole by the index `report_items_net`.
_NETWORKS = (
    "WITH passing AS (SELECT net, sum(count) AS passed FROM report_items"
    "  WHERE organization_id = $1 AND domain = $2 AND kind = 'dmarc' AND day >= $3"
    "  AND result = 'pass' AND net <> '' GROUP BY net),"
    f" top AS (SELECT DISTINCT net FROM ({_LARGEST_PER_DAY}) i WHERE net <> ''),"
    " cand AS (SELECT net FROM passing UNION SELECT net FROM top)"
    " SELECT c.net, coalesce(p.passed, 0)::bigint AS passed,"
    " coalesce((SELECT sum(count) FROM report_items r WHERE r.organization_id = $1"
    "  AND r.domain = $2 AND r.kind = 'dmarc' AND r.net = c.net AND r.day >= $3"
    "  AND r.result <> 'pass'), 0)::bigint AS failed"
    " FROM cand c LEFT JOIN passing p ON p.net = c.net"
)


async def window(conn: Conn, organization_id: int, domain: str, since: date) -> Window:
    """The domain's counts since `since` as the rules read them (rules.window is the
    reference): TLS and DMARC totals and the number of TLS failures (per day) from the day
    totals, the largest failures among each day's `LARGEST_PER_DAY` largest, and the DMARC
    networks that passed or are among each day's largest failing (`_NETWORKS`)."""
    tls = await conn.fetchrow(
        "SELECT coalesce(sum(count) FILTER (WHERE kind = 'tls'), 0)::bigint AS sessions,"
        " coalesce(sum(count) FILTER (WHERE kind = 'tls' AND result <> 'success'), 0)::bigint"
        "  AS failed,"
        " coalesce(sum(items) FILTER (WHERE kind = 'tls' AND result <> 'success'), 0)::bigint"
        "  AS failures,"
        " coalesce(sum(count) FILTER (WHERE kind = 'dmarc'), 0)::bigint AS dmarc_messages,"
        " coalesce(sum(count) FILTER (WHERE kind = 'dmarc' AND result <> 'pass'), 0)::bigint"
        "  AS dmarc_failed"
        " FROM report_day_totals WHERE organization_id = $1 AND domain = $2 AND day >= $3",
        organization_id,
        domain,
        since,
    )
    if tls is None:
        raise BrokenInvariant("store.window: tls is unset")
    largest: list[Failure] = []
    failures = 0
    if tls["failed"]:
        rows = await conn.fetch(
            "SELECT result, mx, ip, sum(count)::bigint AS n,"
            ' array_agg(DISTINCT reporter COLLATE "C" ORDER BY reporter COLLATE "C") AS reporters'
            f" FROM ({_LARGEST_PER_DAY}) i GROUP BY result, mx, ip"
            ' ORDER BY n DESC, result COLLATE "C", mx COLLATE "C", ip COLLATE "C" LIMIT $6',
            organization_id,
            domain,
            since,
            "tls",
            LARGEST_PER_DAY,
            SHOWN,
        )
        largest = [
            Failure(r["result"], r["mx"], r["ip"], r["n"], tuple(r["reporters"])) for r in rows
        ]
        failures = tls["failures"]
    nets = []
    if tls["dmarc_messages"]:
        nets = await conn.fetch(
            f'SELECT * FROM ({_NETWORKS}) n ORDER BY net COLLATE "C"',
            organization_id,
            domain,
            since,
            "dmarc",
            LARGEST_PER_DAY,
        )
    return Window(
        tls["sessions"],
        tls["failed"],
        tuple(largest),
        failures,
        tuple(NetCount(r["net"], r["passed"], r["failed"]) for r in nets),
        tls["dmarc_failed"],
    )


async def reporters(conn: Conn, organization_id: int, domain: str, since: date) -> list[str]:
    """Who reported on the domain since `since`, most counted first."""
    rows = await conn.fetch(
        "SELECT reporter FROM report_day_totals WHERE organization_id = $1 AND domain = $2"
        " AND day >= $3 GROUP BY reporter ORDER BY sum(count) DESC, reporter LIMIT 100",
        organization_id,
        domain,
        since,
    )
    return [r["reporter"] for r in rows]


async def told(conn: Conn, monitor_id: int, code: str, items: Sequence[str]) -> list[str]:
    """Those of `items` the monitor's finding `code` was told with."""
    rows = await conn.fetch(
        "SELECT item FROM report_told WHERE monitor_id = $1 AND code = $2 AND item = ANY($3)",
        monitor_id,
        code,
        list(items),
    )
    return [r["item"] for r in rows]


async def save_told(
    conn: Conn, monitor_id: int, code: str, items: Sequence[str], now: datetime
) -> None:
    """Remember `items` as told at `now`, and only the newest `TOLD_KEPT` of the finding's."""
    await conn.execute(
        "INSERT INTO report_told (monitor_id, code, item, told_at)"
        " SELECT $1, $2, unnest($3::text[]), $4"
        " ON CONFLICT (monitor_id, code, item) DO UPDATE SET told_at = $4",
        monitor_id,
        code,
        list(items),
        now,
    )
    await conn.execute(
        "DELETE FROM report_told WHERE monitor_id = $1 AND code = $2 AND (told_at, item) < ("
        " SELECT told_at, item FROM report_told WHERE monitor_id = $1 AND code = $2"
        " ORDER BY told_at DESC, item DESC OFFSET $3 LIMIT 1)",
        monitor_id,
        code,
        TOLD_KEPT - 1,
    )


async def drop_told(conn: Conn, monitor_id: int, code: str) -> None:
    await conn.execute(
        "DELETE FROM report_told WHERE monitor_id = $1 AND code = $2", monitor_id, code
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
    """Per day, kind and result: the sum of counts, oldest day first (the day totals)."""
    rows = await conn.fetch(
        "SELECT day, kind, result, sum(count)::bigint AS n FROM report_day_totals"
        " WHERE organization_id = $1 AND domain = $2 AND day >= $3"
        " GROUP BY day, kind, result ORDER BY day, kind, result",
        organization_id,
        domain,
        since,
    )
    return typed.many(DayTotal, rows)


OTHERS = "others"


async def daily(
    conn: Conn, organization_id: int, domain: str, since: date, networks: int
) -> list[DayCount]:
    """Per day, kind, reporter, result and (DMARC) source network: the sum of counts, oldest
    day first (the console's charts). TLS per reporter from the day totals; DMARC per network
    for the `networks` largest by volume among those `_NETWORKS` reads, the rest of each day's
    totals as `OTHERS`."""
    rows = await conn.fetch(
        "SELECT day, kind, reporter, result, '' AS ip, sum(count)::bigint AS n"
        " FROM report_day_totals WHERE organization_id = $1 AND domain = $2 AND kind = 'tls'"
        " AND day >= $3 GROUP BY 1, 2, 3, 4, 5 ORDER BY 1",
        organization_id,
        domain,
        since,
    )
    out = typed.many(DayCount, rows)
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM report_day_totals WHERE organization_id = $1"
        " AND domain = $2 AND kind = 'dmarc' AND day >= $3)",
        organization_id,
        domain,
        since,
    ):
        return out
    rows = await conn.fetch(
        f"WITH n AS ({_NETWORKS}),"
        ' named AS (SELECT net FROM n ORDER BY passed + failed DESC, net COLLATE "C"'
        "  LIMIT $6),"
        " per AS (SELECT day, CASE WHEN result = 'pass' THEN 'pass' ELSE 'fail' END AS result,"
        "  net, sum(count)::bigint AS n FROM report_items WHERE organization_id = $1"
        "  AND domain = $2 AND kind = 'dmarc' AND day >= $3 AND net IN (SELECT net FROM named)"
        "  GROUP BY 1, 2, 3),"
        " total AS (SELECT day, CASE WHEN result = 'pass' THEN 'pass' ELSE 'fail' END AS result,"
        "  sum(count)::bigint AS n FROM report_day_totals WHERE organization_id = $1"
        "  AND domain = $2 AND kind = 'dmarc' AND day >= $3 GROUP BY 1, 2)"
        " SELECT day, 'dmarc' AS kind, '' AS reporter, result, net AS ip, n FROM per"
        " UNION ALL SELECT t.day, 'dmarc', '', t.result, $7, (t.n - coalesce((SELECT sum(p.n)"
        "  FROM per p WHERE p.day = t.day AND p.result = t.result), 0))::bigint FROM total t"
        " ORDER BY 1",
        organization_id,
        domain,
        since,
        "dmarc",
        LARGEST_PER_DAY,
        networks,
        OTHERS,
    )
    return out + [r for r in typed.many(DayCount, rows) if r.n > 0]


async def breakdown(
    conn: Conn, organization_id: int, domain: str, since: date, limit: int
) -> list[Failures]:
    """Failures by kind, reporter, result, MX and IP over the days since `since`, largest
    first (among each day's `LARGEST_PER_DAY` largest of each kind)."""
    out: list[Failures] = []
    for kind in ("tls", "dmarc"):
        rows = await conn.fetch(
            "SELECT $4 AS kind, reporter, result, mx, ip, sum(count)::bigint AS n"
            f" FROM ({_LARGEST_PER_DAY}) i GROUP BY reporter, result, mx, ip"
            " ORDER BY n DESC LIMIT $6",
            organization_id,
            domain,
            since,
            kind,
            LARGEST_PER_DAY,
            limit,
        )
        out += typed.many(Failures, rows)
    out.sort(key=lambda f: (-f.n, f.kind, f.reporter, f.result, f.mx, f.ip))
    return out[:limit]


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
    """Per monitored domain, kind and result: the counts since `since` (the day totals), and
    per domain and kind when the newest report's range ended (`newest`, the same on each of its
    rows); the `/metrics/reports` series."""
    rows = await conn.fetch(
        "WITH c AS (SELECT domain, kind, result, sum(count)::bigint AS n FROM report_day_totals"
        "  WHERE organization_id = $1 AND day >= $2 AND domain IN ("
        "   SELECT mail_domain FROM monitors WHERE organization_id = $1)"
        "  GROUP BY domain, kind, result),"
        " newest AS (SELECT d.domain, r.kind, max(r.ends_at) AS newest"
        "  FROM reports r, unnest(r.domains) AS d(domain)"
        "  WHERE r.organization_id = $1 AND r.begins_at >= $2 GROUP BY d.domain, r.kind)"
        " SELECT c.domain, c.kind, c.result, c.n, n.newest FROM c"
        " JOIN newest n ON n.domain = c.domain AND n.kind = c.kind"
        " ORDER BY c.domain, c.kind, c.result",
        organization_id,
        since,
    )
    return typed.many(DomainTotal, rows)


@dataclass(frozen=True, slots=True)
class Forgotten:
    reports: int
    rejected: int
    rows: int


async def forget_before(conn: Conn, before: datetime) -> Forgotten:
    """Reports and rejected reports received before `before`, and aggregates of days before
    it, deleted (each domain's stored rows counted down)."""
    reports: str = await conn.execute("DELETE FROM reports WHERE received_at < $1", before)
    rejected_: str = await conn.execute("DELETE FROM rejected_reports WHERE at < $1", before)
    rows: int = await conn.fetchval(
        "WITH gone AS (DELETE FROM report_items WHERE day < $1 RETURNING organization_id, domain),"
        " per AS (SELECT organization_id, domain, count(*) AS n FROM gone GROUP BY 1, 2),"
        " down AS (UPDATE report_domain_rows r SET rows = greatest(r.rows - per.n, 0) FROM per"
        "  WHERE r.organization_id = per.organization_id AND r.domain = per.domain)"
        " SELECT coalesce(sum(n), 0)::bigint FROM per",
        before.date(),
    )
    await conn.execute("DELETE FROM report_day_totals WHERE day < $1", before.date())
    return Forgotten(int(reports.split()[-1]), int(rejected_.split()[-1]), rows)


async def forget_hours(conn: Conn, before: datetime) -> None:
    """The intake's hours before `before` (past the hourly limits' reach)."""
    await conn.execute("DELETE FROM report_intake WHERE hour < $1", before)


class Generation(msgspec.Struct, frozen=True):
    """A domain's report token generation; the previous one accepted until `grace_until`."""

    generation: int
    rotated_at: datetime | None
    grace_until: datetime | None


async def generation(conn: Conn, organization_id: int, domain: str) -> Generation:
    row = await conn.fetchrow(
        "SELECT generation, rotated_at, grace_until FROM report_tokens"
        " WHERE organization_id = $1 AND domain = $2",
        organization_id,
        domain,
    )
    return Generation(0, None, None) if row is None else typed.one(Generation, row)


async def generations(conn: Conn, organization_id: int) -> dict[str, Generation]:
    rows = await conn.fetch(
        "SELECT domain, generation, rotated_at, grace_until FROM report_tokens"
        " WHERE organization_id = $1",
        organization_id,
    )
    return {r["domain"]: typed.one(Generation, r) for r in rows}


async def rotate(
    conn: Conn, organization_id: int, domain: str, now: datetime, grace: timedelta
) -> Generation:
    """The domain's next token generation, the one before it accepted for `grace`."""
    row = await conn.fetchrow(
        "INSERT INTO report_tokens AS t (organization_id, domain, generation, rotated_at,"
        " grace_until) VALUES ($1, $2, 1, $3, $4) ON CONFLICT (organization_id, domain)"
        " DO UPDATE SET generation = t.generation + 1, rotated_at = $3, grace_until = $4"
        " RETURNING generation, rotated_at, grace_until",
        organization_id,
        domain,
        now,
        now + grace,
    )
    if row is None:
        raise BrokenInvariant("store.rotate: the statement returned no row")
    return typed.one(Generation, row)


class Fact(msgspec.Struct, frozen=True):
    """What a domain's report findings are facts of: one customer's domain."""

    organization_id: int
    customer_id: int
    domain: str


class Notices(msgspec.Struct, frozen=True):
    """A customer's domain's report notices: when the last went; the findings with news since
    (`codes`), how many items are new, and when their digest is due."""

    organization_id: int
    customer_id: int
    domain: str
    told_at: datetime
    codes: list[str]
    news: int
    due_at: datetime | None

    @property
    def fact(self) -> Fact:
        return Fact(self.organization_id, self.customer_id, self.domain)


_NOTICES = (
    "SELECT organization_id, customer_id, domain, told_at, codes, news, due_at"
    " FROM report_fact_notices"
)
_FACT = "organization_id = $1 AND customer_id = $2 AND domain = $3"


async def notices(conn: Conn, fact: Fact) -> Notices | None:
    row = await conn.fetchrow(
        f"{_NOTICES} WHERE {_FACT} FOR UPDATE", fact.organization_id, fact.customer_id, fact.domain
    )
    return typed.maybe(Notices, row)


async def notice_sent(conn: Conn, fact: Fact, at: datetime) -> None:
    """A notice went at `at`: nothing waits."""
    await conn.execute(
        "INSERT INTO report_fact_notices (organization_id, customer_id, domain, told_at)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (organization_id, customer_id, domain)"
        " DO UPDATE SET told_at = $4, codes = '{}', news = 0, due_at = NULL",
        fact.organization_id,
        fact.customer_id,
        fact.domain,
        at,
    )


async def notice_held(
    conn: Conn, fact: Fact, codes: Sequence[str], news: int, due: datetime
) -> None:
    """News of `codes` (`news` new items) held for the digest due at `due` (or earlier)."""
    await conn.execute(
        "UPDATE report_fact_notices SET due_at = least(coalesce(due_at, $6), $6),"
        " news = news + $5, codes = ARRAY(SELECT DISTINCT unnest(codes || $4::text[]) ORDER BY 1)"
        f" WHERE {_FACT}",
        fact.organization_id,
        fact.customer_id,
        fact.domain,
        list(codes),
        news,
        due,
    )


async def digests_due(conn: Conn, now: datetime, limit: int) -> list[Notices]:
    """Customers' domains whose digest is due, the longest waiting first (locked: one sender
    each)."""
    rows = await conn.fetch(
        f"{_NOTICES} WHERE due_at <= $1 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return typed.many(Notices, rows)


async def fact_monitors(conn: Conn, fact: Fact) -> list[Monitor]:
    """The monitors of the customer naming the domain as their `mailDomain`."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM monitors WHERE organization_id = $1 AND customer_id = $2"
        " AND mail_domain = $3 ORDER BY id",
        fact.organization_id,
        fact.customer_id,
        fact.domain,
    )
    return [decode(r) for r in rows]
