"""The console's pages: login, overview, a monitor, agents, and the monitor actions.

Reads go through the same scope as the API (`guards.read_scope`: the caller's organization, every
one for global supporters); another organization's monitor is a 404. Every POST looks the monitor
up first (404 before 403), then requires a writer: in the console, readonly users and global
supporters change nothing (the API lets readonly users pause and resume; the console shows them
no controls at all).
"""

from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import asyncpg
import msgspec
import structlog
from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import PathParameter
from litestar.response import Redirect, Template

from controller.access import accounts_store as accounts
from controller.access.accounts_store import Principal
from controller.db.pool import Conn, on_generic_plans
from controller.logins import cap_store as login_caps
from controller.monitors import store as monitors
from controller.monitors.errors import Refused
from controller.monitors.kinds import ALL_TYPES, HEARTBEAT, STORED_TYPES
from controller.monitors.store import Monitor
from controller.monitors.writes import Lookup, MonitorWrites
from controller.notify import outbox_store as outbox_db
from controller.posture import store as posture_db
from controller.settings import BlocklistSettings
from controller.sidechecks.blocklists.rules import BlockList, lists_setting
from controller.sidechecks.blocklists.view import monitor_standing
from controller.web.agents_view import agents_view
from controller.web.api import guards
from controller.web.api.auth import Logins, client_address, login_token
from controller.web.api.errors import ApiError, api_error
from controller.web.api.guards import sees_every_country
from controller.web.api.monitors import BUDGET_FIELDS
from controller.web.console import flow_view, monitor_view
from controller.web.console import store as console
from controller.web.console.oracles_view import not_believed
from controller.web.console.posture_view import listing_counts, monitor_posture
from controller.web.console.report_view import domain_reports
from controller.web.console.roundtrip_view import roundtrip_view
from controller.web.console.session import (
    LOGIN_PATH,
    PREFIX,
    expired_cookie,
    principal_of,
    session_cookie,
)
from controller.web.console.side_checks_view import side_checks
from controller.web.request_types import AnyRequest
from controller.web.services import (
    AccessSettingsDep,
    AgentsDep,
    ClockDep,
    PoolDep,
    ReputationSettingsDep,
    TriggerDep,
    WritesDep,
)
from shared.clock import Clock

log = structlog.get_logger(__name__)

PER_PAGE = 100
NOTICES = {
    "triggered": "A check round was queued; results arrive within the monitor's timeout.",
    "joined": "A round of this round trip is on its way: its results answer this check.",
    "paused": "Paused: the monitor is not checked until resumed.",
    "resumed": "Resumed: the monitor is checked again.",
    "deleted": "The monitor was deleted.",
    "created": "The monitor was created; its first round runs within a minute.",
    "updated": "Saved.",
}

PathStr = Annotated[str, PathParameter()]


def can_write(p: Principal) -> bool:
    return not p.is_global_supporter and p.role != "readonly"


def can_admin(p: Principal) -> bool:
    return not p.is_global_supporter and p.role in ("owner", "admin")


def page(request: AnyRequest, name: str, status_code: int = 200, **context: Any) -> Template:
    """A console template with what every page shows (who is logged in, what they may do)."""
    p = principal_of(request)
    return Template(
        template_name=name,
        context={"me": p, "can_write": can_write(p), "can_admin": can_admin(p), **context},
        status_code=status_code,
    )


# --- login ------------------------------------------------------------------------------------


@get("/login", name="console-login")
async def login_form() -> Template:
    return Template(template_name="login.html", context={"error": None, "email": ""})


@post("/login", status_code=303)
async def login(
    request: AnyRequest,
    pool: PoolDep,
    logins: NamedDependency[Logins],
    access_settings: AccessSettingsDep,
) -> Response[Any]:
    form = await request.form()
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    try:
        issued = await login_token(
            pool,
            logins,
            client_address(request),
            (email, password),
            access_settings.token_ttl_seconds,
        )
    except ApiError as exc:  # throttled (429) or the password threads are busy (503)
        return Template(
            template_name="login.html",
            context={"error": exc.message, "email": email},
            status_code=exc.status,
            headers=exc.headers,
        )
    if issued is None:
        return Template(
            template_name="login.html",
            context={"error": "Wrong e-mail or password.", "email": email},
            status_code=401,
        )
    token, _ = issued
    log.info("console login")
    return Redirect(
        f"{PREFIX}/",
        status_code=303,
        cookies=[session_cookie(token, access_settings.token_ttl_seconds)],
    )


