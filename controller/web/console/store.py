"""What the console's pages read: the overview of many monitors in two queries, and a monitor's
response-time buckets and latest TLS facts.

A paused monitor (`status` "disabled", the seeds' word) is shown `paused`, whatever it was last:
nothing checks it. Any other's shown state is the alerter's (`monitor_alert_state`) once it has
judged a round; before that (a new monitor, or no alerter running) it is read off the
countries' latest results: all up → up, some up and some down → degraded, all down → down, only
missed or inconclusive → missed, none → unknown.

At 100,000 monitors in one organization (issue 24) the overview stays one page of a name-ordered
index plus one count of states over a join; the countries' dots are read for the page's rows
only.
"""

import asyncio
from collections.abc import Hashable, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn
from controller.db.sql import like_pattern
from controller.jobs.result_kinds import scheduled_since
from controller.monitors.store import searched
from shared.messages import ArcResults, AuthResults, Phases, TlsInfo

STATES = ("up", "degraded", "down", "recovering", "missed", "unknown", "paused")

# The countries the monitor is checked from now (`checked_from`, migration 0053).
_COUNTRY_ROWS = """
        FROM monitor_country_state s
        WHERE s.monitor_id = m.id AND s.last_job_id <> ''
          AND checked_from(m.allowed_country_codes, m.round_countries, s.country)"""

# The state the countries' latest results say, for a monitor the alerter has not judged.
_FROM_COUNTRIES = f"""(SELECT CASE
        WHEN count(*) = 0 THEN 'unknown'
        WHEN count(*) FILTER (WHERE s.last_status = 'up') = count(*) THEN 'up'
        WHEN count(*) FILTER (WHERE s.last_status = 'up') > 0
         AND count(*) FILTER (WHERE s.last_status = 'down') > 0 THEN 'degraded'
        WHEN count(*) FILTER (WHERE s.last_status = 'down') > 0 THEN 'down'
        WHEN count(*) FILTER (WHERE s.last_status = 'up') > 0 THEN 'up'
        ELSE 'missed'
    END{_COUNTRY_ROWS})"""

# Every country's latest result up: a monitor the alerter still holds down (its recovery waits
# for `recoverAfterRounds`) is shown `recovering`, never `down` beside green countries.
_ALL_UP = f"""(SELECT count(*) > 0 AND bool_and(s.last_status = 'up'){_COUNTRY_ROWS})"""

# The shown state, with `a` the monitor's `monitor_alert_state` row joined: the countries are
# read only for a monitor the alerter has no state for or holds down (a scalar subquery in CASE
# runs only when its branch is taken), so counting 100,000 monitors' states is one join.
_STATE = f"""CASE WHEN m.status = 'disabled' THEN 'paused'
    WHEN a.state = 'down' AND {_ALL_UP} THEN 'recovering'
    WHEN a.state IS NOT NULL AND a.state <> 'unknown' THEN a.state
    ELSE {_FROM_COUNTRIES} END"""


def state_from_rows(judged: str | None, statuses: Sequence[str]) -> str:
    """The shown state as `_STATE` has it, for a reader that has the alerter's state (`judged`)
    and the statuses of the countries' latest rows (those `_COUNTRY_ROWS` reads) already."""
    if judged == "down" and statuses and all(s == "up" for s in statuses):
        return "recovering"
    if judged is not None and judged != "unknown":
        return judged
    if not statuses:
        return "unknown"
    up, down = "up" in statuses, "down" in statuses
    if up and down:
        return "degraded"
    if down:
        return "down"
    return "up" if up else "missed"


# The same per row, without a join: rows read in index order stop at a page's LIMIT.
_STATE_OF_ROW = f"""(SELECT CASE WHEN m.status = 'disabled' THEN 'paused'
    WHEN j.state = 'down' AND {_ALL_UP} THEN 'recovering'
    WHEN j.state IS NOT NULL AND j.state <> 'unknown' THEN j.state
    ELSE {_FROM_COUNTRIES} END
    FROM (SELECT (SELECT a.state FROM monitor_alert_state a WHERE a.monitor_id = m.id)) j(state))"""

