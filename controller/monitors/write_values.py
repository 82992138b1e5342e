"""From a write (`controller.monitors.write_model`) to the columns to store: every rule a
monitor write's values obey.

Fields are checked and normalised (`validation`, `tls_options`, the OAuth2 grant's rules, a
round trip's own addresses), secrets sealed (`KEEP` keeps the stored one), defaults filled in
on create. A common field sets the column of its name (`model.COMMON_COLUMNS`), through its
rule in `_RULES` when it has one, else as sent. A refusal is
`controller.monitors.errors.Invalid` naming the field as the request spells it (the config as
it was sent: the kind's key or its alias `config`). The stored config keeps exactly the keys
sent (the API shows SMTP and IMAP/POP configs as sent).

Pure but for sealing: the write in, the columns out (`controller.monitors.writes` stores them).
"""

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from controller.monitors import config as monitor_config
from controller.monitors import (
    mailbox_apis,
    oauth2_grants,
    roundtrip_addresses,
    tls_options,
    validation,
)
from controller.monitors.errors import invalid
from controller.monitors.kinds import IMAP_POP, ROUNDTRIP, SMTP
from controller.monitors.model import COMMON_COLUMNS
from controller.monitors.write_model import (
    KEEP,
    ImapPopConfigIn,
    MonitorCreate,
    MonitorWrite,
    OAuth2In,
    ReputationIn,
    RoundTripConfigIn,
    RoundTripReceiveIn,
    RoundTripSendIn,
    SmtpAuthIn,
    SmtpConfigIn,
    SmtpLegIn,
    TlsOptionsIn,
    config_sent,
)
from controller.secrets.box import SecretBox, is_sealed
from shared.guards import BrokenInvariant

if TYPE_CHECKING:  # the type only: these rules read no store
    from controller.monitors.store import Monitor

# A monitor's columns by name, or a stored config, as JSON (what the store writes).
Json = dict[str, Any]
SmtpLegT = TypeVar("SmtpLegT", bound=SmtpLegIn)
T = TypeVar("T")
ImapPopLegT = TypeVar("ImapPopLegT", bound=ImapPopConfigIn)


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
    cfg: OAuth2In | None | UnsetType,
    stored: object,
    box: SecretBox,
    key: str,
    token_hosts: Sequence[str] | None,
) -> OAuth2In | None | UnsetType:
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
            oauth2_grants.private_key(pem)
        grant = oauth2_grants.checked(raw, token_hosts)
    except oauth2_grants.GrantProblem as exc:
        raise invalid(f"{key}.{exc.field}", f"{key}.{exc}") from None
    out = oauth2_grants.as_stored(grant)
    for name in oauth2_grants.SECRET_KEYS:
        out.pop(name, None)
    return msgspec.convert({**out, **sealed}, OAuth2In)


def _none_is_empty(value: str | None | UnsetType) -> str | UnsetType:
    """A null user name is none, as "": the stored config holds text (a null there made every
    read of a round trip a 500, and the scheduler skip the monitor's rounds)."""
    return "" if value is None else value


def _tls_options(opts: TlsOptionsIn | UnsetType, key: str) -> TlsOptionsIn | UnsetType:
    """`tlsOptions`, which both kinds share; a null `ca` or `servername` is the default, so it
    is not stored."""
    if isinstance(opts, UnsetType):
        return opts
    ca, servername = opts.ca, opts.servername
    return msgspec.structs.replace(
        opts,
        ca=tls_options.ca(ca, f"{key}.tlsOptions.ca") if isinstance(ca, str) else UNSET,
        servername=(
            tls_options.servername(servername, f"{key}.tlsOptions.servername")
            if isinstance(servername, str)
            else UNSET
        ),
    )


# Each function below returns the config (or leg) as it is stored: the keys a rule takes
# checked and normalised, secrets sealed, every other key (an option: a flag, a number) as
# sent, so a new option needs no line here.


