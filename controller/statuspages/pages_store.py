"""Public status pages: one per customer, listing only the monitors chosen for it."""

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from uuid import UUID

import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn
from controller.ingest.pack_rules import CLOCK_MARGIN, PACK_DELAY
from controller.notify.maintenance import Window

_COLUMNS = "p.id, p.organization_id, p.customer_id, p.slug, p.title, p.show_hostnames"


class CustomerPage(msgspec.Struct, frozen=True, kw_only=True):
    """A customer (`customer`: its name) with its page: `slug`, `title` and `show_hostnames`
    None when it has none; `chosen`: the ids of the monitors chosen for it."""

    customer_id: int
    customer_public_id: UUID
    customer: str
    slug: str | None
    title: str | None
    show_hostnames: bool | None
    chosen: list[int]


class StatusPage(msgspec.Struct, frozen=True, kw_only=True):
    """A published page; `notices`: the id of the newest notice update written on it (None:
    none), so a new one shows at once."""

    id: int
    organization_id: int
    customer_id: int
    slug: str
    title: str
    show_hostnames: bool
    notices: int | None


class DayCounts(msgspec.Struct, frozen=True):
    """A monitor's time up and down (ms, over its countries) in one UTC day."""

    monitor_id: int
    day: date
    up_ms: int
    down_ms: int


class HourCounts(msgspec.Struct, frozen=True):
    """A monitor's time up and down (ms, over its countries) in one hour."""

    hour: datetime
    up_ms: int
    down_ms: int


class PageIncident(msgspec.Struct, frozen=True):
    """An incident as a status page shows it; `countries`: how many countries saw it."""

    monitor_id: int
    started_at: datetime
    ended_at: datetime | None
    cause_kind: str
    countries: int


class PageWindow(Window, kw_only=True, frozen=True):
    """A maintenance window covering a page: its monitor's (`monitor_id`) or its customer's
    (None); `note` is the organization's, never shown to the public."""

    note: str
    monitor_id: int | None


async def of_organization(conn: Conn, organization_id: int) -> list[CustomerPage]:
    """Every customer of the organization with its page (None columns when it has none) and the
    ids of the monitors chosen for it."""
    rows = await conn.fetch(
        "SELECT c.id AS customer_id, c.public_id AS customer_public_id, c.name AS customer,"
        " p.slug, p.title, p.show_hostnames,"
        " coalesce((SELECT array_agg(sm.monitor_id) FROM status_page_monitors sm"
        "           WHERE sm.status_page_id = p.id), '{}') AS chosen"
        " FROM customers c LEFT JOIN status_pages p ON p.customer_id = c.id"
        " WHERE c.organization_id = $1 ORDER BY lower(c.name), c.id LIMIT 1000",
        organization_id,
    )
    return typed.many(CustomerPage, rows)


async def save(
    conn: Conn,
    customer_id: int,
    organization_id: int,
    slug: str,
    title: str,
    show_hostnames: bool,
    monitor_ids: Sequence[int],
    at: datetime,
) -> None:
    """Publish or change the customer's page at `at`; monitors not of that customer are ignored.
    Raises asyncpg.UniqueViolationError when another page has the slug."""
    page_id: int = await conn.fetchval(
        "INSERT INTO status_pages"
        " (organization_id, customer_id, slug, title, show_hostnames, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (customer_id) DO UPDATE SET"
        " slug = EXCLUDED.slug, title = EXCLUDED.title,"
        " show_hostnames = EXCLUDED.show_hostnames, updated_at = $6 RETURNING id",
        organization_id,
        customer_id,
        slug,
        title,
        show_hostnames,
        at,
    )
    await conn.execute("DELETE FROM status_page_monitors WHERE status_page_id = $1", page_id)
    await conn.execute(
        "INSERT INTO status_page_monitors (status_page_id, monitor_id)"
        " SELECT $1, id FROM monitors WHERE id = ANY($2::bigint[]) AND customer_id = $3",
        page_id,
        list(monitor_ids),
        customer_id,
    )


async def unpublish(conn: Conn, customer_id: int) -> None:
    await conn.execute("DELETE FROM status_pages WHERE customer_id = $1", customer_id)


