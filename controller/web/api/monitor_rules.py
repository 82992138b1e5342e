"""From a validated request body to the row values to store, and from a `Monitor` to the
response.

Shared by every kind's resource; `Kind` (controller.monitors.kinds) holds what differs between them.
"""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import msgspec
from litestar import Request
from msgspec import UNSET, UnsetType

from controller.monitors import config as monitor_config
from controller.monitors import kinds, oauth2_grants, validation
from controller.monitors.kinds import IMAP_POP, ROUNDTRIP, SMTP, Kind
from controller.oauth2 import assertion
from controller.roundtrips import rules as roundtrip_rules
from controller.secrets.box import SecretBox, is_sealed
from controller.web.api import tls_options
from controller.web.api.errors import ApiError, bad_request, strict_body_error
from controller.web.api.monitor_schemas import (
    MASK,
    ImapPopConfigIn,
    ImapPopMonitor,
    ImapPopMonitorCreate,
    ImapPopMonitorUpdate,
    MonitorCreate,
    MonitorUpdate,
    OAuth2In,
    ReputationIn,
    ReputationOut,
    RoundTripConfigIn,
    RoundTripMonitor,
    RoundTripReceiveIn,
    SmtpConfigIn,
    SmtpLegIn,
    SmtpMonitor,
    SmtpMonitorCreate,
    SmtpMonitorUpdate,
)
from shared.messages import RoundTripConfig
from shared.secret import masked_hook
from shared.timefmt import iso_ms, iso_ms_or_none

if TYPE_CHECKING:  # the type only: these rules read no store
    from controller.monitors.store import Monitor

_CONFIG_ATTR = {SMTP: "smtp_config", IMAP_POP: "imap_pop_config", ROUNDTRIP: "roundtrip_config"}
# IMAP mailbox names are sent quoted; these would end the quoted string or the command.
_NOT_IN_FOLDER = frozenset('"\\')
FOLDER_MAX = 200


BodyT = TypeVar("BodyT", bound=msgspec.Struct)


