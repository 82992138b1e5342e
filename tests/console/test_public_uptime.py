"""Public uptime is computed the way the public incidents are (issue 80; SQL
`public_uptime_days`, the one rule every status page figure calls), on real PostgreSQL: a table
of seeded histories whose true downtime is known, then the issue's two pages as a visitor reads
them."""

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from controller.jobs.rules import JobIds
from controller.statuspages import pages_store
from testkit.serving import http_client
from tests.api.helpers import create
from tests.api.test_roundtrip_monitors import make as make_roundtrip
from tests.conftest import Tenant
from tests.console.helpers import Browserish, store_result
from tests.console.test_status_pages import _publish, _row_id

T0 = datetime(2026, 11, 27, 23, 50, tzinfo=UTC)  # ten minutes before a UTC midnight
S = 1000  # ms per second
Span = tuple[int, int | None]  # an incident: seconds after T0 it started, ended (None: open)

# (name, created (s after T0), incidents, countries' latest statuses (None: never checked),
#  until (s after T0), expected {day offset from T0's day: (up s, down s)})
CASES: list[tuple[str, int, list[Span], list[str] | None, int, dict[int, tuple[int, int]]]] = [
    ("no incident, a country down: all up", 0, [], ["up", "down"], 300, {0: (300, 0)}),
    # The issue's submission: public incidents adding to 3 minutes over 13.6 minutes.
    ("three minutes of incidents", 0, [(60, 180), (400, 460)], ["up"], 816, {
        0: (600 - 180, 180), 1: (216, 0)}),
    ("an open incident lasts until the instant", 0, [(200, None)], ["down"], 500, {0: (200, 300)}),
    ("an incident from before the monitor was added", 100, [(0, 160)], ["up"], 400, {
        0: (240, 60)}),
    ("an incident over midnight is split", 0, [(500, 700)], ["up"], 900, {
        0: (500, 100), 1: (200, 100)}),
    ("overlapping incidents count once", 0, [(0, 120), (60, 180)], ["up"], 300, {0: (120, 180)}),
    ("an incident after the instant is not yet", 0, [(400, 500)], ["up"], 300, {0: (300, 0)}),
    ("never checked: no data", 0, [(0, 60)], None, 300, {}),
]  # fmt: skip


async def _seed(
    pool: asyncpg.Pool,
    job_ids: JobIds,
    monitor: dict[str, Any],
    created: datetime,
    incidents: list[Span],
    countries: list[str] | None,
) -> int:
    monitor_id = await _row_id(pool, monitor["publicId"])
    for cc, status in zip(("DE", "US", "FR"), countries or (), strict=False):
        await store_result(pool, job_ids, monitor, cc, status, at=created)
    await pool.execute("UPDATE monitors SET created_at = $2 WHERE id = $1", monitor_id, created)
    for start, end in incidents:
        await pool.execute(
            "INSERT INTO incidents (monitor_id, started_at, ended_at, cause_kind, cause,"
            " countries) VALUES ($1, $2, $3, 'refused', 'seeded', '{DE}')",
            monitor_id,
            T0 + timedelta(seconds=start),
            None if end is None else T0 + timedelta(seconds=end),
        )
    return monitor_id


@pytest.mark.parametrize(
    ("name", "created", "incidents", "countries", "until", "expected"),
    CASES,
    ids=[c[0] for c in CASES],
)
async def test_rule(
    pool: asyncpg.Pool,
    http: httpx.AsyncClient,
    tenant: Tenant,
    job_ids: JobIds,
    name: str,
    created: int,
    incidents: list[Span],
    countries: list[str] | None,
    until: int,
    expected: dict[int, tuple[int, int]],
) -> None:
    monitor = await create(http, tenant, "smtp", name=name)
    at = T0 + timedelta(seconds=created)
    monitor_id = await _seed(pool, job_ids, monitor, at, incidents, countries)
    async with pool.acquire() as conn:
        got = await pages_store.public_daily(
            conn, [monitor_id], T0.date(), T0 + timedelta(seconds=until)
        )
    assert {(d.day - T0.date()).days: (d.up_ms / S, d.down_ms / S) for d in got} == expected


