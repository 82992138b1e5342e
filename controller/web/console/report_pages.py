"""The reports pages: `/console/reports` lists the caller's organization's monitored domains
(the menu's Reports); `/console/reports/{domain}` a domain's charts and largest failures
(controller.web.console.report_view) and the monitors naming it. The caller's organization's
domains only (another's, or one no monitor names, is a 404); a global supporter sees a domain's
charts on its monitors' pages."""

from typing import Annotated

from litestar import get
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.response import Template

from controller.monitors import validation
from controller.monitors.errors import Invalid
from controller.reports import store as reports
from controller.web.console.pages import page, pool_of
from controller.web.console.report_view import domain_reports
from controller.web.console.session import principal_of
from controller.web.request_types import AnyRequest
from shared.timefmt import utcnow

PathStr = Annotated[str, PathParameter()]


@get("/reports", name="console-reports")
async def reports_page(request: AnyRequest) -> Template:
    """The organization's monitored domains, each with its monitors and its reports page."""
    me = principal_of(request)
    async with pool_of(request).acquire() as conn:
        domains = await reports.domains_monitored(conn, me.organization_id)
    return page(request, "reports.html", domains=domains)


@get("/reports/{domain:str}", name="console-report-domain")
async def domain_page(request: AnyRequest, domain: PathStr) -> Template:
    me = principal_of(request)
    try:
        name = validation.mail_domain(domain, "domain") or ""
    except Invalid:
        raise NotFoundException() from None
    org = me.organization_id
    async with pool_of(request).acquire() as conn:
        monitors = await reports.domain_monitors(conn, org, name)
        if me.is_global_supporter or not monitors:
            raise NotFoundException()
        shown = await domain_reports(conn, org, name, utcnow().date())
    return page(request, "report_domain.html", domain_monitors=monitors, **shown)
