"""The forms that create and edit monitors, one per stored type of every kind
(controller.monitors.kinds).

A form becomes the API's JSON body and is checked by the very code that checks the API's
(`create_checked`): the same rules, the same messages naming the field, the same fair-use limits;
passwords are write-only (never put back into the form; an empty one on an edit keeps the stored
one, as the API's mask does).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, cast

import asyncpg
import msgspec
from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.response import Redirect, Template

from controller.monitors import kinds
from controller.monitors.errors import Refused
from controller.monitors.kinds import IMAP_POP, ROUNDTRIP, SMTP, Kind
from controller.monitors.store import Monitor
from controller.web.api import guards
from controller.web.api.errors import ApiError, api_error, strict_body_error
from controller.web.api.monitor_kinds import api_of
from controller.web.api.monitor_rules import present
from controller.web.api.monitor_schemas import MASK, MonitorCreate, MonitorUpdate
from controller.web.api.monitors import create_checked, update_checked
from controller.web.console import store as console
from controller.web.console.pages import find_monitor, page, pool_of
from controller.web.console.session import PREFIX, principal_of

AnyRequest = Request[Any, Any, Any]
PathStr = Annotated[str, PathParameter()]
INTERVALS = (30, 60, 120, 300, 600, 900, 1800, 3600)
# Config the API sets and the form does not show; an edit keeps it as stored. Without this an
# edit dropped a CA pinned through the API (with the password typed again, silently: the agent
# then trusted any public CA for the host) and the plaintext opt-in.
_UNSHOWN = ("tlsOptions", "allowPlaintextAuth")


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


def _list(raw: str) -> list[str]:
    return [c.strip() for c in raw.replace(" ", ",").split(",") if c.strip()]


def _smtp_tls(tls: str) -> dict[str, Any]:
    return {"secure": tls == "implicit", "requireTls": tls == "starttls"}


def _tls_choice(config: dict[str, Any]) -> str:
    if config.get("secure"):
        return "implicit"
    return "starttls" if config.get("requireTls") else "none"


def _keep(stored: dict[str, Any], sent: dict[str, Any], smtp_tls: str | None) -> None:
    """Put the stored config the form does not show into the PATCH's `sent`; `ignoreTls` is
    what an SMTP form's "no TLS" stands for when stored, so another choice drops it."""
    shown = (*_UNSHOWN, "ignoreTls") if smtp_tls == "none" else _UNSHOWN
    for key in shown:
        if key in stored:
            sent.setdefault(key, stored[key])


def _keep_login(stored: object, sent: dict[str, Any], secret: str, typed: str) -> None:
    """A login the form shows only as its user: an OAuth2 grant stored on it stays (as shown:
    its secrets masked, which keeps them); an empty password field keeps the stored password
    (the mask), and sends none beside a kept grant."""
    grant = stored.get("oauth2") if isinstance(stored, dict) else None
    if isinstance(grant, dict):
        sent["oauth2"] = grant
    if not typed:
        if grant is None:
            sent[secret] = MASK
        else:
            sent.pop(secret, None)


@dataclass(frozen=True)
class KindForm:
    """How a kind's form reads and writes its config: `config` (the config key's body from the
    form), `values` (the form's fields from the config as the API shows it), `keep` (what an
    edit keeps of the stored config the form does not show, and the mask for a password left
    empty), `new` (a new form's defaults)."""

    config: Callable[[str, dict[str, str]], dict[str, Any]]
    values: Callable[[dict[str, Any]], dict[str, str]]
    keep: Callable[[dict[str, str], dict[str, Any], dict[str, Any]], None]
    new: dict[str, str]


def _smtp_config(_: str, form: dict[str, str]) -> dict[str, Any]:
    config = _smtp_tls(form.get("tls", "starttls"))
    user = form.get("user", "").strip()
    if user:
        config["auth"] = {"user": user, "pass": form.get("password", "")}
    return {"smtpConfig": config}


def _smtp_values(config: dict[str, Any]) -> dict[str, str]:
    return {"tls": _tls_choice(config), "user": (config.get("auth") or {}).get("user") or ""}


def _smtp_keep(form: dict[str, str], body: dict[str, Any], stored: dict[str, Any]) -> None:
    config = body["smtpConfig"]
    _keep(stored, config, form.get("tls"))
    if "auth" in config:
        _keep_login(stored.get("auth"), config["auth"], "pass", form.get("password", ""))


