"""`/api/status-notices`: incidents and maintenance notices written by a person on a customer's
public status page, with their updates (create, update, resolve). Owners and admins write them
(they alone publish pages); every role of the organization reads them. Each update is shown on
the page at once and mailed to its confirmed subscribers (`controller.statuspages.notices`).
"""

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from litestar import Controller, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter
from msgspec import Meta

from controller.access import customers_store
from controller.db.pool import Conn
from controller.monitors import validation
from controller.monitors.validation import WHITE_SPACE
from controller.statuspages import notices as service
from controller.statuspages import notices_store as notices
from controller.statuspages.notices_store import Notice
from controller.web.api import guards
from controller.web.api.errors import bad_request, not_found
from controller.web.api.monitor_rules import strict_body
from controller.web.authed_request import AuthedRequest
from controller.web.services import BoxDep, ClockDep, NotifySettingsDep, PoolDep
from shared.timefmt import iso_ms, iso_ms_or_none

NoticeId = Annotated[str, PathParameter(name="noticeId", description="public UUID")]
Impact = Literal["none", "minor", "major", "maintenance"]
State = Literal["investigating", "identified", "monitoring", "resolved"]
# Not blank (a character other than white space, as `str.strip` counts it), no NUL anywhere:
# what `_text` keeps, stated in the schema so a client knows it before sending.
_TEXT = rf"^[^\x00]*[^{WHITE_SPACE}\x00][^\x00]*$"
Title = Annotated[str, Meta(min_length=1, max_length=200, pattern=_TEXT)]
Body = Annotated[str, Meta(min_length=1, max_length=5000, pattern=_TEXT)]


class StatusNoticeCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    customer_id: int | str
    title: Title
    body: Body
    impact: Impact = "minor"
    state: State = "investigating"


class StatusNoticeUpdateIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    state: State
    body: Body


class StatusNoticeUpdate(msgspec.Struct, rename="camel"):
    state: str
    body: str
    created_at: str


class StatusNotice(msgspec.Struct, rename="camel"):
    id: str
    customer_id: int
    status_page: str  # the page's slug
    title: str
    impact: str
    created_at: str
    resolved_at: str | None
    updates: list[StatusNoticeUpdate]  # oldest first


def _text(value: str, field: str) -> str:
    text = value.strip()
    if not text or "\x00" in text:
        raise bad_request(field, f"{field}: required, without NUL characters")
    return text


async def _present(conn: Conn, row: Notice) -> StatusNotice:
    ups = (await notices.updates(conn, [row.id])).get(row.id, [])
    return StatusNotice(
        id=str(row.public_id),
        customer_id=row.customer_id,
        status_page=row.slug,
        title=row.title,
        impact=row.impact,
        created_at=iso_ms(row.created_at),
        resolved_at=iso_ms_or_none(row.resolved_at),
        updates=[StatusNoticeUpdate(u.state, u.body, iso_ms(u.created_at)) for u in ups],
    )


def _notice_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise not_found("No such status notice") from None


class StatusNoticeController(Controller):
    path = "/api/status-notices"
    tags = ["status pages"]

    @post("/", summary="Write a notice on a customer's status page (owners and admins)")
    async def create_notice(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        notify_settings: NotifySettingsDep,
        box: BoxDep,
        clock: ClockDep,
        data: JSONBody[StatusNoticeCreate],
    ) -> StatusNotice:
        guards.requires_admin(request.user)
        data = await strict_body(request, data)
        validation.no_nul(data, "")
        customer = customers_store.parse_ident(data.customer_id)
        if customer is None:
            raise bad_request("customerId", "customerId: a numeric id or a public UUID")
        title, body = _text(data.title, "title"), _text(data.body, "body")
        async with pool.acquire() as conn, conn.transaction():
            page = await notices.page_of_customer(conn, customer, request.user.organization_id)
            if page is None:
                raise not_found("No customer of yours with that customerId has a status page")
            row = await service.create(
                conn,
                box,
                notify_settings.public_url,
                page.id,
                title,
                data.impact,
                data.state,
                body,
                request.user.user_id,
                clock.now(),
            )
            return await _present(conn, row)

    @get("/", summary="List a customer's status notices, newest first")
    async def list_notices(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        customer_id: Annotated[
            str, QueryParameter(name="customerId", description="numeric id or public UUID")
        ],
    ) -> list[StatusNotice]:
        customer = customers_store.parse_ident(customer_id)
        if customer is None:
            raise bad_request("customerId", "customerId: a numeric id or a public UUID")
        async with pool.acquire() as conn:
            page = await notices.page_of_customer(conn, customer, request.user.organization_id)
            if page is None:
                return []
            rows = await notices.of_page(conn, page.id, datetime(2000, 1, 1, tzinfo=UTC))
            return [await _present(conn, r) for r in rows]

    @get("/{noticeId:str}", summary="A status notice with its updates")
    async def get_notice(
        self, request: AuthedRequest, pool: PoolDep, notice_id: NoticeId
    ) -> StatusNotice:
        async with pool.acquire() as conn:
            row = await notices.by_public_id(
                conn, _notice_id(notice_id), request.user.organization_id
            )
            if row is None:
                raise not_found("No such status notice")
            return await _present(conn, row)

    @post("/{noticeId:str}/updates", summary="Add an update; state `resolved` resolves it")
    async def add_update(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        notify_settings: NotifySettingsDep,
        box: BoxDep,
        notice_id: NoticeId,
        clock: ClockDep,
        data: JSONBody[StatusNoticeUpdateIn],
    ) -> StatusNotice:
        guards.requires_admin(request.user)
        data = await strict_body(request, data)
        validation.no_nul(data, "")
        body = _text(data.body, "body")
        async with pool.acquire() as conn, conn.transaction():
            row = await service.update(
                conn,
                box,
                notify_settings.public_url,
                _notice_id(notice_id),
                request.user.organization_id,
                data.state,
                body,
                request.user.user_id,
                clock.now(),
            )
            if row is None:
                raise not_found("No such status notice")
            return await _present(conn, row)
