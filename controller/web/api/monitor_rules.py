"""A request body of the monitor API → the write model (`controller.monitors.write_model`),
and a `Monitor` → the response.

The API's translation (`write_of`) is the one the console's forms, AlertSite's bodies and
monitors-as-code files go through too: they are spelt as the API's bodies. What the model's
values must be is decided in `controller.monitors.write_values`, not here. Shared by every
kind's resource; `Kind` (controller.monitors.kinds) holds what differs between them.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from controller.monitors import config as monitor_config
from controller.monitors import kinds, oauth2_grants
from controller.monitors.kinds import IMAP_POP, ROUNDTRIP, SMTP, Kind
from controller.monitors.write_model import (
    CONFIG_WRITES,
    ConfigWrite,
    MonitorWrite,
    ReputationWrite,
)
from controller.web.api.errors import ApiError, bad_request, strict_body_error
from controller.web.api.monitor_schemas import (
    MASK,
    ImapPopMonitor,
    ImapPopMonitorCreate,
    ImapPopMonitorUpdate,
    MonitorCreate,
    MonitorUpdate,
    ReputationIn,
    ReputationOut,
    RoundTripMonitor,
    SmtpMonitor,
    SmtpMonitorCreate,
    SmtpMonitorUpdate,
)
from controller.web.request_types import AnyRequest
from shared.messages import RoundTripConfig
from shared.secret import masked_hook
from shared.timefmt import iso_ms, iso_ms_or_none

if TYPE_CHECKING:  # the type only: these rules read no store
    from controller.monitors.store import Monitor

_CONFIG_ATTR = {SMTP: "smtp_config", IMAP_POP: "imap_pop_config", ROUNDTRIP: "roundtrip_config"}


BodyT = TypeVar("BodyT", bound=msgspec.Struct)


def _integral(value: object) -> object:
    """`value` with every integral float (`74.0`) as an int: JSON has one kind of number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


async def strict_body(request: AnyRequest, data: BodyT) -> BodyT:
    """`data` re-checked strictly against the JSON types of the seeds.

    Litestar converts bodies leniently (`"60"` → 60, `1` → true, `"false"` → false); a monitor's
    fields and config keys are typed, so those are 400s naming the field. The JSON is cached.
    A number with no fraction (`74.0`) is an integer, as JSON Schema's `integer` says.
    """
    try:
        return msgspec.convert(_integral(await request.json()), type(data), strict=True)
    except msgspec.ValidationError as exc:
        raise strict_body_error(exc) from None


