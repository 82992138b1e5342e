"""The forms that create SMTP and IMAP/POP monitors.

A form becomes the API's JSON body and is checked by the very code that checks the API's
(`create_checked`): the same rules, the same messages naming the field, the same fair-use limits;
passwords are write-only (never put back into the form).
"""

from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.response import Redirect, Template

from controller.api import guards
from controller.api.errors import ApiError, strict_body_error
from controller.api.monitor_rules import IMAP_POP, SMTP, present
from controller.api.monitor_schemas import (
    MASK,
    ImapPopMonitorCreate,
    ImapPopMonitorUpdate,
    MonitorCreate,
    MonitorUpdate,
    SmtpMonitorCreate,
    SmtpMonitorUpdate,
)
from controller.api.monitors import create_checked, update_checked
from controller.console.pages import find_monitor, page, pool_of
from controller.console.session import PREFIX, principal_of
from controller.db import console

AnyRequest = Request[Any, Any, Any]
PathStr = Annotated[str, PathParameter()]
FORMS = ("smtp", "imap", "pop3")
INTERVALS = (30, 60, 120, 300, 600, 900, 1800, 3600)
# What the page says when the port is left empty (shared.messages.default_port).
DEFAULT_PORTS = {
    "smtp": "465 with implicit TLS, else 25",
    "imap": "993 with TLS, else 143",
    "pop3": "995 with TLS, else 110",
}


