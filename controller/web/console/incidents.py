"""Incidents in the console (`/console/incidents`, issue 66): one row per mail-flow problem (a flow
incident, controller.alerting.flows), open or closed, with every monitor and country it touches,
its causes and the evidence attached to it; one page per incident. Read through the same scope
as the API (`guards.read_scope`): another organization's incident is a 404. Nothing here
changes anything: every role that may log in reads the same pages."""

from uuid import UUID

from litestar import get
from litestar.exceptions import NotFoundException
from litestar.response import Template

from controller.alerting import flow_store as flow_db
from controller.notify import evidence_store as evidence_db
from controller.web.api import guards
from controller.web.console.flow_view import causes, listed, shown, state
from controller.web.console.pages import PathStr, page
from controller.web.console.session import principal_of
from controller.web.request_types import AnyRequest
from controller.web.services import PoolDep

PER_PAGE = 50


@get("/incidents", name="console-incidents")
async def incidents_page(request: AnyRequest, pool: PoolDep) -> Template:
    """The organization's incidents, newest first; `?state=open` narrows to the open ones."""
    qp = request.query_params
    open_only = qp.get("state") == "open"
    try:
        number = min(max(int(qp.get("page", "1")), 1), 100_000)
    except ValueError:
        number = 1
    scope = guards.read_scope(principal_of(request))
    async with pool.acquire() as conn:
        flows, total, evidence = await listed(
            conn, scope, PER_PAGE, (number - 1) * PER_PAGE, open_only=open_only
        )
    return page(
        request,
        "incidents.html",
        **shown(flows, evidence),
        total=total,
        open_only=open_only,
        page_number=number,
        pages=max(1, -(-total // PER_PAGE)),
    )


@get("/incidents/{incident_id:str}", name="console-incident")
async def incident_page(request: AnyRequest, incident_id: PathStr, pool: PoolDep) -> Template:
    """One incident: every monitor with its outage in it, countries, causes, evidence."""
    try:
        ident = UUID(incident_id)
    except ValueError:
        raise NotFoundException() from None
    scope = guards.read_scope(principal_of(request))
    async with pool.acquire() as conn:
        flow = await flow_db.one(conn, ident, scope)
        if flow is None:
            raise NotFoundException()
        evidence = await evidence_db.of_flows(conn, [flow.id])
    return page(
        request,
        "incident.html",
        flow=flow,
        state=state(flow),
        causes=causes(flow),
        evidence=evidence,
    )