async def test_the_issue_pages_say_what_the_incidents_say(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds,
    tenant: Tenant,
) -> None:  # fmt: skip
    """A round trip with no incident and a country down shows 100 %, not 92.59 %; a submission
    whose incidents add to 3 minutes over 13.6 minutes shows 77.94 %, not 70.38 %; the page
    says how uptime is computed."""
    now = datetime.now(UTC)
    start = now - timedelta(seconds=816)
    rt = await make_roundtrip(http, tenant)
    submission = await create(http, tenant, "smtp", name="Submission")
    shown = [await _row_id(pool, m["publicId"]) for m in (rt, submission)]
    for m, kind in ((rt, "roundtrip"), (submission, "smtp")):
        await store_result(pool, job_ids, m, "DE", "up", at=start, monitor_type=kind)
        await pool.execute(
            "UPDATE monitors SET created_at = $2 WHERE public_id = $1::uuid", m["publicId"], start
        )
    # The round trip: one country failing for 60 s (the issue's 92.59 %), no incident.
    for ago, status in ((120, "down"), (60, "up")):
        at = now - timedelta(seconds=ago)
        await store_result(pool, job_ids, rt, "US", status, at=at, monitor_type="roundtrip")
    for begin, end in ((600, 510), (300, 240), (120, 90)):  # 90 + 60 + 30 s
        await pool.execute(
            "INSERT INTO incidents (monitor_id, started_at, ended_at, cause_kind, cause,"
            " countries) VALUES ($1, $2, $3, 'auth', 'seeded', '{DE}')",
            shown[1],
            now - timedelta(seconds=begin),
            now - timedelta(seconds=end),
        )
    slug = f"uptime-{tenant.org_id}"
    assert (await _publish(client, tenant, slug, shown, False)).status_code == 303
    async with http_client(base_url=str(http.base_url)) as anonymous:
        page = (await anonymous.get(f"/status/{slug}")).text
        summary = (await anonymous.get(f"/status/{slug}/summary.json")).json()
    # The page's instant is the server's wall, some time after `now`: the window it measures is
    # 816 s and up to the seconds the requests took (every incident had ended by `now`).
    late = (datetime.now(UTC) - now).total_seconds()
    uptime = {s["name"]: s["uptimePercent"] for s in summary["services"]}
    assert uptime["Mail arrives"] == 100.0
    lowest, highest = 100 * (1 - 180 / 816), 100 * (1 - 180 / (816 + late))
    assert lowest - 0.005 <= uptime["Submission"] <= highest + 0.005, (lowest, highest)
    assert "Uptime is the share of time" in page
    shown_pct = re.findall(r'class="uptime">([0-9.]+) % uptime', page)
    assert sorted(float(p) for p in shown_pct) == sorted(uptime.values())


async def test_a_heartbeat_monitor_is_watched_from_when_added_and_down_in_its_incidents(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """A heartbeat monitor has no per-country states: once the heartbeat judge watches it, its
    uptime counts from when it was added, its late spells (incidents) down; before, no data."""
    monitor_id = await pool.fetchval(
        "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port, status,"
        " check_interval, timeout_seconds, config, created_at)"
        " VALUES ($1, $2, 'heartbeat', 'nightly', 'hb-x@rx.mailprobe.test', 25, 'active', 60,"
        " 30, $3, $4) RETURNING id",
        tenant.org_id,
        tenant.customer_id,
        {"everyMinutes": 1, "localPart": "hb-" + "a" * 26},
        T0,
    )
    await pool.execute(
        "INSERT INTO incidents (monitor_id, started_at, ended_at, cause_kind, cause, countries)"
        " VALUES ($1, $2, $3, 'late', 'seeded', '{ZZ}')",
        monitor_id,
        T0 + timedelta(seconds=100),
        T0 + timedelta(seconds=160),
    )

    async def daily() -> dict[int, tuple[float, float]]:
        async with pool.acquire() as conn:
            got = await pages_store.public_daily(
                conn, [monitor_id], T0.date(), T0 + timedelta(seconds=300)
            )
        return {(d.day - T0.date()).days: (d.up_ms / S, d.down_ms / S) for d in got}

    assert await daily() == {0: (240, 60)}  # its watch came with it (migration 0155)
    await pool.execute("DELETE FROM heartbeat_watch WHERE monitor_id = $1", monitor_id)
    assert await daily() == {}