# The monitors the filters select: organization (None: every one), customer, kind, only these
# ids, and (`_SEARCHED`) a search in name and hostname. The search is its own statement, not a
# `$4 IS NULL OR …`, so a plan PostgreSQL keeps for it still uses the trigram indexes.
_WHERE = """
    WHERE ($1::bigint IS NULL OR m.organization_id = $1)
      AND ($2::uuid IS NULL OR m.customer_id = (SELECT id FROM customers WHERE public_id = $2))
      AND ($3::text IS NULL OR m.type = $3)
      AND $4::text IS NULL
      AND ($5::bigint[] IS NULL OR m.id = ANY($5))"""
_SEARCHED = _WHERE.replace(
    "AND $4::text IS NULL", f"AND {searched('$4::text', 'm.id', '$1::bigint')}"
)

# `OFFSET 0` keeps the states one column computed once per monitor, grouped by hash.
_COUNTS = f"""
SELECT state, count(*) AS n FROM (
    SELECT {_STATE} AS state FROM monitors m
    LEFT JOIN monitor_alert_state a ON a.monitor_id = m.id{_WHERE}
    OFFSET 0
) f GROUP BY state"""

# The same for a narrow selection (a search, which the trigram indexes answer): each match's
# state by its own index lookups, no scan of every alert state.
_COUNTS_NARROW, _COUNTS_SEARCHED = (
    f"""
SELECT state, count(*) AS n FROM (
    SELECT {_STATE_OF_ROW} AS state FROM monitors m{where}
    OFFSET 0
) f GROUP BY state"""
    for where in (_WHERE, _SEARCHED)
)

# A page's ids in name order (the index monitors_org_name): without a state filter read off the
# index alone, skipped rows included; with one, each row's state until the page is full.
_PAGE_IDS = f"SELECT m.id FROM monitors m{_WHERE} ORDER BY lower(m.name), m.id LIMIT $6 OFFSET $7"
_PAGE_IDS_IN_STATE = (
    f"SELECT m.id FROM monitors m{_WHERE} AND {_STATE_OF_ROW} = $8"
    " ORDER BY lower(m.name), m.id LIMIT $6 OFFSET $7"
)

# A search's page: its matches first (the trigram indexes), then sorted; walking the name index
# would read every monitor before a rare match.
_SEARCH_IDS = f"""
WITH hits AS MATERIALIZED (SELECT m.id, lower(m.name) AS k FROM monitors m{_SEARCHED})
SELECT id FROM hits ORDER BY k, id LIMIT $6 OFFSET $7"""
_SEARCH_IDS_IN_STATE = f"""
WITH hits AS MATERIALIZED (SELECT m.id, lower(m.name) AS k FROM monitors m{_SEARCHED})
SELECT h.id FROM hits h JOIN monitors m ON m.id = h.id WHERE {_STATE_OF_ROW} = $8
ORDER BY h.k, h.id LIMIT $6 OFFSET $7"""

# The page's rows: what the overview shows of each, the countries' dots of these alone.
_PAGE = f"""
SELECT m.id, m.public_id, m.type, m.name, m.hostname, m.port, m.status, c.name AS customer,
       {_STATE} AS state, d.dots
FROM monitors m
JOIN customers c ON c.id = m.customer_id
LEFT JOIN monitor_alert_state a ON a.monitor_id = m.id
LEFT JOIN LATERAL (
    SELECT array_agg(s.country || ':' || s.last_status ORDER BY s.country) AS dots{_COUNTRY_ROWS}
) d ON true
WHERE m.id = ANY($1::bigint[])
ORDER BY lower(m.name), m.id"""


class MonitorSummary(msgspec.Struct, kw_only=True, frozen=True):
    """A monitor as the overview, status pages and scrape list it: what identifies it, its
    customer's name, its shown state and its countries' latest statuses (`dots`, by country)."""

    id: int
    public_id: UUID
    type: str
    name: str
    hostname: str
    port: int | None
    status: str
    customer: str
    state: str
    dots: list[tuple[str, str]]

    @property
    def shown_state(self) -> str:
        """The console's word: `paused` for a paused monitor, whatever its last state was."""
        return "paused" if self.status == "disabled" else self.state


def _summary(row: asyncpg.Record) -> MonitorSummary:
    """A row as the overview and status pages show it: a paused monitor's countries are grey
    `paused` too, never their last statuses."""
    fields = {n: row[n] for n in MonitorSummary.__struct_fields__ if n != "dots"}
    shown = dots(row["dots"])
    if row["status"] == "disabled":
        shown = [(cc, "paused") for cc, _ in shown]
    return MonitorSummary(**fields, dots=shown)