@post("/logout", status_code=303)
async def logout(request: AnyRequest, pool: PoolDep) -> Redirect:
    async with pool.acquire() as conn:
        await accounts.revoke_token(conn, request.scope["auth"])
    log.info("console logout", user=principal_of(request).email)
    return Redirect(LOGIN_PATH, status_code=303, cookies=[expired_cookie()])


# --- overview ---------------------------------------------------------------------------------


class Filters(msgspec.Struct):
    customer: str = ""
    kind: str = ""
    state: str = ""
    q: str = ""
    page: int = 1

    @classmethod
    def of(cls, request: AnyRequest) -> "Filters":
        """The query's filters; a value that is not one of the choices counts as not given."""
        qp = request.query_params
        f = cls(
            customer=qp.get("customer", ""),
            kind=qp.get("kind", "") if qp.get("kind") in STORED_TYPES else "",
            state=qp.get("state", "") if qp.get("state") in console.STATES else "",
            q=qp.get("q", "")[:200].replace("\x00", ""),
        )
        try:
            f.page = min(max(int(qp.get("page", "1")), 1), 100_000)
        except ValueError:
            f.page = 1
        try:
            UUID(f.customer)
        except ValueError:
            f.customer = ""
        return f

    def query(self, **change: Any) -> str:
        """The filters as a query string, with `change` applied (page 1 unless given)."""
        values = {**msgspec.structs.asdict(self), "page": 1, **change}
        return urlencode({k: v for k, v in values.items() if v not in ("", None, 1)})


