"""Public status pages: owners and admins publish one per customer (a slug, a title, the monitors
on it, whether hostnames show); anyone may open `GET /status/{slug}` without logging in.

The public page is built from an allow-list: per chosen monitor its name, kind, state, countries'
states, daily uptime and incidents with their cause in plain words (never the agent's message,
which may name hosts and ports); the hostname only when the page shows hostnames; notices the
organization wrote for the page; when maintenance is scheduled (never its note); never the port,
the configuration, the customer's other monitors or anything of another customer. The same
content is served as HTML, JSON (`summary.json`) and feeds (`status_feeds`).
"""

import asyncio
import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import structlog
from litestar import MediaType, Response, get, head, post
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from markupsafe import Markup

from controller.access import customers_store as customers_db
from controller.monitors.kinds import TYPE_LABELS
from controller.notify import causes, maintenance
from controller.statuspages import notices_store as notices_db
from controller.statuspages import pages_store as status_pages
from controller.statuspages import subscribers_store as subscribers_db
from controller.statuspages import uptime_bars
from controller.statuspages.cache import PageCache, Published
from controller.statuspages.content import Maintenance, PageContent, Service
from controller.statuspages.notices_store import Notice, NoticeUpdate
from controller.statuspages.pages_store import DayCounts, PageIncident, PageWindow, StatusPage
from controller.web.api import guards
from controller.web.console import store as console
from controller.web.console.pages import page
from controller.web.console.session import PREFIX, principal_of
from controller.web.request_types import AnyRequest
from controller.web.services import BackgroundDep, ClockDep, PageCacheDep, PoolDep
from shared.clock import Clock
from shared.guards import BrokenInvariant

log = structlog.get_logger(__name__)

PathStr = Annotated[str, PathParameter()]
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
UPTIME_DAYS = 90
MAX_SHOWN = 1000  # services a page lists, by name
INCIDENT_DAYS = 90
MAINTENANCE_AHEAD = timedelta(days=14)
STATE_LABELS = {
    "up": "Operational",
    "degraded": "Degraded",
    "down": "Down",
    "recovering": "Recovering",
    "paused": "Paused",
}


async def admin_page(
    request: AnyRequest, pool: asyncpg.Pool, error: str | None, status_code: int, now: datetime
) -> Template:
    org = principal_of(request).organization_id
    async with pool.acquire() as conn:
        pages = await status_pages.of_organization(conn, org)
        by_customer = {
            p.customer_id: await console.monitors_of_customer(conn, p.customer_id) for p in pages
        }
        open_notices = {}
        subscribed = {}
        for p in pages:
            if p.slug is None:
                continue
            found = await notices_db.page_of_customer(conn, p.customer_id, org)
            if found is None:
                continue
            rows = await notices_db.of_page(conn, found.id, now)
            open_notices[p.customer_id] = [r for r in rows if r.resolved_at is None]
            subscribed[p.customer_id] = await subscribers_db.count(conn, found.id)
    return page(
        request,
        "status_admin.html",
        status_code=status_code,
        pages=pages,
        monitors=by_customer,
        notices=open_notices,
        subscribers=subscribed,
        impacts=notices_db.IMPACTS,
        states=notices_db.STATES,
        error=error,
        notice=request.query_params.get("saved") and "Saved.",
    )


@get("/status-pages", name="console-status-pages")
async def admin(request: AnyRequest, pool: PoolDep, clock: ClockDep) -> Template:
    guards.requires_admin(principal_of(request))
    return await admin_page(request, pool, None, 200, clock.now())


async def _customer_id(request: AnyRequest, pool: asyncpg.Pool, raw: str) -> int:
    try:
        ident = UUID(raw)
    except ValueError:
        raise NotFoundException() from None
    async with pool.acquire() as conn:
        found = await customers_db.find(conn, ident, principal_of(request).organization_id)
    if found is None:
        raise NotFoundException()
    return found.id


@post("/status-pages/{customer:str}", status_code=303)
async def save(
    request: AnyRequest,
    customer: PathStr,
    pool: PoolDep,
    background: BackgroundDep,
    clock: ClockDep,
) -> Response[Any]:
    guards.requires_admin(principal_of(request))
    customer_id = await _customer_id(request, pool, customer)
    form = await request.form()
    slug = str(form.get("slug", "")).strip().lower()
    title = str(form.get("title", "")).strip()[:200]
    if not SLUG.match(slug):
        return await admin_page(
            request,
            pool,
            "slug: 2-63 lower-case letters, digits and hyphens, not starting with -",
            400,
            clock.now(),
        )
    if not title or "\x00" in title:
        return await admin_page(request, pool, "title: required", 400, clock.now())
    ids = []
    for raw in form.getall("monitor", []):
        try:
            ids.append(int(raw))
        except ValueError:
            return await admin_page(
                request, pool, "monitor: not a monitor of this customer", 400, clock.now()
            )
    try:
        async with pool.acquire() as conn, conn.transaction():
            await status_pages.save(
                conn,
                customer_id,
                principal_of(request).organization_id,
                slug,
                title,
                form.get("hostnames") == "on",
                ids,
                clock.now(),
            )
    except asyncpg.UniqueViolationError:
        return await admin_page(
            request, pool, f"slug: {slug} is taken by another page", 409, clock.now()
        )
    log.info("status page saved", slug=slug, monitors=len(ids))
    background.run(_settle(pool, slug, clock.now()))
    return Redirect(f"{PREFIX}/status-pages?saved=1", status_code=303)


