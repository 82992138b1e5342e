"""The console's notification channels page: every user of the organization sees its channels
(secrets, Slack/Teams/Apprise URLs and any URL that may hold a token masked, by
`channel_shown`) and which monitors and customers they serve; owners and admins add one,
choose the monitors it serves and the customers whose default it is (the API's `monitorIds`
and `customerIds`), send it a test and delete it. The rules are the API's
(controller.web.api.channels).
"""

from collections.abc import Mapping
from typing import Annotated
from uuid import UUID

import asyncpg
import structlog
from litestar import get, post
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.response import Redirect, Template

from controller.notify import channel_kinds, channel_store
from controller.notify.channel_store import StoredChannel
from controller.web.api import guards
from controller.web.api.channels import MAX_CHOSEN, choose_for, send_test, stored
from controller.web.api.errors import ApiError
from controller.web.console import store as console_store
from controller.web.console.pages import page
from controller.web.console.session import PREFIX, principal_of
from controller.web.request_types import AnyRequest
from controller.web.services import BoxDep, BudgetSettingsDep, ClockDep, PoolDep, SenderDep

log = structlog.get_logger(__name__)

PathStr = Annotated[str, PathParameter()]
_FIELD_MAX = 2048


async def _page(
    request: AnyRequest,
    pool: asyncpg.Pool,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Template:
    org = principal_of(request).organization_id
    async with pool.acquire() as conn:
        rows, _ = await channel_store.list_page(conn, org, 1000, 0)
        customers = await console_store.customers_of(conn, org)
        monitors = await channel_store.monitor_choices(conn, org, MAX_CHOSEN)
    return page(
        request,
        "channels.html",
        status_code=status_code,
        channels=rows,
        monitors=monitors,
        customers=customers,
        kinds=channel_kinds.KINDS,
        notice=notice,
        error=error,
    )


@get("/channels", name="console-channels")
async def channels_page(request: AnyRequest, pool: PoolDep) -> Template:
    return await _page(request, pool)


def _field(form: Mapping[str, object], name: str) -> str | None:
    value = str(form.get(name, "")).strip()[:_FIELD_MAX].replace("\x00", "")
    return value or None


@post("/channels", status_code=303)
async def create_channel(
    request: AnyRequest,
    pool: PoolDep,
    box: BoxDep,
    sender: SenderDep,
) -> Redirect | Template:
    p = principal_of(request)
    guards.requires_admin(p)
    form = await request.form()
    kind, name = _field(form, "kind") or "", (_field(form, "name") or "")[:200]
    try:
        if kind not in channel_kinds.KINDS:
            raise ApiError(400, "Choose a kind", code="invalid_field", fields=["kind"])
        if not name:
            raise ApiError(400, "Give the channel a name", code="invalid_field", fields=["name"])
        values = stored(
            box,
            sender.egress.of(p.organization_id),
            kind,
            name,
            _field(form, "url"),
            _field(form, "secret"),
            None,
            _field(form, "chat_id"),
        )
    except ApiError as exc:
        return await _page(request, pool, error=exc.message, status_code=exc.status)
    async with pool.acquire() as conn, conn.transaction():
        await channel_store.lock_organization(conn, p.organization_id)
        if await channel_store.count(conn, p.organization_id) >= 100:
            return await _page(
                request,
                pool,
                error="This organization has 100 channels, the most it may",
                status_code=403,
            )
        await channel_store.insert(conn, p.organization_id, values | {"kind": kind})
    log.info("notification channel created", kind=kind)
    return Redirect(f"{PREFIX}/channels", status_code=303)


async def _own(request: AnyRequest, pool: asyncpg.Pool, channel_id: str) -> StoredChannel:
    try:
        ident = UUID(channel_id)
    except ValueError:
        raise NotFoundException() from None
    async with pool.acquire() as conn:
        row = await channel_store.get(conn, ident, principal_of(request).organization_id)
    if row is None:
        raise NotFoundException()
    return row


@post("/channels/{channel_id:str}/test", status_code=200)
async def test_channel(
    request: AnyRequest,
    channel_id: PathStr,
    pool: PoolDep,
    sender: SenderDep,
    budget_settings: BudgetSettingsDep,
    clock: ClockDep,
) -> Template:
    row = await _own(request, pool, channel_id)
    guards.requires_admin(principal_of(request))
    try:
        result = await send_test(pool, sender, budget_settings, row, clock.now())
    except ApiError as exc:
        return await _page(request, pool, error=exc.message, status_code=exc.status)
    if result.delivered:
        return await _page(request, pool, notice=f"Test delivered to {row.name}.")
    return await _page(request, pool, error=f"Test to {row.name} not delivered: {result.error}")


@post("/channels/{channel_id:str}/choose", status_code=303)
async def choose_channel(
    request: AnyRequest, pool: PoolDep, channel_id: PathStr
) -> Redirect | Template:
    """The monitors the channel serves and the customers whose default it is, replaced by the
    boxes ticked (`monitor` public ids, `customer` ids), by the API's rules."""
    row = await _own(request, pool, channel_id)
    guards.requires_admin(principal_of(request))
    form = await request.form()
    monitor_ids = [str(v)[:64] for v in form.getall("monitor", [])][: MAX_CHOSEN + 1]
    try:
        customer_ids = [int(str(v)[:20]) for v in form.getall("customer", [])][: MAX_CHOSEN + 1]
    except ValueError:
        return await _page(request, pool, error="Choose customers from the list", status_code=400)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await choose_for(conn, row, monitor_ids, customer_ids)
    except ApiError as exc:
        return await _page(request, pool, error=exc.message, status_code=exc.status)
    log.info(
        "notification channel chosen",
        channel=str(row.public_id),
        monitors=len(monitor_ids),
        customers=len(customer_ids),
    )
    return Redirect(f"{PREFIX}/channels", status_code=303)


@post("/channels/{channel_id:str}/delete", status_code=303)
async def delete_channel(request: AnyRequest, pool: PoolDep, channel_id: PathStr) -> Redirect:
    row = await _own(request, pool, channel_id)
    guards.requires_admin(principal_of(request))
    async with pool.acquire() as conn:
        await channel_store.delete(conn, row.id)
    return Redirect(f"{PREFIX}/channels", status_code=303)
