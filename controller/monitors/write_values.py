"""From a `MonitorWrite` to the columns to store: every rule a monitor write's values obey.

Fields are checked and normalised (`validation`, `tls_options`, the OAuth2 grant's rules, a
round trip's own addresses), secrets sealed (`KEEP` keeps the stored one), defaults filled in
on create. A refusal is `controller.monitors.errors.Invalid` naming the field as the request
spells it (the config by `MonitorWrite.config_field`). The stored config keeps exactly the keys
sent (the API shows SMTP and IMAP/POP configs as sent).

Pure but for sealing: the model in, the columns out (`controller.monitors.writes` stores them).
"""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec
from msgspec import UNSET, UnsetType

from controller.monitors import config as monitor_config
from controller.monitors import kinds, tls_options, validation
from controller.monitors.errors import invalid
from controller.monitors.kinds import IMAP_POP, ROUNDTRIP, SMTP, Kind
from controller.monitors.write_model import (
    KEEP,
    ImapPopLegWrite,
    MonitorWrite,
    OAuth2Write,
    RoundTripReceiveWrite,
    RoundTripWrite,
    SmtpLegWrite,
    SmtpWrite,
)
from controller.oauth2 import assertion
from controller.oauth2 import grants as oauth2_grants
from controller.roundtrips import rules as roundtrip_rules
from controller.secrets.box import SecretBox, is_sealed

if TYPE_CHECKING:  # the type only: these rules read no store
    from controller.monitors.store import Monitor

# A monitor's columns, or a config, as JSON (what the store writes).
Json = dict[str, Any]


def _secret(
    value: str | None | UnsetType, stored: object, box: SecretBox, field: str
) -> str | UnsetType:
    """Seal a new secret; `KEEP` keeps the stored one; null is none, as ""."""
    if value == KEEP:
        if is_sealed(stored):
            return stored
        raise invalid(field, f"{field}: {KEEP!r} stands for a stored secret, and none is stored")
    if isinstance(value, str) and value:
        return box.seal(value)
    return "" if value is None else value


def _oauth2(
    cfg: OAuth2Write | None | UnsetType,
    stored: object,
    box: SecretBox,
    key: str,
    token_hosts: Sequence[str] | None,
) -> Json | None | UnsetType:
    """A login's `oauth2` to store: checked, its secrets sealed, `KEEP` keeping a stored one;
    null (or absent) is none."""
    if cfg is None or isinstance(cfg, UnsetType):
        return cfg
    raw: Json = {
        k: v for k, v in msgspec.to_builtins(cfg).items() if v is not UNSET and v is not None
    }
    kept = stored if isinstance(stored, Mapping) else {}
    sealed: dict[str, str] = {}
    for name in oauth2_grants.SECRET_KEYS:
        value = raw.get(name)
        if value is None:
            continue
        if len(value) > oauth2_grants.SECRET_MAX:
            raise invalid(
                f"{key}.{name}",
                f"{key}.{name} must be at most {oauth2_grants.SECRET_MAX} characters",
            )
        secret = _secret(value, kept.get(name), box, f"{key}.{name}")
        if isinstance(secret, str) and secret:
            sealed[name] = secret
            raw[name] = "sealed"  # present: checked for being required, not for its text
    try:
        if isinstance(pem := cfg.private_key, str) and pem and pem != KEEP:
            assertion.private_key(pem)
        grant = oauth2_grants.checked(raw, token_hosts)
    except oauth2_grants.GrantProblem as exc:
        raise invalid(f"{key}.{exc.field}", f"{key}.{exc}") from None
    out = oauth2_grants.as_stored(grant)
    for name in oauth2_grants.SECRET_KEYS:
        out.pop(name, None)
    out.update(sealed)
    return out


def _none_is_empty(value: str | None) -> str:
    """A null user name is none, as "": the stored config holds text (a null there made every
    read of a round trip a 500, and the scheduler skip the monitor's rounds)."""
    return "" if value is None else value