def _integral(value: Any) -> Any:
    """`value` with every integral float (`74.0`) as an int: JSON has one kind of number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


async def strict_body(request: Request[Any, Any, Any], data: BodyT) -> BodyT:
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


def _pick_config(kind: Kind, body: MonitorCreate | MonitorUpdate) -> tuple[str, Any] | None:
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


def _transport_options(cfg: SmtpLegIn | ImapPopConfigIn, out: dict[str, Any], key: str) -> None:
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
) -> str | UnsetType:
    """Seal a new secret; the mask keeps the stored one; null is none, as ""."""
    if value == MASK:
        if is_sealed(stored):
            return stored
        raise bad_request(
            field, f"{field}: {MASK!r} stands for a stored secret, and none is stored"
        )
    if isinstance(value, str) and value:
        return box.seal(value)
    return "" if value is None else value


def _oauth2(
    cfg: OAuth2In | None | UnsetType,
    stored: object,
    box: SecretBox,
    key: str,
    token_hosts: Sequence[str] | None,
) -> dict[str, Any] | None | UnsetType:
    """A login's `oauth2` to store: checked (a 400 naming the field), its secrets sealed, the
    mask keeping a stored one; null (or absent) is none."""
    if cfg is None or isinstance(cfg, UnsetType):
        return cfg
    raw: dict[str, Any] = {
        k: v for k, v in msgspec.to_builtins(cfg).items() if v is not UNSET and v is not None
    }
    kept = stored if isinstance(stored, Mapping) else {}
    sealed: dict[str, str] = {}
    for name in oauth2_grants.SECRET_KEYS:
        value = raw.get(name)
        if value is None:
            continue
        if len(value) > oauth2_grants.SECRET_MAX:
            raise bad_request(
                f"{key}.{name}",
                f"{key}.{name} must be at most {oauth2_grants.SECRET_MAX} characters",
            )
        secret = _secret(value, kept.get(name), box, f"{key}.{name}")
        if isinstance(secret, str) and secret:
            sealed[name] = secret
            raw[name] = "sealed"  # present: checked for being required, not for its text
    try:
        if isinstance(pem := cfg.private_key, str) and pem and pem != MASK:
            assertion.private_key(pem)
        grant = oauth2_grants.checked(raw, token_hosts)
    except oauth2_grants.GrantProblem as exc:
        raise bad_request(f"{key}.{exc.field}", f"{key}.{exc}") from None
    out = oauth2_grants.as_stored(grant)
    for name in oauth2_grants.SECRET_KEYS:
        out.pop(name, None)
    out.update(sealed)
    return out


def _none_is_empty(value: str | None) -> str:
    """A null user name is none, as "": the stored config holds text (a null there made every
    read of a round trip a 500, and the scheduler skip the monitor's rounds)."""
    return "" if value is None else value


def _smtp_config(
    cfg: SmtpLegIn | None,
    stored: dict[str, Any],
    box: SecretBox,
    key: str,
    token_hosts: Sequence[str] | None = (),
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
            auth["user"] = _none_is_empty(cfg.auth.user)
        stored_auth = stored.get("auth") if isinstance(stored.get("auth"), dict) else {}
        sealed = _secret(
            cfg.auth.password, (stored_auth or {}).get("pass"), box, f"{key}.auth.pass"
        )
        if sealed is not UNSET:
            auth["pass"] = sealed
        grant = _oauth2(
            cfg.auth.oauth2,
            (stored_auth or {}).get("oauth2"),
            box,
            f"{key}.auth.oauth2",
            token_hosts,
        )
        if grant is not UNSET:
            auth["oauth2"] = grant
        out["auth"] = auth
    _transport_options(cfg, out, key)
    if isinstance(cfg, SmtpConfigIn) and cfg.relay_check is not UNSET:
        out["relayCheck"] = cfg.relay_check
    return out


def _imap_pop_config(
    cfg: ImapPopConfigIn | None,
    stored: dict[str, Any],
    box: SecretBox,
    key: str,
    token_hosts: Sequence[str] | None = (),
) -> tuple[dict[str, Any], str]:
    if cfg is None:
        return {}, "imap"
    out: dict[str, Any] = {}
    protocol = "imap"
    if cfg.protocol is not UNSET:
        protocol = cfg.protocol.strip().lower()
        if protocol not in IMAP_POP.types:
            raise bad_request(f"{key}.protocol", f"{key}.protocol must be imap or pop3")
        out["protocol"] = protocol
    if cfg.user is not UNSET:
        out["user"] = _none_is_empty(cfg.user)
    sealed = _secret(cfg.password, stored.get("password"), box, f"{key}.password")
    if sealed is not UNSET:
        out["password"] = sealed
    grant = _oauth2(cfg.oauth2, stored.get("oauth2"), box, f"{key}.oauth2", token_hosts)
    if grant is not UNSET:
        out["oauth2"] = grant
    if cfg.tls is not UNSET:
        out["tls"] = cfg.tls
    _transport_options(cfg, out, key)
    return out, protocol


def _folders(values: list[str], field: str) -> list[str]:
    if not values or len(values) > 20:
        raise bad_request(field, f"{field} must list 1 to 20 folders")
    for name in values:
        # ASCII only: IMAP spells other names in modified UTF-7 (RFC 3501 5.1.3), which the
        # agent does not encode.
        printable = name.isascii() and name.isprintable()
        if (
            not name.strip()
            or len(name) > FOLDER_MAX
            or not printable
            or _NOT_IN_FOLDER & set(name)
        ):
            raise bad_request(
                field,
                f"{field}: {name!r} is not a folder name (1-{FOLDER_MAX} printable ASCII"
                " characters, no quote or backslash)",
            )
    return list(dict.fromkeys(values))


def _roundtrip_config(
    cfg: RoundTripConfigIn,
    stored: dict[str, Any],
    box: SecretBox,
    key: str,
    creating: bool,
    token_hosts: Sequence[str] | None = (),
) -> dict[str, Any]:
    """The row values of a round trip's config: `hostname`/`port` (the send leg's server,
    changed only when sent) and `config` (send without its server, to, receive, grading)."""
    if cfg.send is UNSET or cfg.to is UNSET or cfg.receive is UNSET:
        missing = next(n for n in ("send", "to", "receive") if getattr(cfg, n) is UNSET)
        raise bad_request(f"{key}.{missing}", f"{key}.{missing} is required")
    out: dict[str, Any] = {}
    send = cfg.send
    if send.hostname is not UNSET:
        out["hostname"] = validation.hostname(send.hostname, f"{key}.send.hostname")
    elif creating:
        raise bad_request(f"{key}.send.hostname", f"{key}.send.hostname is required")
    if send.port is not UNSET:
        out["port"] = validation.port(send.port, f"{key}.send.port")
    stored_send = stored.get("send") if isinstance(stored.get("send"), dict) else {}
    sent = _smtp_config(send, stored_send or {}, box, f"{key}.send", token_hosts)
    # a blank sender is none (the agent's default), as for every e-mail field: it was stored as
    # null, which no stored config may hold, and every read of the monitor was a 500
    sender = None if send.sender is UNSET else validation.email(send.sender, f"{key}.send.from")
    if sender is not None:
        sent["from"] = sender
    to = validation.email(cfg.to, f"{key}.to")
    if to is None:
        raise bad_request(f"{key}.to", f"{key}.to is required")
    config: dict[str, Any] = {"send": sent, "to": to, "receive": {}}
    config["receive"] = _receive(cfg.receive, stored, box, f"{key}.receive", token_hosts)
    _own_addresses(config, key)
    if cfg.slow_after_seconds is not UNSET:
        config["slowAfterSeconds"] = cfg.slow_after_seconds
    if cfg.spam_is_failure is not UNSET:
        config["spamIsFailure"] = cfg.spam_is_failure
    out["config"] = config
    return out


def _own_addresses(config: dict[str, Any], key: str) -> None:
    """A 400 naming `to` unless it is the mailbox the receive leg reads, or `send.from` unless
    the send leg may use it (controller.roundtrips.rules)."""
    to, receive, send = config["to"], config["receive"], config["send"]
    if problem := roundtrip_rules.recipient_problem(to, receive["user"], receive["hostname"]):
        raise bad_request(f"{key}.to", f"{key}.to {problem}")
    auth = send.get("auth")
    login = auth.get("user") if isinstance(auth, dict) else None
    sender = send.get("from")
    if sender and (problem := roundtrip_rules.sender_problem(sender, login, to)):
        raise bad_request(f"{key}.send.from", f"{key}.send.from {problem}")


def _receive(
    cfg: RoundTripReceiveIn,
    stored: dict[str, Any],
    box: SecretBox,
    key: str,
    token_hosts: Sequence[str] | None = (),
) -> dict[str, Any]:
    stored_receive = stored.get("receive") if isinstance(stored.get("receive"), dict) else {}
    out, protocol = _imap_pop_config(cfg, stored_receive or {}, box, key, token_hosts)
    if cfg.hostname is UNSET:
        raise bad_request(f"{key}.hostname", f"{key}.hostname is required")
    out["hostname"] = validation.hostname(cfg.hostname, f"{key}.hostname")
    if cfg.port is not UNSET:
        out["port"] = validation.port(cfg.port, f"{key}.port")
    for name in ("user", "password"):
        if name == "password" and out.get("oauth2"):
            continue  # an OAuth2 login instead of the password
        if not out.get(name):
            raise bad_request(f"{key}.{name}", f"{key}.{name} is required to read the mailbox")
    folders = ["INBOX"] if cfg.folders is UNSET else _folders(cfg.folders, f"{key}.folders")
    spam = [] if cfg.spam_folders is UNSET else cfg.spam_folders
    if protocol == "pop3" and (folders != ["INBOX"] or spam):
        raise bad_request(
            f"{key}.folders" if folders != ["INBOX"] else f"{key}.spamFolders",
            f"{key}: POP3 reads only the inbox; folders and spamFolders are IMAP's",
        )
    if not_listed := [f for f in spam if f not in folders]:
        raise bad_request(
            f"{key}.spamFolders", f"{key}.spamFolders: {not_listed[0]!r} is not in folders"
        )
    out["folders"], out["spamFolders"] = folders, spam
    return out


def config_values(
    kind: Kind,
    body: MonitorCreate | MonitorUpdate,
    stored: dict[str, Any],
    box: SecretBox,
    *,
    creating: bool = False,
    token_hosts: Sequence[str] | None = (),
) -> dict[str, Any]:
    """`config` (and for IMAP/POP the `type`, for a round trip `hostname`/`port`) to store;
    {} when no config was sent. `token_hosts`: the hosts a custom OAuth2 token endpoint may
    be on (OAUTH2_TOKEN_HOSTS; None: not known here, as in `apply`, whose API decides)."""
    picked = _pick_config(kind, body)
    if picked is None:
        if kind is ROUNDTRIP and creating:
            raise bad_request(kind.config_key, f"{kind.config_key} is required")
        return {}
    key, cfg = picked
    if kind is SMTP:
        return {"config": _smtp_config(cfg, stored, box, key, token_hosts)}
    if kind is ROUNDTRIP:
        return _roundtrip_config(cfg, stored, box, key, creating, token_hosts)
    config, protocol = _imap_pop_config(cfg, stored, box, key, token_hosts)
    return {"config": config, "type": protocol}


def create_values(
    kind: Kind, body: MonitorCreate, box: SecretBox, token_hosts: Sequence[str] | None = ()
) -> dict[str, Any]:
    """The row values of a new monitor (without `customer_id`): fields, defaults, config."""
    values = common_values(body)
    values.update(_secret_env(kind, body))
    values.setdefault("status", "active")
    values.setdefault("check_interval", validation.CHECK_INTERVAL_DEFAULT)
    values.setdefault("timeout_seconds", validation.default_timeout(values["check_interval"]))
    validation.interval_and_timeout(values["check_interval"], values["timeout_seconds"])
    values.update(config_values(kind, body, {}, box, creating=True, token_hosts=token_hosts))
    values.setdefault("config", {})
    values.setdefault("type", kind.types[0])
    return values


def _stored_config(monitor: "Monitor") -> dict[str, Any]:
    """The monitor's config as JSON, every key the API takes spelt out, secrets as stored
    (sealed), with its OAuth2 grants."""
    return monitor_config.stored_config(monitor)


def update_values(
    kind: Kind,
    body: MonitorUpdate,
    monitor: "Monitor",
    box: SecretBox,
    token_hosts: Sequence[str] | None = (),
) -> dict[str, Any]:
    """The columns a PATCH changes on `monitor` (without `customer_id`)."""
    changes = common_values(body)
    changes.update(_secret_env(kind, body))
    validation.interval_and_timeout(
        changes.get("check_interval", monitor.check_interval),
        changes.get("timeout_seconds", monitor.timeout_seconds),
    )
    changes.update(config_values(kind, body, _stored_config(monitor), box, token_hosts=token_hosts))
    return changes


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
    kind: Kind,
    body: MonitorUpdate,
    monitor: "Monitor",
    changes: Mapping[str, Any],
    each: Mapping[str, list[str]],
) -> ApiError:
    """The 400 naming each secret (as this request spells the config) that `changes` move
    without sending it again; `each`: secret path → the fields that moved it
    (`secret_binding.moved_each`)."""
    picked = _pick_config(kind, body)
    key = picked[0] if picked else kind.config_key
    if kind is ROUNDTRIP:
        outside = {"hostname": f"{key}.send.hostname", "port": f"{key}.send.port"}
    else:
        # The password named by where the (possibly new) type keeps it; a grant's by its path.
        password = kinds.of_type(changes.get("type", monitor.type)).secrets[0]
        each = {(password if p in kind.secrets else p): m for p, m in each.items()}
        outside = {"hostname": "hostname", "port": "port", "type": f"{key}.protocol"}
    named = [
        (f"{key}.{path}", [outside.get(m, f"{key}.{m}") for m in moved])
        for path, moved in each.items()
    ]
    return secret_required(*named[0], *named[1:])


def common_values(body: MonitorCreate | MonitorUpdate) -> dict[str, Any]:
    """Columns from the fields both kinds share, normalised; absent fields are left out."""
    out: dict[str, Any] = {}
    if body.name is not UNSET:
        out["name"] = validation.name(body.name)
    # A round trip has no top-level hostname/port: its config carries both servers.
    hostname: str | UnsetType = getattr(body, "hostname", UNSET)
    if not isinstance(hostname, UnsetType):
        out["hostname"] = validation.hostname(hostname)
    port: int | None | UnsetType = getattr(body, "port", UNSET)
    if not isinstance(port, UnsetType):
        out["port"] = validation.port(port)
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
    if body.mail_domain is not UNSET:
        out["mail_domain"] = validation.mail_domain(body.mail_domain)
    # SMTP monitors only: what their mail goes out from, for the blocklists.
    listed: ReputationIn | None | UnsetType = getattr(body, "reputation", UNSET)
    if listed is None:
        out["reputation"] = None
    elif not isinstance(listed, UnsetType):
        out["reputation"] = validation.reputation(
            [] if listed.ips is UNSET else listed.ips,
            [] if listed.domains is UNSET else listed.domains,
        )
    return out


def _secret_env(kind: Kind, body: MonitorCreate | MonitorUpdate) -> dict[str, Any]:
    """`secret_env` as stored: each variable by its secret's path, in the kind's order."""
    if body.secret_env is UNSET:
        return {}
    given = msgspec.to_builtins(body.secret_env) if body.secret_env is not None else None
    return {"secret_env": validation.secret_env(given, kind.all_secrets)}


def sent_fields(body: MonitorUpdate) -> set[str]:
    """Names of the fields present in a PATCH body (for the readonly rule)."""
    return {f for f in body.__struct_fields__ if getattr(body, f) is not UNSET}


def _common(monitor: "Monitor", config: dict[str, Any]) -> dict[str, Any]:
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
    shown["send"] = {"hostname": hostname, "port": port, **shown["send"]}
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