def _smtp_config(
    cfg: SmtpLegT, stored: Json, box: SecretBox, key: str, token_hosts: Sequence[str] | None
) -> SmtpLegT:
    auth = cfg.auth
    if isinstance(auth, SmtpAuthIn):
        stored_auth = stored.get("auth") if isinstance(stored.get("auth"), dict) else {}
        auth = SmtpAuthIn(
            user=_none_is_empty(auth.user),
            password=_secret(
                auth.password, (stored_auth or {}).get("pass"), box, f"{key}.auth.pass"
            ),
            oauth2=_oauth2(
                auth.oauth2,
                (stored_auth or {}).get("oauth2"),
                box,
                f"{key}.auth.oauth2",
                token_hosts,
            ),
        )
    return msgspec.structs.replace(
        cfg,
        auth=auth,
        tls_options=_tls_options(cfg.tls_options, key),
        # nodemailer's spellings stand for the keys when those are not sent, stored as them
        ignore_tls=cfg.ignore_tls if cfg.ignore_tls is not UNSET else cfg.ignore_tls_nodemailer,
        require_tls=(
            cfg.require_tls if cfg.require_tls is not UNSET else cfg.require_tls_nodemailer
        ),
        ignore_tls_nodemailer=UNSET,
        require_tls_nodemailer=UNSET,
    )


def _imap_pop_config(
    cfg: ImapPopLegT, stored: Json, box: SecretBox, key: str, token_hosts: Sequence[str] | None
) -> ImapPopLegT:
    protocol = cfg.protocol
    if not isinstance(protocol, UnsetType):
        protocol = validation.protocol(protocol, f"{key}.protocol")
    user = _none_is_empty(cfg.user)
    password = _secret(cfg.password, stored.get("password"), box, f"{key}.password")
    grant = _oauth2(cfg.oauth2, stored.get("oauth2"), box, f"{key}.oauth2", token_hosts)
    return msgspec.structs.replace(
        cfg,
        protocol=protocol,
        user=user,
        password=password,
        oauth2=grant,
        tls_options=_tls_options(cfg.tls_options, key),
    )


def _protocol(cfg: ImapPopConfigIn) -> str:
    """The protocol of an IMAP/POP login as stored (imap when none is given)."""
    return "imap" if isinstance(cfg.protocol, UnsetType) else cfg.protocol