# The keys of a config (or of a leg) a rule below takes; every other key of the model is an
# option stored as sent (a flag, a number): a new one needs no line here.
_SMTP_RULED: Final = frozenset({"auth", "tlsOptions", "hostname", "port", "from"})
_IMAP_POP_RULED: Final = frozenset(
    {"protocol", "user", "password", "oauth2", "tlsOptions", "hostname", "port"}
    | {"folders", "spamFolders"}
)
_ROUNDTRIP_RULED: Final = frozenset({"send", "to", "receive"})


def _as_sent(cfg: msgspec.Struct, ruled: frozenset[str]) -> Json:
    """The keys of `cfg` no rule takes, as sent (its tag left out)."""
    sent: Json = msgspec.to_builtins(cfg)
    return {k: v for k, v in sent.items() if k not in ruled and k != "kind"}


def _tls_options(cfg: SmtpLegWrite | ImapPopLegWrite, out: Json, key: str) -> None:
    """`tlsOptions`, which both kinds share; a null `ca` or `servername` is the default, so it
    is not stored."""
    opts = cfg.tls_options
    if not isinstance(opts, UnsetType):
        tls: Json = _as_sent(opts, frozenset({"ca", "servername"}))
        if isinstance(opts.ca, str):
            tls["ca"] = tls_options.ca(opts.ca, f"{key}.tlsOptions.ca")
        if isinstance(opts.servername, str):
            field = f"{key}.tlsOptions.servername"
            tls["servername"] = tls_options.servername(opts.servername, field)
        out["tlsOptions"] = tls


def _smtp_config(
    cfg: SmtpLegWrite, stored: Json, box: SecretBox, key: str, token_hosts: Sequence[str] | None
) -> Json:
    out = _as_sent(cfg, _SMTP_RULED)
    if cfg.auth is None:
        out["auth"] = None
    elif not isinstance(cfg.auth, UnsetType):
        auth: Json = {}
        if not isinstance(cfg.auth.user, UnsetType):
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
    _tls_options(cfg, out, key)
    return out


def _imap_pop_config(
    cfg: ImapPopLegWrite, stored: Json, box: SecretBox, key: str, token_hosts: Sequence[str] | None
) -> tuple[Json, str]:
    out = _as_sent(cfg, _IMAP_POP_RULED)
    protocol = "imap"
    if not isinstance(cfg.protocol, UnsetType):
        protocol = validation.protocol(cfg.protocol, f"{key}.protocol")
        out["protocol"] = protocol
    if not isinstance(cfg.user, UnsetType):
        out["user"] = _none_is_empty(cfg.user)
    sealed = _secret(cfg.password, stored.get("password"), box, f"{key}.password")
    if sealed is not UNSET:
        out["password"] = sealed
    grant = _oauth2(cfg.oauth2, stored.get("oauth2"), box, f"{key}.oauth2", token_hosts)
    if grant is not UNSET:
        out["oauth2"] = grant
    _tls_options(cfg, out, key)
    return out, protocol


def _roundtrip_config(
    cfg: RoundTripWrite,
    stored: Json,
    box: SecretBox,
    key: str,
    creating: bool,
    token_hosts: Sequence[str] | None,
) -> Json:
    """The columns of a round trip's config: `hostname`/`port` (the send leg's server, changed
    only when sent) and `config` (send without its server, to, receive, grading)."""
    if (
        isinstance(cfg.send, UnsetType)
        or isinstance(cfg.to, UnsetType)
        or isinstance(cfg.receive, UnsetType)
    ):
        missing = next(n for n in ("send", "to", "receive") if getattr(cfg, n) is UNSET)
        raise invalid(f"{key}.{missing}", f"{key}.{missing} is required")
    out: Json = {}
    send = cfg.send
    if not isinstance(send.hostname, UnsetType):
        out["hostname"] = validation.hostname(send.hostname, f"{key}.send.hostname")
    elif creating:
        raise invalid(f"{key}.send.hostname", f"{key}.send.hostname is required")
    if not isinstance(send.port, UnsetType):
        out["port"] = validation.port(send.port, f"{key}.send.port")
    stored_send = stored.get("send") if isinstance(stored.get("send"), dict) else {}
    sent = _smtp_config(send, stored_send or {}, box, f"{key}.send", token_hosts)
    # a blank sender is none (the agent's default), as for every e-mail field: it was stored as
    # null, which no stored config may hold, and every read of the monitor was a 500
    sender = (
        None
        if isinstance(send.sender, UnsetType)
        else validation.email(send.sender, f"{key}.send.from")
    )
    if sender is not None:
        sent["from"] = sender
    to = validation.email(cfg.to, f"{key}.to")
    if to is None:
        raise invalid(f"{key}.to", f"{key}.to is required")
    config: Json = {"send": sent, "to": to, "receive": {}}
    config["receive"] = _receive(cfg.receive, stored, box, f"{key}.receive", token_hosts)
    _own_addresses(config, key)
    config.update(_as_sent(cfg, _ROUNDTRIP_RULED))
    out["config"] = config
    return out


