"""`/api/heartbeat-monitors`: create, read, list, update, delete heartbeat monitors (issue 83).
The controller makes each one's receiving address; GET shows it at RECEIVER_DOMAIN. Access as
for every monitor (controller.web.api.guards): readonly users change `status` only, another
organization's monitor is a 404."""

from typing import Annotated, Literal
from uuid import UUID

import msgspec
from litestar import Router, delete, get, patch, post
from litestar.params import JSONBody, PathParameter
from msgspec import UNSET, Meta, UnsetType

from controller.arrivals import watch_store
from controller.monitors import heartbeats, validation
from controller.monitors import store as monitors
from controller.monitors.store import Monitor
from controller.monitors.write_model import CustomerIdIn
from controller.monitors.writes import Lookup
from controller.web.api import guards
from controller.web.api.errors import ApiError, not_found
from controller.web.api.monitors import PageParam, PerPageParam, StatusParam
from controller.web.api.page import Page
from controller.web.authed_request import AuthedRequest
from controller.web.services import ApiSettingsDep, ClockDep, PoolDep, WritesDep
from shared.messages import HeartbeatConfig
from shared.timefmt import iso_ms

PATH = "/api/heartbeat-monitors"
TYPES = ("heartbeat",)
Status = Literal["active", "maintenance", "disabled"]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
IdParam = Annotated[str, PathParameter(name="heartbeatMonitorPublicId", description="public UUID")]
DOMAIN_NOT_SET = "RECEIVER_DOMAIN is not set: the address is this local part at the domain "
DOMAIN_NOT_SET += "whose MX points at the receivers"


class HeartbeatMonitorCreate(
    msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    customer_id: CustomerIdIn
    name: Name
    status: Status = "active"
    heartbeat_config: heartbeats.HeartbeatRule = msgspec.field(
        default_factory=heartbeats.HeartbeatRule
    )


class HeartbeatMonitorUpdate(
    msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    name: Name | UnsetType = UNSET
    status: Status | UnsetType = UNSET
    heartbeat_config: heartbeats.HeartbeatRule | UnsetType = UNSET


class HeartbeatMonitor(msgspec.Struct, kw_only=True, rename="camel"):
    """`address`: where the mail must go (None while RECEIVER_DOMAIN is not set: `note` says
    so, `localPart` is its local part)."""

    public_id: str
    customer_id: int
    name: str
    status: str
    address: str | None
    local_part: str
    heartbeat_config: heartbeats.HeartbeatRule
    created_at: str
    updated_at: str
    note: str | None = None


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


def _lookup(request: AuthedRequest, raw_id: str) -> Lookup:
    try:
        ident = UUID(raw_id)
    except ValueError:
        raise ApiError(
            400,
            "Heartbeat Monitor public ID (UUID) required",
            code="invalid_public_id",
            fields=["publicId"],
        ) from None
    return Lookup(ident, TYPES, guards.read_scope(request.user))


async def create(
    request: AuthedRequest,
    data: JSONBody[HeartbeatMonitorCreate],
    writes: WritesDep,
    api_settings: ApiSettingsDep,
) -> HeartbeatMonitor:
    guards.requires_writer(request.user)
    validation.no_nul(data, "")
    domain = api_settings.receiver_domain
    columns = heartbeats.new_columns(data.name, data.status, data.heartbeat_config, domain)
    monitor = await writes.insert_row(request.user.organization_id, data.customer_id, columns)
    return present(monitor, domain)


async def list_monitors(
    request: AuthedRequest,
    pool: PoolDep,
    api_settings: ApiSettingsDep,
    status: StatusParam = None,
    page: PageParam = 1,
    per_page: PerPageParam = 50,
) -> Page[HeartbeatMonitor]:
    status_value = None if status is None else validation.status(status, "status")
    async with pool.acquire() as conn:
        found, total = await monitors.list_page(
            conn,
            organization_id=guards.read_scope(request.user),
            types=TYPES,
            customer_id=None,
            search=None,
            status=status_value,
            limit=per_page,
            offset=(page - 1) * per_page,
        )
    domain = api_settings.receiver_domain
    return Page([present(m, domain) for m in found], total, page, per_page)


async def get_monitor(
    request: AuthedRequest, monitor_id: IdParam, writes: WritesDep, api_settings: ApiSettingsDep
) -> HeartbeatMonitor:
    monitor = await writes.get(_lookup(request, monitor_id))
    return present(monitor, api_settings.receiver_domain)


async def update(
    request: AuthedRequest,
    monitor_id: IdParam,
    data: JSONBody[HeartbeatMonitorUpdate],
    writes: WritesDep,
    pool: PoolDep,
    clock: ClockDep,
    api_settings: ApiSettingsDep,
) -> HeartbeatMonitor:
    found = _lookup(request, monitor_id)
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
    return present(updated, api_settings.receiver_domain)


async def delete_monitor(request: AuthedRequest, monitor_id: IdParam, writes: WritesDep) -> None:
    found = _lookup(request, monitor_id)
    await writes.get(found)  # a 404 before a 403
    guards.requires_writer(request.user)
    await writes.delete(found)


ITEM = "/{heartbeatMonitorPublicId:str}"
router = Router(
    PATH,
    tags=["heartbeat monitors"],
    route_handlers=[
        post("/", summary="Create a Heartbeat Monitor")(create),
        get("/", summary="List Heartbeat Monitors")(list_monitors),
        get(ITEM, summary="Get a Heartbeat Monitor, with its receiving address")(get_monitor),
        patch(ITEM, summary="Update a Heartbeat Monitor")(update),
        delete(ITEM, summary="Delete a Heartbeat Monitor")(delete_monitor),
    ],
)