async def _overview(request: AnyRequest, pool: asyncpg.Pool) -> dict[str, Any]:
    f = Filters.of(request)
    scope = guards.read_scope(principal_of(request))
    async with pool.acquire() as conn:
        rows, counts = await console.overview(
            conn,
            organization_id=scope,
            customer=UUID(f.customer) if f.customer else None,
            kind=f.kind or None,
            search=f.q or None,
            state=f.state or None,
            limit=PER_PAGE,
            offset=(f.page - 1) * PER_PAGE,
        )
        customers = await console.customers_of(conn, scope)
    shown = counts[f.state] if f.state else sum(counts.values())
    return {
        "rows": rows,
        "counts": counts,
        "total": sum(counts.values()),
        "shown": shown,
        "pages": max(1, -(-shown // PER_PAGE)),
        "f": f,
        "customers": customers,
        "states": console.STATES,
        "kinds": STORED_TYPES,
    }


@get("/", name="console-overview")
async def overview(
    request: AnyRequest,
    pool: PoolDep,
    reputation_settings: ReputationSettingsDep,
    clock: ClockDep,
) -> Template:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    async with pool.acquire() as conn:
        scope = guards.read_scope(principal_of(request))
        open_findings = await posture_db.open_counts(conn, scope)
        listed = await listing_counts(
            conn, scope, blocklists_of(reputation_settings), LISTINGS_COUNTED
        )
        for level, n in listed.items():
            open_findings[level] = open_findings.get(level, 0) + n
        flows, open_flows, evidence = await flow_view.listed(
            conn, scope, flow_view.OPEN_SHOWN, open_only=True
        )
        interval = reputation_settings.blocklist_interval_seconds
        dark = await not_believed(conn, principal_of(request), clock.now(), interval)
    return page(
        request,
        "overview.html",
        notice=notice,
        not_believed=dark,
        open_findings=open_findings,
        open_flows=open_flows,
        **flow_view.shown(flows, evidence),
        **await _overview(request, pool),
    )


@get("/monitors.part")
async def overview_part(request: AnyRequest, pool: PoolDep) -> Template:
    """The overview's counts and table alone, fetched by the page every few seconds."""
    return page(request, "_monitors.html", **await _overview(request, pool))


LISTINGS_COUNTED = 2000  # raised listings counted for the overview, at most


def blocklists_of(reputation_settings: BlocklistSettings) -> tuple[BlockList, ...]:
    """The lists the operator's `BLOCKLISTS` asks (none: off)."""
    return lists_setting(reputation_settings.blocklists)


# --- one monitor ------------------------------------------------------------------------------


async def find_monitor(
    conn: Conn, request: AnyRequest, raw_id: str, types: tuple[str, ...] = ALL_TYPES
) -> Monitor:
    """The monitor of one of `types` (the checked kinds') with that public id, as the caller
    may see it; else a 404."""
    try:
        ident = UUID(raw_id)
    except ValueError:
        raise NotFoundException() from None
    found = await monitors.get(conn, ident, types, guards.read_scope(principal_of(request)))
    if found is None:
        raise NotFoundException()
    return found


async def _monitor(
    request: AnyRequest, pool: asyncpg.Pool, monitor_id: str, now: datetime
) -> tuple[Monitor, dict[str, Any]]:
    """The monitor as the caller may see it and its page's live context; else a 404."""
    try:
        ident = UUID(monitor_id)
    except ValueError:
        raise NotFoundException() from None
    range_name = request.query_params.get("range", "day")
    scope = guards.read_scope(principal_of(request))
    async with on_generic_plans(pool) as conn:
        found = await monitor_view.live(conn, ident, scope, range_name, now)
    if found is None:
        raise NotFoundException()
    return found


@get("/monitors/{monitor_id:str}", name="console-monitor")
async def monitor_page(
    request: AnyRequest,
    monitor_id: PathStr,
    pool: PoolDep,
    reputation_settings: ReputationSettingsDep,
    clock: ClockDep,
) -> Template:
    now = clock.now()
    m, live = await _monitor(request, pool, monitor_id, now)
    async with on_generic_plans(pool) as conn:
        tls = await console.latest_tls(conn, m.id, now - timedelta(days=2))
        history, _ = await outbox_db.list_history(conn, m.id, 10, 0)
        capped = await login_caps.get(conn, m.id, now)
        lists = blocklists_of(reputation_settings)
        posture = await monitor_posture(conn, m.id, lists)
        interval = reputation_settings.blocklist_interval_seconds
        dark = await not_believed(
            conn, principal_of(request), now, interval, m.allowed_country_codes
        )
        sides = await side_checks(conn, m, (f.code for f in posture["open_findings"]), dark)
        blocklists = await monitor_standing(
            conn, m, lists, reputation_settings.blocklist_interval_seconds, now
        )
        roundtrip = await roundtrip_view(conn, m, now)
        reports = {}
        if m.mail_domain:
            reports = await domain_reports(conn, m.organization_id, m.mail_domain, now.date())
    return page(
        request,
        "monitor.html",
        **live,
        tls=[(t.country, t.tls) for t in tls],
        history=history,
        capped=capped,
        **posture,
        **roundtrip,
        blocklists=blocklists,
        side_checks=sides,
        not_believed=dark,
        lists=lists,
        interval_s=reputation_settings.blocklist_interval_seconds,
        hold_s=reputation_settings.blocklist_hold_seconds,
        **reports,
        notice=NOTICES.get(request.query_params.get("notice", "")),
        error=None,
    )


@get("/monitors/{monitor_id:str}/live")
async def monitor_part(
    request: AnyRequest, pool: PoolDep, clock: ClockDep, monitor_id: PathStr
) -> Template:
    """The monitor page's live part alone, fetched by the page every few seconds."""
    _, live = await _monitor(request, pool, monitor_id, clock.now())
    return page(request, "_monitor_live.html", **live)


async def _writable(
    request: AnyRequest, pool: asyncpg.Pool, monitor_id: str, types: tuple[str, ...] = ALL_TYPES
) -> Monitor:
    """The monitor of one of `types` a writer may change (pause, resume, delete: every stored
    kind; a check-now: the checked kinds)."""
    async with pool.acquire() as conn:
        monitor = await find_monitor(conn, request, monitor_id, types)  # 404 before 403
    guards.requires_writer(principal_of(request))
    return monitor


def _back(monitor: Monitor, notice: str) -> Redirect:
    return Redirect(f"{PREFIX}/monitors/{monitor.public_id}?notice={notice}", status_code=303)


@post("/monitors/{monitor_id:str}/trigger", status_code=303)
async def trigger(
    request: AnyRequest,
    monitor_id: PathStr,
    trigger: TriggerDep,
    pool: PoolDep,
    reputation_settings: ReputationSettingsDep,
    clock: ClockDep,
) -> Response[Any]:
    monitor = await _writable(request, pool, monitor_id)
    try:
        plan = await trigger.run(principal_of(request), monitor)
    except Refused as exc:  # disabled monitor, fair-use limit, no pipeline or agents here
        return await _action_failed(
            request, (pool, reputation_settings, clock), monitor_id, api_error(exc)
        )
    return _back(monitor, "triggered" if plan.joined is None else "joined")


def _lookup(monitor: Monitor) -> Lookup:
    return Lookup(monitor.id, (monitor.type,), monitor.organization_id)


async def _set_status(
    request: AnyRequest,
    deps: tuple[asyncpg.Pool, BlocklistSettings, MonitorWrites, Clock],
    monitor_id: str,
    status: str,
) -> Response[Any]:
    """Pause (`disabled`) or resume (`active`), as the API's PATCH of `status` does."""
    pool, reputation_settings, writes, clock = deps
    monitor = await _writable(request, pool, monitor_id, STORED_TYPES)
    try:
        if monitor.type == HEARTBEAT.types[0]:  # its own columns' write, as its API's PATCH
            await writes.update_row(_lookup(monitor), {"status": status}, monitor.updated_at)
        else:
            await writes.set_status(_lookup(monitor), status, BUDGET_FIELDS)
    except (ApiError, Refused) as exc:
        return await _action_failed(
            request, (pool, reputation_settings, clock), monitor_id, api_error(exc)
        )
    log.info("console status change", monitor=str(monitor.public_id), status=status)
    return _back(monitor, "paused" if status == "disabled" else "resumed")


@post("/monitors/{monitor_id:str}/pause", status_code=303)
async def pause(
    request: AnyRequest,
    monitor_id: PathStr,
    pool: PoolDep,
    reputation_settings: ReputationSettingsDep,
    writes: WritesDep,
    clock: ClockDep,
) -> Response[Any]:
    deps = (pool, reputation_settings, writes, clock)
    return await _set_status(request, deps, monitor_id, "disabled")


@post("/monitors/{monitor_id:str}/resume", status_code=303)
async def resume(
    request: AnyRequest,
    monitor_id: PathStr,
    pool: PoolDep,
    reputation_settings: ReputationSettingsDep,
    writes: WritesDep,
    clock: ClockDep,
) -> Response[Any]:
    deps = (pool, reputation_settings, writes, clock)
    return await _set_status(request, deps, monitor_id, "active")


@post("/monitors/{monitor_id:str}/delete", status_code=303)
async def delete(
    request: AnyRequest,
    monitor_id: PathStr,
    writes: WritesDep,
    pool: PoolDep,
) -> Redirect:
    monitor = await _writable(request, pool, monitor_id, STORED_TYPES)
    await writes.delete(_lookup(monitor))
    log.info("console delete", monitor=str(monitor.public_id))
    return Redirect(f"{PREFIX}/?notice=deleted", status_code=303)


async def _action_failed(
    request: AnyRequest,
    deps: tuple[asyncpg.Pool, BlocklistSettings, Clock],
    monitor_id: str,
    exc: ApiError,
) -> Response[Any]:
    """The monitor page again, with the API's message for the refused action and its status."""
    pool, reputation_settings, clock = deps
    shown: Template = await monitor_page.fn(request, monitor_id, pool, reputation_settings, clock)
    shown.context["error"] = exc.message
    shown.status_code = exc.status
    return shown


# --- agents -----------------------------------------------------------------------------------


@get("/agents", name="console-agents")
async def agents_page(
    request: AnyRequest, pool: PoolDep, agents: AgentsDep, clock: ClockDep
) -> Template:
    """Every live agent for the deployment's operators, whether each country is served for
    anyone else (controller/web/agents_view.py)."""
    me = principal_of(request)
    seen = await agents_view(pool, me, agents, clock.now()) if agents is not None else []
    return page(
        request,
        "agents.html",
        running=agents is not None,
        every=sees_every_country(me),
        countries=[(c.country, c.agents) for c in seen],
        served=[(c.country, c.live) for c in seen],
        total=sum(len(c.agents) for c in seen),
    )


# --- errors as pages --------------------------------------------------------------------------

_HEADLINES = {403: "Not allowed", 404: "Not found"}


def error_page(request: AnyRequest, exc: Exception) -> Template:
    """A refused or unknown page as HTML with its status (the API's handlers answer JSON)."""
    status, message = 500, "Something went wrong."
    if isinstance(exc, ApiError):
        status, message = exc.status, exc.message
    elif isinstance(exc, HTTPException):
        status, message = exc.status_code, exc.detail
    if status == 404:
        message = "There is no such page, or it belongs to another organization."
    return Template(
        template_name="error.html",
        context={
            "me": None,
            "status": status,
            "headline": _HEADLINES.get(status, "Refused"),
            "message": message,
        },
        status_code=status,
    )


def public_error_page(request: AnyRequest, exc: Exception) -> Template:
    """An unknown public page (a status page, its feed or subscription link) for anyone on the
    internet: that it does not exist, and nothing of the console (no login link, no word of
    organizations)."""
    return Template(template_name="public_error.html", status_code=404)
