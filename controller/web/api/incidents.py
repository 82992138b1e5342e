"""The organization's incidents as mail-flow problems (`GET /api/incidents`): each flow
incident with every monitor and country it touches and each monitor's cause
(controller.alerting.flows). A monitor's own incidents stay under its `…/incidents`."""

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import QueryParameter

from controller.alerting import flow_store as flow_db
from controller.notify import evidence_store as evidence_db
from controller.web.api.page import Page, published
from controller.web.authed_request import AuthedRequest
from controller.web.services import PoolDep
from shared.timefmt import iso_ms, iso_ms_or_none

PageParam = Annotated[int, QueryParameter(ge=1, le=1_000_000, description="1-based page number")]
PerPageParam = Annotated[
    int, QueryParameter(name="perPage", ge=1, le=100, description="items per page")
]


class FlowMonitor(msgspec.Struct, rename="camel"):
    """A monitor of the incident: its latest incident in it (`state` `open` while down)."""

    monitor_id: str
    name: str
    type: str
    hostname: str
    port: int | None
    state: str
    started_at: str
    ended_at: str | None
    cause_kind: str
    cause: str
    countries: list[str]


class Evidence(msgspec.Struct, rename="camel"):
    """A finding attached to the incident while it was open (posture, a listing, a report
    finding about one of its monitors, hosts or mail domains) instead of sent on its own."""

    source: str  # `finding` or `report`
    kind: str
    summary: str
    at: str


class FlowIncident(msgspec.Struct, rename="camel"):
    """One mail-flow problem: `state` `open` until its last monitor recovered; `countries`
    and `causeKinds` are every one its monitors touched; `notified`: its first notice went
    out; `evidence`: the findings attached to it, oldest first."""

    id: str
    state: str
    started_at: str
    ended_at: str | None
    notified: bool
    countries: list[str]
    cause_kinds: list[str]
    monitors: list[FlowMonitor]
    evidence: list[Evidence]


FlowIncidentPage = Annotated[Page[FlowIncident], published("FlowIncidentPage")]


def _shown(f: flow_db.ListedFlow, evidence: list[evidence_db.Evidence]) -> FlowIncident:
    return FlowIncident(
        id=str(f.public_id),
        state="open" if f.ended_at is None else "closed",
        started_at=iso_ms(f.started_at),
        ended_at=iso_ms_or_none(f.ended_at),
        notified=f.notified,
        countries=f.countries,
        cause_kinds=f.cause_kinds,
        monitors=[
            FlowMonitor(
                monitor_id=str(m.monitor_public_id),
                name=m.name,
                type=m.type,
                hostname=m.hostname,
                port=m.port,
                state="open" if m.ended_at is None else "closed",
                started_at=iso_ms(m.started_at),
                ended_at=iso_ms_or_none(m.ended_at),
                cause_kind=m.cause_kind,
                cause=m.cause,
                countries=list(m.countries),
            )
            for m in f.members
        ],
        evidence=[
            Evidence(source=e.source, kind=e.kind, summary=e.summary, at=iso_ms(e.at))
            for e in evidence
            if e.flow_incident_id == f.id
        ],
    )


class IncidentController(Controller):
    path = "/api/incidents"
    tags = ["alerts"]

    @get("/", summary="The organization's incidents: one per mail-flow problem, newest first")
    async def list_incidents(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        page: PageParam = 1,
        per_page: PerPageParam = 20,
    ) -> FlowIncidentPage:
        async with pool.acquire() as conn:
            rows, total = await flow_db.list_flows(
                conn, request.user.organization_id, per_page, (page - 1) * per_page
            )
            evidence = await evidence_db.of_flows(conn, [f.id for f in rows])
        return Page([_shown(f, evidence) for f in rows], total, page, per_page)