def _imap_pop_config(monitor_type: str, form: dict[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = {"protocol": monitor_type, "tls": form.get("tls") == "on"}
    user = form.get("user", "").strip()
    if user:
        config["user"], config["password"] = user, form.get("password", "")
    return {"imapPopConfig": config}


def _imap_pop_values(config: dict[str, Any]) -> dict[str, str]:
    return {"tls": "on" if config.get("tls") else "", "user": config.get("user") or ""}


def _imap_pop_keep(form: dict[str, str], body: dict[str, Any], stored: dict[str, Any]) -> None:
    config = body["imapPopConfig"]
    _keep(stored, config, None)
    if "user" in config:
        _keep_login(stored, config, "password", form.get("password", ""))


def _roundtrip_config(_: str, form: dict[str, str]) -> dict[str, Any]:
    """Both legs: `send_*` the submission server and its account, `receive_*` the mailbox."""
    send: dict[str, Any] = {
        "hostname": form.get("send_hostname", "").strip(),
        **_smtp_tls(form.get("send_tls", "starttls")),
    }
    port = _int(form, "send_port", "roundtripConfig.send.port")
    if port is not None:
        send["port"] = port
    user = form.get("send_user", "").strip()
    if user:
        send["auth"] = {"user": user, "pass": form.get("send_password", "")}
    if form.get("send_from", "").strip():
        send["from"] = form["send_from"].strip()
    receive: dict[str, Any] = {
        "protocol": form.get("receive_protocol", "imap"),
        "hostname": form.get("receive_hostname", "").strip(),
        "tls": form.get("receive_tls") == "on",
        "user": form.get("receive_user", "").strip(),
        "password": form.get("receive_password", ""),
    }
    port = _int(form, "receive_port", "roundtripConfig.receive.port")
    if port is not None:
        receive["port"] = port
    if folders := _list(form.get("folders", "")):
        receive["folders"] = folders
    if spam := _list(form.get("spam_folders", "")):
        receive["spamFolders"] = spam
    config: dict[str, Any] = {
        "send": send,
        "to": form.get("to", "").strip(),
        "receive": receive,
        "spamIsFailure": form.get("spam_is_failure") == "on",
    }
    slow = _int(form, "slow_after", "roundtripConfig.slowAfterSeconds")
    if slow is not None:
        config["slowAfterSeconds"] = slow
    return {"roundtripConfig": config}


def _roundtrip_values(config: dict[str, Any]) -> dict[str, str]:
    send, receive = config.get("send") or {}, config.get("receive") or {}
    slow = config.get("slowAfterSeconds")
    return {
        "send_hostname": send.get("hostname") or "",
        "send_port": "" if send.get("port") is None else str(send["port"]),
        "send_tls": _tls_choice(send),
        "send_user": (send.get("auth") or {}).get("user") or "",
        "send_from": send.get("from") or "",
        "to": config.get("to") or "",
        "receive_protocol": receive.get("protocol") or "imap",
        "receive_hostname": receive.get("hostname") or "",
        "receive_port": "" if receive.get("port") is None else str(receive["port"]),
        "receive_tls": "on" if receive.get("tls") else "",
        "receive_user": receive.get("user") or "",
        "folders": ", ".join(receive.get("folders") or ()),
        "spam_folders": ", ".join(receive.get("spamFolders") or ()),
        "slow_after": "" if slow is None else f"{slow:g}",
        "spam_is_failure": "on" if config.get("spamIsFailure") else "",
    }


def _roundtrip_keep(form: dict[str, str], body: dict[str, Any], stored: dict[str, Any]) -> None:
    config = body["roundtripConfig"]
    send, receive = config["send"], config["receive"]
    _keep(stored.get("send") or {}, send, form.get("send_tls"))
    _keep(stored.get("receive") or {}, receive, None)
    if "auth" in send:
        stored_auth = (stored.get("send") or {}).get("auth")
        _keep_login(stored_auth, send["auth"], "pass", form.get("send_password", ""))
    _keep_login(stored.get("receive"), receive, "password", form.get("receive_password", ""))


_EVERY_MINUTE = {"interval": "60", "timeout": "30"}
FORM_KINDS: dict[Kind, KindForm] = {
    SMTP: KindForm(_smtp_config, _smtp_values, _smtp_keep, {**_EVERY_MINUTE, "tls": "starttls"}),
    IMAP_POP: KindForm(
        _imap_pop_config, _imap_pop_values, _imap_pop_keep, {**_EVERY_MINUTE, "tls": "on"}
    ),
    ROUNDTRIP: KindForm(
        _roundtrip_config,
        _roundtrip_values,
        _roundtrip_keep,
        {
            "interval": "300",
            "timeout": "120",
            "send_tls": "starttls",
            "receive_tls": "on",
            "folders": "INBOX",
        },
    ),
}
FORMS: tuple[str, ...] = kinds.ALL_TYPES  # one form per stored type: /console/new/{type}


def form_of(monitor_type: str) -> KindForm:
    return FORM_KINDS[kinds.of_type(monitor_type)]


def body_of(monitor_type: str, form: dict[str, str]) -> dict[str, Any]:
    """The form's fields as the API's JSON body: empty optional fields are left out."""
    body: dict[str, Any] = {
        "customerId": form.get("customer", ""),
        "name": form.get("name", "").strip(),
    }
    fields = [("interval", "checkInterval"), ("timeout", "timeoutSeconds")]
    kind_form = form_of(monitor_type)
    if kinds.of_type(monitor_type).hostname:
        body["hostname"] = form.get("hostname", "").strip()
        fields.insert(0, ("port", "port"))
    for key, field in fields:
        value = _int(form, key, field)
        if value is not None:
            body[field] = value
    if countries := _list(form.get("countries", "")):
        body["allowedCheckCountryCodes"] = countries
    if form.get("email", "").strip():
        body["notificationEmail"] = form["email"].strip()
    body.update(kind_form.config(monitor_type, form))
    return body


def _write_only(form: dict[str, str]) -> dict[str, str]:
    """The form's values to show again: every password left out."""
    return {k: v for k, v in form.items() if not k.endswith("password")}


def _form(request: AnyRequest, kind: str, values: dict[str, str], **extra: Any) -> Template:
    extra.setdefault("action", f"{PREFIX}/new/{kind}")
    extra.setdefault("editing", None)
    return page(
        request,
        "new_monitor.html",
        kind=kind,
        forms=FORMS,
        intervals=INTERVALS,
        default_port=kinds.PORT_HINTS[kind],
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
    values = dict(form_of(kind).new)
    return _form(request, kind, values, customers=await _customers(request), error=None)


@post("/new/{kind:str}", status_code=303)
async def create(request: AnyRequest, kind: PathStr) -> Response[Any]:
    if kind not in FORMS:
        raise NotFoundException()
    guards.requires_writer(principal_of(request))
    form = {k: str(v) for k, v in (await request.form()).items()}
    api = api_of(kinds.of_type(kind))
    try:
        try:
            checked = cast(
                MonitorCreate, msgspec.convert(body_of(kind, form), api.create, strict=True)
            )
        except msgspec.ValidationError as exc:
            raise strict_body_error(exc) from None
        monitor = await create_checked(api.kind, request, checked)
    except (ApiError, Refused) as refused:
        error = api_error(refused)
        return _form(
            request,
            kind,
            _write_only(form),
            customers=await _customers(request),
            error=error.message,
            error_fields=error.fields,
            status_code=error.status,
        )
    return Redirect(f"{PREFIX}/monitors/{monitor.public_id}?notice=created", status_code=303)


# --- editing ----------------------------------------------------------------------------------


def _shown_config(monitor: Monitor) -> dict[str, Any]:
    """The stored config as the API shows it (secrets masked, defaults as the kind shows them)."""
    return present(monitor).config


def values_of(monitor: Monitor, customers: list[asyncpg.Record]) -> dict[str, str]:
    """The form's fields for a stored monitor (the API's view of it: secrets masked, and the
    password fields left empty)."""
    public_ids = {c["id"]: str(c["public_id"]) for c in customers}
    return {
        "customer": public_ids.get(monitor.customer_id, ""),
        "name": monitor.name,
        "hostname": monitor.hostname,
        "port": "" if monitor.port is None else str(monitor.port),
        "interval": str(monitor.check_interval),
        "timeout": str(monitor.timeout_seconds),
        "countries": ", ".join(monitor.allowed_country_codes or ()),
        "email": monitor.notification_email or "",
        **form_of(monitor.type).values(_shown_config(monitor)),
    }


async def _editable(request: AnyRequest, monitor_id: str) -> Monitor:
    async with pool_of(request).acquire() as conn:
        monitor = await find_monitor(conn, request, monitor_id)  # 404 before 403
    guards.requires_writer(principal_of(request))
    return monitor


@get("/monitors/{monitor_id:str}/edit", name="console-edit")
async def edit_form(request: AnyRequest, monitor_id: PathStr) -> Template:
    monitor = await _editable(request, monitor_id)
    customers = await _customers(request)
    return _form(
        request,
        monitor.type,
        values_of(monitor, customers),
        customers=customers,
        error=None,
        action=f"{PREFIX}/monitors/{monitor.public_id}/edit",
        editing=monitor,
    )


@post("/monitors/{monitor_id:str}/edit", status_code=303)
async def edit(request: AnyRequest, monitor_id: PathStr) -> Response[Any]:
    """The form as a PATCH: an empty password keeps the stored one (the API's mask), which the
    API refuses when the change would send it elsewhere (`secret_binding`), naming the field."""
    monitor = await _editable(request, monitor_id)
    kind = monitor.type
    form = {k: str(v) for k, v in (await request.form()).items()}
    api = api_of(kinds.of_type(kind))
    try:
        body = body_of(kind, form)
        form_of(kind).keep(form, body, _shown_config(monitor))
        try:
            checked = cast(MonitorUpdate, msgspec.convert(body, api.update, strict=True))
        except msgspec.ValidationError as exc:
            raise strict_body_error(exc) from None
        await update_checked(api.kind, request, str(monitor.public_id), checked)
    except (ApiError, Refused) as refused:
        error = api_error(refused)
        return _form(
            request,
            kind,
            _write_only(form),
            customers=await _customers(request),
            error=error.message,
            error_fields=error.fields,
            status_code=error.status,
            action=f"{PREFIX}/monitors/{monitor.public_id}/edit",
            editing=monitor,
        )
    return Redirect(f"{PREFIX}/monitors/{monitor.public_id}?notice=updated", status_code=303)
