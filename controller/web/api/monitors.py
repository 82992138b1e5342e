"""`/api/smtp-monitors`, `/api/imap-pop-monitors` and `/api/roundtrip-monitors`: create, read,
list, update, delete. `list_kind`, `lookup` and `delete_kind` serve every stored kind
(`/api/heartbeat-monitors` too)."""

from typing import Annotated

import asyncpg
import msgspec
from litestar import Router, delete, get, patch, post
from litestar.params import QueryParameter

from controller.access import customers_store as customers
from controller.access.accounts_store import Principal
from controller.monitors import store as monitors
from controller.monitors import validation
from controller.monitors.errors import SecretMoved
from controller.monitors.kinds import Kind
from controller.monitors.latest_store import LatestRound, monitor_with_latest
from controller.monitors.store import Monitor
from controller.monitors.write_model import MonitorCreate, MonitorUpdate
from controller.monitors.writes import Lookup, MonitorWrites
from controller.web.api import guards
from controller.web.api.errors import invalid_customer, not_found
from controller.web.api.monitor_kinds import KindApi, typed
from controller.web.api.monitor_rules import (
    MonitorOut,
    present,
    public_id,
    secret_refusal,
    strict_body,
)
from controller.web.api.monitor_schemas import LatestResult
from controller.web.api.page import Page
from controller.web.authed_request import AuthedRequest
from controller.web.services import PoolDep, WritesDep
from shared.timefmt import iso_ms, iso_ms_or_none

PageParam = Annotated[int, QueryParameter(ge=1, le=1_000_000, description="1-based page number")]
PerPageParam = Annotated[
    int, QueryParameter(name="perPage", ge=1, le=200, description="items per page")
]


# The columns that add checks or slot-seconds → their field names, cited when a budget refuses.
BUDGET_FIELDS = {
    "allowed_country_codes": "allowedCheckCountryCodes",
    "check_interval": "checkInterval",
    "timeout_seconds": "timeoutSeconds",
    "status": "status",
}


async def _create(
    kind: Kind, request: AuthedRequest, body: MonitorCreate, writes: MonitorWrites
) -> Monitor:
    guards.requires_writer(request.user)
    return await create_checked(kind, request, await strict_body(request, body), writes)


async def create_checked(
    kind: Kind, request: AuthedRequest, body: MonitorCreate, writes: MonitorWrites
) -> Monitor:
    """Create from a body already converted strictly (the API's JSON, the console's form)."""
    principal = request.user
    guards.requires_writer(principal)
    validation.no_nul(body, "")
    return await writes.create(principal.organization_id, body, budget=BUDGET_FIELDS)


def lookup(kind: Kind, principal: Principal, raw_id: str) -> Lookup:
    """The monitor of `kind` with that public id, as `principal` may see it."""
    return Lookup(public_id(kind, raw_id), kind.types, guards.read_scope(principal))


async def _update(
    kind: Kind,
    request: AuthedRequest,
    raw_id: str,
    body: MonitorUpdate,
    writes: MonitorWrites,
    *,
    checked: bool = False,
) -> Monitor:
    """`checked`: `body` is already converted strictly (the console's form), else the JSON is.
    Another organization's monitor is a 404 before the caller's role or body is looked at."""
    principal = request.user
    found = lookup(kind, principal, raw_id)
    await writes.get(found)
    guards.requires_updater(principal, body.sent())
    strict = body if checked else await strict_body(request, body)
    validation.no_nul(strict, "")
    try:
        return await writes.update(found, strict, budget=BUDGET_FIELDS)
    except SecretMoved as moved:
        raise secret_refusal(strict, moved) from None


async def update_checked(
    kind: Kind, request: AuthedRequest, raw_id: str, body: MonitorUpdate, writes: MonitorWrites
) -> Monitor:
    """Update from a body already converted strictly (the console's form)."""
    return await _update(kind, request, raw_id, body, writes, checked=True)


async def _get(
    kind: Kind, request: AuthedRequest, raw_id: str, pool: asyncpg.Pool
) -> tuple[Monitor, list[LatestResult]]:
    """The monitor and its latest result per country."""
    monitor_id = public_id(kind, raw_id)
    async with pool.acquire() as conn:
        found = await monitor_with_latest(
            conn, monitor_id, kind.types, guards.read_scope(request.user)
        )
    if found is None:
        raise not_found()
    monitor, latest = found
    return monitor, [_latest(r) for r in latest]


