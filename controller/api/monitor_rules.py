"""From a validated request body to the row values to store, and from a row to the response.

Shared by the SMTP and IMAP/POP resources; `Kind` holds what differs between them.
"""

from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import msgspec
from litestar import Request
from msgspec import UNSET, UnsetType

from controller.api import secret_binding, tls_options, validation
from controller.api.errors import ApiError, bad_request, invalid_customer, strict_body_error
from controller.api.monitor_schemas import (
    MASK,
    ImapPopConfigIn,
    ImapPopMonitor,
    ImapPopMonitorCreate,
    ImapPopMonitorUpdate,
    MonitorCreate,
    MonitorUpdate,
    SmtpConfigIn,
    SmtpMonitor,
    SmtpMonitorCreate,
    SmtpMonitorUpdate,
)
from controller.api.secret_binding import SECRET_PATH, Target
from controller.db import customers
from controller.db.pool import Conn
from controller.secretbox import PREFIX, SecretBox
from shared.timefmt import iso_ms, iso_ms_or_none


@dataclass(frozen=True)
class Kind:
    label: str
    config_key: str
    types: tuple[str, ...]


SMTP = Kind("SMTP Monitor", "smtpConfig", ("smtp",))
IMAP_POP = Kind("IMAP/POP Monitor", "imapPopConfig", ("imap", "pop3"))


BodyT = TypeVar("BodyT", bound=msgspec.Struct)


async def strict_body(request: Request[Any, Any, Any], data: BodyT) -> BodyT:
    """`data` re-checked strictly against the JSON types of the seeds.

    Litestar converts bodies leniently (`"60"` → 60, `1` → true, `"false"` → false); a monitor's
    fields and config keys are typed, so those are 400s naming the field. The JSON is cached.
    """
    try:
        return msgspec.convert(await request.json(), type(data), strict=True)
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


async def customer_id(conn: Conn, ident: int | str, organization_id: int) -> int:
    """The internal id of the caller's customer given as number or public UUID."""
    parsed = customer_ident(ident)
    if parsed is None:
        raise invalid_customer()
    row = await customers.find(conn, parsed, organization_id)
    if row is None:
        raise ApiError(404, "Customer not found", code="customer_not_found", fields=["customerId"])
    found: int = row["id"]
    return found


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


def _pick_config(kind: Kind, body: MonitorCreate | MonitorUpdate) -> tuple[str, Any] | None:
    """(field name, value) of the config sent as `smtpConfig`/`imapPopConfig` or `config`."""
    primary = getattr(body, "smtp_config" if kind is SMTP else "imap_pop_config")
    if primary is not UNSET and body.config is not UNSET and primary != body.config:
        raise bad_request(
            kind.config_key, f"send {kind.config_key} or its alias config, not two different ones"
        )
    if primary is not UNSET:
        return kind.config_key, primary
    if body.config is not UNSET:
        return "config", body.config
    return None


def _transport_options(cfg: SmtpConfigIn | ImapPopConfigIn, out: dict[str, Any], key: str) -> None:
    """`tlsOptions` and `allowPlaintextAuth`, which both kinds share; a null `ca` or
    `servername` is the default, so it is not stored."""
    opts = cfg.tls_options
    if opts is not UNSET:
        tls: dict[str, Any] = {}
        if opts.reject_unauthorized is not UNSET:
            tls["rejectUnauthorized"] = opts.reject_unauthorized
        if isinstance(opts.ca, str):
            tls["ca"] = tls_options.ca(opts.ca, f"{key}.tlsOptions.ca")
        if isinstance(opts.servername, str):
            field = f"{key}.tlsOptions.servername"
            tls["servername"] = tls_options.servername(opts.servername, field)
        out["tlsOptions"] = tls
    if cfg.allow_plaintext_auth is not UNSET:
        out["allowPlaintextAuth"] = cfg.allow_plaintext_auth


def _secret(
    value: str | None | UnsetType, stored: object, box: SecretBox, field: str
) -> str | None | UnsetType:
    """Seal a new secret; the mask keeps the stored one."""
    if value == MASK:
        if isinstance(stored, str) and stored.startswith(PREFIX):
            return stored
        raise bad_request(
            field, f"{field}: {MASK!r} stands for a stored secret, and none is stored"
        )
    if isinstance(value, str) and value:
        return box.seal(value)
    return value


