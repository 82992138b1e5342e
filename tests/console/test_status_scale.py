"""Status pages at scale (issue 24): settled days summed once into `result_days`, a page rebuilt
in the background while visitors keep getting the one built before, and each page's bodies
rendered once per build."""

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import cast

import asyncpg
import httpx
import msgspec

from controller.alerting import incident_store as incident_db
from controller.ingest import retention
from controller.jobs.rules import JobIds
from controller.statuspages import pages_store, uptime_bars
from controller.statuspages.cache import PAGE_TTL_S, STALE_S, PageCache, Published
from controller.statuspages.content import PageContent
from shared.clock import WALL
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import make_tenant
from tests.console.helpers import Browserish, store_result
from tests.console.test_status_pages import _publish, _row_id


def _days(summary: dict[str, object]) -> dict[str, float | None]:
    services = summary["services"]
    assert isinstance(services, list)
    return {d["day"]: d["uptimePercent"] for d in services[0]["days"]}


async def _console_days(
    pool: asyncpg.Pool, monitor_id: int, today: date
) -> dict[date, float | None]:
    """A monitor page's days (`pages_store.daily`, its countries' time up and down) as bars."""
    async with pool.acquire() as conn:
        got = await pages_store.daily(conn, [monitor_id], today - timedelta(days=89), utcnow())
    by_day = {d.day: (d.up_ms, d.down_ms) for d in got}
    return {date.fromisoformat(b["day"]): b["share"] for b in uptime_bars.daily(by_day, today, 90)}


