"""`/api/heartbeat-monitors`: create, read, list, update, delete heartbeat monitors (issue 83).
The controller makes each one's receiving address; GET shows it at RECEIVER_DOMAIN. Listing,
lookup and delete are the other kinds' (controller.web.api.monitors, the kind
`kinds.HEARTBEAT`); access as for every monitor: readonly users change `status` only, another
organization's monitor is a 404."""

from typing import Annotated

import asyncpg
from litestar import Router, delete, get, patch, post
from litestar.params import JSONBody, PathParameter
from msgspec import UNSET, UnsetType

from controller.arrivals import watch_store
from controller.monitors import heartbeats, validation
from controller.monitors.heartbeats import HeartbeatMonitorCreate, HeartbeatMonitorUpdate
from controller.monitors.kinds import HEARTBEAT
from controller.monitors.store import Monitor
from controller.monitors.writes import MonitorWrites
from controller.web.api import guards
from controller.web.api.errors import not_found
from controller.web.api.monitor_kinds import HEARTBEAT_API as API
from controller.web.api.monitor_schemas import HeartbeatMonitor
from controller.web.api.monitors import (
    CustomerParam,
    PageParam,
    PerPageParam,
    SearchParam,
    StatusParam,
    delete_kind,
    list_kind,
    lookup,
)
from controller.web.api.page import Page
from controller.web.authed_request import AuthedRequest
from controller.web.services import ApiSettingsDep, ClockDep, PoolDep, WritesDep
from shared.clock import Clock
from shared.messages import HeartbeatConfig
from shared.timefmt import iso_ms

IdParam = Annotated[str, PathParameter(name=API.param, description="public UUID")]
DOMAIN_NOT_SET = "RECEIVER_DOMAIN is not set: the address is this local part at the domain "
DOMAIN_NOT_SET += "whose MX points at the receivers"


def present(monitor: Monitor, domain: str | None) -> HeartbeatMonitor:
    config = monitor.config
    if not isinstance(config, HeartbeatConfig):
        raise not_found()
    return HeartbeatMonitor(
        public_id=str(monitor.public_id),
        customer_id=monitor.customer_id,
        name=monitor.name,
        status=monitor.status,
        address=heartbeats.address(config.local_part, domain) if domain else None,
        local_part=config.local_part,
        heartbeat_config=heartbeats.rule_of(config),
        created_at=iso_ms(monitor.created_at),
        updated_at=iso_ms(monitor.updated_at),
        note=None if domain else DOMAIN_NOT_SET,
    )


async def create_checked(
    request: AuthedRequest, data: HeartbeatMonitorCreate, writes: MonitorWrites, domain: str | None
) -> Monitor:
    """Create from a body already converted strictly (the API's JSON, the console's form)."""
    guards.requires_writer(request.user)
    validation.no_nul(data, "")
    columns = heartbeats.new_columns(data.name, data.status, data.heartbeat_config, domain)
    return await writes.insert_row(request.user.organization_id, data.customer_id, columns)


async def create(
    request: AuthedRequest,
    data: JSONBody[HeartbeatMonitorCreate],
    writes: WritesDep,
    api_settings: ApiSettingsDep,
) -> HeartbeatMonitor:
    domain = api_settings.receiver_domain
    return present(await create_checked(request, data, writes, domain), domain)


async def list_monitors(
    request: AuthedRequest,
    pool: PoolDep,
    api_settings: ApiSettingsDep,
    customer_id: CustomerParam = None,
    search: SearchParam = None,
    status: StatusParam = None,
    page: PageParam = 1,
    per_page: PerPageParam = 50,
) -> Page[HeartbeatMonitor]:
    found, total = await list_kind(
        HEARTBEAT, request, pool, customer_id, search, status, page, per_page
    )
    domain = api_settings.receiver_domain
    return Page([present(m, domain) for m in found], total, page, per_page)


async def get_monitor(
    request: AuthedRequest, monitor_id: IdParam, writes: WritesDep, api_settings: ApiSettingsDep
) -> HeartbeatMonitor:
    monitor = await writes.get(lookup(HEARTBEAT, request.user, monitor_id))
    return present(monitor, api_settings.receiver_domain)


async def update_checked(
    request: AuthedRequest,
    monitor_id: str,
    data: HeartbeatMonitorUpdate,
    writes: MonitorWrites,
    pool: asyncpg.Pool,
    clock: Clock,
) -> Monitor:
    """Update from a body already converted strictly (the API's JSON, the console's form); the
    address is kept. Another organization's monitor is a 404 before the caller's role."""
    found = lookup(HEARTBEAT, request.user, monitor_id)
    monitor = await writes.get(found)  # a 404 before a 403
    sent = {k for k in ("name", "status", "heartbeat_config") if getattr(data, k) is not UNSET}
    guards.requires_updater(request.user, sent)
    validation.no_nul(data, "")
    changes: dict[str, object] = {}
    if not isinstance(data.name, UnsetType):
        changes["name"] = data.name
    if not isinstance(data.status, UnsetType):
        changes["status"] = data.status
    if not isinstance(data.heartbeat_config, UnsetType) and isinstance(
        monitor.config, HeartbeatConfig
    ):
        local = monitor.config.local_part
        changes["config"] = heartbeats.stored_config(data.heartbeat_config, local)
    updated = await writes.update_row(found, changes, monitor.updated_at)
    if not isinstance(data.heartbeat_config, UnsetType):
        # a new rule is judged at once, not at the look the old rule set
        async with pool.acquire() as conn:
            await watch_store.wake(conn, [str(updated.public_id)], clock.now())
    return updated


async def update(
    request: AuthedRequest,
    monitor_id: IdParam,
    data: JSONBody[HeartbeatMonitorUpdate],
    writes: WritesDep,
    pool: PoolDep,
    clock: ClockDep,
    api_settings: ApiSettingsDep,
) -> HeartbeatMonitor:
    updated = await update_checked(request, monitor_id, data, writes, pool, clock)
    return present(updated, api_settings.receiver_domain)


async def delete_monitor(request: AuthedRequest, monitor_id: IdParam, writes: WritesDep) -> None:
    await delete_kind(HEARTBEAT, request, monitor_id, writes)


ITEM = API.item
router = Router(
    API.path,
    tags=[API.tag],
    route_handlers=[
        post("/", summary="Create a Heartbeat Monitor")(create),
        get("/", summary="List Heartbeat Monitors")(list_monitors),
        get(ITEM, summary="Get a Heartbeat Monitor, with its receiving address")(get_monitor),
        patch(ITEM, summary="Update a Heartbeat Monitor")(update),
        delete(ITEM, summary="Delete a Heartbeat Monitor")(delete_monitor),
    ],
)
