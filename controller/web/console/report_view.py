"""What the console shows of a domain's reports (a monitor's page, when it names a
`mailDomain`, and the domain's own page): per day, the TLS sessions each reporter saw succeed
and fail, and the share of each source network's messages that passed DMARC, as line charts
(controller.web.console.charts); and the largest failures. All of it is read from the running
aggregates (the day totals, and the items summed and limited in SQL), so a domain with many
report rows costs the page what a few do.

The largest reporters (TLS) and source networks (DMARC) by volume get a line each, at most
`LINES` (the palette's size); the rest are summed as "others", so a chart stays readable
whoever reports."""

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from controller.db.pool import Conn
from controller.reports import store as db
from controller.reports.store import OTHERS, DayCount
from controller.web.console import charts

DAYS = 30
LINES = 8
FAILURES = 10
Points = list[tuple[datetime, float | None]]


def _noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


def _top(volume: dict[str, int], room: int) -> list[str]:
    """The keys of the largest volumes (ties by name); all of them when they fit in `room`."""
    ranked = sorted(volume, key=lambda k: (-volume[k], k))
    return ranked if len(ranked) <= room else ranked[: room - 1]


def tls_series(rows: Sequence[DayCount], days: list[date]) -> list[tuple[str, Points]]:
    """Per reporter, the sessions that succeeded and failed each day (the largest reporters;
    the others summed)."""
    volume: dict[str, int] = defaultdict(int)
    for r in rows:
        volume[r.reporter] += r.n
    shown = _top(volume, LINES // 2)
    per: dict[tuple[str, bool], dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        who = r.reporter if r.reporter in shown else OTHERS
        per[(who, r.result == "success")][r.day] += r.n
    out: list[tuple[str, Points]] = []
    for who in [*shown, *([OTHERS] if len(shown) < len(volume) else [])]:
        for ok, word in ((True, "succeeded"), (False, "failed")):
            counts = per.get((who, ok), {})
            points: Points = [(_noon(d), float(counts.get(d, 0))) for d in days]
            out.append((f"{who} {word}", points))
    return out


def dmarc_series(rows: Sequence[DayCount], days: list[date]) -> list[tuple[str, Points]]:
    """Per source network (`ip`: the network, the largest named by the store and the rest as
    `OTHERS`), the percentage of its messages that passed DMARC each day it sent (no point on
    days it sent nothing)."""
    merged: dict[str, dict[date, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    volume: dict[str, int] = defaultdict(int)
    for r in rows:
        if not r.ip:
            continue
        volume[r.ip] += r.n
        merged[r.ip][r.day][0 if r.result == "pass" else 1] += r.n
    named = _top({k: v for k, v in volume.items() if k != OTHERS}, LINES)
    out = []
    for net in [*named, *([OTHERS] if OTHERS in volume else [])]:
        by_day = merged[net]
        points: Points = []
        for d in days:
            passed, failed = by_day.get(d, [0, 0])
            total = passed + failed
            points.append((_noon(d), 100.0 * passed / total if total else None))
        out.append((net, points))
    return out


async def domain_reports(
    conn: Conn, organization_id: int, domain: str, today: date, days: int = DAYS
) -> dict[str, Any]:
    """The charts and the largest failures of the domain's reports over `days` to `today`."""
    since = today - timedelta(days=days - 1)
    rows = await db.daily(conn, organization_id, domain, since, LINES - 1)
    span = [since + timedelta(days=i) for i in range(days)]
    start, end = _noon(since) - timedelta(hours=12), _noon(today) + timedelta(hours=12)
    tls = [r for r in rows if r.kind == "tls"]
    dmarc = [r for r in rows if r.kind == "dmarc"]
    return {
        "report_domain": domain,
        "report_days": days,
        "tls_chart": charts.line_chart(tls_series(tls, span), start, end)
        if tls
        else charts.Chart(),
        "dmarc_chart": charts.line_chart(
            dmarc_series(dmarc, span), start, end, gap=timedelta(days=1)
        )
        if dmarc
        else charts.Chart(),
        "report_failures": await db.breakdown(conn, organization_id, domain, since, FAILURES),
    }