def _roundtrip_config(
    cfg: RoundTripConfigIn,
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
    if isinstance(send.auth, SmtpAuthIn) and isinstance(send.api, str):
        scoped = _api_scope(send.auth.oauth2, send.api)
        send = msgspec.structs.replace(send, auth=msgspec.structs.replace(send.auth, oauth2=scoped))
    sent = _send_api(_smtp_config(send, stored_send or {}, box, f"{key}.send", token_hosts), key)
    # a blank sender is none (the agent's default), as for every e-mail field: it was stored as
    # null, which no stored config may hold, and every read of the monitor was a 500
    sender = (
        None
        if isinstance(send.sender, UnsetType)
        else validation.email(send.sender, f"{key}.send.from")
    )
    # The send leg's server is the monitor's hostname and port, not its config's.
    sent = msgspec.structs.replace(
        sent, hostname=UNSET, port=UNSET, sender=UNSET if sender is None else sender
    )
    to = validation.email(cfg.to, f"{key}.to")
    if to is None:
        raise invalid(f"{key}.to", f"{key}.to is required")
    receive = _receive(cfg.receive, stored, box, f"{key}.receive", token_hosts)
    _own_addresses(to, sent, receive, key)
    config = msgspec.structs.replace(cfg, send=sent, to=to, receive=receive)
    out["config"] = _json(config)
    return out


def _leg_rule(key: str, rule: Callable[[], T]) -> T:
    """A mailbox API's rule of a leg (`mailbox_apis`), its refusal naming the field under
    `key`."""
    try:
        return rule()
    except mailbox_apis.LegProblem as exc:
        raise invalid(f"{key}.{exc.field}", f"{key}.{exc.field}: {exc}") from None


def _api_grant(
    grant: OAuth2In | None | UnsetType,
    leg_api: str,
    password: object,
    key: str,
    at: str,
    check: bool = False,
) -> OAuth2In | None | UnsetType:
    """An API leg's (`check`: a mailbox check's) grant with its API's scope
    (`mailbox_apis.grant_scopes`)."""
    held = grant if isinstance(grant, OAuth2In) else None
    kind = held.grant if held is not None and isinstance(held.grant, str) else None
    listed = held.scopes if held is not None and isinstance(held.scopes, list) else []
    scopes = _leg_rule(
        key,
        lambda: mailbox_apis.grant_scopes(leg_api, kind, listed, bool(password), at, check),
    )
    if scopes is None or held is None:
        return grant
    return msgspec.structs.replace(held, scopes=scopes)


def _api_scope(
    grant: OAuth2In | None | UnsetType, leg_api: str, check: bool = False
) -> OAuth2In | None | UnsetType:
    """A grant sent without scopes for an API leg asks for its API's scope: the grant's own
    rules then see it as set."""
    wanted = mailbox_apis.scope(leg_api, check)
    if not wanted or not isinstance(grant, OAuth2In) or grant.scopes:
        return grant
    return msgspec.structs.replace(grant, scopes=wanted)


def _send_api(send: RoundTripSendIn, key: str) -> RoundTripSendIn:
    """The send leg's `api` normalised, and an API leg's login as its API takes it."""
    if isinstance(send.api, UnsetType):
        return send
    leg_api = _leg_rule(f"{key}.send", lambda: mailbox_apis.api(str(send.api)))
    auth = send.auth if isinstance(send.auth, SmtpAuthIn) else None
    if leg_api:
        oauth2 = auth.oauth2 if auth is not None else None
        password = auth.password if auth is not None else None
        grant = _api_grant(oauth2, leg_api, password, f"{key}.send", "auth.oauth2")
        if auth is not None:
            auth = msgspec.structs.replace(auth, oauth2=grant)
    return msgspec.structs.replace(send, api=leg_api, auth=send.auth if auth is None else auth)


def _own_addresses(to: str, send: RoundTripSendIn, receive: RoundTripReceiveIn, key: str) -> None:
    """Refuse `to` unless it is the mailbox the receive leg reads, or `send.from` unless the
    send leg may use it (controller.roundtrips.rules)."""
    if not (isinstance(receive.user, str) and isinstance(receive.hostname, str)):
        raise BrokenInvariant(
            "write_values._own_addresses: a mailbox leg's user and hostname are set before its"
            " addresses are checked"
        )
    if problem := roundtrip_addresses.recipient_problem(to, receive.user, receive.hostname):
        raise invalid(f"{key}.to", f"{key}.to {problem}")
    auth = send.auth
    login = auth.user if isinstance(auth, SmtpAuthIn) and isinstance(auth.user, str) else None
    sender = send.sender
    if sender and (problem := roundtrip_addresses.sender_problem(sender, login, to)):
        raise invalid(f"{key}.send.from", f"{key}.send.from {problem}")


def _receive(
    cfg: RoundTripReceiveIn,
    stored: Json,
    box: SecretBox,
    key: str,
    token_hosts: Sequence[str] | None,
) -> RoundTripReceiveIn:
    stored_receive = stored.get("receive") if isinstance(stored.get("receive"), dict) else {}
    if isinstance(cfg.api, str):
        cfg = msgspec.structs.replace(cfg, oauth2=_api_scope(cfg.oauth2, cfg.api))
    out = _imap_pop_config(cfg, stored_receive or {}, box, key, token_hosts)
    if isinstance(cfg.hostname, UnsetType):
        raise invalid(f"{key}.hostname", f"{key}.hostname is required")
    hostname = validation.hostname(cfg.hostname, f"{key}.hostname")
    port = cfg.port if isinstance(cfg.port, UnsetType) else validation.port(cfg.port, f"{key}.port")
    if not out.user:
        raise invalid(f"{key}.user", f"{key}.user is required to read the mailbox")
    leg_api = (
        ""
        if isinstance(cfg.api, UnsetType)
        else _leg_rule(key, lambda: mailbox_apis.api(str(cfg.api)))
    )
    cleanup: str = "" if isinstance(cfg.cleanup, UnsetType) else cfg.cleanup
    cleanup = _leg_rule(key, lambda: mailbox_apis.receive_leg(leg_api, _protocol(out), cleanup))
    if leg_api:
        out = msgspec.structs.replace(
            out, oauth2=_api_grant(out.oauth2, leg_api, out.password, key, "oauth2")
        )
    if not isinstance(cfg.api, UnsetType):
        out = msgspec.structs.replace(out, api=leg_api)
    if not isinstance(cfg.cleanup, UnsetType):
        out = msgspec.structs.replace(out, cleanup=cleanup)
    # An OAuth2 login instead of the password.
    if not out.password and not out.oauth2:
        raise invalid(f"{key}.password", f"{key}.password is required to read the mailbox")
    folders = (
        ["INBOX"]
        if isinstance(cfg.folders, UnsetType)
        else validation.folders(cfg.folders, f"{key}.folders")
    )
    spam = [] if isinstance(cfg.spam_folders, UnsetType) else cfg.spam_folders
    if _protocol(out) == "pop3" and (folders != ["INBOX"] or spam):
        raise invalid(
            f"{key}.folders" if folders != ["INBOX"] else f"{key}.spamFolders",
            f"{key}: POP3 reads only the inbox; folders and spamFolders are IMAP's",
        )
    if not_listed := [f for f in spam if f not in folders]:
        raise invalid(
            f"{key}.spamFolders", f"{key}.spamFolders: {not_listed[0]!r} is not in folders"
        )
    return msgspec.structs.replace(
        out, hostname=hostname, port=port, folders=folders, spam_folders=spam
    )


def _json(config: msgspec.Struct) -> Json:
    """A config (or leg) as the stored JSON: the keys set."""
    out: Json = msgspec.to_builtins(config)
    return out


def config_values(
    write: MonitorWrite,
    stored: Json,
    box: SecretBox,
    *,
    creating: bool = False,
    token_hosts: Sequence[str] | None = (),
) -> Json:
    """`config` (and for IMAP/POP the `type`, for a round trip `hostname`/`port`) to store;
    none when no config was sent. `stored`: the config stored (JSON), whose secrets `KEEP`
    keeps. `token_hosts`: the hosts a custom OAuth2 token endpoint may be on
    (OAUTH2_TOKEN_HOSTS; None: not known here, as in `apply`, whose API decides)."""
    kind = write.KIND
    sent = config_sent(write)
    if sent is None:
        if kind is ROUNDTRIP and creating:
            raise invalid(kind.config_key, f"{kind.config_key} is required")
        return {}
    key, cfg = sent
    if kind is SMTP and isinstance(cfg, SmtpConfigIn):
        return {"config": _json(_smtp_config(cfg, stored, box, key, token_hosts))}
    if kind is ROUNDTRIP and isinstance(cfg, RoundTripConfigIn):
        return _roundtrip_config(cfg, stored, box, key, creating, token_hosts)
    if not (kind is IMAP_POP and isinstance(cfg, ImapPopConfigIn)):
        raise BrokenInvariant(
            f"write_values.config_values: only an IMAP/POP3 config is left here, not {kind}"
        )
    config = _mailbox_check(cfg, stored, box, key, token_hosts)
    out: Json = {"config": _json(config), "type": _protocol(config)}
    hostname = getattr(write, "hostname", UNSET)
    if creating and isinstance(config.api, str) and config.api and hostname is UNSET:
        out["hostname"] = mailbox_apis.HOSTS[config.api]
    return out


def _mailbox_check(
    cfg: ImapPopConfigIn, stored: Json, box: SecretBox, key: str, token_hosts: Sequence[str] | None
) -> ImapPopConfigIn:
    """An IMAP/POP3 monitor's config, its mailbox read over an API (`api`) when it says so:
    then IMAP only, and logged in with the API's grant (mailbox_apis)."""
    if isinstance(cfg.api, str):
        cfg = msgspec.structs.replace(cfg, oauth2=_api_scope(cfg.oauth2, cfg.api, check=True))
    out = _imap_pop_config(cfg, stored, box, key, token_hosts)
    if isinstance(cfg.api, UnsetType):
        return out
    leg_api = _leg_rule(key, lambda: mailbox_apis.api(str(cfg.api)))
    _leg_rule(key, lambda: mailbox_apis.receive_leg(leg_api, _protocol(out), ""))
    if leg_api:
        grant = _api_grant(out.oauth2, leg_api, out.password, key, "oauth2", check=True)
        out = msgspec.structs.replace(out, oauth2=grant)
        if not out.user:
            raise invalid(f"{key}.user", f"{key}.user is the mailbox an API check reads")
    return msgspec.structs.replace(out, api=leg_api)


def _reputation(listed: ReputationIn | None) -> dict[str, list[str]] | None:
    if listed is None:
        return None
    return validation.reputation(
        [] if isinstance(listed.ips, UnsetType) else listed.ips,
        [] if isinstance(listed.domains, UnsetType) else listed.domains,
    )


# The rule of each common field that has one beyond its type (normalising, refusing naming
# the field); every other common field is stored as sent.
_RULES: Final[Mapping[str, Callable[..., object]]] = {
    "name": validation.name,
    "hostname": validation.hostname,
    "port": validation.port,
    "status": validation.status,
    "allowed_country_codes": validation.country_codes,
    "notification_email": validation.email,
    "notification_phone_number": validation.phone,
    "mail_domain": validation.mail_domain,
    "depends_on": validation.depends_on,
    "dkim_selectors": validation.dkim_selectors,
    "reputation": _reputation,
}


def common_values(write: MonitorWrite) -> Json:
    """Columns from the fields every kind shares (`COMMON_COLUMNS`: each the write's field of
    its name), normalised, checked in that order; absent fields are left out. A round trip has
    no top-level hostname/port (its config holds both servers); only an SMTP monitor lists
    outbound names (`reputation`) for the blocklists."""
    out: Json = {}
    for column in COMMON_COLUMNS:
        value = getattr(write, column, UNSET)
        if value is UNSET:
            continue
        if column == "secret_env":
            env = None if value is None else msgspec.to_builtins(value)
            out[column] = validation.secret_env(env, write.KIND.all_secrets)
        else:
            rule = _RULES.get(column)
            out[column] = value if rule is None else rule(value)
    return out


def create_values(
    write: MonitorCreate, box: SecretBox, token_hosts: Sequence[str] | None = ()
) -> Json:
    """The columns of a new monitor (all but `customer_id`): fields, defaults, config."""
    kind = write.KIND
    config_sent(write)  # two different configs are refused before any field
    values = common_values(write)
    values.setdefault("status", "active")
    interval = values.setdefault("check_interval", validation.CHECK_INTERVAL_DEFAULT)
    timeout = values.setdefault("timeout_seconds", validation.default_timeout(interval))
    validation.interval_and_timeout(interval, timeout)
    values |= config_values(write, {}, box, creating=True, token_hosts=token_hosts)
    values.setdefault("config", {})
    values.setdefault("type", kind.types[0])
    for field in ("name", "hostname"):
        if field not in values:
            raise invalid(field, f"{field} is required")
    return values


def update_values(
    write: MonitorWrite,
    monitor: "Monitor",
    box: SecretBox,
    token_hosts: Sequence[str] | None = (),
) -> Json:
    """The columns an update changes on `monitor` (without `customer_id`)."""
    config_sent(write)  # two different configs are refused before any field
    changes = common_values(write)
    validation.interval_and_timeout(
        changes.get("check_interval", monitor.check_interval),
        changes.get("timeout_seconds", monitor.timeout_seconds),
    )
    stored = monitor_config.stored_config(monitor)
    return changes | config_values(write, stored, box, token_hosts=token_hosts)
