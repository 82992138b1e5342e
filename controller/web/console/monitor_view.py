"""What a monitor's console page shows that changes while it is open (its live part): the state,
each country's latest result, the up/down history bars, the response-time and phase charts with
outages, incidents and maintenance drawn as bands, the uptime table and the incidents.

The page and its live fragment (`/console/monitors/{id}/live`, fetched every few seconds) render
the same context, so what refreshes is what first showed.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from controller.alerting import incident_store as incident_db
from controller.alerting.incident_store import ListedIncident
from controller.db.pool import Conn
from controller.ingest import store as results
from controller.ingest.store import StateTime
from controller.monitors.kinds import STORED_TYPES
from controller.monitors.latest_store import monitor_with_latest
from controller.monitors.store import Monitor
from controller.notify import maintenance, maintenance_store
from controller.notify.maintenance import Window
from controller.statuspages import pages_store as rollups
from controller.statuspages import uptime_bars
from controller.web.api.results import WINDOWS
from controller.web.console import charts
from controller.web.console import store as console
from controller.web.console.store import ResponseBucket

RANGES = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}
BUCKETS = 90  # points per line: the chart stays readable and its query small at any range
HOURS = 48  # hourly history bars
DAYS = 90  # daily history bars, as on the status pages
Series = list[tuple[str, list[tuple[datetime, float | None]]]]


def _series(buckets: Sequence[ResponseBucket]) -> Series:
    """Per country, its response times; a bucket without a passing check is a point without a
    value (the line breaks there)."""
    out: dict[str, list[tuple[datetime, float | None]]] = {}
    for b in buckets:
        out.setdefault(b.country, []).append((b.at, b.response_ms))
    return sorted(out.items())


def _phase_series(buckets: Sequence[ResponseBucket]) -> Series:
    """Each phase's mean over the countries, per time bucket of passing checks."""
    out: Series = []
    for phase in console.PHASES:
        per_time: dict[datetime, list[float]] = {}
        for b in buckets:
            if (ms := b.phases[phase]) is not None:
                per_time.setdefault(b.at, []).append(ms)
        pts: list[tuple[datetime, float | None]] = [
            (t, sum(v) / len(v)) for t, v in sorted(per_time.items())
        ]
        out.append((phase.removesuffix("_ms").upper(), pts))
    return out


def failure_kind(ups: int, downs: int, downs_everywhere: int) -> str | None:
    """The band of a time bucket whose checks `ups` passed and `downs` failed, `downs_everywhere`
    of them in a round in which every country that answered failed: `down` ("every country
    failed") when there was such a round, whatever passed around it in the bucket; `failing`
    ("some countries failed") when checks failed but never from every country at once; none when
    nothing failed, all passed or no round was answered (the line's gap shows that)."""
    if not downs:
        return None
    return "down" if downs_everywhere else "failing"


def failure_bands(
    buckets: Iterable[ResponseBucket], width: timedelta
) -> list[tuple[datetime, datetime, str, str]]:
    """A band per time bucket with failed checks, of the kind `failure_kind` says."""
    per_time: dict[datetime, tuple[int, int, int]] = {}
    for b in buckets:
        ups, downs, everywhere = per_time.get(b.at, (0, 0, 0))
        per_time[b.at] = (ups + b.ups, downs + b.downs, everywhere + b.downs_everywhere)
    out = []
    for at, (ups, downs, everywhere) in sorted(per_time.items()):
        kind = failure_kind(ups, downs, everywhere)
        if kind is not None:
            title = f"{charts.BAND_LEGENDS[kind]}: {downs} failed, {ups} passed"
            out.append((at, at + width, kind, title))
    return out


def incident_bands(
    incidents: Iterable[ListedIncident], now: datetime
) -> list[tuple[datetime, datetime, str, str]]:
    return [
        (
            i.started_at,
            i.ended_at or now,
            "incident",
            f"incident: {i.cause}" + ("" if i.ended_at else " (open)"),
        )
        for i in incidents
    ]


def maintenance_bands(
    windows: Iterable[Window], start: datetime, end: datetime
) -> list[tuple[datetime, datetime, str, str]]:
    """Every opening of the windows that overlaps [start, end)."""
    out = []
    for w in windows:
        at = start
        while at < end:
            opening = maintenance.current_or_next(w, at)
            if opening is None or opening[0] >= end:
                break
            out.append((opening[0], opening[1], "maintenance", "maintenance"))
            if opening[1] <= at:  # pragma: no cover - a window always moves on
                break
            at = opening[1]
    return out


