"""`/api/v3`: an AlertSite-compatible API (Management API v3) for email server monitors.

Scripts written against AlertSite's `https://api.alertsite.com/api/v3` work here by changing
only the base URL: `POST /access-tokens`, `POST/PATCH /monitors/email-{smtp,imap,pop}[/{id}]`,
`GET /monitors[/{id}]`, `DELETE /monitors/{id}`. The monitors are ordinary mailprobe monitors
(same table, listed by `/api/smtp-monitors` and `/api/imap-pop-monitors`) of the caller's
organization, in its default customer (created on first use). AlertSite fields are translated
into the write model's `SmtpMonitorCreate`/`ImapPopMonitorCreate` (or `...Update`), the native
API's bodies, and are written by `controller.monitors.writes` as every monitor is. Errors take
AlertSite's shape `{"errors": [{"code", "message"}]}` (chosen by path in
`controller.web.api.errors`).

This module holds the routes; the mapping is `alertsite_mapping` (pure), the location table
`alertsite_locations`. What is mapped, and what is accepted but ignored, is in
docs/alertsite.md.
"""

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import Body, JSONBody, PathParameter, QueryParameter

from controller.access.accounts_store import Principal
from controller.monitors import store as monitors
from controller.monitors import validation
from controller.monitors.errors import SecretMoved, Stale
from controller.monitors.writes import Lookup, MonitorWrites
from controller.web.alertsite.mapping import (
    AS_NAMED,
    BUDGET_FIELDS,
    BY_TYPE,
    EMAIL_TYPES,
    NOT_FOUND,
    EmailMonitorCreate,
    EmailMonitorFields,
    EmailType,
    alertsite_monitor,
    check_timeout,
    create_body,
    no_nul,
    oauth2_bound,
    oauth2_password,
    record_id,
    selected,
    sent_fields,
    translate,
    types_of,
    update_body,
)
from controller.web.api import guards
from controller.web.api.auth import Logins, client_address, login_token
from controller.web.api.errors import ApiError, not_found
from controller.web.api.monitor_rules import secret_required, strict_body
from controller.web.authed_request import AuthedRequest
from controller.web.request_types import AnyRequest
from controller.web.services import AccessSettingsDep, PoolDep, WritesDep

DEFAULT_CUSTOMER = "AlertSite import"
TOKEN_TTL_SECONDS = 3600  # AlertSite: "Access tokens expire after 1 hour"
AUTH_FAILED = "invalid_request - User authentication failed."  # AlertSite's documented error
_ALL = 2**31 - 1
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 100, 1000  # GET /monitors: a page unless `limit` is sent


class AccessTokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str


class AccessToken(msgspec.Struct):
    access_token: str


class MonitorId(msgspec.Struct):
    id: str


class ListMetadata(msgspec.Struct):
    limit: int  # the page length used (LIST_LIMIT_DEFAULT when none was sent)
    offset: int | None
    total: int


SEED_EXAMPLE = {  # the seed's minimal SMTP monitor
    "billing_plancode": "UBM - A/A",
    "name": "Email Sample Monitor",
    "hostname": "smtp.mycompany.com",
    "interval": 15,
    "enabled": True,
}
PATCH_EXAMPLE = {"ipv4": "74.125.28.108", "port": 587}  # AlertSite's edit example


# --- operations -------------------------------------------------------------------------------


async def _create(
    slug: str, request: AuthedRequest, data: EmailMonitorCreate, writes: MonitorWrites
) -> MonitorId:
    principal = request.user
    guards.requires_writer(principal)
    body = await strict_body(request, data)
    no_nul(body)
    email = EMAIL_TYPES[slug]
    t = translate(body, email, None)
    interval = t.fields.get("check_interval", validation.CHECK_INTERVAL_DEFAULT)
    if "timeout_seconds" in t.fields:
        check_timeout(interval, t.fields["timeout_seconds"])
    # Only a body known good gets the default customer, in the insert's transaction, so a
    # refused create leaves nothing behind.
    monitor = await writes.create(
        principal.organization_id,
        create_body(t, email),
        budget=BUDGET_FIELDS,
        default_customer=DEFAULT_CUSTOMER,
    )
    return MonitorId(str(monitor.id))