async def test_settled_days_are_summed_once_and_kept_no_longer_than_the_rollups(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    """Days that ended over an hour ago are read from `result_days` (filled from the hourly
    rollups and `uptime_day_ms` the first time a page needs them, zeros for a day without
    any); today from the raw results. A monitor page's bars are its countries' time up and
    down (a public page's are its incidents', tests/console/test_public_uptime.py); a deleted
    monitor's days go with it, and retention drops days older than the rollups' history."""
    org = await make_tenant(pool)
    relay = await create(http, org, "smtp", name="Days relay", hostname="days.acme.test")
    relay_id = await _row_id(pool, relay["publicId"])
    # Three days ago: up 6 min, then down 2 min (its confirmation round adds no weight), then an
    # inconclusive round (time unknown); today: up 2 min, then an inconclusive round.
    three_ago = (utcnow() - timedelta(days=3)).date()
    base = datetime.combine(three_ago, time(1), tzinfo=UTC)
    now = utcnow()
    for at, status in (
        (base, "up"),
        (base + timedelta(minutes=3), "up"),
        (base + timedelta(minutes=5), "up"),
        (base + timedelta(minutes=6), "down"),
        (base + timedelta(minutes=7), "down"),
        (base + timedelta(minutes=8), "inconclusive"),
        (now - timedelta(minutes=4), "up"),
        (now - timedelta(minutes=2), "inconclusive"),
    ):
        kind = "expired" if status == "inconclusive" else None
        await store_result(pool, job_ids, relay, "DE", status, at=at, error_kind=kind)
    slug = f"days-{org.org_id}"
    await _publish(client, org, slug, [relay_id], False)
    for _ in range(100):  # publishing sums them, so the first visitor does not wait
        if await pool.fetchval("SELECT count(*) FROM result_days WHERE monitor_id = $1", relay_id):
            break
        await asyncio.sleep(0.05)
    assert await pool.fetchval(
        "SELECT up FROM result_days WHERE monitor_id = $1 AND day = $2",
        relay_id,
        three_ago,
    )
    today = utcnow().date()
    days = await _console_days(pool, relay_id, today)
    assert len(days) == 90 and max(days) == today
    assert days[three_ago] == 75.0
    assert days[today] == 100.0

    kept = {
        r["day"]: (r["up"], r["down"], r["up_ms"], r["down_ms"])
        for r in await pool.fetch(
            "SELECT day, up, down, up_ms, down_ms FROM result_days WHERE monitor_id = $1",
            relay_id,
        )
    }
    settled = (utcnow() - timedelta(hours=1)).date()
    shown = {today - timedelta(days=n) for n in range(90)}
    assert set(kept) == {d for d in shown if d < settled}
    assert kept[three_ago] == (3, 2, 6 * 60_000, 2 * 60_000)  # rounds, and time in ms
    assert kept[three_ago - timedelta(days=1)] == (0, 0, 0, 0)

    # A settled day is read as kept: another build of the page (a change of what is published)
    # shows the kept sums, not the rollups summed again.
    await pool.execute(
        "UPDATE result_days SET up_ms = 1, down_ms = 1 WHERE monitor_id = $1 AND day = $2",
        relay_id,
        three_ago,
    )
    assert (await _console_days(pool, relay_id, today))[three_ago] == 50.0

    old = date(2000, 1, 1)
    await pool.execute(
        "INSERT INTO result_days (monitor_id, day, up, down, up_ms, down_ms)"
        " VALUES ($1, $2, 1, 0, 1, 0)",
        relay_id,
        old,
    )
    await retention.one_pass(pool, history_days=90, raw_days=35, now=WALL.now())
    assert not await pool.fetchval(
        "SELECT count(*) FROM result_days WHERE monitor_id = $1 AND day = $2", relay_id, old
    )
    r = await http.delete(f"/api/smtp-monitors/{relay['publicId']}", headers=org.auth())
    assert r.status_code == 204, r.text
    assert not await pool.fetchval(
        "SELECT count(*) FROM result_days WHERE monitor_id = $1", relay_id
    )


async def test_the_html_bars_are_the_days_bars(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    """The day bars, drawn outside the template, say what summary.json says, and a name that
    looks like markup stays text."""
    org = await make_tenant(pool)
    relay = await create(http, org, "smtp", name='<b id="x">Bars</b>', hostname="bars.acme.test")
    relay_id = await _row_id(pool, relay["publicId"])
    now = utcnow()
    # Added at yesterday's start, checked, half of yesterday inside an incident.
    yesterday = now.date() - timedelta(days=1)
    start = datetime.combine(yesterday, time(0), tzinfo=UTC)
    await store_result(pool, job_ids, relay, "DE", "up", at=now - timedelta(minutes=1))
    await pool.execute("UPDATE monitors SET created_at = $2 WHERE id = $1", relay_id, start)
    async with pool.acquire() as conn:
        down = await incident_db.open_incident(conn, relay_id, start, "tls", "x", ["DE"])
        await incident_db.close_incident(conn, down.id, start + timedelta(hours=12))
    slug = f"bars-{org.org_id}"
    await _publish(client, org, slug, [relay_id], False)
    page = (await http.get(f"/status/{slug}")).text
    summary = msgspec.json.decode((await http.get(f"/status/{slug}/summary.json")).content)
    assert page.count('class="bar ') == 90
    assert f'<span class="bar down" title="{yesterday.isoformat()}: 50.0 % up"></span>' in page
    before = (yesterday - timedelta(days=1)).isoformat()
    assert f'<span class="bar none" title="{before}: no data"></span>' in page
    days = _days(summary)
    assert (days[yesterday.isoformat()], days[before]) == (50.0, None)
    assert '<b id="x">' not in page and "&lt;b id=&#34;x&#34;&gt;Bars&lt;/b&gt;" in page
    assert (await http.get(f"/status/{slug}")).content == page.encode()


class Clock:
    """The cache's clock, moved by the test: a page's age is what the test says it is."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _content(page: Published) -> dict[str, object]:
    """A stand-in page's content: these builds make no real PageContent (the cache never looks
    inside one)."""
    return cast(dict[str, object], page.content)


async def test_an_expired_page_is_served_while_one_rebuild_runs() -> None:
    """Past its TTL a page is still served at once while one rebuild runs (however many ask);
    a failed rebuild keeps the page and is tried again; past TTL + STALE_S nobody gets it."""
    clock = Clock()
    cache = PageCache(clock)
    builds: list[int] = []
    gate = asyncio.Event()

    async def build() -> PageContent:
        builds.append(len(builds) + 1)
        if len(builds) == 2:
            await gate.wait()
        if len(builds) == 3:
            raise RuntimeError("database gone")
        return cast(PageContent, {"n": len(builds)})

    first = await cache.get("page", build)
    assert _content(first) == {"n": 1}
    clock.now += PAGE_TTL_S + 1  # expired, within STALE_S
    # Served without waiting for the rebuild, which waits for the gate: never, unless set.
    seen = await asyncio.wait_for(
        asyncio.gather(*(cache.get("page", build) for _ in range(5))), timeout=10
    )
    assert {_content(p)["n"] for p in seen} == {1} and builds == [1, 2]
    gate.set()
    await asyncio.sleep(0.01)
    assert _content(await cache.get("page", build)) == {"n": 2}

    clock.now += PAGE_TTL_S + 1  # expired again: this rebuild fails, the page stays
    assert _content(await cache.get("page", build)) == {"n": 2}
    await asyncio.sleep(0.01)
    assert builds == [1, 2, 3]
    assert _content(await cache.get("page", build)) == {"n": 2}
    await asyncio.sleep(0.01)
    assert builds == [1, 2, 3, 4]
    assert _content(await cache.get("page", build)) == {"n": 4}

    clock.now += PAGE_TTL_S + STALE_S  # past TTL + STALE_S: the visitor waits for a new build
    assert _content(await cache.get("page", build)) == {"n": 5}


async def test_a_page_is_rendered_once_per_build_and_a_rebuild_renders_before_it_is_served() -> (
    None
):
    clock = Clock()
    cache = PageCache(clock)
    renders: list[str] = []
    builds: list[int] = []

    async def build() -> PageContent:
        builds.append(1)
        return cast(PageContent, {"title": f"t{len(builds)}"})

    def render(content: PageContent) -> bytes:
        renders.append(str(content["title"]))
        return str(content["title"]).encode()

    for _ in range(3):
        page = await cache.get("page", build)
        assert await page.body("html", render) == b"t1"
    assert renders == ["t1"]
    clock.now += PAGE_TTL_S + 1
    assert await (await cache.get("page", build)).body("html", render) == b"t1"
    # Until the rebuilt page is the one served (the rebuild renders it, then swaps it in).
    async with asyncio.timeout(10):
        while (await cache.get("page", build)).content["title"] != "t2":  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert renders == ["t1", "t2"]  # rendered by the rebuild, before any visitor asks
    assert await (await cache.get("page", build)).body("html", render) == b"t2"
    assert renders == ["t1", "t2"]
