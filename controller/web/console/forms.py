"""The forms that create and edit monitors, one per stored type of every kind
(controller.monitors.kinds), their fields generated from the API's request types
(controller.web.console.form_fields).

A form becomes the API's JSON body and is checked by the very code that checks the API's
(`create_checked`): the same rules, the same messages naming the field, the same fair-use limits.
Secrets are write-only: never put back into a page. An edit shows that one is stored and keeps
it when its field is left empty (the API's mask); a CA likewise (or is removed by its box).
A form the API refuses comes back with the user's entries, a typed secret as a sealed marker
(controller.web.console.form_kept), and the refused field marked with the message.
"""

from collections.abc import Callable
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.response import Redirect, Template

from controller.monitors import kinds
from controller.monitors.errors import Refused
from controller.monitors.heartbeats import HeartbeatMonitorCreate, HeartbeatMonitorUpdate
from controller.monitors.store import Monitor
from controller.secrets.box import SecretBox
from controller.web.api import guards
from controller.web.api import heartbeat_monitors as heartbeat_api
from controller.web.api.errors import ApiError, api_error, strict_body_error
from controller.web.api.monitor_kinds import api_of
from controller.web.api.monitor_rules import present
from controller.web.api.monitor_schemas import MASK
from controller.web.api.monitors import create_checked, update_checked
from controller.web.console import form_fields
from controller.web.console import store as console
from controller.web.console.form_fields import INTERVALS, TLS_MODES, FormField, KindForm
from controller.web.console.form_kept import SUFFIX, KeptSecrets
from controller.web.console.pages import find_monitor, page
from controller.web.console.session import PREFIX, principal_of
from controller.web.request_types import AnyRequest
from controller.web.services import ApiSettingsDep, BoxDep, ClockDep, PoolDep, WritesDep

PathStr = Annotated[str, PathParameter()]
FORMS: tuple[str, ...] = kinds.STORED_TYPES  # one form per stored type: /console/new/{type}


def form_of(monitor_type: str) -> KindForm:
    """The form of a stored type; KeyError for none."""
    return form_fields.kind_form(kinds.of_type(monitor_type), monitor_type)


def _kept(request: AnyRequest, box: SecretBox, action: str) -> KeptSecrets:
    return KeptSecrets(box, request.scope["auth"], action)


def _secret_of(
    form: dict[str, str], kept: KeptSecrets, stored: dict[str, Any] | None
) -> Callable[[FormField], str | None]:
    """What a secret field left empty sends: the value typed before a refused submit (its
    marker), else the mask where the monitor stores one, else nothing."""

    def secret(f: FormField) -> str | None:
        typed = kept.open(f.name, form.get(f.name + SUFFIX, ""))
        if typed:
            return typed
        return MASK if stored is not None and form_fields.at(stored, f.name) == MASK else None

    return secret