def _smtp_config(
    cfg: SmtpConfigIn | None, stored: dict[str, Any], box: SecretBox, key: str
) -> dict[str, Any]:
    if cfg is None:
        return {}
    out: dict[str, Any] = {}
    if cfg.secure is not UNSET:
        out["secure"] = cfg.secure
    ignore = cfg.ignore_tls if cfg.ignore_tls is not UNSET else cfg.ignore_tls_nodemailer
    if ignore is not UNSET:
        out["ignoreTls"] = ignore
    require = cfg.require_tls if cfg.require_tls is not UNSET else cfg.require_tls_nodemailer
    if require is not UNSET:
        out["requireTls"] = require
    if cfg.auth is None:
        out["auth"] = None
    elif cfg.auth is not UNSET:
        auth: dict[str, Any] = {}
        if cfg.auth.user is not UNSET:
            auth["user"] = cfg.auth.user
        stored_auth = stored.get("auth") if isinstance(stored.get("auth"), dict) else {}
        sealed = _secret(
            cfg.auth.password, (stored_auth or {}).get("pass"), box, f"{key}.auth.pass"
        )
        if sealed is not UNSET:
            auth["pass"] = sealed
        out["auth"] = auth
    _transport_options(cfg, out, key)
    return out


def _imap_pop_config(
    cfg: ImapPopConfigIn | None, stored: dict[str, Any], box: SecretBox, key: str
) -> tuple[dict[str, Any], str]:
    if cfg is None:
        return {}, "imap"
    out: dict[str, Any] = {}
    protocol = "imap"
    if cfg.protocol is not UNSET:
        protocol = cfg.protocol.strip().lower()
        if protocol not in ("imap", "pop3"):
            raise bad_request(f"{key}.protocol", f"{key}.protocol must be imap or pop3")
        out["protocol"] = protocol
    if cfg.user is not UNSET:
        out["user"] = cfg.user
    sealed = _secret(cfg.password, stored.get("password"), box, f"{key}.password")
    if sealed is not UNSET:
        out["password"] = sealed
    if cfg.tls is not UNSET:
        out["tls"] = cfg.tls
    _transport_options(cfg, out, key)
    return out, protocol


def config_values(
    kind: Kind, body: MonitorCreate | MonitorUpdate, stored: dict[str, Any], box: SecretBox
) -> dict[str, Any]:
    """`config` (and for IMAP/POP the `type`) to store; {} when no config was sent."""
    picked = _pick_config(kind, body)
    if picked is None:
        return {}
    key, cfg = picked
    if kind is SMTP:
        return {"config": _smtp_config(cfg, stored, box, key)}
    config, protocol = _imap_pop_config(cfg, stored, box, key)
    return {"config": config, "type": protocol}


def create_values(kind: Kind, body: MonitorCreate, box: SecretBox) -> dict[str, Any]:
    """The row values of a new monitor (without `customer_id`): fields, defaults, config."""
    values = common_values(body)
    values.setdefault("status", "active")
    values.setdefault("check_interval", validation.CHECK_INTERVAL_DEFAULT)
    values.setdefault("timeout_seconds", min(validation.TIMEOUT_DEFAULT, values["check_interval"]))
    validation.interval_and_timeout(values["check_interval"], values["timeout_seconds"])
    values.update(config_values(kind, body, {}, box))
    values.setdefault("config", {})
    values.setdefault("type", kind.types[0])
    return values


def update_values(
    kind: Kind, body: MonitorUpdate, row: asyncpg.Record, box: SecretBox
) -> dict[str, Any]:
    """The columns a PATCH changes on `row` (without `customer_id`)."""
    changes = common_values(body)
    validation.interval_and_timeout(
        changes.get("check_interval", row["check_interval"]),
        changes.get("timeout_seconds", row["timeout_seconds"]),
    )
    changes.update(config_values(kind, body, row["config"], box))
    if {"check_interval", "status"} & changes.keys():
        changes["next_due_at"] = None  # the scheduler puts it on the new grid
    return changes


