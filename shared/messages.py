"""Wire messages on NATS: versioned msgspec Structs, camelCase JSON, and their codecs.

Evolution rules (agents in different countries upgrade at different times):
- a new field always gets a default; no field ever changes type; `v` is bumped only for a
  breaking change;
- decoders never forbid unknown fields, so an older reader accepts a newer writer's payload;
- times are ISO-8601 UTC strings with milliseconds (`shared.timefmt.iso_ms`).

A job is a tagged union on `monitorType`, so each protocol's `config` is typed.
"""

from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Final, Generic, Literal, TypeVar, get_args

import msgspec

from shared.secret import NO_SECRET, Secret, dec_hook, enc_hook, wrap
from shared.secret import SECRET_MASK as SECRET_MASK  # re-exported: the mask, where configs are
from shared.sidechecks import SideChecks
from shared.sidechecks.blocklists import BlocklistAsk
from shared.subjects import results_bundle_country

MonitorType = Literal["smtp", "imap", "pop3", "roundtrip"]
# A monitor's stored type: a check's, or `heartbeat` (judged at the controller from the mail its
# address took, never a job's nor a result's).
StoredType = MonitorType | Literal["heartbeat"]
# `inconclusive`: the check failed in a way this agent's own path explains (its canary for that
# port, or its resolver check, failed too): neither up nor down, counted like a missed round.
Status = Literal["up", "down", "inconclusive"]
ErrorKind = Literal[
    "dns",
    "refused",
    "timeout",
    "tls",
    "tls_required",
    "auth",
    "protocol",
    "temporary",
    "blocked_target",
    "expired",
    "internal",
    # Round trip: the message was not in any watched folder within the timeout; it landed in a
    # spam folder (a failure only when the monitor says so); it arrived, slower than allowed.
    "not_delivered",
    "spam",
    "slow_delivery",
    # With status `inconclusive`: the message says which self-check failed and what the check saw.
    "inconclusive",
    # A password login refused because the server takes no password logins for the account
    # any more (Microsoft's "basic authentication is disabled"): the monitor needs OAuth2.
    "basic_auth_disabled",
    # A round trip's `lookOnly` job that found no message of an earlier round: the hold it
    # names (with status `down`, stored `missed`, like `expired`: no verdict on the server).
    "mailbox_unconfirmed",
    "delivery_backoff",
    # Cancelled by the agent when the controller asked it to (`Preempt`): the organization held
    # more than its share of a saturated country's slots (with status `down`, stored `missed`).
    "preempted",
]
ERROR_KINDS: Final[frozenset[str]] = frozenset(get_args(ErrorKind))
MONITOR_TYPES: Final[frozenset[str]] = frozenset(get_args(MonitorType))

# How a job logs in (`mechanism` of SmtpAuth and ImapPopConfig): "" with a password, as always
# (SMTP: the first of the server's PLAIN, LOGIN, CRAM-MD5; IMAP: LOGIN; POP3: USER/PASS), or
# an OAuth2 SASL mechanism with `accessToken`. A plain str on the wire, not a Literal: a job
# naming a mechanism an older agent does not know still decodes, and fails as `auth`.
PASSWORD_LOGIN: Final = ""
OAUTH2_MECHANISMS: Final[frozenset[str]] = frozenset({"XOAUTH2", "OAUTHBEARER"})


class TlsOptions(msgspec.Struct, rename="camel"):
    """node's tls options: `ca` (PEM, one or more certificates) replaces the system trust store
    for this server, as in node; `servername` is the name sent in SNI and checked against the
    certificate instead of the hostname (the agent still connects to the hostname)."""

    reject_unauthorized: bool = True
    ca: str | None = None
    servername: str | None = None


class SmtpAuth(msgspec.Struct, rename="camel"):
    """`pass` for a password login; `mechanism` XOAUTH2 or OAUTHBEARER (RFC 7628) with
    `accessToken`, a short-lived OAuth2 bearer token, for an OAuth2 login as `user`. Both are
    secrets: they travel only sealed to the country, and no repr or log shows them."""

    user: str = ""
    password: Secret = msgspec.field(default=NO_SECRET, name="pass")
    mechanism: str = PASSWORD_LOGIN
    access_token: Secret = NO_SECRET

    def __post_init__(self) -> None:
        self.password = wrap(self.password)
        self.access_token = wrap(self.access_token)


