"""The one write model of a monitor: the API's request schema (seeds 000-003), typed.

A create or an update is the body of its kind's resource (`SmtpMonitorCreate`, ...): the native
API decodes it, the console's forms are generated from it and post it, AlertSite's bodies
(`/api/v3`) are translated into it and monitors-as-code files are spelt as it. The write path
(`controller.monitors.writes`) takes only these; `controller.monitors.write_values` checks them
(`controller.monitors.errors.Invalid`, naming the field as the request spells it) and turns
them into the columns to store.

Every request Struct forbids unknown fields, so a typo is a 400 naming it; every optional field
defaults to UNSET, so a PATCH tells "absent" (kept) from "null" (none) and a stored config
keeps exactly the keys sent. A common field sets the column of its name
(`controller.monitors.model.COMMON_COLUMNS`). A secret is its new text, `KEEP` (the stored
one, as the API's mask says) or null (none).

Adding a field: docs/architecture.md, "Adding a field to a monitor kind".
"""

from typing import Annotated, ClassVar, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType, field

from controller.monitors.errors import invalid
from controller.monitors.kinds import IMAP_POP, ROUNDTRIP, SMTP, Kind
from controller.monitors.oauth2_grants import GrantType, Mechanism, Provider
from shared.secret import SECRET_MASK
from shared.sidechecks.readiness import LISTED_MAX, SELECTOR_MAX

KEEP: Final = SECRET_MASK  # a secret's value that keeps the stored one


