"""`/api/maintenance-windows`: times when a monitor (or all of a customer's) never notifies.

One-off: `startsAt` and `endsAt`. Weekly: `weekday` (1 = Monday … 7 = Sunday), `startTime`
(`HH:MM`, wall clock in `timezone`, an IANA name, default `UTC`) and `durationMinutes`.
Exactly one of `monitorId` (a monitor's public UUID, any type) and `customerId` (numeric id or
public UUID). Checks keep running inside a window; only notifications are held back.
"""

from datetime import datetime, time
from typing import Annotated
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter
from msgspec import Meta

from controller.access import customers_store as customers
from controller.db.pool import Conn
from controller.monitors import fair_use, validation
from controller.monitors import store as monitors
from controller.monitors.kinds import STORED_TYPES
from controller.notify import maintenance
from controller.notify import maintenance_store as windows
from controller.notify.maintenance import StoredWindow
from controller.web.api import guards
from controller.web.api.errors import ApiError, bad_request, invalid_customer, not_found
from controller.web.api.monitor_rules import strict_body
from controller.web.api.page import Page, published
from controller.web.authed_request import AuthedRequest
from controller.web.services import ClockDep, FairUseSettingsDep, PoolDep
from shared.guards import BrokenInvariant
from shared.timefmt import iso_ms, iso_ms_or_none, parse_iso

WindowId = Annotated[str, PathParameter(name="windowId", description="public UUID")]


class MaintenanceWindowCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    monitor_id: str | None = None
    customer_id: int | str | None = None
    starts_at: str | None = None
    ends_at: str | None = None
    weekday: Annotated[int, Meta(ge=1, le=7)] | None = None
    start_time: str | None = None
    duration_minutes: Annotated[int, Meta(ge=1, le=10_080)] | None = None
    timezone: str | None = None
    note: Annotated[str, Meta(max_length=500)] = ""


class MaintenanceWindow(msgspec.Struct, rename="camel"):
    id: str
    organization_id: int
    monitor_id: str | None
    customer_id: int | None
    kind: str  # `once` or `weekly`
    starts_at: str | None
    ends_at: str | None
    weekday: int | None
    start_time: str | None
    duration_minutes: int | None
    timezone: str | None
    note: str
    active: bool  # open right now
    created_at: str


MaintenanceWindowPage = Annotated[Page[MaintenanceWindow], published("MaintenanceWindowPage")]


def _present(w: StoredWindow, now: datetime) -> MaintenanceWindow:
    return MaintenanceWindow(
        id=str(w.public_id),
        organization_id=w.organization_id,
        monitor_id=None if w.monitor_public_id is None else str(w.monitor_public_id),
        customer_id=w.customer_id,
        kind=w.kind,
        starts_at=iso_ms_or_none(w.starts_at),
        ends_at=iso_ms_or_none(w.ends_at),
        weekday=w.weekday,
        start_time=None if w.start_time is None else w.start_time.strftime("%H:%M"),
        duration_minutes=w.duration_minutes,
        timezone=w.timezone,
        note=w.note,
        active=maintenance.is_open(w, now),
        created_at=iso_ms(w.created_at),
    )


def _time_of(value: str, field: str) -> datetime:
    try:
        return parse_iso(value)
    except ValueError:
        raise bad_request(field, f"{field} must be an ISO-8601 time") from None


def _schedule(data: MaintenanceWindowCreate) -> dict[str, object]:
    """The `kind` and its columns, from the fields sent."""
    once = data.starts_at is not None or data.ends_at is not None
    weekly = any(v is not None for v in (data.weekday, data.start_time, data.duration_minutes))
    if once == weekly:
        raise ApiError(
            400,
            "Give startsAt and endsAt (one-off) or weekday, startTime and durationMinutes (weekly)",
            code="invalid_schedule",
            fields=["startsAt", "weekday"],
        )
    if once:
        if data.starts_at is None or data.ends_at is None:
            raise bad_request("endsAt", "a one-off window needs startsAt and endsAt")
        start, end = _time_of(data.starts_at, "startsAt"), _time_of(data.ends_at, "endsAt")
        if end <= start:
            raise bad_request("endsAt", "endsAt must be after startsAt")
        return {"kind": "once", "starts_at": start, "ends_at": end}
    for name, value in (
        ("weekday", data.weekday),
        ("startTime", data.start_time),
        ("durationMinutes", data.duration_minutes),
    ):
        if value is None:
            raise bad_request(name, f"a weekly window needs {name}")
    tz = data.timezone or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad_request("timezone", "timezone must be an IANA name like Europe/Berlin") from None
    try:
        if data.start_time is None:
            raise BrokenInvariant("maintenance._schedule: data.start_time is unset")
        at = time.fromisoformat(data.start_time)
    except ValueError:
        raise bad_request("startTime", "startTime must look like 02:30") from None
    return {
        "kind": "weekly",
        "weekday": data.weekday,
        "start_time": at.replace(second=0, microsecond=0),
        "duration_minutes": data.duration_minutes,
        "timezone": tz,
    }