def _lookup(principal: Principal, monitor_id: int, types: list[str]) -> Lookup:
    scope = guards.read_scope(principal)
    return Lookup(monitor_id, types, scope, NOT_FOUND)


async def _update(
    slug: str,
    request: AuthedRequest,
    raw_id: str,
    data: EmailMonitorFields,
    writes: MonitorWrites,
) -> MonitorId:
    principal = request.user
    email = EMAIL_TYPES[slug]
    monitor_id = record_id(raw_id)
    lookup = _lookup(principal, monitor_id, [email.type])
    # The write is built on the monitor as read (AlertSite's fields change parts of its
    # config and interval); one it changed under is built again.
    for _ in range(_ATTEMPTS - 1):
        try:
            return await _update_once(email, request, lookup, data, writes)
        except Stale:
            continue
    return await _update_once(email, request, lookup, data, writes)


_ATTEMPTS = 3  # times an update is built again on a monitor changed meanwhile


async def _update_once(
    email: EmailType,
    request: AuthedRequest,
    lookup: Lookup,
    data: EmailMonitorFields,
    writes: MonitorWrites,
) -> MonitorId:
    monitor = await writes.get(lookup)  # a 404 before a 403 or 400
    guards.requires_updater(request.user, sent_fields(data))
    body = await strict_body(request, data)
    no_nul(body)
    t = translate(body, email, monitor.check_interval)
    if monitor.grants:
        oauth2_password(t)
    check_timeout(
        t.fields.get("check_interval", monitor.check_interval),
        t.fields.get("timeout_seconds", monitor.timeout_seconds),
    )
    write = update_body(t, email, monitor)
    try:
        await writes.update(lookup, write, budget=BUDGET_FIELDS, read_at=monitor.updated_at)
    except SecretMoved as moved:
        raise _secret_refusal(moved.each) from None
    return MonitorId(str(monitor.id))


def _secret_refusal(moved: Mapping[str, list[str]]) -> ApiError:
    """A change that moves a kept secret: the `password`, named with what moved it, or an
    OAuth2 grant's secrets, which AlertSite's fields cannot send again."""
    grant = [m for path, each in moved.items() if "oauth2" in path.split(".") for m in each]
    if grant:
        return oauth2_bound([AS_NAMED.get(m, m) for m in dict.fromkeys(grant)])
    fields = [name for each in moved.values() for name in each]
    return secret_required("password", [AS_NAMED.get(m, m) for m in fields])


AnyId = Annotated[str, PathParameter(name="id", description="monitor id (digits)")]
SelectParam = Annotated[
    str | None,
    QueryParameter(description="comma-separated fields to return (unknown names ignored)"),
]


def _create_data(example: dict[str, Any]) -> Any:
    return Body(examples=[Example("alertsite", value=example)])