def _again(
    kind_form: KindForm, form: dict[str, str], kept: KeptSecrets, stored: dict[str, Any] | None
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """A refused form's entries to show again: every field but the secrets, each secret typed
    (now or before) as a marker, and what the page says is set."""
    values = {k: v for k, v in form.items() if not k.endswith(SUFFIX)}
    markers: dict[str, str] = {}
    is_set = form_fields.is_set(kind_form, stored) if stored is not None else {}
    secret = _secret_of(form, kept, None)
    for f in kind_form.fields:
        if not f.secret:
            continue
        values.pop(f.name, None)
        typed = form.get(f.name, "") or secret(f)
        if typed:
            markers[f.name] = kept.seal(f.name, typed)
            is_set[f.name] = "entered"
    return values, markers, is_set


def _form(
    request: AnyRequest, kind_form: KindForm, values: dict[str, str], **extra: Any
) -> Template:
    extra.setdefault("action", f"{PREFIX}/new/{kind_form.monitor_type}")
    extra.setdefault("editing", None)
    extra.setdefault("error", None)
    extra.setdefault("error_fields", [])
    extra.setdefault("kept", {})
    extra.setdefault("is_set", {})
    return page(
        request,
        "new_monitor.html",
        kind=kind_form.monitor_type,
        form=kind_form,
        forms=FORMS,
        intervals=INTERVALS,
        tls_modes=TLS_MODES,
        suffix=SUFFIX,
        default_port=kinds.PORT_HINTS[kind_form.monitor_type],
        values=values,
        **extra,
    )


async def _customers(request: AnyRequest, pool: asyncpg.Pool) -> list[console.CustomerName]:
    async with pool.acquire() as conn:
        return await console.customers_of(conn, principal_of(request).organization_id)


async def _posted(request: AnyRequest) -> dict[str, str]:
    return {k: str(v) for k, v in (await request.form()).items()}


@get("/new/{kind:str}", name="console-new")
async def new_form(request: AnyRequest, pool: PoolDep, kind: PathStr) -> Template:
    if kind not in FORMS:
        raise NotFoundException()
    guards.requires_writer(principal_of(request))
    kind_form = form_of(kind)
    return _form(
        request, kind_form, kind_form.new_values(), customers=await _customers(request, pool)
    )


@post("/new/{kind:str}", status_code=303)
async def create(
    request: AnyRequest,
    writes: WritesDep,
    pool: PoolDep,
    box: BoxDep,
    api_settings: ApiSettingsDep,
    kind: PathStr,
) -> Response[Any]:
    if kind not in FORMS:
        raise NotFoundException()
    guards.requires_writer(principal_of(request))
    form = await _posted(request)
    kind_form = form_of(kind)
    kept = _kept(request, box, f"{PREFIX}/new/{kind}")
    api = api_of(kind_form.kind)
    try:
        body = form_fields.body_of(kind_form, form, _secret_of(form, kept, None))
        try:
            checked = msgspec.convert(body, api.create, strict=True)
        except msgspec.ValidationError as exc:
            raise strict_body_error(exc) from None
        if isinstance(checked, HeartbeatMonitorCreate):
            domain = api_settings.receiver_domain
            monitor = await heartbeat_api.create_checked(request, checked, writes, domain)
        else:
            monitor = await create_checked(api.kind, request, checked, writes)
    except (ApiError, Refused) as refused:
        error = api_error(refused)
        values, markers, is_set = _again(kind_form, form, kept, None)
        return _form(
            request,
            kind_form,
            values,
            customers=await _customers(request, pool),
            error=error.message,
            error_fields=error.fields or [],
            kept=markers,
            is_set=is_set,
            status_code=error.status,
        )
    return Redirect(f"{PREFIX}/monitors/{monitor.public_id}?notice=created", status_code=303)


# --- editing ----------------------------------------------------------------------------------


def shown_body(monitor: Monitor, customers: list[console.CustomerName]) -> dict[str, Any]:
    """The monitor as the API shows it (secrets masked), its customer by public id."""
    out = heartbeat_api.present(monitor, None) if monitor.type == "heartbeat" else present(monitor)
    shown: dict[str, Any] = msgspec.to_builtins(out)
    public_ids = {c.id: str(c.public_id) for c in customers}
    shown["customerId"] = public_ids.get(monitor.customer_id, "")
    return shown


async def _editable(request: AnyRequest, pool: asyncpg.Pool, monitor_id: str) -> Monitor:
    async with pool.acquire() as conn:
        monitor = await find_monitor(conn, request, monitor_id, FORMS)  # 404 before 403
    guards.requires_writer(principal_of(request))
    return monitor


@get("/monitors/{monitor_id:str}/edit", name="console-edit")
async def edit_form(request: AnyRequest, pool: PoolDep, monitor_id: PathStr) -> Template:
    monitor = await _editable(request, pool, monitor_id)
    customers = await _customers(request, pool)
    kind_form = form_of(monitor.type)
    shown = shown_body(monitor, customers)
    return _form(
        request,
        kind_form,
        form_fields.values_of(kind_form, shown),
        customers=customers,
        is_set=form_fields.is_set(kind_form, shown),
        action=f"{PREFIX}/monitors/{monitor.public_id}/edit",
        editing=monitor,
    )


def _same_customer(body: dict[str, object], shown: dict[str, object]) -> None:
    """A heartbeat monitor stays with its customer (its update takes no `customerId`): the
    form's choice is taken off the body, a different one refused naming the field."""
    if body.pop("customerId", shown["customerId"]) != shown["customerId"]:
        raise ApiError(
            400,
            "customerId: a heartbeat monitor stays with its customer; create a new one there",
            code="invalid_body",
            fields=["customerId"],
        )


@post("/monitors/{monitor_id:str}/edit", status_code=303)
async def edit(
    request: AnyRequest,
    writes: WritesDep,
    pool: PoolDep,
    box: BoxDep,
    clock: ClockDep,
    monitor_id: PathStr,
) -> Response[Any]:
    """The form as a PATCH of every field: an empty secret keeps the stored one (the API's
    mask), which the API refuses when the change would send it elsewhere (`secret_binding`),
    naming the field; an empty CA keeps the stored one unless its removal is ticked."""
    monitor = await _editable(request, pool, monitor_id)
    action = f"{PREFIX}/monitors/{monitor.public_id}/edit"
    form = await _posted(request)
    kind_form = form_of(monitor.type)
    customers = await _customers(request, pool)
    shown = shown_body(monitor, customers)
    kept = _kept(request, box, action)
    api = api_of(kind_form.kind)
    try:
        body = form_fields.body_of(kind_form, form, _secret_of(form, kept, shown), shown)
        if api.update is HeartbeatMonitorUpdate:
            _same_customer(body, shown)
        try:
            checked = msgspec.convert(body, api.update, strict=True)
        except msgspec.ValidationError as exc:
            raise strict_body_error(exc) from None
        ident = str(monitor.public_id)
        if isinstance(checked, HeartbeatMonitorUpdate):
            await heartbeat_api.update_checked(request, ident, checked, writes, pool, clock)
        else:
            await update_checked(api.kind, request, ident, checked, writes)
    except (ApiError, Refused) as refused:
        error = api_error(refused)
        values, markers, is_set = _again(kind_form, form, kept, shown)
        return _form(
            request,
            kind_form,
            values,
            customers=customers,
            error=error.message,
            error_fields=error.fields or [],
            kept=markers,
            is_set=is_set,
            status_code=error.status,
            action=action,
            editing=monitor,
        )
    return Redirect(f"{PREFIX}/monitors/{monitor.public_id}?notice=updated", status_code=303)