async def _scope(conn: Conn, data: MaintenanceWindowCreate, org: int) -> dict[str, object]:
    """`monitor_id` or `customer_id` (internal), of the caller's organization."""
    if (data.monitor_id is None) == (data.customer_id is None):
        raise ApiError(
            400,
            "Give monitorId or customerId (exactly one)",
            code="invalid_scope",
            fields=["monitorId", "customerId"],
        )
    if data.monitor_id is not None:
        try:
            ident = UUID(data.monitor_id)
        except ValueError:
            raise bad_request("monitorId", "monitorId must be a monitor's public UUID") from None
        monitor = await monitors.get(conn, ident, STORED_TYPES, org)
        if monitor is None:
            raise ApiError(404, "Monitor not found", code="not_found", fields=["monitorId"])
        return {"monitor_id": monitor.id}
    if data.customer_id is None:
        raise BrokenInvariant("maintenance._scope: data.customer_id is unset")
    parsed = customers.parse_ident(data.customer_id)
    if parsed is None:
        raise invalid_customer()
    found = await customers.find(conn, parsed, org)
    if found is None:
        raise ApiError(404, "Customer not found", code="customer_not_found", fields=["customerId"])
    return {"customer_id": found.id}


class MaintenanceWindowController(Controller):
    path = "/api/maintenance-windows"
    tags = ["maintenance windows"]

    @post("/", summary="Create a maintenance window (one-off or weekly)")
    async def create(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        fair_use_settings: FairUseSettingsDep,
        clock: ClockDep,
        data: JSONBody[MaintenanceWindowCreate],
    ) -> MaintenanceWindow:
        guards.requires_writer(request.user)
        data = await strict_body(request, data)
        validation.no_nul(data, "")
        org = request.user.organization_id
        async with pool.acquire() as conn, conn.transaction():
            values = await _scope(conn, data, org)
            values |= _schedule(data) | {"note": data.note}
            await fair_use.admit_new_window(conn, fair_use.Limits.of(fair_use_settings), org)
            row = await windows.insert(conn, org, values)
        return _present(row, clock.now())

    @get("/", summary="List maintenance windows, newest first")
    async def list_windows(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        clock: ClockDep,
        monitor_id: Annotated[
            str | None, QueryParameter(name="monitorId", description="a monitor's public UUID")
        ] = None,
        customer_id: Annotated[
            str | None, QueryParameter(name="customerId", description="numeric id or public UUID")
        ] = None,
        page: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        per_page: Annotated[int, QueryParameter(name="perPage", ge=1, le=200)] = 50,
    ) -> MaintenanceWindowPage:
        scope = guards.read_scope(request.user)
        async with pool.acquire() as conn:
            monitor: int | None = None
            customer: int | None = None
            if monitor_id is not None:
                try:
                    seen = await monitors.get(conn, UUID(monitor_id), STORED_TYPES, scope)
                except ValueError:
                    raise bad_request(
                        "monitorId", "monitorId must be a UUID", "invalid_query"
                    ) from None
                if seen is None:
                    raise not_found("Monitor not found")
                monitor = seen.id
            if customer_id is not None:
                parsed = customers.parse_ident(customer_id)
                found = None if parsed is None else await customers.find(conn, parsed, scope)
                if found is None:
                    raise not_found("Customer not found")
                customer = found.id
            rows, total = await windows.list_page(
                conn, scope, monitor, customer, per_page, (page - 1) * per_page
            )
        now = clock.now()
        return Page([_present(r, now) for r in rows], total, page, per_page)

    @get("/{windowId:str}", summary="Get a maintenance window")
    async def get_window(
        self, request: AuthedRequest, pool: PoolDep, clock: ClockDep, window_id: WindowId
    ) -> MaintenanceWindow:
        async with pool.acquire() as conn:
            row = await windows.get(conn, _window_id(window_id), guards.read_scope(request.user))
        if row is None:
            raise not_found()
        return _present(row, clock.now())

    @delete("/{windowId:str}", summary="Delete a maintenance window", status_code=204)
    async def delete_window(
        self, request: AuthedRequest, pool: PoolDep, window_id: WindowId
    ) -> None:
        async with pool.acquire() as conn:
            row = await windows.get(conn, _window_id(window_id), guards.read_scope(request.user))
            if row is None:
                raise not_found()
            guards.requires_writer(request.user)
            await windows.delete(conn, row.id)


def _window_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise ApiError(
            400, "Maintenance window ID (UUID) required", code="invalid_public_id", fields=["id"]
        ) from None