class SmtpConfig(msgspec.Struct, rename="camel"):
    """nodemailer semantics: `secure` is TLS from the first byte, else STARTTLS when offered."""

    secure: bool = False
    ignore_tls: bool = False
    require_tls: bool = False
    auth: SmtpAuth | None = None
    tls_options: TlsOptions = msgspec.field(default_factory=TlsOptions)
    # Opt-in for lab servers: send credentials over a connection without TLS. Off, a server
    # that cannot upgrade gets `tls_required` and never sees the credentials.
    allow_plaintext_auth: bool = False
    # Opt-in open relay test (issue 58): from a session that has not logged in, MAIL FROM and
    # RCPT TO an address of a domain the server has no business with, then RSET and QUIT,
    # never DATA (the side check `relay`). The monitor's opt-in; in a job, for agents that
    # predate `sideChecks` (true only on the rounds that ask `sideChecks.relay`): an agent that
    # knows `sideChecks` runs the test when that asks for it, whatever this says.
    relay_check: bool = False


class ImapPopConfig(msgspec.Struct, rename="camel"):
    """node-imap semantics: `tls` is TLS from the first byte; without it the agent upgrades with
    STARTTLS (IMAP) / STLS (POP3) when the server offers it (node-imap's `autotls`)."""

    protocol: Literal["imap", "pop3"] = "imap"
    user: str = ""
    password: Secret = NO_SECRET
    tls: bool = False
    tls_options: TlsOptions = msgspec.field(default_factory=TlsOptions)
    # Opt-in for lab servers: log in over a connection without TLS (see SmtpConfig).
    allow_plaintext_auth: bool = False
    # An OAuth2 login instead of the password (see SmtpAuth): IMAP AUTHENTICATE, POP3 AUTH.
    mechanism: str = PASSWORD_LOGIN
    access_token: Secret = NO_SECRET
    # How the mailbox is read: "" by `protocol` (the default, and from an older controller);
    # `graph`: Microsoft Graph at the job's (or the leg's) `hostname`/`port` over HTTPS as
    # `user` with `accessToken`; `gmail`: the Gmail API, likewise. A plain str: an agent that
    # does not know the value fails the check as `protocol`.
    api: str = ""

    def __post_init__(self) -> None:
        self.password = wrap(self.password)
        self.access_token = wrap(self.access_token)


class RoundTripSend(SmtpConfig, kw_only=True):
    """The submission leg: SmtpConfig to the job's `hostname`/`port`, and the envelope sender.
    The API stores the send server's name and port as the monitor's `hostname` and `port`."""

    sender: str = msgspec.field(default="", name="from")
    # How the message is sent: "" over SMTP (the default, and from an older controller);
    # `graph`: Microsoft Graph `POST /v1.0/users/{auth.user or from}/sendMail` at the job's
    # `hostname`/`port` over HTTPS, with `auth.accessToken` (app-only); `gmail`: the Gmail
    # API's `messages.send` of the raw message, likewise. A plain str: a newer
    # API still decodes, and an agent that does not know it fails the leg as `protocol`.
    api: str = ""


class RoundTripReceive(ImapPopConfig, kw_only=True):
    """The mailbox leg: ImapPopConfig to its own server, the folders to look in (IMAP; POP3
    has only the inbox) and which of them are spam folders."""

    hostname: str = ""
    port: int | None = None
    folders: list[str] = msgspec.field(default_factory=lambda: ["INBOX"])
    spam_folders: list[str] = msgspec.field(default_factory=list)
    # Over an API (`api`, ImapPopConfig's): Graph's folders are well-known names (`junkemail`
    # is always read and is a spam folder); the Gmail API searches for the round's token (the
    # label SPAM is spam).
    # How a found message is removed over an API: "" or `move` (to Deleted Items), `delete`.
    cleanup: str = ""


class RoundTripConfig(msgspec.Struct, kw_only=True, rename="camel"):
    """Send a message with an unguessable token over SMTP to `to`, find it in the mailbox.
    `slowAfterSeconds`: a delivery slower than that is `down` (`slow_delivery`); `spamIsFailure`:
    a delivery into one of `receive.spamFolders` is `down` (`spam`), else `up` with the folder."""

    send: RoundTripSend = msgspec.field(default_factory=RoundTripSend)
    to: str = ""
    receive: RoundTripReceive = msgspec.field(default_factory=RoundTripReceive)
    slow_after_seconds: float | None = None
    spam_is_failure: bool = False