def moved_secret(row: asyncpg.Record, changes: dict[str, Any]) -> list[str]:
    """The fields that `changes` move the row's stored secret with (`secret_binding`); empty
    when the change keeps the secret where it was given, or sends it again."""
    stored = {c: row[c] for c in ("type", "hostname", "port", "config")}
    before, after = Target.of(stored), Target.of({**stored, **changes})
    return secret_binding.moved(before, after)


def secret_required(field: str, moved: list[str]) -> ApiError:
    return ApiError(
        400,
        f"{field} must be sent again to change {', '.join(moved)}: a stored secret is only"
        " sent to the server, port, TLS settings and user name it was given with, and the mask"
        f" {MASK!r} keeps it only while none of those change",
        code="secret_required",
        fields=[field],
    )


def require_secret_resent(
    kind: Kind, body: MonitorUpdate, row: asyncpg.Record, changes: dict[str, Any]
) -> None:
    """A 400 naming the secret (as this request spells the config) when `changes` move it
    without sending it again."""
    moved = moved_secret(row, changes)
    if not moved:
        return
    picked = _pick_config(kind, body)
    key = picked[0] if picked else kind.config_key
    path = SECRET_PATH[changes.get("type", row["type"])]
    outside = {"hostname": "hostname", "port": "port", "type": f"{key}.protocol"}
    raise secret_required(f"{key}.{path}", [outside.get(m, f"{key}.{m}") for m in moved])


def common_values(body: MonitorCreate | MonitorUpdate) -> dict[str, Any]:
    """Columns from the fields both kinds share, normalised; absent fields are left out."""
    out: dict[str, Any] = {}
    if body.name is not UNSET:
        out["name"] = validation.name(body.name)
    if body.hostname is not UNSET:
        out["hostname"] = validation.hostname(body.hostname)
    if body.port is not UNSET:
        out["port"] = validation.port(body.port)
    if body.status is not UNSET:
        out["status"] = validation.status(body.status)
    if body.check_interval is not UNSET:
        out["check_interval"] = body.check_interval
    if body.timeout_seconds is not UNSET:
        out["timeout_seconds"] = body.timeout_seconds
    if body.allowed_check_country_codes is not UNSET:
        out["allowed_country_codes"] = validation.country_codes(body.allowed_check_country_codes)
    if body.notification_email is not UNSET:
        out["notification_email"] = validation.email(body.notification_email)
    if body.notification_phone_number is not UNSET:
        out["notification_phone_number"] = validation.phone(body.notification_phone_number)
    return out


def sent_fields(body: MonitorUpdate) -> set[str]:
    """Names of the fields present in a PATCH body (for the readonly rule)."""
    return {f for f in body.__struct_fields__ if getattr(body, f) is not UNSET}


def masked(value: Any) -> Any:
    """`value` with every sealed secret in it replaced by the mask, as responses show it."""
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, str) and value.startswith(PREFIX):
        return MASK
    return value


def present(kind: Kind, row: asyncpg.Record) -> SmtpMonitor | ImapPopMonitor:
    config = masked(row["config"])
    common: dict[str, Any] = {
        "id": row["id"],
        "public_id": str(row["public_id"]),
        "organization_id": row["organization_id"],
        "customer_id": row["customer_id"],
        "name": row["name"],
        "hostname": row["hostname"],
        "port": row["port"],
        "status": row["status"],
        "check_interval": row["check_interval"],
        "timeout_seconds": row["timeout_seconds"],
        "allowed_check_country_codes": row["allowed_country_codes"],
        "notification_email": row["notification_email"],
        "notification_phone_number": row["notification_phone_number"],
        "last_checked_at": iso_ms_or_none(row["last_checked_at"]),
        "created_at": iso_ms(row["created_at"]),
        "updated_at": iso_ms(row["updated_at"]),
        "config": config,
    }
    if kind is SMTP:
        return SmtpMonitor(**common, smtp_config=config)
    return ImapPopMonitor(**common, imap_pop_config=config)


__all__ = [
    "IMAP_POP",
    "SMTP",
    "ImapPopMonitorCreate",
    "ImapPopMonitorUpdate",
    "Kind",
    "SmtpMonitorCreate",
    "SmtpMonitorUpdate",
]