class _Counted:
    """The per-state counts of selections of at least LARGE monitors, reused for TTL_S: counting
    100,000 monitors' states is a join over all of them, and every open overview asks again
    every 5 s. Smaller selections are counted anew each time (exact at once). A cache of the
    database's answers, aged on the event loop's clock (the process's own pace), not a decision
    on the clock the app is given."""

    LARGE = 10_000
    TTL_S = 5.0
    KEEP = 256

    def __init__(self) -> None:
        self._held: dict[Hashable, tuple[float, dict[str, int]]] = {}

    def get(self, key: Hashable) -> dict[str, int] | None:
        held = self._held.get(key)
        if held is None or held[0] <= asyncio.get_running_loop().time():
            return None
        return dict(held[1])

    def put(self, key: Hashable, counts: dict[str, int]) -> None:
        if sum(counts.values()) < self.LARGE:
            return
        now = asyncio.get_running_loop().time()
        if len(self._held) >= self.KEEP:
            self._held = {k: v for k, v in self._held.items() if v[0] > now}
        if len(self._held) < self.KEEP:
            self._held[key] = (now + self.TTL_S, dict(counts))


_counted = _Counted()


async def overview(
    conn: Conn,
    *,
    organization_id: int | None,
    customer: UUID | None,
    kind: str | None,
    search: str | None,
    state: str | None,
    limit: int,
    offset: int,
    ids: Sequence[int] | None = None,
    reuse_counts: bool = True,
) -> tuple[list[MonitorSummary], dict[str, int]]:
    """One page of monitors (by name) with their state and per-country dots, and the count per
    state of every monitor the filters other than `state` select (`ids`: only these; a large
    selection's counts may be up to `_Counted.TTL_S` old)."""
    args = (organization_id, customer, kind, like_pattern(search), ids)
    key = args[:4] if ids is None and reuse_counts else None
    counts = _counted.get(key) if key is not None else None
    if counts is None:
        counts = {s: 0 for s in STATES}
        counting = _COUNTS_SEARCHED if search else _COUNTS_NARROW if ids is not None else _COUNTS
        for row in await conn.fetch(counting, *args):
            counts[row["state"]] = row["n"]
        if key is not None:
            _counted.put(key, counts)
    by_name, in_state = (
        (_SEARCH_IDS, _SEARCH_IDS_IN_STATE) if search else (_PAGE_IDS, _PAGE_IDS_IN_STATE)
    )
    if state is None:
        page = await conn.fetch(by_name, *args, limit, offset)
    else:
        page = await conn.fetch(in_state, *args, limit, offset, state)
    rows = await conn.fetch(_PAGE, [r["id"] for r in page]) if page else []
    return [_summary(r) for r in rows], counts


async def summaries(conn: Conn, ids: Sequence[int], limit: int) -> list[MonitorSummary]:
    """The monitors `ids` (the caller has checked they may be shown), by name, at most `limit`:
    what a status page lists, without the overview's counts."""
    rows = await conn.fetch(f"{_PAGE} LIMIT $2", list(ids), limit)
    return [_summary(r) for r in rows]


# A round trip's phases (submit, delivery, fetch) follow; a kind without them draws no line.
PHASES = (
    "dns_ms", "connect_ms", "tls_ms", "greeting_ms", "auth_ms", "submit_ms", "delivery_ms",
    "fetch_ms",
)  # fmt: skip


class ResponseBucket(msgspec.Struct, frozen=True, kw_only=True):
    """One country's checks in one time bucket: the mean response time and phases (ms, by the
    names of PHASES) of those that passed, how many passed and failed, and how many failed in a
    round every country that answered failed."""

    country: str
    at: datetime
    response_ms: float | None
    phases: dict[str, float | None]
    ups: int
    downs: int
    downs_everywhere: int


class CountryTls(msgspec.Struct, frozen=True):
    """A country's newest TLS facts."""

    country: str
    tls: TlsInfo
    scheduled_at: datetime


class CustomerName(msgspec.Struct, frozen=True):
    id: int
    public_id: UUID
    name: str


class MonitorName(msgspec.Struct, frozen=True):
    id: int
    public_id: UUID
    name: str
    type: str
    hostname: str