class _CheckJobBase(msgspec.Struct, kw_only=True, rename="camel", tag_field="monitorType"):
    v: int = 1
    job_id: str
    monitor_id: str
    hostname: str
    port: int = 0
    timeout_seconds: float = 10.0
    country: str
    scheduled_at: str
    expires_at: str
    # The job's `config` sealed to its country's public key (shared.sealing): base64 of a
    # libsodium sealed box holding the msgspec JSON of a `SealedConfig` (the config and the
    # target it is for). When set, `config` on the wire is the default and only an agent
    # holding the country's private key `sealKeyId` can open it. Null: the config carries no
    # secret and travels as it is.
    sealed_config: str | None = None
    seal_key_id: str | None = None
    # Agents asked to leave this job to another agent of the country: those whose check of the
    # round it confirms failed (a confirmation round wants a second opinion). A listed agent
    # hands it back (nak with a short delay) for its first deliveries, then runs it itself,
    # so a country whose only agent is listed still answers.
    avoid_agents: list[str] = msgspec.field(default_factory=list)
    # For agents that predate `sideChecks`: set with `sideChecks.mail_dns` (the agent then
    # answers in the result's legacy `mailDns`), only on jobs to a country with a live agent
    # without `FEATURE_SIDE_CHECKS`. An agent that knows `sideChecks` reads only that. Deleted
    # by LEGACY_FIELDS_END, as the three legacy fields are.
    mail_domain: str | None = None
    # The organization the job is for, as an opaque key (a keyed hash of its id, the same for
    # every job of the organization): agents share their slots and lookups fairly between
    # tenants by it. "" from a controller that predates it: one shared lane.
    tenant: str = ""
    # Published because the country had a free slot for it (controller.scheduling.admission_rules):
    # an agent taking such jobs pulls only for its free slots, no lookahead, so a job never
    # waits behind a full agent while another agent of the country has a slot. False from a
    # controller that predates admission, or where it does not apply.
    admitted: bool = False
    # For agents that predate `sideChecks`: set with `sideChecks.blocklists` (the agent then
    # answers in the result's legacy `reputation`), as `mail_domain` is.
    blocklists: BlocklistAsk | None = None
    # For agents that predate `sideChecks`: set with `sideChecks.reverse_dns` (the agent then
    # answers in the result's legacy `reverseDns`), as `mail_domain` is.
    reverse_dns: bool = False
    # The controller's RESULT_BUNDLES: the agent may publish this job's result in a bundle with
    # others that finish with it (`mon.results.CC.bundle`). False from a controller that
    # predates it, and ignored by an agent that does: one result per message.
    result_bundles: bool = False
    # The side checks this round asks for, by name, each with what it asks (shared/sidechecks):
    # the agent runs those it knows and answers in the result's `sideChecks`. {} from a
    # controller that predates them; an agent that predates them ignores it.
    side_checks: SideChecks = msgspec.field(default_factory=dict)
    # The controller's seal of `sideChecks` with the job id (a MAC; "" from older
    # controllers): an agent echoes both in its result (`asks`, `asksSeal`), so the ingester
    # takes side facts only for what this job asked.
    asks_seal: str = ""
    # The mailbox API calls (Microsoft Graph) this job may make, its share of the mailbox's
    # calls per 10 minutes that the controller reserved across agents and countries: the agent
    # ends the check `inconclusive` ("throttled, not sent") before making one more. None from a
    # controller that predates it, or for a job that calls no API; an older agent ignores it.
    api_calls: int | None = None
    # The Gmail API quota units this job may spend, likewise: its share of each Gmail user's
    # units per minute (a call costs its method's units: messages.send 100, messages.list 5).
    api_units: int | None = None


class HeartbeatConfig(msgspec.Struct, kw_only=True, rename="camel"):
    """A heartbeat monitor's stored config (controller.arrivals): mail matching `sender` and
    `subject` to its receiving address (`localPart`, made by the controller) must arrive
    `expected` times every `everyMinutes`, with `graceMinutes` to spare; or, with `byTime`
    ("HH:MM"), by that time of day in `timeZone` (IANA) on `days` ("mon" … "sun"; [] every
    day). Never in a job: the agents' receivers take the mail (and, with `mailboxMonitorId`,
    that monitor's rounds read it) and the controller judges it."""

    every_minutes: int = 60
    grace_minutes: int = 0
    expected: int = 1
    sender: str = ""
    subject: str = ""
    local_part: str = ""
    by_time: str = ""
    time_zone: str = ""
    days: list[str] = msgspec.field(default_factory=list)
    # The IMAP, POP3 or round-trip monitor (public id) whose mailbox also holds this mail: its
    # rounds read it (the side check `heartbeat_mail`); "" none.
    mailbox_monitor_id: str = ""


