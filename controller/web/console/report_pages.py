"""The reports pages: `/console/reports` lists the caller's organization's monitored domains
(the menu's Reports); `/console/reports/{domain}` a domain's TLS-RPT record to publish (with a
warning when reporters cannot use it, controller.reports.addresses) and, for owners and admins,
a button rotating its token (`POST .../rotate-token`, the old token accepted for
REPORT_TOKEN_GRACE_HOURS); the charts and largest failures of
controller.web.console.report_view, and the monitors naming the domain. The caller's
organization's domains only (another's, or one no monitor names, is a 404); a global supporter
sees a domain's charts on its monitors' pages."""

from datetime import timedelta
from typing import Annotated

from litestar import get, post
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.response import Redirect, Template

from controller.monitors import validation
from controller.monitors.errors import Invalid
from controller.notify.links import Links
from controller.reports import addresses, tokens
from controller.reports import store as reports
from controller.web.api import guards
from controller.web.console.pages import page
from controller.web.console.report_view import domain_reports
from controller.web.console.session import principal_of
from controller.web.request_types import AnyRequest
from controller.web.services import BoxDep, ClockDep, NotifySettingsDep, PoolDep, ReportsSettingsDep

PathStr = Annotated[str, PathParameter()]


@get("/reports", name="console-reports")
async def reports_page(request: AnyRequest, pool: PoolDep) -> Template:
    """The organization's monitored domains, each with its monitors and its reports page."""
    me = principal_of(request)
    async with pool.acquire() as conn:
        domains = await reports.domains_monitored(conn, me.organization_id)
    return page(request, "reports.html", domains=domains)


def _name(domain: str) -> str:
    try:
        return validation.mail_domain(domain, "domain") or ""
    except Invalid:
        raise NotFoundException() from None


@get("/reports/{domain:str}", name="console-report-domain")
async def domain_page(
    request: AnyRequest,
    pool: PoolDep,
    notify_settings: NotifySettingsDep,
    box: BoxDep,
    clock: ClockDep,
    domain: PathStr,
) -> Template:
    me = principal_of(request)
    now = clock.now()
    name = _name(domain)
    org = me.organization_id
    async with pool.acquire() as conn:
        monitors = await reports.domain_monitors(conn, org, name)
        if me.is_global_supporter or not monitors:
            raise NotFoundException()
        shown = await domain_reports(conn, org, name, now.date())
        generation = await reports.generation(conn, org, name)
    key = box.subkeys(tokens.PURPOSE)[0]
    address = addresses.tls_rpt(Links.of(notify_settings), key, org, name, generation.generation)
    grace = generation.grace_until
    return page(
        request,
        "report_domain.html",
        domain_monitors=monitors,
        tls_rpt=address,
        token=generation,
        previous_until=grace if grace is not None and grace > now else None,
        **shown,
    )


@post("/reports/{domain:str}/rotate-token", status_code=303)
async def rotate_token(
    request: AnyRequest,
    pool: PoolDep,
    reports_settings: ReportsSettingsDep,
    clock: ClockDep,
    domain: PathStr,
) -> Redirect:
    me = principal_of(request)
    guards.requires_admin(me)
    name = _name(domain)
    grace = timedelta(hours=reports_settings.report_token_grace_hours)
    async with pool.acquire() as conn, conn.transaction():
        if not await reports.domain_monitors(conn, me.organization_id, name):
            raise NotFoundException()
        await reports.rotate(conn, me.organization_id, name, clock.now(), grace)
    return Redirect(f"/console/reports/{name}", status_code=303)