@post("/status-pages/{customer:str}/unpublish", status_code=303)
async def unpublish(request: AnyRequest, pool: PoolDep, customer: PathStr) -> Redirect:
    guards.requires_admin(principal_of(request))
    customer_id = await _customer_id(request, pool, customer)
    async with pool.acquire() as conn:
        await status_pages.unpublish(conn, customer_id)
    return Redirect(f"{PREFIX}/status-pages?saved=1", status_code=303)


async def _settle(pool: asyncpg.Pool, slug: str, now: datetime) -> None:
    """Sum the page's settled days now (seconds for 1,000 services' 90 days), so its first
    visitor does not wait for them."""
    try:
        async with pool.acquire() as conn:
            found = await status_pages.by_slug(conn, slug)
            if found is not None:
                first_day = now.date() - timedelta(days=UPTIME_DAYS - 1)
                await status_pages.settle(conn, found[1], first_day, now)
    except Exception:
        log.warning("status page days not settled", slug=slug, exc_info=True)


def _bars(days: dict[date, tuple[int, int]], today: date) -> list[uptime_bars.Bar]:
    """One bar per day, oldest first: the share of up rounds, or None without any."""
    return uptime_bars.daily(days, today, UPTIME_DAYS)


async def published(pool: asyncpg.Pool, cache: PageCache, slug: str, clock: Clock) -> Published:
    """The public page (its content shared by its HTML, JSON and feeds, see
    controller.statuspages.cache): 404 for a slug no page has."""
    if not SLUG.match(slug):
        raise NotFoundException()
    async with pool.acquire() as conn:
        found = await status_pages.by_slug(conn, slug)
    if found is None:
        raise NotFoundException()
    sp, ids = found
    key = (sp.id, sp.slug, sp.title, sp.show_hostnames, sp.notices, tuple(sorted(ids)))
    return await cache.get(key, lambda: _page(pool, sp, ids, clock.now()))


@get("/status/{slug:str}", name="status-page")
async def public(
    slug: PathStr,
    request: AnyRequest,
    pool: PoolDep,
    page_cache: PageCacheDep,
    clock: ClockDep,
) -> Response[bytes]:
    found = await published(pool, page_cache, slug, clock)
    engine = request.app.template_engine
    if not isinstance(engine, JinjaTemplateEngine):
        raise BrokenInvariant("status.public: expected isinstance(engine, JinjaTemplateEngine)")
    body = await found.body("html", lambda content: render_html(engine, content))
    return Response(body, media_type=MediaType.HTML)


def render_html(engine: JinjaTemplateEngine, content: PageContent) -> bytes:
    """The page as HTML. Its day bars (90 per service) are drawn here, not by the template: a
    thousand services' bars through Jinja took seconds; their text is ours (an ISO date, a
    number, a level of `uptime_bars`), nothing a visitor or member wrote."""
    monitors = [
        {
            **service,
            "barsHtml": Markup(_bars_html(service["bars"])),
            "uptimeSinceLabel": _since(service["uptimeSince"]),
        }
        for service in content["monitors"]
    ]
    template = engine.get_template("status.html")
    return template.render(**{**content, "monitors": monitors}).encode()


def _since(day: date | None) -> str:
    return "" if day is None else uptime_bars.since_label(day)


def _bars_html(bars: list[uptime_bars.Bar]) -> str:
    out = []
    for b in bars:
        share = "no data" if b["share"] is None else f"{b['share']} % up"
        out.append(f'<span class="bar {b["level"]}" title="{b["day"]}: {share}"></span>')
    return "".join(out)


@head("/status/{slug:str}", name="status-page-head")
async def public_head(
    slug: PathStr, pool: PoolDep, page_cache: PageCacheDep, clock: ClockDep
) -> Response[None]:
    """What uptime checkers that ask with HEAD need: 200 while the page is published."""
    await published(pool, page_cache, slug, clock)
    return Response(content=None, media_type=MediaType.HTML)


