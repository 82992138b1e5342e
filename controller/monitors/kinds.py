"""The monitor kinds: the one list every surface iterates.

A kind is what the API, the console and monitors-as-code offer as one resource (`imap-pop` covers
the stored types `imap` and `pop3`). Each surface keys what it does per kind on these objects and
builds its routes, pages, forms and file formats by iterating `KINDS`; a test over the registry
(tests/api/test_kind_surfaces.py) fails for a kind some surface lacks. Where a kind's credentials
sit in its stored config is declared here too: secret binding, the SQL trigger that ends a login
back-off on new credentials, and monitors-as-code read them.

A secret's path here is a field typed `Secret` in the kind's config Struct (shared.secret; a
test holds the two together): every surface finds a kind's secrets by asking the kind —
masking in responses (`masked`), binding to where they go (monitors.secret_binding), apply and
export (`secret_steps`), sealing and redaction (by the type).

Pure: imports only the wire types.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, get_args

from shared.messages import (
    HeartbeatConfig,
    ImapPopConfig,
    JobConfig,
    MonitorType,
    RoundTripConfig,
    SmtpConfig,
    StoredType,
)
from shared.secret import SECRET_MASK

# An OAuth2 grant's secrets (controller.monitors.oauth2_grants.SECRET_KEYS).
GRANT_SECRET_KEYS: Final = ("clientSecret", "refreshToken", "privateKey")

# What a secret is bound to (controller.monitors.secret_binding), besides its server's protocol,
# host and port: its leg's config keys, with the value the agent uses when a key is absent.
SMTP_BINDING: Final[Mapping[str, object]] = {
    "secure": False,
    "ignoreTls": False,
    "requireTls": False,
    "tlsOptions.rejectUnauthorized": True,
    "allowPlaintextAuth": False,
    "auth.user": "",
}
IMAP_POP_BINDING: Final[Mapping[str, object]] = {
    "tls": False,
    "tlsOptions.rejectUnauthorized": True,
    "allowPlaintextAuth": False,
    "user": "",
}


@dataclass(frozen=True)
class Login:
    """One login a check of the kind makes: the stored config's paths (dotted, as the API
    spells the keys) of its user name and of its secret (stored sealed); `bound`: the keys of
    its leg the secret is bound to (with their defaults); `also`: config paths outside its leg
    that bind it too (a round trip's send password mails only its `to`, from its `send.from`)."""

    user: str
    secret: str
    bound: Mapping[str, object] = field(default_factory=dict, hash=False)
    also: tuple[str, ...] = ()

    @property
    def token(self) -> str:
        """Where a job carries the OAuth2 access token of this login, beside its secret: issued
        for the job only, never stored by the API nor shown by it."""
        return _beside(self.secret, "accessToken")

    @property
    def oauth2(self) -> str:
        """Where the stored config holds this login's OAuth2 grant
        (controller.monitors.oauth2_grants), beside its secret; the API takes and shows it (its
        secrets write-only), a job never carries it."""
        return _beside(self.secret, "oauth2")

    @property
    def grant_secrets(self) -> tuple[str, ...]:
        """The paths of the grant's long-lived secrets (stored sealed, shown masked, bound
        like the password)."""
        return tuple(f"{self.oauth2}.{key}" for key in GRANT_SECRET_KEYS)

    @property
    def mechanism(self) -> str:
        """Where a job names this login's SASL mechanism ("" for the password), beside its
        secret; job-only like the token."""
        return _beside(self.secret, "mechanism")


def _beside(path: str, key: str) -> str:
    leg, _, _ = path.rpartition(".")
    return f"{leg}.{key}" if leg else key


@dataclass(frozen=True, eq=False)
class Kind:
    """`name`: the API's name of the kind (`/api/{name}-monitors`); `types`: the stored types it
    covers, the first being a new monitor's default, each with its label and what its port is
    when none is given (`port_hints`, as `shared.messages.default_port` decides); `config`: the wire
    Struct its stored config is read as; `logins`: where its credentials sit, a round trip's
    send leg first."""

    name: str
    label: str
    config_key: str
    types: tuple[StoredType, ...]
    type_labels: tuple[str, ...]
    port_hints: tuple[str, ...]
    config: type[JobConfig]
    logins: tuple[Login, ...]
    hostname: bool = True  # its own `hostname`/`port` fields (a round trip's are in its config)
    # Config paths its Struct has that the API neither takes nor shows: another kind's that the
    # kind does not use (a round trip's send leg is an SMTP config, without the SMTP monitor's
    # relay test).
    unused: tuple[str, ...] = ()

    @property
    def api_path(self) -> str:
        """Its resource in the HTTP API, which lists and creates (one monitor: under it)."""
        return f"/api/{self.name}-monitors"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(login.secret for login in self.logins)

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(login.token for login in self.logins)

    @property
    def job_only(self) -> tuple[str, ...]:
        """Config paths a job carries that the API neither takes nor shows (OAuth2 logins,
        and what the kind does not use)."""
        logins = tuple(p for login in self.logins for p in (login.mechanism, login.token))
        return logins + self.unused

    @property
    def credentials(self) -> tuple[str, ...]:
        """Every config path that says as whom the kind logs in: users, then secrets."""
        return tuple(login.user for login in self.logins) + self.secrets

    def login_of(self, secret: str) -> Login:
        """The login whose secret sits at `secret`; KeyError for none."""
        for login in self.logins:
            if login.secret == secret:
                return login
        raise KeyError(secret)

    @property
    def secret_steps(self) -> tuple[tuple[str, ...], ...]:
        """The secrets' paths as key steps (`("send", "auth", "pass")`)."""
        return tuple(tuple(path.split(".")) for path in self.secrets)

    @property
    def grant_secrets(self) -> tuple[str, ...]:
        """Every path of an OAuth2 grant's secret (`Login.grant_secrets`)."""
        return tuple(path for login in self.logins for path in login.grant_secrets)

    @property
    def all_secrets(self) -> tuple[str, ...]:
        """Every secret's config path (dotted), passwords then grants' secrets."""
        return self.secrets + self.grant_secrets

    @property
    def all_secret_steps(self) -> tuple[tuple[str, ...], ...]:
        """Every secret's path as key steps, passwords then grants' secrets: what a monitors
        file reads from the environment and never holds."""
        return self.secret_steps + tuple(tuple(p.split(".")) for p in self.grant_secrets)

    def drop_job_only(self, config: dict[str, object]) -> None:
        """Remove the `job_only` keys from a config as JSON (in place)."""
        for path in self.job_only:
            *legs, key = path.split(".")
            holder: object = config
            for leg in legs:
                holder = holder.get(leg) if isinstance(holder, dict) else None
            if isinstance(holder, dict):
                holder.pop(key, None)

    def masked(self, config: Mapping[str, object]) -> dict[str, object]:
        """A config as JSON (as stored, or as shown) with each of its secrets (passwords and
        OAuth2 grants' secrets) replaced by the mask, as responses show it; an empty or absent
        secret stays as it is."""
        out = dict(config)
        for path in (*self.secrets, *self.grant_secrets):
            _mask_at(out, tuple(path.split(".")))
        return out


def _mask_at(holder: dict[str, object], steps: tuple[str, ...]) -> None:
    """Mask the secret at `steps` in `holder`, copying each mapping on the way (the caller's
    are left as they were)."""
    head, *rest = steps
    value = holder.get(head)
    if rest:
        if isinstance(value, Mapping):
            holder[head] = inner = dict(value)
            _mask_at(inner, tuple(rest))
    elif isinstance(value, str) and value:
        holder[head] = SECRET_MASK


SMTP: Final = Kind(
    name="smtp",
    label="SMTP Monitor",
    config_key="smtpConfig",
    types=("smtp",),
    type_labels=("SMTP",),
    port_hints=("465 with implicit TLS, else 25",),
    config=SmtpConfig,
    logins=(Login("auth.user", "auth.pass", SMTP_BINDING),),
)
IMAP_POP: Final = Kind(
    name="imap-pop",
    label="IMAP/POP Monitor",
    config_key="imapPopConfig",
    types=("imap", "pop3"),
    type_labels=("IMAP", "POP3"),
    port_hints=("993 with TLS, else 143", "995 with TLS, else 110"),
    config=ImapPopConfig,
    logins=(Login("user", "password", IMAP_POP_BINDING),),
)
ROUNDTRIP: Final = Kind(
    name="roundtrip",
    label="Round-trip Monitor",
    config_key="roundtripConfig",
    types=("roundtrip",),
    type_labels=("Round-trip",),
    port_hints=("465 with implicit TLS, else 25",),
    config=RoundTripConfig,
    logins=(
        Login("send.auth.user", "send.auth.pass", SMTP_BINDING, also=("to", "send.from")),
        Login("receive.user", "receive.password", IMAP_POP_BINDING),
    ),
    hostname=False,
    unused=("send.relayCheck",),
)

# A heartbeat monitor runs no checks: the agents' receivers take its mail and the controller
# judges it (controller.alerting.heartbeats). It shares the API's list, get and delete, the
# console's page and form and monitors-as-code with the checked kinds; it has no rounds, so no
# results, posture or round-trip surfaces.
HEARTBEAT: Final = Kind(
    name="heartbeat",
    label="Heartbeat Monitor",
    config_key="heartbeatConfig",
    types=("heartbeat",),
    type_labels=("Heartbeat",),
    port_hints=("none: it takes mail at its own address",),
    config=HeartbeatConfig,
    logins=(),
    hostname=False,
)

# The stored types whose checks read a mailbox: a heartbeat may name one as its mailbox
# (`mailboxMonitorId`, controller/sidechecks/heartbeat_mail).
MAILBOX_TYPES: Final[tuple[StoredType, ...]] = (*IMAP_POP.types, *ROUNDTRIP.types)

# The checked kinds: scheduled as rounds that agents run.
KINDS: Final[tuple[Kind, ...]] = (SMTP, IMAP_POP, ROUNDTRIP)
ALL_TYPES: Final[tuple[MonitorType, ...]] = get_args(MonitorType)  # the checked kinds' types
# Every kind a monitor may be stored as: the checked ones and heartbeat monitors.
STORED_KINDS: Final[tuple[Kind, ...]] = (*KINDS, HEARTBEAT)
# Every stored type a maintenance window or a channel may name.
STORED_TYPES: Final[tuple[StoredType, ...]] = tuple(t for k in STORED_KINDS for t in k.types)
TYPE_LABELS: Final[dict[str, str]] = {
    t: label for k in STORED_KINDS for t, label in zip(k.types, k.type_labels, strict=True)
}
PORT_HINTS: Final[dict[str, str]] = {
    t: hint for k in STORED_KINDS for t, hint in zip(k.types, k.port_hints, strict=True)
}
_BY_TYPE: Final[dict[str, Kind]] = {t: k for k in STORED_KINDS for t in k.types}
_BY_NAME: Final[dict[str, Kind]] = {k.name: k for k in STORED_KINDS}


def of_type(monitor_type: str) -> Kind:
    """The kind of a stored type; KeyError for none."""
    return _BY_TYPE[monitor_type]


def named(name: str) -> Kind:
    """The kind the API calls `name` (`/api/{name}-monitors`); KeyError for none."""
    return _BY_NAME[name]