class SmtpCheckJob(_CheckJobBase, tag="smtp"):
    monitor_type: ClassVar[MonitorType] = "smtp"
    config: SmtpConfig = msgspec.field(default_factory=SmtpConfig)


class ImapCheckJob(_CheckJobBase, tag="imap"):
    monitor_type: ClassVar[MonitorType] = "imap"
    config: ImapPopConfig = msgspec.field(default_factory=ImapPopConfig)


class Pop3CheckJob(_CheckJobBase, tag="pop3"):
    monitor_type: ClassVar[MonitorType] = "pop3"
    config: ImapPopConfig = msgspec.field(default_factory=lambda: ImapPopConfig(protocol="pop3"))


class RoundTripCheckJob(_CheckJobBase, tag="roundtrip"):
    """`hostname`/`port` are the send leg's server; the mailbox's are in `config.receive`.

    `lookOnly`: "" (the default, and from an older controller) sends the probe message and
    watches for it. Set, the round's message is held back (the value is the hold:
    `delivery_backoff` or `mailbox_unconfirmed`): the agent sends nothing, looks in the mailbox
    once for the messages of this monitor's and country's earlier rounds, and deletes them; one
    found (addressed to `to`) makes the result say it arrived, none makes it the hold's missed
    round. An agent older than the field would send: the controller sets it only for countries
    whose every live agent announces `FEATURE_LOOK_ONLY`. A plain str, so a newer hold still
    decodes (an agent reports it as `delivery_backoff`)."""

    monitor_type: ClassVar[MonitorType] = "roundtrip"
    config: RoundTripConfig = msgspec.field(default_factory=RoundTripConfig)
    look_only: str = ""


CheckJob = SmtpCheckJob | ImapCheckJob | Pop3CheckJob | RoundTripCheckJob
JobConfig = SmtpConfig | ImapPopConfig | RoundTripConfig | HeartbeatConfig
ConfigT = TypeVar("ConfigT", bound=JobConfig)


class SealedConfig(msgspec.Struct, Generic[ConfigT], kw_only=True, rename="camel"):
    """What a job's `sealedConfig` holds: its config, bound to the target it is for. An agent
    uses the config only for a job with that monitor, host and port, so a sealed config copied
    into another job (by anyone able to write JOBS) never takes its credentials elsewhere."""

    monitor_id: str
    hostname: str
    port: int
    config: ConfigT


JOB_TYPES: Final[dict[MonitorType, type[CheckJob]]] = {
    "smtp": SmtpCheckJob,
    "imap": ImapCheckJob,
    "pop3": Pop3CheckJob,
    "roundtrip": RoundTripCheckJob,
}


class Phases(msgspec.Struct, rename="camel"):
    """Milliseconds per phase; null for a phase not reached."""

    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    greeting_ms: float | None = None
    auth_ms: float | None = None
    # Round trip: SMTP submission, accepted by SMTP → visible in the mailbox, reading it there.
    submit_ms: float | None = None
    delivery_ms: float | None = None
    fetch_ms: float | None = None


class TlsInfo(msgspec.Struct, rename="camel"):
    version: str | None = None
    cipher: str | None = None
    cert_subject: str | None = None
    cert_not_after: str | None = None
    cert_days_left: int | None = None
    # How TLS was reached: "implicit" (TLS from the first byte) or "starttls" (an upgrade by
    # STARTTLS / STLS). A plain str, not a Literal, so a newer agent's value still decodes.
    mode: str | None = None
    # The leaf certificate, as served (parsed also when the handshake did not verify it).
    cert_sha256: str | None = None  # lowercase hex of the SHA-256 of its DER form
    cert_issuer: str | None = None  # RFC 4514
    cert_sans: list[str] | None = None  # DNS names and IP addresses, as listed
    cert_key_type: str | None = None  # "RSA", "EC", "Ed25519", "Ed448", "DSA"
    cert_key_bits: int | None = None
    cert_signature: str | None = None  # e.g. "sha256WithRSAEncryption", else its dotted OID
    # Separate facts, null when not learnt: the chain leads to a trusted root (and is in its
    # validity period); the certificate names the monitor's host.
    chain_verified: bool | None = None
    name_matched: bool | None = None
    # Lowercase hex of the SHA-256 of the certificate's SubjectPublicKeyInfo (DANE `3 1 1`).
    cert_spki_sha256: str | None = None