def public_id(kind: Kind, raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise ApiError(
            400,
            f"{kind.label} public ID (UUID) required",
            code="invalid_public_id",
            fields=["publicId"],
        ) from None


def customer_ident(ident: int | str) -> int | UUID | None:
    if isinstance(ident, int):
        return ident if 0 < ident < 2**63 else None
    text = ident.strip()
    if text.isdigit():
        return customer_ident(int(text))
    try:
        return UUID(text)
    except ValueError:
        return None


def _pick_config(kind: Kind, body: MonitorCreate | MonitorUpdate) -> tuple[str, object] | None:
    """(field name, value) of the config sent as `smtpConfig`/`imapPopConfig` or `config`."""
    primary = getattr(body, _CONFIG_ATTR[kind])
    if primary is not UNSET and body.config is not UNSET and primary != body.config:
        raise bad_request(
            kind.config_key, f"send {kind.config_key} or its alias config, not two different ones"
        )
    if primary is not UNSET:
        return kind.config_key, primary
    if body.config is not UNSET:
        return "config", body.config
    return None


# nodemailer's spellings (`SmtpLegIn`), and the key each stands for when that one is not sent.
_NODEMAILER = {"ignoreTLS": "ignoreTls", "requireTLS": "requireTls"}


def _smtp_leg(leg: object) -> object:
    """An SMTP leg as JSON with nodemailer's spellings as the model's keys."""
    if not isinstance(leg, dict):
        return leg
    out = {k: v for k, v in leg.items() if k not in _NODEMAILER}
    for alias, key in _NODEMAILER.items():
        if alias in leg:
            out.setdefault(key, leg[alias])
    return out


def config_write(kind: Kind, config: object) -> ConfigWrite:
    """The kind's config of the write model from the request's (null: none, `{}`): the same
    keys (nodemailer's spellings as the model spells them)."""
    raw: Any = {} if config is None else msgspec.to_builtins(config)
    if kind is SMTP:
        raw = _smtp_leg(raw)
    elif kind is ROUNDTRIP and "send" in raw:
        raw = {**raw, "send": _smtp_leg(raw["send"])}
    return msgspec.convert(raw, CONFIG_WRITES[kind.name])


def write_of(kind: Kind, body: MonitorCreate | MonitorUpdate) -> MonitorWrite:
    """The write model of a create or PATCH body (already converted strictly): the API's
    translation, which the console's forms, AlertSite's bodies and monitors-as-code files go
    through too. A round trip has no top-level hostname/port: its config holds both servers."""
    picked = _pick_config(kind, body)
    listed: ReputationIn | None | UnsetType = getattr(body, "reputation", UNSET)
    reputation: ReputationWrite | None | UnsetType = (
        listed
        if listed is None or isinstance(listed, UnsetType)
        else ReputationWrite(ips=listed.ips, domains=listed.domains)
    )
    env = body.secret_env
    return MonitorWrite(
        kind=kind.name,
        name=body.name,
        hostname=getattr(body, "hostname", UNSET),
        port=getattr(body, "port", UNSET),
        status=body.status,
        check_interval=body.check_interval,
        timeout_seconds=body.timeout_seconds,
        allowed_country_codes=body.allowed_check_country_codes,
        notification_email=body.notification_email,
        notification_phone_number=body.notification_phone_number,
        mail_domain=body.mail_domain,
        depends_on=body.depends_on,
        dkim_selectors=body.dkim_selectors,
        reputation=reputation,
        secret_env=env if env is None or env is UNSET else msgspec.to_builtins(env),
        config=UNSET if picked is None else config_write(kind, picked[1]),
        config_field="" if picked is None else picked[0],
    )


def secret_required(field: str, moved: list[str], *more: tuple[str, list[str]]) -> ApiError:
    """The 400 for a change that moves a kept secret; `more`: other secrets it moves, as
    (field, moved) pairs (a round trip has one per leg), all named in `fields`."""
    each = [(field, moved), *more]
    said = "; ".join(f"{f} must be sent again to change {', '.join(m)}" for f, m in each)
    return ApiError(
        400,
        f"{said}: a stored secret is only sent to the server, port, TLS settings and user name"
        " it was given with (a round trip's send password also only mails the recipient and"
        f" sender it was given with), and the mask {MASK!r} keeps it only while none of those"
        " change",
        code="secret_required",
        fields=[f for f, _ in each],
    )


def secret_refusal(
    kind: Kind, write: MonitorWrite, monitor_type: str, each: Mapping[str, list[str]]
) -> ApiError:
    """The 400 naming each secret (as this request spells the config) that a change to a
    monitor of `monitor_type` (its type after the change) moves without sending it again;
    `each`: secret path → the fields that moved it (`secret_binding.moved_each`)."""
    key = write.config_field or kind.config_key
    if kind is ROUNDTRIP:
        outside = {"hostname": f"{key}.send.hostname", "port": f"{key}.send.port"}
    else:
        # The password named by where the (possibly new) type keeps it; a grant's by its path.
        password = kinds.of_type(monitor_type).secrets[0]
        each = {(password if p in kind.secrets else p): m for p, m in each.items()}
        outside = {"hostname": "hostname", "port": "port", "type": f"{key}.protocol"}
    named = [
        (f"{key}.{path}", [outside.get(m, f"{key}.{m}") for m in moved])
        for path, moved in each.items()
    ]
    return secret_required(*named[0], *named[1:])


def sent_fields(body: MonitorUpdate) -> set[str]:
    """Names of the fields present in a PATCH body (for the readonly rule)."""
    return {f for f in body.__struct_fields__ if getattr(body, f) is not UNSET}


class _Common(TypedDict):
    """The fields every kind shows (`monitor_schemas._MonitorOut`'s)."""

    id: int
    public_id: str
    organization_id: int
    customer_id: int
    name: str
    hostname: str
    port: int | None
    status: str
    check_interval: int
    timeout_seconds: int
    allowed_check_country_codes: list[str] | None
    notification_email: str | None
    notification_phone_number: str | None
    mail_domain: str | None
    depends_on: list[str] | UnsetType
    dkim_selectors: list[str] | UnsetType
    secret_env: dict[str, str] | None
    last_checked_at: str | None
    created_at: str
    updated_at: str
    config: dict[str, object]


def _common(monitor: "Monitor", config: dict[str, object]) -> _Common:
    """The fields every kind shows."""
    return {
        "id": monitor.id,
        "public_id": str(monitor.public_id),
        "organization_id": monitor.organization_id,
        "customer_id": monitor.customer_id,
        "name": monitor.name,
        "hostname": monitor.hostname,
        "port": monitor.port,
        "status": monitor.status,
        "check_interval": monitor.check_interval,
        "timeout_seconds": monitor.timeout_seconds,
        "allowed_check_country_codes": monitor.allowed_country_codes,
        "notification_email": monitor.notification_email,
        "notification_phone_number": monitor.notification_phone_number,
        "mail_domain": monitor.mail_domain,
        "depends_on": monitor.depends_on or UNSET,
        "dkim_selectors": monitor.dkim_selectors or UNSET,
        "secret_env": monitor.secret_env,
        "last_checked_at": iso_ms_or_none(monitor.last_checked_at),
        "created_at": iso_ms(monitor.created_at),
        "updated_at": iso_ms(monitor.updated_at),
        "config": config,
    }


def roundtrip_shown(
    hostname: str,
    port: int | None,
    config: object,
    grants: Mapping[str, oauth2_grants.Grant] | None = None,
) -> dict[str, Any]:
    """A round trip's config as responses show it: as the agent uses it (defaults spelt out,
    secrets masked), the send leg's server (the monitor's hostname and port) in `send`, each
    leg's OAuth2 grant (`grants`, or those of a stored config) with its secrets masked."""
    if not isinstance(config, RoundTripConfig):  # as stored
        if grants is None and isinstance(config, Mapping):
            grants = monitor_config.grants_of(ROUNDTRIP.types[0], config)
        config = monitor_config.decode_config(ROUNDTRIP.types[0], config)
    shown: dict[str, Any] = msgspec.to_builtins(config, enc_hook=masked_hook)
    ROUNDTRIP.drop_job_only(shown)
    for path, grant in (grants or {}).items():
        *legs, key = path.split(".")
        holder = shown
        for leg in legs:
            holder = holder.get(leg) or {}
        holder[key] = oauth2_grants.as_stored(grant)
    shown = ROUNDTRIP.masked(shown)
    send = shown["send"]
    shown["send"] = {
        "hostname": hostname,
        "port": port,
        **(send if isinstance(send, Mapping) else {}),
    }
    return shown


MonitorOut = SmtpMonitor | ImapPopMonitor | RoundTripMonitor


def present(monitor: "Monitor") -> MonitorOut:
    """The API's response for a monitor, of its kind's shape."""
    kind = kinds.of_type(monitor.type)
    if kind is ROUNDTRIP:
        config = roundtrip_shown(monitor.hostname, monitor.port, monitor.config, monitor.grants)
        return RoundTripMonitor(**_common(monitor, config), roundtrip_config=config)
    # The keys as sent, as the seeds show them: the one reader of `config_as_sent` outside the
    # write path (`monitors.store.Monitor`).
    config = kind.masked(monitor.config_as_sent)
    if kind is SMTP:
        listed = monitor.reputation
        reputation = ReputationOut(listed["ips"], listed["domains"]) if listed else UNSET
        return SmtpMonitor(**_common(monitor, config), smtp_config=config, reputation=reputation)
    return ImapPopMonitor(**_common(monitor, config), imap_pop_config=config)


__all__ = [
    "IMAP_POP",
    "ROUNDTRIP",
    "SMTP",
    "ImapPopMonitorCreate",
    "ImapPopMonitorUpdate",
    "Kind",
    "SmtpMonitorCreate",
    "SmtpMonitorUpdate",
]