class _In(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """Base of request Structs: camelCase keys, unknown keys rejected."""


PlaintextOptIn = Annotated[
    bool,
    Meta(
        description="default false: credentials are sent only over TLS, and a server that "
        "cannot upgrade is `down` with `tls_required`; true (lab servers) allows them in clear"
    ),
]


RelayOptIn = Annotated[
    bool,
    Meta(
        description="default false; true (SMTP monitors only): on the rounds that resolve DNS, "
        "the agents test whether the server relays for strangers: from a session that does not "
        "log in, MAIL FROM and RCPT TO an address of a reserved foreign domain, then RSET and "
        "QUIT, never DATA; a recipient taken is the `open_relay` finding"
    ),
]


class TlsOptionsIn(_In):
    reject_unauthorized: bool | UnsetType = UNSET
    ca: (
        Annotated[
            str,
            Meta(
                description="PEM, one or more certificates (a private CA, or the server's own "
                "certificate to pin it); replaces the system trust store for this monitor, as "
                "in node. At most 32 KiB. null: the system trust store",
                min_length=1,
            ),
        ]
        | None
        | UnsetType
    ) = UNSET
    servername: (
        Annotated[
            str,
            Meta(
                description="name sent in SNI and checked against the certificate instead of "
                "`hostname` (the agent still connects to `hostname`)",
                min_length=1,
                max_length=253,
            ),
        ]
        | None
        | UnsetType
    ) = UNSET


class OAuth2In(_In):
    """An OAuth2 login instead of the password (docs/oauth2.md): the controller fetches access
    tokens with it; `clientSecret`, `refreshToken` and `privateKey` are write-only."""

    mechanism: Mechanism | UnsetType = UNSET
    grant: GrantType | UnsetType = UNSET
    provider: Provider | UnsetType = UNSET
    tenant: str | None | UnsetType = UNSET
    token_url: str | None | UnsetType = UNSET
    client_id: str | UnsetType = UNSET
    scopes: list[str] | None | UnsetType = UNSET
    subject: str | None | UnsetType = UNSET
    client_secret: str | None | UnsetType = UNSET
    refresh_token: str | None | UnsetType = UNSET
    private_key: str | None | UnsetType = UNSET


class SmtpAuthIn(_In):
    user: str | None | UnsetType = UNSET
    password: str | None | UnsetType = field(default=UNSET, name="pass")
    oauth2: OAuth2In | None | UnsetType = UNSET


class SmtpLegIn(_In):
    """nodemailer's SMTP options (its `ignoreTLS`/`requireTLS` spellings accepted too), as an
    SMTP monitor and a round trip's send leg share them."""

    secure: bool | UnsetType = UNSET
    ignore_tls: bool | UnsetType = UNSET
    require_tls: bool | UnsetType = UNSET
    ignore_tls_nodemailer: bool | UnsetType = field(default=UNSET, name="ignoreTLS")
    require_tls_nodemailer: bool | UnsetType = field(default=UNSET, name="requireTLS")
    auth: SmtpAuthIn | None | UnsetType = UNSET
    tls_options: TlsOptionsIn | UnsetType = UNSET
    allow_plaintext_auth: PlaintextOptIn | UnsetType = UNSET


class SmtpConfigIn(SmtpLegIn):
    """An SMTP monitor's options: nodemailer's, and the open relay test."""

    relay_check: RelayOptIn | UnsetType = UNSET


CheckApi = Annotated[
    str,
    Meta(
        max_length=20,
        # graph or gmail in any case, blanks around them ignored (mailbox_apis.api), or empty
        pattern=r"^\s*([Gg][Rr][Aa][Pp][Hh]|[Gg][Mm][Aa][Ii][Ll])?\s*$",
        description="how the check reaches the mailbox: empty (default) by `protocol`; `graph`: "
        "Microsoft Graph over HTTPS at the monitor's `hostname` (default graph.microsoft.com) "
        "and `port` (default 443), logging in with `oauth2` as an app (client_credentials, "
        "scope https://graph.microsoft.com/.default, no password), reading the inbox; `gmail`: "
        "the Gmail API (default gmail.googleapis.com), logging in with `oauth2` as the mailbox "
        "(refresh_token, or jwt_bearer with `subject`; scope "
        "https://www.googleapis.com/auth/gmail.readonly); protocol imap only; run only by "
        "agents with the features of its name and `api-mailbox` (docs/oauth2.md)",
    ),
]


class ImapPopConfigIn(_In):
    """node-imap's options: `protocol` is `imap` (default) or `pop3`; or a mailbox API
    (`api`)."""

    protocol: str | UnsetType = UNSET
    user: str | None | UnsetType = UNSET
    password: str | None | UnsetType = UNSET
    oauth2: OAuth2In | None | UnsetType = UNSET
    tls: bool | UnsetType = UNSET
    tls_options: TlsOptionsIn | UnsetType = UNSET
    allow_plaintext_auth: PlaintextOptIn | UnsetType = UNSET
    api: CheckApi | UnsetType = UNSET


Port = Annotated[
    int, Meta(description="1-65535; null: 465/25 (SMTP), 993/143 (IMAP), 995/110 (POP3)")
]


DependsOn = Annotated[
    list[Annotated[str, Meta(max_length=253)]],
    Meta(
        max_length=20,
        description="what the monitor depends on: monitors of the organization (their public "
        "ids: a round trip on its SMTP and IMAP monitors) and host names. A monitor failing "
        "while one it depends on (or a server on a host it names) is down joins that one's "
        "incident instead of paging on its own; null or empty: nothing",
    ),
]


DkimSelectors = Annotated[
    list[Annotated[str, Meta(max_length=SELECTOR_MAX)]],
    Meta(
        max_length=LISTED_MAX,
        description="DKIM selectors of the `mailDomain` whose keys the agents read from each "
        "country (key type and size, `t=y`, revoked, age, changes), beside those a round "
        "trip's received message is signed with and the common ones (google, selector1, "
        "selector2, k1, default, dkim, s1, s2): dot-separated labels of letters, digits, "
        "hyphens and underscores, stored lower case; null or empty: none",
    ),
]


MailDomain = Annotated[
    str,
    Meta(
        description="the mail domain whose DNS the agents check from each country, every "
        "`DNS_POSTURE_INTERVAL_SECONDS` (MX, SPF, DMARC, MTA-STS, TLS-RPT, DANE TLSA of this "
        "host); null: none. Never derived from the hostname"
    ),
]


SecretEnvName = Annotated[
    str,
    Meta(
        description="the environment variable monitors as code read this secret from",
        pattern=r"^MAILPROBE_SECRET_[A-Za-z0-9_]{1,100}$",
    ),
]


class ReputationIn(_In):
    """What an SMTP monitor's mail goes out from, for the blocklists (beside the host's and the
    MX hosts' addresses, which the agents resolve themselves): asked of every list of its kind
    from each of the monitor's countries once per `BLOCKLIST_INTERVAL_SECONDS`."""

    ips: (
        Annotated[
            list[str],
            Meta(
                max_length=8,
                description="outbound IPv4 or IPv6 addresses, public ones only (a private, "
                "loopback, reserved or documentation address is a 400 naming it)",
            ),
        ]
        | UnsetType
    ) = UNSET
    domains: (
        Annotated[
            list[str],
            Meta(
                max_length=4,
                description="domains the mail names (envelope, From, DKIM d=), asked of the "
                "domain lists; IDN as punycode",
            ),
        ]
        | UnsetType
    ) = UNSET


_ENV = UNSET  # each field of a SecretEnv: absent unless the file named a variable


class _SecretEnvIn(_In):
    """Monitors as code: the environment variable (`MAILPROBE_SECRET_<NAME>`) `apply` read each
    secret from, by the secret's path in the config, so `export` writes the same names. A label
    only: the controller reads no environment variable."""


class SmtpSecretEnv(_SecretEnvIn):
    password: SecretEnvName | UnsetType = field(default=_ENV, name="auth.pass")
    client_secret: SecretEnvName | UnsetType = field(default=_ENV, name="auth.oauth2.clientSecret")
    refresh_token: SecretEnvName | UnsetType = field(default=_ENV, name="auth.oauth2.refreshToken")
    private_key: SecretEnvName | UnsetType = field(default=_ENV, name="auth.oauth2.privateKey")


class ImapPopSecretEnv(_SecretEnvIn):
    password: SecretEnvName | UnsetType = field(default=_ENV, name="password")
    client_secret: SecretEnvName | UnsetType = field(default=_ENV, name="oauth2.clientSecret")
    refresh_token: SecretEnvName | UnsetType = field(default=_ENV, name="oauth2.refreshToken")
    private_key: SecretEnvName | UnsetType = field(default=_ENV, name="oauth2.privateKey")


class RoundTripSecretEnv(_SecretEnvIn):
    send_password: SecretEnvName | UnsetType = field(default=_ENV, name="send.auth.pass")
    receive_password: SecretEnvName | UnsetType = field(default=_ENV, name="receive.password")
    send_client_secret: SecretEnvName | UnsetType = field(
        default=_ENV, name="send.auth.oauth2.clientSecret"
    )
    send_refresh_token: SecretEnvName | UnsetType = field(
        default=_ENV, name="send.auth.oauth2.refreshToken"
    )
    send_private_key: SecretEnvName | UnsetType = field(
        default=_ENV, name="send.auth.oauth2.privateKey"
    )
    receive_client_secret: SecretEnvName | UnsetType = field(
        default=_ENV, name="receive.oauth2.clientSecret"
    )
    receive_refresh_token: SecretEnvName | UnsetType = field(
        default=_ENV, name="receive.oauth2.refreshToken"
    )
    receive_private_key: SecretEnvName | UnsetType = field(
        default=_ENV, name="receive.oauth2.privateKey"
    )


class _MonitorFields(_In):
    """The fields every kind's create and update take, each the column of its name
    (`model.COMMON_COLUMNS`); `KIND`: the kind whose body it is."""

    KIND: ClassVar[Kind]

    status: str | UnsetType = UNSET
    check_interval: int | UnsetType = UNSET
    timeout_seconds: int | UnsetType = UNSET
    allowed_country_codes: list[str] | None | UnsetType = field(
        default=UNSET, name="allowedCheckCountryCodes"
    )
    notification_email: str | None | UnsetType = UNSET
    notification_phone_number: str | None | UnsetType = UNSET
    mail_domain: MailDomain | None | UnsetType = UNSET
    depends_on: DependsOn | None | UnsetType = UNSET
    dkim_selectors: DkimSelectors | None | UnsetType = UNSET

    def sent(self) -> set[str]:
        """The fields this body sets."""
        return {f for f in self.__struct_fields__ if getattr(self, f) is not UNSET}


CustomerIdIn = Annotated[int | str, Meta(description="numeric customer id or public UUID")]


class _CreateFields(_MonitorFields, kw_only=True):
    customer_id: CustomerIdIn
    name: str
    hostname: str
    port: Port | None | UnsetType = UNSET


class _UpdateFields(_MonitorFields, kw_only=True):
    customer_id: int | str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    hostname: str | UnsetType = UNSET
    port: Port | None | UnsetType = UNSET


class SmtpMonitorCreate(_CreateFields, kw_only=True):
    KIND = SMTP

    smtp_config: SmtpConfigIn | None | UnsetType = UNSET
    config: SmtpConfigIn | None | UnsetType = UNSET
    secret_env: SmtpSecretEnv | None | UnsetType = UNSET
    reputation: ReputationIn | None | UnsetType = UNSET


class SmtpMonitorUpdate(_UpdateFields, kw_only=True):
    KIND = SMTP

    smtp_config: SmtpConfigIn | None | UnsetType = UNSET
    config: SmtpConfigIn | None | UnsetType = UNSET
    secret_env: SmtpSecretEnv | None | UnsetType = UNSET
    reputation: ReputationIn | None | UnsetType = UNSET


class ImapPopMonitorCreate(_CreateFields, kw_only=True):
    KIND = IMAP_POP

    # Required, unless the mailbox is read over an API (`imapPopConfig.api`): then that API's
    # public host (controller.monitors.mailbox_apis.HOSTS).
    hostname: str | UnsetType = UNSET  # type: ignore[assignment]

    imap_pop_config: ImapPopConfigIn | None | UnsetType = UNSET
    config: ImapPopConfigIn | None | UnsetType = UNSET
    secret_env: ImapPopSecretEnv | None | UnsetType = UNSET


class ImapPopMonitorUpdate(_UpdateFields, kw_only=True):
    KIND = IMAP_POP

    imap_pop_config: ImapPopConfigIn | None | UnsetType = UNSET
    config: ImapPopConfigIn | None | UnsetType = UNSET
    secret_env: ImapPopSecretEnv | None | UnsetType = UNSET


LegApi = Annotated[
    str,
    Meta(
        max_length=20,
        # graph or gmail in any case, blanks around them ignored (mailbox_apis.api), or empty
        pattern=r"^\s*([Gg][Rr][Aa][Pp][Hh]|[Gg][Mm][Aa][Ii][Ll])?\s*$",
        description="how the leg reaches the mailbox: empty (default) by its protocol; `graph`: "
        "Microsoft Graph over HTTPS at `hostname` (graph.microsoft.com), logging in with "
        "`oauth2` as an app (client_credentials, scope https://graph.microsoft.com/.default, "
        "no password); `gmail`: the Gmail API at `hostname` (gmail.googleapis.com), logging "
        "in with `oauth2` as the mailbox (refresh_token, or jwt_bearer with `subject`; scope "
        "https://www.googleapis.com/auth/gmail.modify); run only by agents with the feature "
        "of that name (docs/oauth2.md)",
    ),
]


Cleanup = Annotated[
    Literal["", "move", "delete"],
    Meta(
        description="an API leg's removal of the probe message it found: `move` (default: to "
        "Deleted Items, or Gmail's trash) or `delete` (Graph only); empty for IMAP and POP3, "
        "which delete it",
    ),
]


class RoundTripSendIn(SmtpLegIn):
    """The send leg: its server (stored as the monitor's `hostname`/`port`), sender, and how
    it sends (`api`: SMTP, or a mailbox API)."""

    hostname: str | UnsetType = UNSET
    port: Port | None | UnsetType = UNSET
    sender: str | UnsetType = field(default=UNSET, name="from")
    api: LegApi | UnsetType = UNSET


class RoundTripReceiveIn(ImapPopConfigIn):
    """The mailbox leg: `protocol` imap (default) or pop3, or a mailbox API (`api`), its
    server, folders to look in."""

    hostname: str | UnsetType = UNSET
    port: Port | None | UnsetType = UNSET
    folders: list[str] | UnsetType = UNSET
    spam_folders: list[str] | UnsetType = UNSET
    api: LegApi | UnsetType = UNSET
    cleanup: Cleanup | UnsetType = UNSET


class RoundTripConfigIn(_In):
    send: RoundTripSendIn | UnsetType = UNSET
    to: str | UnsetType = UNSET
    receive: RoundTripReceiveIn | UnsetType = UNSET
    slow_after_seconds: Annotated[float, Meta(gt=0)] | None | UnsetType = UNSET
    spam_is_failure: bool | UnsetType = UNSET


class RoundTripMonitorCreate(_MonitorFields, kw_only=True):
    """No top-level `hostname`/`port`: a round trip has two servers, both in its config."""

    KIND = ROUNDTRIP

    customer_id: CustomerIdIn
    name: str
    roundtrip_config: RoundTripConfigIn | UnsetType = UNSET
    config: RoundTripConfigIn | UnsetType = UNSET
    secret_env: RoundTripSecretEnv | None | UnsetType = UNSET


class RoundTripMonitorUpdate(_MonitorFields, kw_only=True):
    KIND = ROUNDTRIP

    customer_id: int | str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    roundtrip_config: RoundTripConfigIn | UnsetType = UNSET
    config: RoundTripConfigIn | UnsetType = UNSET
    secret_env: RoundTripSecretEnv | None | UnsetType = UNSET


MonitorCreate = SmtpMonitorCreate | ImapPopMonitorCreate | RoundTripMonitorCreate
MonitorUpdate = SmtpMonitorUpdate | ImapPopMonitorUpdate | RoundTripMonitorUpdate
# What the write path takes: a create or an update of any kind.
MonitorWrite = MonitorCreate | MonitorUpdate
ConfigIn = SmtpConfigIn | ImapPopConfigIn | RoundTripConfigIn
# The request's field holding the kind's config (beside its alias `config`).
_CONFIG_ATTR: Final = {
    SMTP: "smtp_config",
    IMAP_POP: "imap_pop_config",
    ROUNDTRIP: "roundtrip_config",
}


def config_sent(write: MonitorWrite) -> tuple[str, ConfigIn] | None:
    """(the field as the request names it, the config) of the config sent as the kind's key
    (`smtpConfig`, ...) or its alias `config`, null being an empty one; None when neither
    was sent. Both, different, is refused naming the kind's key."""
    kind = write.KIND
    primary, alias = getattr(write, _CONFIG_ATTR[kind]), write.config
    if primary is not UNSET and alias is not UNSET and primary != alias:
        raise invalid(
            kind.config_key, f"send {kind.config_key} or its alias config, not two different ones"
        )
    key, sent = (kind.config_key, primary) if primary is not UNSET else ("config", alias)
    if sent is UNSET:
        return None
    return key, kind_config(kind)() if sent is None else sent


def kind_config(kind: Kind) -> type[ConfigIn]:
    """The request's config Struct of `kind`."""
    return _CONFIGS[kind]


_CONFIGS: Final[dict[Kind, type[ConfigIn]]] = {
    SMTP: SmtpConfigIn,
    IMAP_POP: ImapPopConfigIn,
    ROUNDTRIP: RoundTripConfigIn,
}


# The update body of each kind.
UPDATES: Final[dict[Kind, type[MonitorUpdate]]] = {
    SMTP: SmtpMonitorUpdate,
    IMAP_POP: ImapPopMonitorUpdate,
    ROUNDTRIP: RoundTripMonitorUpdate,
}