def _own_addresses(config: Json, key: str) -> None:
    """Refuse `to` unless it is the mailbox the receive leg reads, or `send.from` unless the
    send leg may use it (controller.roundtrips.rules)."""
    to, receive, send = config["to"], config["receive"], config["send"]
    if problem := roundtrip_rules.recipient_problem(to, receive["user"], receive["hostname"]):
        raise invalid(f"{key}.to", f"{key}.to {problem}")
    auth = send.get("auth")
    login = auth.get("user") if isinstance(auth, dict) else None
    sender = send.get("from")
    if sender and (problem := roundtrip_rules.sender_problem(sender, login, to)):
        raise invalid(f"{key}.send.from", f"{key}.send.from {problem}")


def _receive(
    cfg: RoundTripReceiveWrite,
    stored: Json,
    box: SecretBox,
    key: str,
    token_hosts: Sequence[str] | None,
) -> Json:
    stored_receive = stored.get("receive") if isinstance(stored.get("receive"), dict) else {}
    out, protocol = _imap_pop_config(cfg, stored_receive or {}, box, key, token_hosts)
    if isinstance(cfg.hostname, UnsetType):
        raise invalid(f"{key}.hostname", f"{key}.hostname is required")
    out["hostname"] = validation.hostname(cfg.hostname, f"{key}.hostname")
    if not isinstance(cfg.port, UnsetType):
        out["port"] = validation.port(cfg.port, f"{key}.port")
    for name in ("user", "password"):
        if name == "password" and out.get("oauth2"):
            continue  # an OAuth2 login instead of the password
        if not out.get(name):
            raise invalid(f"{key}.{name}", f"{key}.{name} is required to read the mailbox")
    folders = (
        ["INBOX"]
        if isinstance(cfg.folders, UnsetType)
        else validation.folders(cfg.folders, f"{key}.folders")
    )
    spam = [] if isinstance(cfg.spam_folders, UnsetType) else cfg.spam_folders
    if protocol == "pop3" and (folders != ["INBOX"] or spam):
        raise invalid(
            f"{key}.folders" if folders != ["INBOX"] else f"{key}.spamFolders",
            f"{key}: POP3 reads only the inbox; folders and spamFolders are IMAP's",
        )
    if not_listed := [f for f in spam if f not in folders]:
        raise invalid(
            f"{key}.spamFolders", f"{key}.spamFolders: {not_listed[0]!r} is not in folders"
        )
    out["folders"], out["spamFolders"] = folders, spam
    return out


def _config_key(kind: Kind, write: MonitorWrite) -> str:
    return write.config_field or kind.config_key


