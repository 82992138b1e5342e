"""Wire shapes of the monitor API (seeds 000-003): requests, responses, pages.

Request Structs forbid unknown fields, so a typo is a 400 naming it; every optional field defaults
to UNSET so PATCH can tell "absent" from "null" and a stored config keeps exactly the keys sent.
"""

from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType, field

from controller.monitors.oauth2_grants import GrantType, Mechanism, Provider
from controller.web.api.page import Page, published
from shared.secret import SECRET_MASK
from shared.sidechecks.readiness import LISTED_MAX, SELECTOR_MAX

MASK = SECRET_MASK  # what responses show for a stored secret, and requests send to keep it


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


class ImapPopConfigIn(_In):
    """node-imap's options: `protocol` is `imap` (default) or `pop3`."""

    protocol: str | UnsetType = UNSET
    user: str | None | UnsetType = UNSET
    password: str | None | UnsetType = UNSET
    oauth2: OAuth2In | None | UnsetType = UNSET
    tls: bool | UnsetType = UNSET
    tls_options: TlsOptionsIn | UnsetType = UNSET
    allow_plaintext_auth: PlaintextOptIn | UnsetType = UNSET


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


SecretEnvIn = SmtpSecretEnv | ImapPopSecretEnv | RoundTripSecretEnv


class _MonitorFields(_In):
    status: str | UnsetType = UNSET
    check_interval: int | UnsetType = UNSET
    timeout_seconds: int | UnsetType = UNSET
    allowed_check_country_codes: list[str] | None | UnsetType = UNSET
    notification_email: str | None | UnsetType = UNSET
    notification_phone_number: str | None | UnsetType = UNSET
    mail_domain: MailDomain | None | UnsetType = UNSET
    depends_on: DependsOn | None | UnsetType = UNSET
    dkim_selectors: DkimSelectors | None | UnsetType = UNSET


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
    smtp_config: SmtpConfigIn | None | UnsetType = UNSET
    config: SmtpConfigIn | None | UnsetType = UNSET
    secret_env: SmtpSecretEnv | None | UnsetType = UNSET
    reputation: ReputationIn | None | UnsetType = UNSET


class SmtpMonitorUpdate(_UpdateFields, kw_only=True):
    smtp_config: SmtpConfigIn | None | UnsetType = UNSET
    config: SmtpConfigIn | None | UnsetType = UNSET
    secret_env: SmtpSecretEnv | None | UnsetType = UNSET
    reputation: ReputationIn | None | UnsetType = UNSET


class ImapPopMonitorCreate(_CreateFields, kw_only=True):
    imap_pop_config: ImapPopConfigIn | None | UnsetType = UNSET
    config: ImapPopConfigIn | None | UnsetType = UNSET
    secret_env: ImapPopSecretEnv | None | UnsetType = UNSET


class ImapPopMonitorUpdate(_UpdateFields, kw_only=True):
    imap_pop_config: ImapPopConfigIn | None | UnsetType = UNSET
    config: ImapPopConfigIn | None | UnsetType = UNSET
    secret_env: ImapPopSecretEnv | None | UnsetType = UNSET


class RoundTripSendIn(SmtpLegIn):
    """The SMTP leg: its server (stored as the monitor's `hostname`/`port`) and sender."""

    hostname: str | UnsetType = UNSET
    port: Port | None | UnsetType = UNSET
    sender: str | UnsetType = field(default=UNSET, name="from")


class RoundTripReceiveIn(ImapPopConfigIn):
    """The mailbox leg: `protocol` imap (default) or pop3, its server, folders to look in."""

    hostname: str | UnsetType = UNSET
    port: Port | None | UnsetType = UNSET
    folders: list[str] | UnsetType = UNSET
    spam_folders: list[str] | UnsetType = UNSET


class RoundTripConfigIn(_In):
    send: RoundTripSendIn | UnsetType = UNSET
    to: str | UnsetType = UNSET
    receive: RoundTripReceiveIn | UnsetType = UNSET
    slow_after_seconds: Annotated[float, Meta(gt=0)] | None | UnsetType = UNSET
    spam_is_failure: bool | UnsetType = UNSET


class RoundTripMonitorCreate(_MonitorFields, kw_only=True):
    """No top-level `hostname`/`port`: a round trip has two servers, both in its config."""

    customer_id: CustomerIdIn
    name: str
    roundtrip_config: RoundTripConfigIn | UnsetType = UNSET
    config: RoundTripConfigIn | UnsetType = UNSET
    secret_env: RoundTripSecretEnv | None | UnsetType = UNSET


class RoundTripMonitorUpdate(_MonitorFields, kw_only=True):
    customer_id: int | str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    roundtrip_config: RoundTripConfigIn | UnsetType = UNSET
    config: RoundTripConfigIn | UnsetType = UNSET
    secret_env: RoundTripSecretEnv | None | UnsetType = UNSET


MonitorCreate = SmtpMonitorCreate | ImapPopMonitorCreate | RoundTripMonitorCreate
MonitorUpdate = SmtpMonitorUpdate | ImapPopMonitorUpdate | RoundTripMonitorUpdate


class _MonitorOut(msgspec.Struct, rename="camel", kw_only=True):
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
    # Only when the monitor declares any (the seeds' shape otherwise).
    depends_on: list[str] | UnsetType = UNSET
    dkim_selectors: list[str] | UnsetType = UNSET
    secret_env: dict[str, str] | None = None
    last_checked_at: str | None
    created_at: str
    updated_at: str
    config: dict[str, object]


class ReputationOut(msgspec.Struct, rename="camel"):
    ips: list[str]
    domains: list[str]


class SmtpMonitor(_MonitorOut, kw_only=True):
    """`reputation` only when the monitor lists outbound addresses or domains (the seeds'
    shape otherwise)."""

    smtp_config: dict[str, object]
    reputation: ReputationOut | UnsetType = UNSET


class ImapPopMonitor(_MonitorOut, kw_only=True):
    imap_pop_config: dict[str, object]


class RoundTripMonitor(_MonitorOut, kw_only=True):
    """`hostname`/`port` are the send leg's (also in `roundtripConfig.send`)."""

    roundtrip_config: dict[str, object]


class LatestResult(msgspec.Struct, rename="camel", kw_only=True):
    """A country's latest round: `status` is `up`, `down`, `missed` (error kind `no_agent`:
    no live agent in the country; `expired`: no agent ran it in time; `no_seal_key`: no sealing
    key for the country, so its credentials were not sent) or `inconclusive` (the agent's own
    path failed its self-check: neither up nor down). `checkedAt` is when the check ended, null
    for a round that did not run."""

    country: str
    status: str
    error_kind: str | None
    message: str
    response_time_ms: float | None
    scheduled_at: str
    checked_at: str | None
    job_id: str


class SmtpMonitorDetail(SmtpMonitor, kw_only=True):
    """GET one: the monitor and its latest result per country, ordered by country."""

    latest_results: list[LatestResult]


class ImapPopMonitorDetail(ImapPopMonitor, kw_only=True):
    """GET one: the monitor and its latest result per country, ordered by country."""

    latest_results: list[LatestResult]


SmtpMonitorPage = Annotated[Page[SmtpMonitor], published("SmtpMonitorPage")]


ImapPopMonitorPage = Annotated[Page[ImapPopMonitor], published("ImapPopMonitorPage")]


class RoundTripMonitorDetail(RoundTripMonitor, kw_only=True):
    """GET one: the monitor and its latest result per country, ordered by country."""

    latest_results: list[LatestResult]


RoundTripMonitorPage = Annotated[Page[RoundTripMonitor], published("RoundTripMonitorPage")]