async def _page(pool: asyncpg.Pool, sp: StatusPage, ids: list[int], now: datetime) -> PageContent:
    """The public page's content at `now`: the page `sp` showing monitors `ids`."""
    async with pool.acquire() as conn:
        rows = await console.summaries(conn, ids, MAX_SHOWN)
        first_day = now.date() - timedelta(days=UPTIME_DAYS - 1)
        daily = await status_pages.public_daily(conn, ids, first_day, now)
        incidents = await status_pages.incidents(conn, ids, now - timedelta(days=INCIDENT_DAYS))
        windows = await status_pages.maintenance(conn, sp.customer_id, ids)
        notices = await notices_db.of_page(conn, sp.id, now - timedelta(days=INCIDENT_DAYS))
        updates = await notices_db.updates(conn, [n.id for n in notices])
    # Shaped off the event loop: 1,000 services' 90 days are a few hundred ms of Python.
    return await asyncio.to_thread(
        _content, sp, now, rows, daily, incidents, windows, notices, updates
    )


def _content(
    sp: StatusPage,
    now: datetime,
    rows: list[console.MonitorSummary],
    daily: list[DayCounts],
    incidents: list[PageIncident],
    windows: list[PageWindow],
    notices: list[Notice],
    updates: dict[int, list[NoticeUpdate]],
) -> PageContent:
    per_day: dict[int, dict[date, tuple[int, int]]] = {}
    for d in daily:
        per_day.setdefault(d.monitor_id, {})[d.day] = (d.up_ms, d.down_ms)
    names = {m.id: m.name for m in rows}
    shown: list[Service] = []
    for m in rows:
        days = per_day.get(m.id, {})
        up = sum(u for u, _ in days.values())
        down = sum(d for _, d in days.values())
        state = m.state  # the console's word: `recovering` while held down, countries up
        shown.append(
            {
                "name": m.name,
                # a heartbeat monitor's host name is its receiving address: never published
                "hostname": m.hostname if sp.show_hostnames and m.type != "heartbeat" else None,
                "kind": TYPE_LABELS.get(m.type, m.type),
                "state": state,
                "stateLabel": STATE_LABELS.get(state, "No data"),
                "countries": [{"country": cc, "state": st} for cc, st in m.dots],
                "uptime": round(100 * up / (up + down), 2) if up + down else None,
                "uptimeSince": uptime_bars.covered_since(days, now.date(), UPTIME_DAYS),
                "bars": _bars(days, now.date()),
            }
        )
    return {
        "title": sp.title,
        "slug": sp.slug,
        "updatedAt": now,
        "monitors": shown,
        "overall": _overall([service["state"] for service in shown]),
        "incidents": [
            {
                "monitor": names.get(i.monitor_id, ""),
                "startedAt": i.started_at,
                "endedAt": i.ended_at,
                "cause": sentence_case(causes.label(i.cause_kind)),
                "countries": i.countries,
            }
            for i in incidents
        ],
        "notices": [
            {
                "id": str(n.public_id),
                "title": n.title,
                "impact": n.impact,
                "createdAt": n.created_at,
                "resolvedAt": n.resolved_at,
                "updates": [
                    {"state": u.state, "body": u.body, "at": u.created_at}
                    for u in reversed(updates.get(n.id, []))
                ],
            }
            for n in notices
        ],
        "maintenance": _maintenance(windows, names, now),
        "days": UPTIME_DAYS,
        "historyDays": INCIDENT_DAYS,
    }


def _maintenance(
    windows: list[PageWindow], names: dict[int, str], now: datetime
) -> list[Maintenance]:
    """Maintenance in progress or starting within `MAINTENANCE_AHEAD`, soonest first: when and
    which services, never the window's note (written for the organization, not the public)."""
    out: list[Maintenance] = []
    for w in windows:
        when = maintenance.current_or_next(w, now)
        if when is None or when[0] > now + MAINTENANCE_AHEAD:
            continue
        if w.monitor_id is not None and w.monitor_id not in names:
            continue
        out.append(
            {
                "services": names[w.monitor_id] if w.monitor_id else "All services",
                "startsAt": when[0],
                "endsAt": when[1],
                "inProgress": when[0] <= now,
                "recurring": w.kind != "once",
            }
        )
    return sorted(out, key=lambda window: (window["startsAt"], window["services"]))


def sentence_case(text: str) -> str:
    """The first letter capitalised, the rest as written (TLS stays TLS)."""
    return text[:1].upper() + text[1:]


def _overall(shown: list[str]) -> str:
    if not shown:
        return "No monitors are published on this page yet."
    # A paused service is not checked: it is neither operating normally nor unchecked.
    states = [s for s in shown if s != "paused"]
    if not states:
        return "Every service on this page is paused."
    if any(s == "down" for s in states):
        return "Some services are down."
    if any(s in ("degraded", "recovering") for s in states):
        return "Some services are degraded."
    if all(s == "up" for s in states):
        return "All services are operating normally."
    return "Some services have not been checked recently."