def config_values(
    write: MonitorWrite,
    stored: Json,
    box: SecretBox,
    *,
    creating: bool = False,
    token_hosts: Sequence[str] | None = (),
) -> Json:
    """`config` (and for IMAP/POP the `type`, for a round trip `hostname`/`port`) to store;
    {} when no config was sent. `token_hosts`: the hosts a custom OAuth2 token endpoint may be
    on (OAUTH2_TOKEN_HOSTS; None: not known here, as in `apply`, whose API decides)."""
    kind = kinds.named(write.kind)
    cfg = write.config
    if isinstance(cfg, UnsetType):
        if kind is ROUNDTRIP and creating:
            raise invalid(kind.config_key, f"{kind.config_key} is required")
        return {}
    key = _config_key(kind, write)
    if kind is SMTP and isinstance(cfg, SmtpWrite):
        return {"config": _smtp_config(cfg, stored, box, key, token_hosts)}
    if kind is ROUNDTRIP and isinstance(cfg, RoundTripWrite):
        return _roundtrip_config(cfg, stored, box, key, creating, token_hosts)
    if kind is IMAP_POP and isinstance(cfg, ImapPopLegWrite):
        config, protocol = _imap_pop_config(cfg, stored, box, key, token_hosts)
        return {"config": config, "type": protocol}
    raise invalid(key, f"{key} is not a config of {kind.label}s")


def common_values(write: MonitorWrite) -> Json:
    """Columns from the fields every kind shares, normalised; absent fields are left out."""
    out: Json = {}
    if not isinstance(write.name, UnsetType):
        out["name"] = validation.name(write.name)
    # A round trip has no top-level hostname/port: its config carries both servers.
    if not isinstance(write.hostname, UnsetType):
        out["hostname"] = validation.hostname(write.hostname)
    if not isinstance(write.port, UnsetType):
        out["port"] = validation.port(write.port)
    if not isinstance(write.status, UnsetType):
        out["status"] = validation.status(write.status)
    if write.check_interval is not UNSET:
        out["check_interval"] = write.check_interval
    if write.timeout_seconds is not UNSET:
        out["timeout_seconds"] = write.timeout_seconds
    if not isinstance(write.allowed_country_codes, UnsetType):
        out["allowed_country_codes"] = validation.country_codes(write.allowed_country_codes)
    if not isinstance(write.notification_email, UnsetType):
        out["notification_email"] = validation.email(write.notification_email)
    if not isinstance(write.notification_phone_number, UnsetType):
        out["notification_phone_number"] = validation.phone(write.notification_phone_number)
    if not isinstance(write.mail_domain, UnsetType):
        out["mail_domain"] = validation.mail_domain(write.mail_domain)
    # SMTP monitors only: what their mail goes out from, for the blocklists.
    listed = write.reputation
    if listed is None:
        out["reputation"] = None
    elif not isinstance(listed, UnsetType):
        out["reputation"] = validation.reputation(
            [] if isinstance(listed.ips, UnsetType) else listed.ips,
            [] if isinstance(listed.domains, UnsetType) else listed.domains,
        )
    if not isinstance(write.secret_env, UnsetType):
        paths = kinds.named(write.kind).all_secrets
        out["secret_env"] = validation.secret_env(write.secret_env, paths)
    return out


def create_values(
    write: MonitorWrite, box: SecretBox, token_hosts: Sequence[str] | None = ()
) -> Json:
    """The columns of a new monitor (without `customer_id`): fields, defaults, config."""
    kind = kinds.named(write.kind)
    values = common_values(write)
    values.setdefault("status", "active")
    values.setdefault("check_interval", validation.CHECK_INTERVAL_DEFAULT)
    values.setdefault("timeout_seconds", min(validation.TIMEOUT_DEFAULT, values["check_interval"]))
    validation.interval_and_timeout(values["check_interval"], values["timeout_seconds"])
    values.update(config_values(write, {}, box, creating=True, token_hosts=token_hosts))
    values.setdefault("config", {})
    values.setdefault("type", kind.types[0])
    for column, field in (("name", "name"), ("hostname", "hostname")):
        if column not in values:
            raise invalid(field, f"{field} is required")
    return values


def update_values(
    write: MonitorWrite,
    monitor: "Monitor",
    box: SecretBox,
    token_hosts: Sequence[str] | None = (),
) -> Json:
    """The columns an update changes on `monitor` (without `customer_id`)."""
    changes = common_values(write)
    validation.interval_and_timeout(
        changes.get("check_interval", monitor.check_interval),
        changes.get("timeout_seconds", monitor.timeout_seconds),
    )
    stored = monitor_config.stored_config(monitor)
    changes.update(config_values(write, stored, box, token_hosts=token_hosts))
    return changes