def window_since(times: Sequence[StateTime], start: datetime) -> datetime | None:
    """When a window's known time really starts, if later than the window's `start` (a monitor
    younger than the window: its first result), so the page says "since" then; None when the
    whole window is covered or nothing is known in it."""
    covered = min((t.covered_from for t in times), default=None)
    return covered if covered is not None and covered > start else None


def _uptime(
    times: Sequence[Sequence[StateTime]], starts: Sequence[datetime]
) -> list[dict[str, Any]]:
    """Per window (day, week, month; `times` and `starts` longest first): the share of time up
    among time up and down (`uptime_ms`), overall and per country, and when its known time
    starts if later than the window's start."""
    longest_first = sorted(WINDOWS, key=lambda w: w[1], reverse=True)  # the query's order
    out = []
    for pos, (name, _) in enumerate(longest_first):
        per: dict[str, float | None] = {}
        up_all = down_all = 0
        for t in times[pos]:
            up, down = t.up_ms, t.down_ms
            up_all, down_all = up_all + up, down_all + down
            per[t.country] = round(100 * up / (up + down), 3) if up + down else None
        overall = round(100 * up_all / (up_all + down_all), 3) if up_all + down_all else None
        since = window_since(times[pos], starts[pos])
        out.append({"window": name, "overall": overall, "countries": per, "since": since})
    return list(reversed(out))


async def history(conn: Conn, monitor_id: int, now: datetime) -> dict[str, Any]:
    """The hourly bars of the last HOURS and the daily bars of the last DAYS (the status pages'
    rollups and bars)."""
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    hours = await rollups.hourly(conn, monitor_id, this_hour - timedelta(hours=HOURS - 1), now)
    days = await rollups.daily(conn, [monitor_id], now.date() - timedelta(days=DAYS - 1), now)
    return {
        "hours": uptime_bars.hourly(
            {r.hour: (r.up_ms, r.down_ms) for r in hours}, this_hour, HOURS
        ),
        "days": uptime_bars.daily({r.day: (r.up_ms, r.down_ms) for r in days}, now.date(), DAYS),
    }


async def live(
    conn: Conn, ident: UUID, scope: int | None, range_name: str, now: datetime
) -> tuple[Monitor, dict[str, Any]] | None:
    """The monitor with public id `ident` as `scope` may see it and its live context; None when
    there is no such monitor there."""
    found = await monitor_with_latest(conn, ident, STORED_TYPES, scope)
    if found is None:
        return None
    m, latest = found
    range_name = range_name if range_name in RANGES else "day"
    span = RANGES[range_name]
    start = now - span
    shown, _ = await console.overview(
        conn,
        organization_id=m.organization_id,
        customer=None,
        kind=None,
        search=None,
        state=None,
        limit=1,
        offset=0,
        ids=[m.id],
    )
    width = span / BUCKETS
    buckets = await console.response_buckets(conn, m.id, start, width)
    starts = [now - s for _, s in sorted(WINDOWS, key=lambda w: w[1], reverse=True)]
    times = [await results.state_time(conn, m.id, since, now) for since in starts]
    incidents, _ = await incident_db.list_incidents(conn, m.id, 10, 0)
    windows = await maintenance_windows(conn, m)
    bands = [
        *maintenance_bands(windows, start, now),
        *incident_bands((i for i in incidents if (i.ended_at or now) > start), now),
        *failure_bands(buckets, width),
    ]
    gap = width * 1.5
    return m, {
        "m": m,
        "state": shown[0].shown_state if shown else "unknown",
        "latest": latest,
        "response_chart": charts.line_chart(_series(buckets), start, now, bands, gap),
        "phase_chart": charts.line_chart(_phase_series(buckets), start, now, (), gap),
        "ranges": list(RANGES),
        "range_name": range_name,
        "uptime": _uptime(times, starts),
        "incidents": incidents,
        "windows": windows,
        "bars": await history(conn, m.id, now),
        "updated_at": now,
    }


async def maintenance_windows(conn: Conn, m: Monitor) -> list[Window]:
    return await maintenance_store.for_monitor(conn, m.id, m.customer_id)
