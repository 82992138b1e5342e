"""A monitor's console page over real HTTP: its live fragment (same scope as the page), outages
drawn as outages (a refused check's millisecond is no response time), the up/down history bars
from the hourly rollups, maintenance and incidents as bands, and one date format on every page."""

import re
from datetime import timedelta

import asyncpg
import httpx

from controller.jobs.rules import JobIds
from controller.notify import maintenance_store
from controller.web.console import charts
from controller.web.console import store as console
from shared.timefmt import iso_ms, utcnow
from tests.api.helpers import create
from tests.conftest import Tenant, make_tenant
from tests.console.helpers import Browserish, store_result

SHOWN = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$")
# Anything that reads as a date and a time, in whatever format.
DATED = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z| UTC)?")
TIME = re.compile(r'<time datetime="([^"]+)" title="[^"]+">([^<]*)</time>')


async def _row_id(pool: asyncpg.Pool, public_id: str) -> int:
    found: int = await pool.fetchval(
        "SELECT id FROM monitors WHERE public_id = $1::uuid", public_id
    )
    return found


def _xs(points: str) -> list[float]:
    return [float(p.split(",")[0]) for p in points.split()]


async def test_refused_checks_are_an_outage_never_a_fast_response(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    m = await create(http, tenant, "smtp", name="Refusing relay", allowedCheckCountryCodes=["DE"])
    for minutes in (40, 35, 30):
        await store_result(pool, job_ids, m, "DE", "up", ago=timedelta(minutes=minutes))
    for minutes in (15, 10, 5):  # refused after a millisecond, as an agent reports it
        await store_result(
            pool,
            job_ids,
            m,
            "DE",
            "down",
            ago=timedelta(minutes=minutes),
            error_kind="refused",
            message="connection refused",
            failed_after_ms=1.0,
        )
    client.session = tenant.tokens["readonly"]
    page = (await client.get(f"/console/monitors/{m['publicId']}?range=hour")).text

    lines = re.findall(
        r'<polyline fill="none" stroke="[^"]+" stroke-width="1.6" points="([^"]+)"', page
    )
    assert lines, "the passing checks are drawn"
    # An hour wide: 20 minutes ago is two thirds across; nothing after it is a response time.
    edge = charts.PAD_LEFT + (charts.WIDTH - charts.PAD_LEFT - 4) * (40 / 60)
    assert max(x for line in lines for x in _xs(line)) < edge
    assert "42" not in re.findall(r'class="tick">([^<]+)<', page)[0]  # the axis starts at 0
    bands = re.findall(r'data-band="(\w+)" x="([\d.]+)"', page)
    down = [float(x) for kind, x in bands if kind == "down"]
    assert len(down) == 3 and min(down) > edge, bands
    assert "every country failed" in page  # the band's legend

    hours = re.search(r'id="bars-hours"[^>]*>(.*?)</div>', page, re.S)
    assert hours is not None
    levels = re.findall(r'data-level="(\w+)"', hours.group(1))
    assert len(levels) == 48
    assert {"down", "warn"} & set(levels[-2:]), levels  # the last hour (or two) had refusals
    days = re.search(r'id="bars-days"[^>]*>(.*?)</div>', page, re.S)
    assert days is not None
    day_levels = re.findall(r'data-level="(\w+)"', days.group(1))
    assert len(day_levels) == 90 and day_levels[-1] == "down" and set(day_levels[:-2]) == {"none"}


async def test_maintenance_and_incidents_are_bands_on_the_chart(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    m = await create(http, tenant, "smtp", name="Serviced relay", allowedCheckCountryCodes=["DE"])
    mid = await _row_id(pool, m["publicId"])
    now = utcnow()
    for minutes in (50, 20):
        await store_result(pool, job_ids, m, "DE", "up", ago=timedelta(minutes=minutes))
    async with pool.acquire() as conn:
        await maintenance_store.insert(
            conn,
            tenant.org_id,
            {
                "monitor_id": mid,
                "kind": "once",
                "starts_at": now - timedelta(minutes=45),
                "ends_at": now - timedelta(minutes=40),
            },
        )
        await conn.execute(
            "INSERT INTO incidents (monitor_id, started_at, ended_at, cause_kind, cause, countries)"
            " VALUES ($1, $2, $3, 'refused', 'refused the connection', '{DE}')",
            mid,
            now - timedelta(minutes=30),
            now - timedelta(minutes=25),
        )
    client.session = tenant.tokens["member"]
    page = (await client.get(f"/console/monitors/{m['publicId']}?range=hour")).text
    kinds = re.findall(r'data-band="(\w+)"', page)
    assert kinds.count("maintenance") == 1 and kinds.count("incident") == 1, kinds
    assert "<title>incident: refused the connection</title>" in page


async def test_the_live_fragment_is_the_pages_live_part_in_the_same_scope(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    m = await create(http, tenant, "smtp", name="Watched relay", allowedCheckCountryCodes=["DE"])
    await store_result(pool, job_ids, m, "DE", "down", error_kind="refused")
    part = f"/console/monitors/{m['publicId']}/live"
    client.session = tenant.tokens["readonly"]
    page = (await client.get(f"/console/monitors/{m['publicId']}")).text
    assert f'data-src="{part}"' in page
    r = await client.get(part)
    assert r.status_code == 200 and "<html" not in r.text
    assert 'id="monitor-state" data-state="down"' in r.text and 'id="bars-hours"' in r.text
    assert 'action="' not in r.text  # no form (and no CSRF token) in what is swapped in
    await store_result(pool, job_ids, m, "DE", "up", ago=timedelta(seconds=5))
    assert 'data-state="up"' in (await client.get(part)).text

    other = await make_tenant(pool)
    client.session = other.tokens["owner"]
    assert (await client.get(part)).status_code == 404
    assert (await client.get("/console/monitors/not-a-uuid/live")).status_code == 404
    client.session = None
    r = await client.get(part)
    assert r.status_code in (302, 303, 401) and "Watched relay" not in r.text


async def test_every_page_shows_times_in_one_format(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    """`2026-11-23 08:53 UTC` in a `<time>` carrying the exact instant, whatever the source (a
    certificate's `notAfter` arrives as `2027-12-25T08:49:40.000Z`)."""
    m = await create(http, tenant, "smtp", name="Dated relay", allowedCheckCountryCodes=["DE"])
    await store_result(
        pool,
        job_ids,
        m,
        "DE",
        "up",
        cert_days_left=397,
        cert_not_after="2027-12-25T08:49:40.000Z",
    )
    client.session = tenant.tokens["owner"]
    r = await client.post(
        "/console/scrape-tokens",
        {"name": "prom"},
        token=await client.csrf("/console/scrape-tokens"),
    )
    assert r.status_code in (200, 303), r.text
    pages = [
        "/console/",
        f"/console/monitors/{m['publicId']}",
        f"/console/monitors/{m['publicId']}/live",
        "/console/agents",
        "/console/findings",
        "/console/channels",
        "/console/scrape-tokens",
        "/console/status-pages",
    ]
    seen = 0
    for path in pages:
        html = (await client.get(path)).text
        for exact, shown in TIME.findall(html):
            assert SHOWN.match(shown), (path, shown)
            assert exact.endswith("Z"), (path, exact)
            seen += 1
        visible = TIME.sub(r"\2", html)
        visible = re.sub(r"<[^>]+>", " ", visible)  # text only: not attributes
        for found in DATED.findall(visible):
            assert SHOWN.match(found), (path, found)
    assert seen >= 3
    monitor_page = (await client.get(f"/console/monitors/{m['publicId']}")).text
    assert '<time datetime="2027-12-25T08:49:40.000Z"' in monitor_page
    assert ">2027-12-25 08:49 UTC</time>" in monitor_page


async def test_the_overview_pages_searches_and_counts_by_state_in_name_order(
    tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    """The paths the overview takes at 100,000 monitors give what the one query gave: a search
    (trigram indexes, then sorted), a state filter (per row, in name order), pages, counts."""
    made = {}
    for name, host, status in (
        ("Alpha 3", "a3.example.test", "down"),
        ("alpha 1", "a1.example.test", "up"),
        ("Alpha 2", "a2.example.test", "down"),
        ("Beta", "alpha-host.example.test", "down"),
        ("Gamma", "g.example.test", "up"),
        ("100% alpha_x", "x.example.test", None),
    ):
        m = await create(http, tenant, "smtp", name=name, hostname=host)
        if status is not None:
            await store_result(pool, job_ids, m, "DE", status, error_kind="refused")
        made[name] = m
    async with pool.acquire() as conn:

        async def names(**kw: object) -> tuple[list[str], dict[str, int]]:
            args: dict[str, object] = {
                "organization_id": tenant.org_id,
                "customer": None,
                "kind": None,
                "search": None,
                "state": None,
                "limit": 100,
                "offset": 0,
                **kw,
            }
            rows, counts = await console.overview(conn, **args)  # type: ignore[arg-type]
            return [r.name for r in rows], {k: v for k, v in counts.items() if v}

        everything = ["100% alpha_x", "alpha 1", "Alpha 2", "Alpha 3", "Beta", "Gamma"]
        assert (await names())[0] == everything
        assert await names(search="alpha") == (
            ["100% alpha_x", "alpha 1", "Alpha 2", "Alpha 3", "Beta"],  # Beta by its host
            {"up": 1, "down": 3, "unknown": 1},
        )
        assert (await names(search="alpha", state="down"))[0] == ["Alpha 2", "Alpha 3", "Beta"]
        assert (await names(search="alpha", state="down", limit=2, offset=2))[0] == ["Beta"]
        assert (await names(state="up", limit=1, offset=1))[0] == ["Gamma"]
        assert (await names(search="100%"))[0] == ["100% alpha_x"]  # % is a character
        assert (await names(search="a_x"))[0] == ["100% alpha_x"]  # so is _
        assert (await names(search="zzz")) == ([], {})
        row = await _row_id(pool, made["Gamma"]["publicId"])
        assert await names(ids=[row]) == (["Gamma"], {"up": 1})


async def test_large_selections_reuse_their_counts_for_a_moment_small_ones_never() -> None:
    """Aged on the running loop's clock, as in the console's handlers."""
    held = console._Counted()
    small = {"up": 3, "down": 1}
    large = {"up": console._Counted.LARGE, "down": 1}
    held.put("small", small)
    held.put("large", large)
    assert held.get("small") is None  # counted anew each time: exact at once
    assert held.get("large") == large
    held._held["large"] = (0.0, large)  # expired
    assert held.get("large") is None


async def test_a_young_monitors_uptime_is_time_since_its_first_result(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    """20 minutes up, then a 10-minute outage with its confirmation round, then up again: about
    two thirds of the time up (counting rounds said 2 of 4), in every window, each saying it
    covers only the time since the first result."""
    m = await create(http, tenant, "smtp", name="Young relay", allowedCheckCountryCodes=["DE"])
    first = utcnow().replace(microsecond=0) - timedelta(minutes=30)
    for minutes, status in ((0, "up"), (20, "down"), (21, "down"), (30, "up")):
        await store_result(pool, job_ids, m, "DE", status, at=first + timedelta(minutes=minutes))
    client.session = tenant.tokens["readonly"]
    page = (await client.get(f"/console/monitors/{m['publicId']}/live")).text
    table = page[
        page.index('<table id="uptime"') : page.index("</table>", page.index('id="uptime"'))
    ]
    rows = re.findall(
        r'<td data-label="Window">(\w+)(.*?)</td><td data-label="Overall">([\d.]+) %', table
    )
    assert [r[0] for r in rows] == ["day", "week", "month"], table
    for _, since, share in rows:
        assert f'since <time datetime="{iso_ms(first)}"' in since, since
        assert 66.6 < float(share) < 70, share  # 20 of 30 minutes, and the minutes since