class Hop(msgspec.Struct, kw_only=True, rename="camel"):
    """One `Received` header of a delivered message, oldest hop first: who handed it on
    (`from`), who took it (`by`), when (ISO-8601 UTC, null when unparsable), and the time since
    the previous hop (null for the first one or without both times)."""

    by: str | None = None
    sender: str | None = msgspec.field(default=None, name="from")
    at: str | None = None
    delay_ms: float | None = None


class DkimSignature(msgspec.Struct, kw_only=True, rename="camel"):
    """One `DKIM-Signature` header of a delivered message: its signing domain (`d=`) and
    selector (`s=`), lower case."""

    domain: str
    selector: str


class AuthResults(msgspec.Struct, kw_only=True, rename="camel"):
    """What the receiving server's `Authentication-Results` says (`pass`, `fail`, `none`, ...),
    null for a method it does not mention; `authservId` is the server that added it.
    `signatures`: the message's `DKIM-Signature` headers, topmost first (at most 4): which
    keys it was signed with (the readiness side check reads their keys)."""

    authserv_id: str | None = None
    spf: str | None = None
    dkim: str | None = None
    dmarc: str | None = None
    signatures: list[DkimSignature] = msgspec.field(default_factory=list)


class ArcResults(msgspec.Struct, kw_only=True, rename="camel"):
    """The message's ARC chain as found: how many sets (`instances`, the highest `i=`), the
    topmost `ARC-Seal`'s chain validation `cv` (`none`, `pass`, `fail`) and the topmost
    `ARC-Authentication-Results` (at most 512 characters), null when a header is missing."""

    instances: int = 0
    cv: str | None = None
    authentication_results: str | None = None


class CheckResult(msgspec.Struct, kw_only=True, rename="camel"):
    v: int = 1
    job_id: str
    monitor_id: str
    monitor_type: MonitorType
    country: str
    agent_id: str
    scheduled_at: str
    started_at: str
    finished_at: str
    status: Status
    # A plain str on the wire, not ErrorKind: a newer agent may report a kind an older
    # controller does not know yet, and that must not make the result undecodable.
    error_kind: str | None = None
    message: str = ""
    banner: str | None = None
    response_time_ms: float | None = None
    phases: Phases = msgspec.field(default_factory=Phases)
    tls: TlsInfo | None = None
    address: str | None = None
    # Round trip only: the folder the message was found in, its Received hops, and the
    # receiving server's Authentication-Results.
    folder: str | None = None
    hops: list[Hop] | None = None
    auth_results: AuthResults | None = None
    # Round trip only: the ARC sets (RFC 8617) on the message as found; null when it had none,
    # and from agents that predate it.
    arc: ArcResults | None = None
    # What the server advertised (SMTP EHLO keywords with their parameters, IMAP CAPABILITY
    # atoms, POP3 CAPA lines), upper-cased and sorted: the last list it sent, over TLS once TLS
    # was reached; null when none was asked for or read.
    capabilities: list[str] | None = None
    # The list it sent in the clear before a STARTTLS / STLS upgrade (null without one).
    capabilities_before_tls: list[str] | None = None
    # How many logins the check sent to the server's AUTH / LOGIN / USER-PASS step (a round
    # trip's legs and POP3 looks each count); null from an agent that does not say.
    logins: int | None = None
    # What each side check the job asked for found, by name (shared/sidechecks); a side check
    # that did not run (the check reached no server, its path failed) is left out.
    side_checks: SideChecks = msgspec.field(default_factory=dict)
    # Each side check the job asked for that gave no facts for a reason of the agent's own, by
    # name: why (shared.sidechecks.SIDE_CHECK_ERROR_KINDS); {} from older agents.
    side_check_errors: dict[str, str] = msgspec.field(default_factory=dict)
    # The job's `sideChecks` and `asksSeal` as the agent got them, when it sends side facts
    # and the job was sealed ({} and "" otherwise, and from older agents).
    asks: SideChecks = msgspec.field(default_factory=dict)
    asks_seal: str = ""