async def by_slug(conn: Conn, slug: str) -> tuple[StatusPage, list[int]] | None:
    """The page and the ids of its monitors."""
    # `notices`: the newest update written on the page, so a new one shows at once.
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS}, (SELECT max(u.id) FROM status_notice_updates u"
        " JOIN status_notices n ON n.id = u.notice_id WHERE n.status_page_id = p.id) AS notices"
        " FROM status_pages p WHERE p.slug = $1",
        slug,
    )
    if row is None:
        return None
    # Only monitors still of the page's customer: one moved to another customer since (a member
    # may move monitors; only admins choose what a page publishes) leaves the page.
    ids = await conn.fetch(
        "SELECT sm.monitor_id FROM status_page_monitors sm"
        " JOIN monitors m ON m.id = sm.monitor_id AND m.customer_id = $2"
        " WHERE sm.status_page_id = $1",
        row["id"],
        row["customer_id"],
    )
    return typed.one(StatusPage, row), [r["monitor_id"] for r in ids]


# A day is settled once it ended this long ago: its hours are closed (late results of their
# rounds have landed, `ingest.pack_rules`); from then its sums are kept in `result_days`.
SETTLED = PACK_DELAY + CLOCK_MARGIN + timedelta(minutes=20)

# The first settled day missing from `result_days` for monitors $1 from day $2 to before day $3.
_FIRST_MISSING = """
SELECT min(day) FROM (
    SELECT i.monitor_id, d::date AS day
    FROM unnest($1::bigint[]) i(monitor_id), generate_series($2::date, $3::date - 1, '1 day') d
    EXCEPT
    SELECT monitor_id, day FROM result_days
    WHERE monitor_id = ANY($1::bigint[]) AND day >= $2 AND day < $3
) missing"""

# The days of monitors $1 from day $2 to before day $3 where `result_days` lacks them: rounds summed
# from their rollups (zeros for a day without any), time up and down by `uptime_day_ms`.
_FILL = """
INSERT INTO result_days (monitor_id, day, up, down, up_ms, down_ms)
SELECT i.monitor_id, d::date, coalesce(s.up, 0), coalesce(s.down, 0), t.up_ms, t.down_ms
FROM unnest($1::bigint[]) i(monitor_id)
CROSS JOIN generate_series($2::date, $3::date - 1, '1 day') d
LEFT JOIN (
    SELECT monitor_id, (hour AT TIME ZONE 'UTC')::date AS day, sum(up) AS up, sum(down) AS down
    FROM result_rollups
    WHERE monitor_id = ANY($1::bigint[])
      AND hour >= $2::timestamp AT TIME ZONE 'UTC' AND hour < $3::timestamp AT TIME ZONE 'UTC'
    GROUP BY 1, 2
) s ON s.monitor_id = i.monitor_id AND s.day = d::date
CROSS JOIN LATERAL uptime_day_ms(i.monitor_id, d::date, coalesce(s.up, 0)::int,
    coalesce(s.down, 0)::int) t
ORDER BY 1, 2
ON CONFLICT (monitor_id, day) DO NOTHING"""


class _Filled:
    """Which monitors' settled days this process has kept in `result_days` up to which day, so a
    page rebuilt every `PAGE_TTL_S` looks for missing days once a day, not each time."""

    KEEP = 1024

    def __init__(self) -> None:
        self._through: dict[tuple[int, ...], tuple[date, date]] = {}

    def done(self, ids: tuple[int, ...], first: date, settled: date) -> bool:
        return self._through.get(ids) == (first, settled)

    def put(self, ids: tuple[int, ...], first: date, settled: date) -> None:
        if len(self._through) >= self.KEEP:
            self._through.clear()
        self._through[ids] = (first, settled)


_filled = _Filled()


async def settle(conn: Conn, ids: Sequence[int], first: date, now: datetime) -> date:
    """Keep in `result_days` the settled days from `first` of monitors `ids` that it lacks;
    return the first day not settled."""
    settled = (now - SETTLED).date()
    key = tuple(sorted(ids))
    if not _filled.done(key, first, settled):
        missing: date | None = await conn.fetchval(_FIRST_MISSING, list(key), first, settled)
        if missing is not None:
            await conn.execute(_FILL, list(key), missing, settled)
        _filled.put(key, first, settled)
    return settled