async def response_buckets(
    conn: Conn, monitor_id: int, since: datetime, bucket: timedelta
) -> list[ResponseBucket]:
    """Per country and time bucket since `since`: the mean response time and mean phases (ms)
    of the checks that passed (a refused check's few milliseconds are no response time), and
    how many checks passed (`ups`) and failed (`downs`), and how many of those failed in a round
    in which every country that answered failed (`downs_everywhere`); a missed round counts
    none."""
    phases = ", ".join(f"avg((phases->>'{p.replace('_ms', 'Ms')}')::float8) AS {p}" for p in PHASES)
    # `OFFSET 0`: each row's phases (a JSON object the view builds) are built once, not once
    # per phase read.
    rows = await conn.fetch(
        "SELECT country, date_bin($3, scheduled_at, $2) AS at,"
        " avg(response_time_ms) FILTER (WHERE status = 'up') AS response_ms,"
        f" {phases},"
        " count(*) FILTER (WHERE status = 'up') AS ups,"
        " count(*) FILTER (WHERE status = 'down') AS downs,"
        " count(*) FILTER (WHERE round_failed) AS downs_everywhere"
        " FROM (SELECT country, scheduled_at, status, response_time_ms,"
        "       CASE WHEN status = 'up' THEN phases END AS phases,"
        "       bool_and(status = 'down') OVER (PARTITION BY scheduled_at) AS round_failed"
        "       FROM check_results WHERE monitor_id = $1 AND scheduled_at >= $2"
        f"       AND {scheduled_since('$2::timestamptz')}"
        "       AND status IN ('up', 'down') OFFSET 0) r"
        " GROUP BY country, at ORDER BY country, at",
        monitor_id,
        since,
        bucket,
    )
    return [
        ResponseBucket(
            country=r["country"],
            at=r["at"],
            response_ms=r["response_ms"],
            phases={p: r[p] for p in PHASES},
            ups=r["ups"],
            downs=r["downs"],
            downs_everywhere=r["downs_everywhere"],
        )
        for r in rows
    ]


async def latest_tls(conn: Conn, monitor_id: int, since: datetime) -> list[CountryTls]:
    """Per country, the newest result since `since` that carries TLS facts."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (country) country, tls, scheduled_at FROM check_results"
        " WHERE monitor_id = $1 AND scheduled_at >= $2 AND tls IS NOT NULL"
        f" AND {scheduled_since('$2::timestamptz')}"
        " ORDER BY country, scheduled_at DESC",
        monitor_id,
        since,
    )
    return typed.many(CountryTls, rows)


class CountryRound(msgspec.Struct, frozen=True, kw_only=True):
    """A country's latest round that was run: its status, phases and (round trips) the folder
    the message was found in and its Authentication-Results and ARC verdicts."""

    country: str
    scheduled_at: datetime
    status: str
    error_kind: str | None
    phases: Phases | None
    folder: str | None
    auth_results: AuthResults | None = None
    arc: ArcResults | None = None


async def latest_rounds(conn: Conn, monitor_id: int, since: datetime) -> list[CountryRound]:
    """Per country, the newest result since `since` that is not `missed`."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (country) country, scheduled_at, status, error_kind, phases, folder,"
        " auth_results, arc FROM check_results WHERE monitor_id = $1 AND scheduled_at >= $2"
        f" AND {scheduled_since('$2::timestamptz')}"
        " AND status <> 'missed' ORDER BY country, scheduled_at DESC",
        monitor_id,
        since,
    )
    return typed.many(CountryRound, rows)


async def customers_of(conn: Conn, organization_id: int | None) -> list[CustomerName]:
    rows = await conn.fetch(
        "SELECT id, public_id, name FROM customers"
        " WHERE ($1::bigint IS NULL OR organization_id = $1) ORDER BY lower(name), id LIMIT 1000",
        organization_id,
    )
    return typed.many(CustomerName, rows)


async def monitors_of_customer(conn: Conn, customer_id: int) -> list[MonitorName]:
    rows = await conn.fetch(
        "SELECT id, public_id, name, type, hostname FROM monitors WHERE customer_id = $1"
        " ORDER BY lower(name), id",
        customer_id,
    )
    return typed.many(MonitorName, rows)


def dots(values: Sequence[str] | None) -> list[tuple[str, str]]:
    """`['DE:up', ...]` as (country, status) pairs."""
    return [(country, status) for country, _, status in (v.partition(":") for v in values or ())]