class CanaryState(msgspec.Struct, kw_only=True, rename="camel"):
    """One of an agent's self-checks (AGENT_CANARIES): `kind` `port` (a TCP connect and greeting
    of a known-good `host:port`) or `resolver` (resolving a known-good name, `target`). `ok`:
    null until it first ran; `error`: why it last failed (short, no secrets); `checkedAt`: when
    it last ran (ISO-8601 UTC). Plain strs, so a newer agent's kinds still decode."""

    kind: str
    target: str
    ok: bool | None = None
    checked_at: str | None = None
    latency_ms: float | None = None
    error: str = ""


class SelfCheck(msgspec.Struct, kw_only=True, rename="camel"):
    """An agent's own path as its canaries see it: each canary's last state; `blockedPorts`, the
    ports none of whose canaries answers (their jobs go back to other agents of the country);
    `resolverOk`, the resolver canary (null: none configured or not run yet)."""

    canaries: list[CanaryState] = msgspec.field(default_factory=list)
    blocked_ports: list[int] = msgspec.field(default_factory=list)
    resolver_ok: bool | None = None


class TenantLoad(msgspec.Struct, array_like=True, frozen=True):
    """One tenant's load on an agent, in its heartbeat: `held`, its jobs running or waiting
    there; `usage`, the slot-seconds its checks held lately (each second of a running check
    counts one, halved every `TENANT_USAGE_HALF_LIFE_S`); `checks`, its checks that ended
    lately, counted and halved alike (usage / checks: the slot time its checks take, about;
    0 from an agent that predates it: unknown). Sent as an array, as there are many."""

    tenant: Annotated[str, msgspec.Meta(max_length=64)]
    held: Annotated[int, msgspec.Meta(ge=0)] = 0
    usage: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    checks: Annotated[float, msgspec.Meta(ge=0)] = 0.0


# A tenant's usage halves every minute: long enough that a tenant with long checks stays heavy
# between them, short enough that a tenant that stopped is light again within minutes.
TENANT_USAGE_HALF_LIFE_S = 60.0
# A heartbeat carries this many tenants at most (those holding most first): one left out counts
# as light, never heavy, and the slots it holds as busy (the beat's `inFlight` past the listed).
TENANT_LOADS_MAX = 128


class AgentHeartbeat(msgspec.Struct, kw_only=True, rename="camel"):
    v: int = 1
    agent_id: str
    country: str
    version: str = ""
    in_flight: int = 0
    capacity: int = 0
    started_at: str
    seen_at: str
    # The agent's last beat on a clean stop: the controller forgets it at once.
    stopping: bool = False
    # Null: the agent has no canaries configured (or predates them).
    self_check: SelfCheck | None = None
    # What the agent can do that older agents cannot (`FEATURE_OAUTH2`); [] from older agents.
    features: list[str] = msgspec.field(default_factory=list)
    # Its tenants' load (`FEATURE_TENANT_LOADS`): the scheduler's admission reads it.
    tenants: Annotated[list[TenantLoad], msgspec.Meta(max_length=TENANT_LOADS_MAX)] = msgspec.field(
        default_factory=list
    )