class AlertSiteController(Controller):
    """AlertSite Management API v3, email server monitors only."""

    path = "/api/v3"
    tags = ["alertsite v3"]

    @post("/access-tokens", status_code=200, summary="Get an access token (AlertSite)")
    async def access_token(
        self,
        request: AnyRequest,
        data: JSONBody[AccessTokenRequest],
        pool: PoolDep,
        logins: NamedDependency[Logins],
        access_settings: AccessSettingsDep,
    ) -> AccessToken:
        validation.no_nul(data, "")
        ttl = min(TOKEN_TTL_SECONDS, access_settings.token_ttl_seconds)
        credentials = (data.username, data.password)
        issued = await login_token(pool, logins, client_address(request), credentials, ttl)
        if issued is None:
            raise ApiError(400, AUTH_FAILED, code="bad_credentials")
        return AccessToken(issued[0])

    @post("/monitors/email-smtp", status_code=200, summary="Create an SMTP monitor (AlertSite)")
    async def create_smtp(
        self,
        request: AuthedRequest,
        data: Annotated[EmailMonitorCreate, _create_data(SEED_EXAMPLE)],
        writes: WritesDep,
    ) -> MonitorId:
        return await _create("email-smtp", request, data, writes)

    @post("/monitors/email-imap", status_code=200, summary="Create an IMAP monitor (AlertSite)")
    async def create_imap(
        self,
        request: AuthedRequest,
        data: JSONBody[EmailMonitorCreate],
        writes: WritesDep,
    ) -> MonitorId:
        return await _create("email-imap", request, data, writes)

    @post("/monitors/email-pop", status_code=200, summary="Create a POP3 monitor (AlertSite)")
    async def create_pop(
        self,
        request: AuthedRequest,
        data: JSONBody[EmailMonitorCreate],
        writes: WritesDep,
    ) -> MonitorId:
        return await _create("email-pop", request, data, writes)

    @patch("/monitors/email-smtp/{id:str}", summary="Edit an SMTP monitor (AlertSite)")
    async def update_smtp(
        self,
        request: AuthedRequest,
        monitor_id: AnyId,
        data: Annotated[EmailMonitorFields, _create_data(PATCH_EXAMPLE)],
        writes: WritesDep,
    ) -> MonitorId:
        return await _update("email-smtp", request, monitor_id, data, writes)

    @patch("/monitors/email-imap/{id:str}", summary="Edit an IMAP monitor (AlertSite)")
    async def update_imap(
        self,
        request: AuthedRequest,
        monitor_id: AnyId,
        data: JSONBody[EmailMonitorFields],
        writes: WritesDep,
    ) -> MonitorId:
        return await _update("email-imap", request, monitor_id, data, writes)

    @patch("/monitors/email-pop/{id:str}", summary="Edit a POP3 monitor (AlertSite)")
    async def update_pop(
        self,
        request: AuthedRequest,
        monitor_id: AnyId,
        data: JSONBody[EmailMonitorFields],
        writes: WritesDep,
    ) -> MonitorId:
        return await _update("email-pop", request, monitor_id, data, writes)

    @get("/monitors", summary="Get monitors (AlertSite)")
    async def list_monitors(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        type_: Annotated[
            str | None,
            QueryParameter(name="type", description="comma-separated AlertSite monitor types"),
        ] = None,
        select: SelectParam = None,
        limit: Annotated[
            int,
            QueryParameter(
                ge=1,
                le=LIST_LIMIT_MAX,
                description=f"at most {LIST_LIMIT_MAX}; default {LIST_LIMIT_DEFAULT}",
            ),
        ] = LIST_LIMIT_DEFAULT,
        offset: Annotated[int | None, QueryParameter(ge=0, le=_ALL)] = None,
    ) -> dict[str, Any]:
        """AlertSite documents no default limit ("returns all existing monitors"); answering
        every monitor at once has no bound, so pages are `LIST_LIMIT_DEFAULT` long unless
        `limit` says otherwise, at most `LIST_LIMIT_MAX`; `metadata.total` tells a script how
        many there are to page through."""
        types = types_of(type_)
        async with pool.acquire() as conn:
            found, total = await monitors.list_page(
                conn,
                organization_id=guards.read_scope(request.user),
                types=types,
                customer_id=None,
                search=None,
                status=None,
                limit=limit,
                offset=offset or 0,
            )
        return {
            "metadata": ListMetadata(limit, offset, total),
            "results": [selected(alertsite_monitor(m, request.user), select) for m in found],
        }

    @get("/monitors/{id:str}", summary="Get a monitor by ID (AlertSite)")
    async def get_monitor(
        self,
        request: AuthedRequest,
        monitor_id: AnyId,
        pool: PoolDep,
        select: SelectParam = None,
    ) -> dict[str, Any]:
        ident = record_id(monitor_id)
        async with pool.acquire() as conn:
            monitor = await monitors.get(
                conn, ident, list(BY_TYPE), guards.read_scope(request.user)
            )
        if monitor is None:
            raise not_found(NOT_FOUND)
        return selected(alertsite_monitor(monitor, request.user), select)

    @delete("/monitors/{id:str}", summary="Delete a monitor (AlertSite)")
    async def delete_monitor(
        self, request: AuthedRequest, monitor_id: AnyId, writes: WritesDep
    ) -> None:
        principal = request.user
        lookup = _lookup(principal, record_id(monitor_id), list(BY_TYPE))
        await writes.get(lookup)  # a 404 before a 403
        guards.requires_writer(principal)
        await writes.delete(lookup)