def _latest(latest: LatestRound) -> LatestResult:
    return LatestResult(
        country=latest.country,
        status=latest.last_status,
        error_kind=latest.last_error_kind,
        message=latest.last_message,
        response_time_ms=latest.response_time_ms,
        scheduled_at=iso_ms(latest.last_scheduled_at),
        checked_at=iso_ms_or_none(latest.finished_at),
        job_id=latest.last_job_id,
    )


async def list_kind(
    kind: Kind,
    request: AuthedRequest,
    pool: asyncpg.Pool,
    customer: str | None,
    search: str | None,
    status: str | None,
    page: int,
    per_page: int,
) -> tuple[list[Monitor], int]:
    """A page of `kind`'s monitors the caller may see: of one customer (numeric id or public
    UUID; another organization's is none), `search` in name or hostname, of one status."""
    scope = guards.read_scope(request.user)
    validation.no_nul(search, "search")
    status_value = None if status is None else validation.status(status, "status")
    async with pool.acquire() as conn:
        customer_row_id: int | None = None
        if customer is not None:
            ident = customers.parse_ident(customer)
            if ident is None:
                raise invalid_customer()
            found = await customers.find(conn, ident, scope)
            if found is None:
                return [], 0
            customer_row_id = found.id
        return await monitors.list_page(
            conn,
            organization_id=scope,
            types=kind.types,
            customer_id=customer_row_id,
            search=search or None,
            status=status_value,
            limit=per_page,
            offset=(page - 1) * per_page,
        )


async def delete_kind(
    kind: Kind, request: AuthedRequest, raw_id: str, writes: MonitorWrites
) -> None:
    """Another organization's monitor is a 404 before the caller's role is looked at."""
    principal = request.user
    found = lookup(kind, principal, raw_id)
    await writes.get(found)  # a 404 before a 403
    guards.requires_writer(principal)
    await writes.delete(found)


CustomerParam = Annotated[
    str | None, QueryParameter(name="customerId", description="numeric id or public UUID")
]
SearchParam = Annotated[
    str | None, QueryParameter(max_length=200, description="in name or hostname")
]
StatusParam = Annotated[str | None, QueryParameter(description="active, maintenance or disabled")]


def router(api: KindApi) -> Router:
    """`api`'s kind's resource: create, list, get, update, delete."""
    kind = api.kind

    async def create(request: AuthedRequest, data: MonitorCreate, writes: WritesDep) -> MonitorOut:
        return present(await _create(kind, request, data, writes))

    async def list_monitors(
        request: AuthedRequest,
        pool: PoolDep,
        customer_id: CustomerParam = None,
        search: SearchParam = None,
        status: StatusParam = None,
        page: PageParam = 1,
        per_page: PerPageParam = 50,
    ) -> msgspec.Struct:
        found, total = await list_kind(
            kind, request, pool, customer_id, search, status, page, per_page
        )
        return Page([present(m) for m in found], total, page, per_page)

    async def get_monitor(request: AuthedRequest, monitor_id: str, pool: PoolDep) -> msgspec.Struct:
        monitor, latest = await _get(kind, request, monitor_id, pool)
        shown = msgspec.structs.asdict(present(monitor))
        return api.detail(**shown, latest_results=latest)

    async def update(
        request: AuthedRequest,
        monitor_id: str,
        data: MonitorUpdate,
        writes: WritesDep,
    ) -> MonitorOut:
        return present(await _update(kind, request, monitor_id, data, writes))

    async def delete_monitor(request: AuthedRequest, monitor_id: str, writes: WritesDep) -> None:
        await delete_kind(kind, request, monitor_id, writes)

    return Router(
        api.path,
        tags=[api.tag],
        route_handlers=[
            post("/", summary=f"Create {api.label}")(
                typed(create, api.out, data=api.body(api.create, api.create_examples))
            ),
            get("/", summary=f"List {api.label}s")(typed(list_monitors, api.page)),
            get(api.item, summary=f"Get {api.label}, with its latest results")(
                api.by_id(get_monitor, api.detail)
            ),
            patch(api.item, summary=f"Update {api.label}")(
                api.by_id(update, api.out, data=api.body(api.update, api.update_examples))
            ),
            delete(api.item, summary=f"Delete {api.label}")(api.by_id(delete_monitor)),
        ],
    )