async def daily(conn: Conn, ids: Sequence[int], first: date, now: datetime) -> list[DayCounts]:
    """Per monitor and UTC day from `first` to the day of `now`: time up and down over its
    countries (`uptime_ms`: each state lasts from its result to the next; time after a missed
    round counts neither way). The settled days' sums are kept in `result_days` the first time
    they are read; the days still open are timed from the raw results up to `now`."""
    settled = await settle(conn, ids, first, now)
    rows = await conn.fetch(
        "SELECT monitor_id, day, up_ms, down_ms FROM result_days"
        " WHERE monitor_id = ANY($1::bigint[]) AND day >= $2 AND day < $3"
        " UNION ALL"
        " SELECT i.monitor_id, d::date, sum(u.up_ms)::bigint, sum(u.down_ms)::bigint"
        " FROM unnest($1::bigint[]) i(monitor_id)"
        " CROSS JOIN generate_series(greatest($2, $3)::date, $4::date, '1 day') d"
        " CROSS JOIN LATERAL uptime_ms(i.monitor_id, d::timestamp AT TIME ZONE 'UTC',"
        " least((d::date + 1)::timestamp AT TIME ZONE 'UTC', $5::timestamptz)) u"
        " GROUP BY 1, 2",
        list(ids),
        first,
        settled,
        now.date(),
        now,
    )
    return typed.in_order(DayCounts, rows)


async def public_daily(
    conn: Conn, ids: Sequence[int], first: date, until: datetime
) -> list[DayCounts]:
    """Per monitor and UTC day from `first` to the day of `until`, as a public status page
    counts them (SQL `public_uptime_days`, migration 0139): time inside the monitor's down
    incidents is down, the rest of the time since it was added is up; no row for a day before
    it was added, nor for a monitor never checked."""
    rows = await conn.fetch(
        "SELECT monitor_id, day, up_ms, down_ms FROM public_uptime_days($1::bigint[], $2, $3)",
        list(ids),
        first,
        until,
    )
    return typed.in_order(DayCounts, rows)


async def hourly(conn: Conn, monitor_id: int, since: datetime, until: datetime) -> list[HourCounts]:
    """Per hour from the hour of `since` to `until`: the monitor's time up and down over its
    countries (`uptime_ms`), from the raw results."""
    rows = await conn.fetch(
        "SELECT h AS hour, sum(u.up_ms)::bigint, sum(u.down_ms)::bigint"
        " FROM generate_series(date_trunc('hour', $2::timestamptz, 'UTC'), $3::timestamptz,"
        " interval '1 hour') h"
        " CROSS JOIN LATERAL uptime_ms($1, h, least(h + interval '1 hour', $3::timestamptz)) u"
        " WHERE h < $3::timestamptz GROUP BY h",
        monitor_id,
        since,
        until,
    )
    return typed.in_order(HourCounts, rows)


async def incidents(conn: Conn, ids: Sequence[int], since: datetime) -> list[PageIncident]:
    """Open incidents and those that ended since `since`, newest first (at most 100)."""
    rows = await conn.fetch(
        "SELECT monitor_id, started_at, ended_at, cause_kind, cardinality(countries) AS countries"
        " FROM incidents WHERE monitor_id = ANY($1::bigint[])"
        " AND (ended_at IS NULL OR ended_at >= $2) ORDER BY started_at DESC, id DESC LIMIT 100",
        list(ids),
        since,
    )
    return typed.many(PageIncident, rows)


async def maintenance(conn: Conn, customer_id: int, ids: Sequence[int]) -> list[PageWindow]:
    """The maintenance windows covering the page: its customer's and its monitors' own."""
    rows = await conn.fetch(
        "SELECT w.kind, w.starts_at, w.ends_at, w.weekday, w.start_time, w.duration_minutes,"
        " w.timezone, w.note, w.monitor_id"
        " FROM maintenance_windows w"
        " WHERE w.customer_id = $1 OR w.monitor_id = ANY($2::bigint[]) LIMIT 200",
        customer_id,
        list(ids),
    )
    return typed.many(PageWindow, rows)