# An agent that logs in with a job's `mechanism` and `accessToken` (OAuth2); an agent without
# it would check without logging in, so the controller sends it no OAuth2 job.
FEATURE_OAUTH2 = "oauth2"
# An agent that takes bundles (`encode_bundle`); an agent without it would `term` one as a
# malformed job, so the controller sends bundles only to countries whose every agent has it.
FEATURE_BUNDLES = "bundles"
# An agent that reports its tenants' load (`tenants`): the controller admits a country's jobs
# against it (controller.scheduling.admission_rules) only where every live agent does.
FEATURE_TENANT_LOADS = "tenant_loads"
# An agent that runs a round trip's `lookOnly` job by looking without sending; an agent without
# it would send the message, so the controller sends such jobs only to countries whose every
# live agent has it, and elsewhere holds the round as before.
FEATURE_LOOK_ONLY = "look_only"
# An agent that listens for `Preempt` requests on `mon.control.CC.<agentId>`: the controller
# asks only such agents to cancel a check (controller.scheduling.preemption).
FEATURE_PREEMPT = "preempt"
# The agent runs the job a `Preempt` carries (`Preempt.job`) in the slot it frees.
FEATURE_PREEMPT_CARRY = "preempt_carry"
# The agent sends a sealed job's asks back with its side facts (`CheckResult.asks`): the
# operator turns ACCEPT_UNSEALED_SIDE_FACTS off once every agent has it.
FEATURE_SEALED_ASKS = "sealed_asks"
# An agent that runs a round trip's legs over Microsoft Graph (`api` `graph` in `send` and
# `receive`); an agent without it would speak SMTP/IMAP to the Graph host, so the controller
# sends such jobs only to countries whose every live agent has it.
FEATURE_GRAPH = "graph"
# An agent that runs a round trip's legs over the Gmail API (`api` `gmail`), for the same reason.
FEATURE_GMAIL = "gmail"
# An agent that runs an IMAP/POP3 monitor's mailbox check over a mailbox API (its config's
# `api`); an agent with `graph` or `gmail` but without it would speak IMAP to the API host.
FEATURE_API_MAILBOX = "api-mailbox"
# An agent that reads a job's `sideChecks` and answers in the result's `sideChecks` alone: the
# controller sets a job's legacy side fields (`mailDomain`, `blocklists`, `reverseDns`) only for
# a country with a live agent without it.
FEATURE_SIDE_CHECKS = "side_checks"
# The date the legacy side fields of `CheckJob` and the ingester's legacy answers are deleted
# by (tests/unit/test_legacy_wire_fields.py fails from the day after).
LEGACY_FIELDS_END = "2027-06-30"
AGENT_FEATURES = (
    FEATURE_SIDE_CHECKS,
    FEATURE_OAUTH2,
    FEATURE_GRAPH,
    FEATURE_GMAIL,
    FEATURE_API_MAILBOX,
    FEATURE_BUNDLES,
    FEATURE_TENANT_LOADS,
    FEATURE_LOOK_ONLY,
    FEATURE_PREEMPT,
    FEATURE_PREEMPT_CARRY,
    FEATURE_SEALED_ASKS,
)


class Preempt(msgspec.Struct, kw_only=True, rename="camel"):
    """The controller asks agent `agentId` of `country` to cancel `tenant`'s longest-running
    check (core NATS, `mon.control.CC.<agentId>`): that organization held `held` of the
    country's `capacity` slots, beyond its max-min share `share`, while another organization's
    round waited for a slot (controller.scheduling.preemption). The cancelled check ends as
    `down` / `preempted` (stored `missed`), its message saying so with these figures.
    `job`, to an agent that says `preempt_carry`: the waiting job the slot is for, as JOBS
    would have delivered it (sealed credentials included); it is not published to JOBS, and
    the agent runs it next, ahead of any job it pulls, whether or not a check was cancelled."""

    v: int = 1
    country: str
    agent_id: str
    tenant: Annotated[str, msgspec.Meta(max_length=64)]
    held: Annotated[int, msgspec.Meta(ge=0)] = 0
    share: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    capacity: Annotated[int, msgspec.Meta(ge=0)] = 0
    job: CheckJob | None = None


def preempted_message(request: Preempt, seconds: float) -> str:
    """The message of a check cancelled after `seconds` at `request`."""
    return (
        f"cancelled after {seconds:.0f} s so another organization could have its fair share of"
        f" {request.country}'s slots: your organization held {request.held}, its share"
        f" {request.share:g}; not a verdict on the server"
    )


class PostureNote(msgspec.Struct, kw_only=True, rename="camel"):
    """A posture finding that `appeared` or `cleared`, or a `changed` baseline (a change every
    country saw alike) or `blocklisted` listing (the countries that see it; its severity kept).
    Plain strs, not Literals, so a newer controller's values still decode."""

    change: str
    code: str  # the finding's code (e.g. "starttls_stripped"), or the fact that changed
    severity: str = ""  # "critical", "warning" or "info"; "" for a change
    country: str = ""  # "" for the monitor as a whole
    detail: str = ""


class MonitorEvent(msgspec.Struct, kw_only=True, rename="camel"):
    v: int = 1
    monitor_id: str
    state: str
    previous_state: str | None = None
    at: str
    countries: list[str] = msgspec.field(default_factory=list)
    cause: str = ""
    # Set on a posture event: `state` and `previousState` are then both the monitor's current
    # state (a reader that knows no posture sees a state that did not change) and `cause` says
    # what was found.
    posture: PostureNote | None = None