def _int(form: dict[str, str], key: str, field: str) -> int | None:
    raw = form.get(key, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(
            400, f"{field} must be a whole number", code="invalid_body", fields=[field]
        ) from None


def body_of(kind: str, form: dict[str, str]) -> dict[str, Any]:
    """The form's fields as the API's JSON body: empty optional fields are left out."""
    body: dict[str, Any] = {
        "customerId": form.get("customer", ""),
        "name": form.get("name", "").strip(),
        "hostname": form.get("hostname", "").strip(),
    }
    for key, field in (
        ("port", "port"),
        ("interval", "checkInterval"),
        ("timeout", "timeoutSeconds"),
    ):
        value = _int(form, key, field)
        if value is not None:
            body[field] = value
    countries = [c.strip() for c in form.get("countries", "").replace(" ", ",").split(",")]
    if any(countries):
        body["allowedCheckCountryCodes"] = [c for c in countries if c]
    if form.get("email", "").strip():
        body["notificationEmail"] = form["email"].strip()
    user, password = form.get("user", "").strip(), form.get("password", "")
    if kind == "smtp":
        tls = form.get("tls", "starttls")
        config: dict[str, Any] = {"secure": tls == "implicit", "requireTls": tls == "starttls"}
        if user:
            config["auth"] = {"user": user, "pass": password}
        body["smtpConfig"] = config
    else:
        config = {"protocol": kind, "tls": form.get("tls") == "on"}
        if user:
            config["user"], config["password"] = user, password
        body["imapPopConfig"] = config
    return body


def _form(request: AnyRequest, kind: str, values: dict[str, str], **extra: Any) -> Template:
    extra.setdefault("action", f"{PREFIX}/new/{kind}")
    extra.setdefault("editing", None)
    return page(
        request,
        "new_monitor.html",
        kind=kind,
        forms=FORMS,
        intervals=INTERVALS,
        default_port=DEFAULT_PORTS[kind],
        values=values,
        **extra,
    )


async def _customers(request: AnyRequest) -> list[Any]:
    async with pool_of(request).acquire() as conn:
        return await console.customers_of(conn, principal_of(request).organization_id)


@get("/new/{kind:str}", name="console-new")
async def new_form(request: AnyRequest, kind: PathStr) -> Template:
    if kind not in FORMS:
        raise NotFoundException()
    guards.requires_writer(principal_of(request))
    values = {"interval": "60", "timeout": "30", "tls": "starttls" if kind == "smtp" else "on"}
    return _form(request, kind, values, customers=await _customers(request), error=None)


@post("/new/{kind:str}", status_code=303)
async def create(request: AnyRequest, kind: PathStr) -> Response[Any]:
    if kind not in FORMS:
        raise NotFoundException()
    guards.requires_writer(principal_of(request))
    form = {k: str(v) for k, v in (await request.form()).items()}
    schema: type[MonitorCreate] = SmtpMonitorCreate if kind == "smtp" else ImapPopMonitorCreate
    try:
        try:
            checked = msgspec.convert(body_of(kind, form), schema, strict=True)
        except msgspec.ValidationError as exc:
            raise strict_body_error(exc) from None
        row = await create_checked(SMTP if kind == "smtp" else IMAP_POP, request, checked)
    except ApiError as exc:
        form.pop("password", None)  # write-only: never sent back
        return _form(
            request,
            kind,
            form,
            customers=await _customers(request),
            error=exc.message,
            error_fields=exc.fields,
            status_code=exc.status,
        )
    return Redirect(f"{PREFIX}/monitors/{row['public_id']}?notice=created", status_code=303)


# --- editing ----------------------------------------------------------------------------------


def values_of(row: asyncpg.Record, customers: list[asyncpg.Record]) -> dict[str, str]:
    """The form's fields for a stored monitor (the API's view of it: secrets masked, and the
    password field left empty)."""
    kind = SMTP if row["type"] == "smtp" else IMAP_POP
    config: dict[str, Any] = msgspec.structs.asdict(present(kind, row))["config"]
    if row["type"] == "smtp":
        tls = (
            "implicit"
            if config.get("secure")
            else "starttls"
            if config.get("requireTls")
            else "none"
        )
        user = (config.get("auth") or {}).get("user") or ""
    else:
        tls = "on" if config.get("tls") else ""
        user = config.get("user") or ""
    public_ids = {c["id"]: str(c["public_id"]) for c in customers}
    return {
        "customer": public_ids.get(row["customer_id"], ""),
        "name": row["name"],
        "hostname": row["hostname"],
        "port": "" if row["port"] is None else str(row["port"]),
        "interval": str(row["check_interval"]),
        "timeout": str(row["timeout_seconds"]),
        "countries": ", ".join(row["allowed_country_codes"] or ()),
        "email": row["notification_email"] or "",
        "tls": tls,
        "user": user,
    }


async def _editable(request: AnyRequest, monitor_id: str) -> asyncpg.Record:
    async with pool_of(request).acquire() as conn:
        row = await find_monitor(conn, request, monitor_id)  # 404 before 403
    guards.requires_writer(principal_of(request))
    return row


# Config the API sets and the form does not show; an edit keeps it as stored. Without this an
# edit dropped a CA pinned through the API (with the password typed again, silently: the agent
# then trusted any public CA for the host) and the plaintext opt-in.
_UNSHOWN = ("tlsOptions", "allowPlaintextAuth")


def _keep_unshown(kind: str, form: dict[str, str], body: dict[str, Any], row: Any) -> None:
    """Put the stored config the form does not show into the form's PATCH body."""
    stored: dict[str, Any] = msgspec.structs.asdict(
        present(SMTP if kind == "smtp" else IMAP_POP, row)
    )["config"]
    config = body["smtpConfig" if kind == "smtp" else "imapPopConfig"]
    # `ignoreTls` is what the form's "no TLS" stands for when stored; another choice drops it.
    shown = (*_UNSHOWN, "ignoreTls") if kind == "smtp" and form.get("tls") == "none" else _UNSHOWN
    for key in shown:
        if key in stored:
            config.setdefault(key, stored[key])


@get("/monitors/{monitor_id:str}/edit", name="console-edit")
async def edit_form(request: AnyRequest, monitor_id: PathStr) -> Template:
    row = await _editable(request, monitor_id)
    customers = await _customers(request)
    return _form(
        request,
        row["type"],
        values_of(row, customers),
        customers=customers,
        error=None,
        action=f"{PREFIX}/monitors/{row['public_id']}/edit",
        editing=row,
    )


@post("/monitors/{monitor_id:str}/edit", status_code=303)
async def edit(request: AnyRequest, monitor_id: PathStr) -> Response[Any]:
    """The form as a PATCH: an empty password keeps the stored one (the API's mask), which the
    API refuses when the change would send it elsewhere (`secret_binding`), naming the field."""
    row = await _editable(request, monitor_id)
    kind = row["type"]
    form = {k: str(v) for k, v in (await request.form()).items()}
    body = body_of(kind, form)
    _keep_unshown(kind, form, body, row)
    if form.get("user", "").strip() and not form.get("password"):
        config = body["smtpConfig"]["auth"] if kind == "smtp" else body["imapPopConfig"]
        config["pass" if kind == "smtp" else "password"] = MASK
    schema: type[MonitorUpdate] = SmtpMonitorUpdate if kind == "smtp" else ImapPopMonitorUpdate
    try:
        try:
            checked = msgspec.convert(body, schema, strict=True)
        except msgspec.ValidationError as exc:
            raise strict_body_error(exc) from None
        await update_checked(
            SMTP if kind == "smtp" else IMAP_POP, request, str(row["public_id"]), checked
        )
    except ApiError as exc:
        form.pop("password", None)  # write-only: never sent back
        return _form(
            request,
            kind,
            form,
            customers=await _customers(request),
            error=exc.message,
            error_fields=exc.fields,
            status_code=exc.status,
            action=f"{PREFIX}/monitors/{row['public_id']}/edit",
            editing=row,
        )
    return Redirect(f"{PREFIX}/monitors/{row['public_id']}?notice=updated", status_code=303)
