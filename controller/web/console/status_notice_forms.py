"""The console's forms for notices on a status page: write one, add an update, resolve it
(owners and admins, as the API; `status_notices` does the work)."""

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from litestar import Response, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect

from controller.statuspages import notices as service
from controller.statuspages import notices_store as notices
from controller.web.api import guards
from controller.web.console.session import PREFIX, principal_of
from controller.web.console.status import PathStr, admin_page
from controller.web.request_types import AnyRequest
from controller.web.services import BoxDep, ClockDep, NotifySettingsDep, PoolDep

DONE = f"{PREFIX}/status-pages?saved=1"


def _uuid(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise NotFoundException() from None


def _field(form: Mapping[str, object], name: str, limit: int) -> str:
    return str(form.get(name, "")).strip()[:limit]


def _invalid(form: Mapping[str, object]) -> str | None:
    """The first field of the form that is wrong, as a message naming it."""
    if not _field(form, "body", 5000) or "\x00" in str(form.get("body", "")):
        return "body: required"
    if _field(form, "state", 20) not in notices.STATES:
        return f"state: one of {', '.join(notices.STATES)}"
    return None


@post("/status-pages/{customer:str}/notices", status_code=303)
async def create(
    request: AnyRequest,
    pool: PoolDep,
    notify_settings: NotifySettingsDep,
    box: BoxDep,
    clock: ClockDep,
    customer: PathStr,
) -> Response[Any]:
    me = principal_of(request)
    guards.requires_admin(me)
    form = await request.form()
    title = _field(form, "title", 200)
    error = _invalid(form)
    if not title or "\x00" in title:
        error = "title: required"
    elif _field(form, "impact", 20) not in notices.IMPACTS:
        error = f"impact: one of {', '.join(notices.IMPACTS)}"
    if error:
        return await admin_page(request, pool, error, 400, clock.now())
    async with pool.acquire() as conn, conn.transaction():
        page = await notices.page_of_customer(conn, _uuid(customer), me.organization_id)
        if page is None:
            raise NotFoundException()
        await service.create(
            conn,
            box,
            notify_settings.public_url,
            page.id,
            title,
            _field(form, "impact", 20),
            _field(form, "state", 20),
            _field(form, "body", 5000),
            me.user_id,
            clock.now(),
        )
    return Redirect(DONE, status_code=303)


@post("/status-notices/{notice:str}/updates", status_code=303)
async def add_update(
    request: AnyRequest,
    pool: PoolDep,
    notify_settings: NotifySettingsDep,
    box: BoxDep,
    clock: ClockDep,
    notice: PathStr,
) -> Response[Any]:
    me = principal_of(request)
    guards.requires_admin(me)
    form = await request.form()
    error = _invalid(form)
    if error:
        return await admin_page(request, pool, error, 400, clock.now())
    async with pool.acquire() as conn, conn.transaction():
        row = await service.update(
            conn,
            box,
            notify_settings.public_url,
            _uuid(notice),
            me.organization_id,
            _field(form, "state", 20),
            _field(form, "body", 5000),
            me.user_id,
            clock.now(),
        )
    if row is None:
        raise NotFoundException()
    return Redirect(DONE, status_code=303)