def default_port(monitor_type: MonitorType, config: JobConfig) -> int:
    """The port used when a monitor names none: SMTP 465/25, IMAP 993/143, POP3 995/110, a
    mailbox API 443; a round trip's is its send leg's."""
    if isinstance(config, RoundTripConfig):
        return default_port("smtp", config.send)
    if monitor_type == "smtp":
        return 465 if isinstance(config, SmtpConfig) and config.secure else 25
    tls = isinstance(config, ImapPopConfig) and config.tls
    if isinstance(config, ImapPopConfig) and config.api:
        return 443  # a mailbox API over HTTPS
    if monitor_type == "imap":
        return 993 if tls else 143
    return 995 if tls else 110


Message = CheckJob | CheckResult | AgentHeartbeat | MonitorEvent | Preempt

# Secrets travel as their text (inside a sealed config, or "" in a job's own config).
_encoder: Final = msgspec.json.Encoder(enc_hook=enc_hook)
_job_decoder: Final = msgspec.json.Decoder(CheckJob, dec_hook=dec_hook)
_bundle_decoder: Final = msgspec.json.Decoder(list[msgspec.Raw])
_result_decoder: Final = msgspec.json.Decoder(CheckResult)
_heartbeat_decoder: Final = msgspec.json.Decoder(AgentHeartbeat)
_event_decoder: Final = msgspec.json.Decoder(MonitorEvent)
_preempt_decoder: Final = msgspec.json.Decoder(Preempt)
_sealed_decoders: Final[dict[type, msgspec.json.Decoder[SealedConfig[Any]]]] = {
    SmtpConfig: msgspec.json.Decoder(SealedConfig[SmtpConfig], dec_hook=dec_hook),
    ImapPopConfig: msgspec.json.Decoder(SealedConfig[ImapPopConfig], dec_hook=dec_hook),
    RoundTripConfig: msgspec.json.Decoder(SealedConfig[RoundTripConfig], dec_hook=dec_hook),
}


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def decode_job(data: bytes) -> CheckJob:
    """Raises msgspec.DecodeError (not JSON) or msgspec.ValidationError (wrong shape)."""
    job: CheckJob = _job_decoder.decode(data)
    return job


def encode_bundle(parts: Sequence[bytes]) -> bytes:
    """One message carrying several encoded jobs (JOBS) or results (RESULTS): their JSON array
    (a job or a result alone is an object)."""
    return b"[" + b",".join(parts) + b"]"


def bundle_parts(data: bytes) -> list[bytes] | None:
    """The encoded jobs or results of a bundle, each decoded on its own, so one bad part
    spoils only itself; None when `data` is not an array (one job, or no job at all). Raises
    msgspec.DecodeError when it is not a JSON array."""
    if data.lstrip()[:1] != b"[":
        return None
    return [bytes(raw) for raw in _bundle_decoder.decode(data)]


def result_parts(subject: str, data: bytes) -> list[bytes]:
    """The encoded results a RESULTS message on `subject` carries: a bundle's parts (on
    `mon.results.CC.bundle`), else the message itself. Raises msgspec.DecodeError for a bundle
    that is no JSON array."""
    if results_bundle_country(subject) is None:
        return [data]
    parts = bundle_parts(data)
    if parts is None:
        raise msgspec.DecodeError("a bundle of results must be a JSON array")
    return parts


def decode_result(data: bytes) -> CheckResult:
    return _result_decoder.decode(data)


def decode_heartbeat(data: bytes) -> AgentHeartbeat:
    return _heartbeat_decoder.decode(data)


def decode_event(data: bytes) -> MonitorEvent:
    return _event_decoder.decode(data)


def decode_preempt(data: bytes) -> Preempt:
    """Raises msgspec.DecodeError (not JSON) or msgspec.ValidationError (wrong shape)."""
    return _preempt_decoder.decode(data)


def encode_sealed(sealed: SealedConfig[Any]) -> bytes:
    return _encoder.encode(sealed)


def decode_sealed(data: bytes, config_type: type[ConfigT]) -> SealedConfig[ConfigT]:
    """Raises msgspec.DecodeError (not JSON) or msgspec.ValidationError (wrong shape)."""
    sealed: SealedConfig[ConfigT] = _sealed_decoders[config_type].decode(data)
    return sealed
