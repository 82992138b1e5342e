"""Settings from the environment, one Struct per process kind.

Every field's encoded name is the environment variable; `Meta(description=...)` is the text of the
settings table in docs/settings.md (`python -m shared.settings` prints it). A missing or
malformed setting raises `SettingsError` with one line naming it, and the process stops with
that line.
"""

import base64
import binascii
import ipaddress
import os
import re
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from shared.dns_canary import DEFAULT_CANARIES, parse_dns_canaries
from shared.sealing import OpeningKeys, SealingError, read_public_keys
from shared.streams import EVENTS_MAX_BYTES, MIB, RESULTS_MAX_BYTES

T = TypeVar("T", bound=msgspec.Struct)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_PATH = re.compile(r"at `\$\.(\w+)`")
_MISSING = re.compile(r"missing required field `(\w+)`")


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it."""


def _check_url(name: str, value: str, schemes: tuple[str, ...], *, many: bool = True) -> None:
    """Each comma-separated URL (one URL unless `many`) starts with one of `schemes`; the
    message never repeats the value, which may hold credentials."""
    for part in value.split(",") if many else [value]:
        if not part.strip().startswith(tuple(s + "://" for s in schemes)):
            raise ValueError(
                f"{name} must start with one of {', '.join(s + '://' for s in schemes)}"
            )


# What a template ships where a secret goes (the Kubernetes Secrets' examples, an old
# .env.example): a process refuses one, naming the setting, instead of running on a password
# everyone who read the template knows.
PLACEHOLDERS = frozenset({"change-me", "changeme"})


def is_placeholder(secret: str) -> bool:
    return secret.strip().lower() in PLACEHOLDERS


def _check_secrets_filled(name: str, value: str, *, many: bool = True) -> None:
    """No URL of `value` carries a placeholder as its password (the value is never repeated)."""
    for part in value.split(",") if many else [value]:
        try:
            password = urlsplit(part.strip()).password
        except ValueError:
            continue  # a malformed URL is refused where it is used, naming the setting
        if password is not None and is_placeholder(password):
            raise ValueError(
                f"{name} holds a template's placeholder password: generate the real one"
                " (python -m deploy.gen_env, python -m deploy.mint_country)"
            )


def check_public_url(value: str) -> None:
    """PUBLIC_URL: an http(s) URL of a host, no credentials, query or fragment (a notice's link
    is this plus a path)."""
    _check_url("PUBLIC_URL", value, ("http", "https"), many=False)
    parts = urlsplit(value)
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(
            "PUBLIC_URL must be a base URL like https://mailprobe.example.com (a host and at most"
            " a path: no credentials, query or fragment)"
        )


def _check_country(name: str, value: str) -> None:
    if not re.fullmatch(r"[A-Z]{2}", value):
        raise ValueError(f"{name} must be an upper-case ISO 3166-1 alpha-2 code like DE")


def check_secrets_key(value: str) -> None:
    """SECRETS_KEY: one or more comma-separated Fernet keys (the first encrypts, all decrypt)."""
    if any(is_placeholder(key) for key in value.split(",")):
        raise ValueError(
            "SECRETS_KEY holds a template's placeholder: generate a key"
            " (python -m deploy.gen_env, or python -m controller gen-key)"
        )
    for key in value.split(","):
        try:
            raw = base64.urlsafe_b64decode(key.strip().encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError(
                "SECRETS_KEY must be comma-separated url-safe base64 32-byte keys "
                "(make one with: python -m controller gen-key)"
            )


def _check_tls(settings: msgspec.Struct, cert: str, key: str, ca: str | None = None) -> None:
    """A certificate and its key are set together, and they (and the CA file) load: read at
    start, so a wrong path or file stops the process naming it, not the first handshake."""
    cert_path, key_path = getattr(settings, cert.lower()), getattr(settings, key.lower())
    if (cert_path is None) != (key_path is None):
        raise ValueError(f"{cert} and {key} must be set together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca_path = getattr(settings, ca.lower()) if ca else None
    try:
        if ca_path is not None:
            context.load_verify_locations(ca_path)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{ca} cannot be loaded: {exc}") from None
    try:
        if cert_path is not None:
            context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{cert} / {key} cannot be loaded: {exc}") from None


def nats_tls_context(settings: "ProcessSettings") -> ssl.SSLContext | None:
    """The SSLContext for `nats.connect(tls=...)`: None when no NATS TLS setting is given (a
    `tls://` URL then verifies against the system's CAs)."""
    ca, cert, key = (
        settings.nats_tls_ca_file,
        settings.nats_tls_cert_file,
        settings.nats_tls_key_file,
    )
    if ca is None and cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


CONTROLLER_ROLES = frozenset({"api", "scheduler", "ingester", "alerter"})
# AGENT_DNS_LOOKUPS_PER_TENANT's default, also for run_check callers that bring no resolver.
DNS_LOOKUPS_PER_TENANT_DEFAULT = 20

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ProcessSettings(msgspec.Struct, rename="upper", frozen=True):
    """The settings every process (controller, agent) shares, declared and checked once: how it
    reaches NATS and how it logs. Each process's Struct adds its own and calls this
    `__post_init__` from its own."""

    nats_url: Annotated[str, Meta(description="NATS server URL(s), comma-separated")] = (
        "nats://127.0.0.1:4222"
    )
    nats_tls_ca_file: Annotated[
        str | None,
        Meta(
            description="PEM CA file to verify the NATS server's certificate (with `tls://` URLs);"
            " unset: the system's CAs"
        ),
    ] = None
    nats_tls_cert_file: Annotated[
        str | None,
        Meta(
            description="PEM client certificate for NATS servers that verify clients (mutual TLS)"
        ),
    ] = None
    nats_tls_key_file: Annotated[
        str | None, Meta(description="PEM private key file of `NATS_TLS_CERT_FILE`")
    ] = None
    log_format: Annotated[LogFormat, Meta(description="`json`, `console` or `auto` (tty)")] = "auto"
    log_level: Annotated[
        LogLevel,
        Meta(
            description="log level of mailprobe's own lines; other libraries' lines are written "
            "from WARNING only, and every line's URLs keep only scheme and host"
        ),
    ] = "INFO"

    def __post_init__(self) -> None:
        _check_url("NATS_URL", self.nats_url, ("nats", "tls", "ws", "wss"))
        _check_secrets_filled("NATS_URL", self.nats_url)
        _check_tls(self, "NATS_TLS_CERT_FILE", "NATS_TLS_KEY_FILE", "NATS_TLS_CA_FILE")


class ControllerSettings(ProcessSettings, rename="upper", frozen=True, kw_only=True):
    database_url: Annotated[
        str,
        Meta(
            description="PostgreSQL URL, `postgresql://user:pass@host:5432/db` (required); the"
            " sessions are named `mailprobe controller` and the process's roles"
            " (`application_name`, seen in `pg_stat_activity`) unless the URL names them. With a"
            " standby, list both hosts and ask for the writable one, libpq's way:"
            " `postgresql://user:pass@db1:5432,db2:5432/db?target_session_attrs=read-write`:"
            " every new connection goes to whichever host is primary then"
        ),
    ]
    secrets_key: Annotated[
        str | None,
        Meta(description="Fernet key(s) encrypting monitor secrets at rest; required by `serve`"),
    ] = None
    seal_public_keys_dir: Annotated[
        str | None,
        Meta(
            description="directory of the countries' public sealing keys, one `CC.pub` each "
            "(`python -m deploy.mint_country` makes them), re-read when they change; a job with "
            "credentials goes only to a country with a key, else its round is recorded missed "
            "(`no_seal_key`)"
        ),
    ] = None
    api_host: Annotated[str, Meta(description="address the API listens on")] = "127.0.0.1"
    api_port: Annotated[int, Meta(ge=1, le=65535, description="port the API listens on")] = 8080
    instance_key: Annotated[
        str | None,
        Meta(
            description="a secret this controller proves it holds at `/instance-proof` (an HMAC of"
            " the caller's challenge), so that command-line tools check the server before sending"
            " it a token; `make run` sets it and keeps it in `.run/instance.key`. Unset: the path"
            " answers 404"
        ),
    ] = None
    api_tls_cert_file: Annotated[
        str | None,
        Meta(
            description="PEM certificate (chain) file: the API serves HTTPS; "
            "needs `API_TLS_KEY_FILE`"
        ),
    ] = None
    api_tls_key_file: Annotated[
        str | None, Meta(description="PEM private key file of `API_TLS_CERT_FILE`")
    ] = None
    token_ttl_seconds: Annotated[
        int, Meta(ge=60, description="lifetime of a bearer token from login or the CLI")
    ] = 30 * 24 * 3600
    db_pool_max: Annotated[int, Meta(ge=2, le=500, description="PostgreSQL pool size")] = 20
    api_trusted_proxies: Annotated[
        str,
        Meta(
            description="reverse proxies (addresses or CIDR networks, comma-separated) whose "
            "`X-Forwarded-For` names the client; empty: the client is the socket peer"
        ),
    ] = ""
    login_address_per_minute: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,
            description="login attempts (both login endpoints) one client address may make per "
            "minute that do not succeed, shared by the replicas; past it 429. Each replica also "
            "refuses more than three times as many requests of any kind before any other work",
        ),
    ] = 20
    login_account_failures: Annotated[
        int,
        Meta(
            ge=1,
            le=1000,
            description="failed logins to one account before it is locked for "
            "`LOGIN_LOCKOUT_SECONDS` (doubling with each further failure); counted apart for "
            "addresses that logged in to that account in the last 30 days",
        ),
    ] = 5
    login_lockout_seconds: Annotated[
        int, Meta(ge=1, le=86_400, description="first lockout of an account after its failures")
    ] = 30
    login_lockout_max_seconds: Annotated[
        int, Meta(ge=1, le=86_400, description="longest lockout of an account (the cap)")
    ] = 900
    password_hash_workers: Annotated[
        int,
        Meta(
            ge=1,
            le=64,
            description="threads hashing and verifying passwords (argon2, 64 MiB each) off the "
            "event loop, at a lower CPU priority (nice 10, Linux) so the loop goes first",
        ),
    ] = 2
    password_hash_queue: Annotated[
        int,
        Meta(
            ge=0,
            le=10_000,
            description="password checks waiting for a thread; past it logins answer 503 with "
            "`Retry-After`",
        ),
    ] = 16
    controller_roles: Annotated[
        str,
        Meta(description="roles `serve` runs, comma-separated; leave some out to scale them apart"),
    ] = "api,scheduler,ingester,alerter"
    default_check_countries: Annotated[
        int,
        Meta(ge=1, le=50, description="countries a monitor without a country list is checked from"),
    ] = 2
    results_retention_days: Annotated[
        float, Meta(gt=0, description="days of history the `RESULTS` stream keeps")
    ] = 7
    check_history_days: Annotated[
        int,
        Meta(
            ge=32,
            le=3650,
            description="days of uptime history kept in PostgreSQL: hourly rollups per monitor "
            "and country (counts by status, response-time buckets); daily partitions older than "
            "this are dropped",
        ),
    ] = 90
    check_raw_days: Annotated[
        int,
        Meta(
            ge=2,
            le=3650,
            description="days each stored check result (the results list, charts) is kept in "
            "PostgreSQL, at most CHECK_HISTORY_DAYS; daily partitions older than this are dropped",
        ),
    ] = 35
    reports_retention_days: Annotated[
        int,
        Meta(
            ge=1,
            le=3650,
            description="days a received TLS-RPT or DMARC report (its counts) and a rejected "
            "report are kept, from when they arrived",
        ),
    ] = 400
    reports_posts_per_minute: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="TLS-RPT reports one client address may POST per minute to "
            "`/reports/tls/...`, per replica; past it 429",
        ),
    ] = 60
    reports_mailbox_interval_seconds: Annotated[
        int,
        Meta(
            ge=60,
            le=86_400,
            description="seconds between two reads of an organization's report mailbox "
            "(`/api/report-mailbox`) by the alerter role",
        ),
    ] = 300
    reports_mailbox_allow_private: Annotated[
        bool,
        Meta(
            description="let the controller read report mailboxes at private and loopback "
            "addresses (labs and tests only, as `OAUTH2_ALLOW_PRIVATE_ENDPOINTS`)"
        ),
    ] = False
    reports_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000,
            description="reports an organization may have taken about one domain per clock hour "
            "(HTTPS and mail together); past it a report is refused `too_many_reports`",
        ),
    ] = 200
    report_rows_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000_000,
            description="report rows (TLS failure details, DMARC records) an organization may "
            "have taken about one domain per clock hour; past it a report is refused "
            "`too_many_rows`",
        ),
    ] = 200_000
    report_rows_kept: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000_000,
            description="aggregate rows (per day, reporter, result, MX and IP) an organization "
            "may store about one domain; past it a report is refused `rows_kept_full` until "
            "days leave REPORTS_RETENTION_DAYS",
        ),
    ] = 1_000_000
    report_token_grace_hours: Annotated[
        int,
        Meta(
            ge=0,
            le=24 * 90,
            description="hours a domain's previous TLS-RPT token is still accepted after it was "
            "rotated (time to publish the new record)",
        ),
    ] = 72
    report_digest_minutes: Annotated[
        int,
        Meta(
            ge=1,
            le=24 * 60,
            description="after a report finding's notice, minutes its monitor's further report "
            "news waits to go out together as one digest",
        ),
    ] = 60
    scheduler_batch: Annotated[
        int, Meta(ge=1, le=20_000, description="due monitors the scheduler claims per transaction")
    ] = 1000
    scheduler_gather_seconds: Annotated[
        float,
        Meta(
            ge=0.0,
            le=5.0,
            description="longest a due round waits to go out with others: passes are spaced to "
            "carry about 200 jobs each at the rate jobs fall due, at least 0.025 s and at most "
            "this apart (a pass has a fixed cost at every stage); `0`: every 0.025 s while "
            "anything is due",
        ),
    ] = 0.5
    result_bundles: Annotated[
        bool,
        Meta(
            description="let agents publish the results that finish together as one RESULTS"
            " message on `mon.results.CC.bundle` (a JSON array) instead of one message each:"
            " less work for NATS and the controller; readers of the result stream must then"
            " read bundles too (docs/stream.md). Every job says so; agents older than this"
            " setting publish one result per message",
        ),
    ] = False
    agents_per_country_max: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="live agents the controller holds per country; heartbeats of further "
            "agent ids of that country are dropped (logged), so no country crowds out another",
        ),
    ] = 500
    notify_smtp_url: Annotated[
        str | None,
        Meta(
            description="relay for alert e-mails: `smtp://user:pass@host:port` (STARTTLS when "
            "offered) or `smtps://…` (TLS from the first byte); unset: this controller sends "
            "no e-mail (alerts wait for a controller that has it)"
        ),
    ] = None
    notify_from: Annotated[
        str | None,
        Meta(description="sender of alert e-mails, e.g. `mailprobe <alerts@example.com>`"),
    ] = None
    notify_sms_webhook_url: Annotated[
        str | None,
        Meta(
            description='SMS gateway webhook: JSON POST `{"to", "text"}`; unset: this '
            "controller sends no SMS (alerts wait for a controller that has it; see Alerts and "
            "notifications)"
        ),
    ] = None
    notify_private_network_grants: Annotated[
        str,
        Meta(
            description="private networks an organization's notification channels may reach "
            "though they are not public, and over plain `http://` (an in-house Alertmanager): "
            "grants separated by `;`, each an organization's id (the API's `organizationId`) "
            "or `*` (every organization), `=`, and networks (addresses or CIDR, "
            "comma-separated), e.g. `3=10.0.0.0/8,192.168.1.5;7=fd00::/8`; an organization "
            "without a grant reaches public `https://` endpoints only, by the rules checks use"
        ),
    ] = ""
    notify_allow_private_networks: Annotated[
        str,
        Meta(
            description="retired: it opened the networks to every organization at once. Set, "
            "the controller stops at start and says how to write it as "
            "`NOTIFY_PRIVATE_NETWORK_GRANTS` (`*=<networks>` keeps every organization's grant)"
        ),
    ] = ""
    public_url: Annotated[
        str | None,
        Meta(
            description="the base URL people reach this deployment at, e.g. "
            "`https://mailprobe.example.com` (the console is under `/console/`): every notice "
            "links to its monitor's console page there, status pages' feeds and mails to the "
            "page; unset: notices name the monitor's id and carry no link, and status pages "
            "take no subscriptions"
        ),
    ] = None
    notify_reminder_minutes: Annotated[
        int,
        Meta(ge=0, le=10_080, description="reminder while a monitor stays down; `0`: none"),
    ] = 60
    notify_max_attempts: Annotated[
        int,
        Meta(
            ge=1,
            le=1000,
            description="delivery attempts of one notification (exponential backoff up to an "
            "hour apart) before it is marked failed",
        ),
    ] = 40
    confirm_rounds_per_minute: Annotated[
        int,
        Meta(
            ge=0,
            le=100_000,
            description="confirmation rounds (a failing round checked again at once from all "
            "the monitor's countries) the controller sends per minute at most, over all "
            "monitors: a rate (a burst of 5 s, then one every 60/N s) shared fairly, turn by "
            "turn between the organizations waiting (one alone may use it all); each "
            "organization's also within its `ORG_MAX_CHECKS_PER_MINUTE` allowance; a request "
            "that gets no slot within its monitor's interval waits for the next scheduled "
            "round; `0`: none",
        ),
    ] = 600
    login_spacing_seconds: Annotated[
        float,
        Meta(
            ge=0,
            le=60,
            description="seconds between the logins of one round to one account: countries "
            "log in one after another (a different one first each round), and none once an "
            "earlier one of the round was rejected; `0`: all at once",
        ),
    ] = 5.0
    login_cap_per_account: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="the ceiling of logins attempted per 10 minutes by one organization's "
            "monitors to one account (user@host, any port or protocol). Each account's cap "
            "follows its monitors (countries x rounds x logins a check, each round confirmed "
            "once, a burst of trigger-checks, plus a quarter) up to this; a monitor write whose "
            "account would need more is refused (403). Past the cap a check that logs in is "
            "recorded `login_capped` (missed), shown on the monitor and told to the owners once",
        ),
    ] = 1000
    roundtrip_mails_per_domain_per_minute: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="round-trip messages sent to one recipient domain per minute at most, "
            "over all organizations and controller replicas; past it a country's round is not "
            "sent and is recorded `domain_capped` (missed)",
        ),
    ] = 60
    login_backoff_max_minutes: Annotated[
        int,
        Meta(
            ge=1,
            le=10_080,
            description="after a round whose credentials were rejected (`auth`), checks that "
            "log in wait 2, 4, 8, … intervals, at most this many minutes, then one country "
            "logs in; a successful login or new credentials end it",
        ),
    ] = 360
    incident_no_data_close_minutes: Annotated[
        int,
        Meta(
            ge=0,
            le=10_080,
            description="an open incident whose rounds have all been missed (no agent, "
            "expired, inconclusive, `login_capped`, …) for this many minutes and at least 3 "
            "rounds is closed for lack of data: the state becomes `missed`, never `up`, and "
            "those told of the outage are told it closed without a recovery; `0`: never",
        ),
    ] = 60
    incident_group_wait_seconds: Annotated[
        int,
        Meta(
            ge=0,
            le=3600,
            description="an incident's first notice waits this long for other monitors failing "
            "on the same server or dependency to join it (one notice for one mail-flow problem)",
        ),
    ] = 30
    incident_group_interval_seconds: Annotated[
        int,
        Meta(
            ge=0,
            le=86_400,
            description="an incident's notice of a change (a monitor, a country or a cause "
            "joining it) comes at least this long after its notice before",
        ),
    ] = 300
    alert_eval_interval_seconds: Annotated[
        float,
        Meta(
            gt=0,
            le=60,
            description="how often the alerter looks for monitors to evaluate and "
            "notifications to send",
        ),
    ] = 1.0
    dns_posture_interval_seconds: Annotated[
        int,
        Meta(
            ge=60,
            le=86_400,
            description="how often each country's agent resolves a monitor's `mailDomain` (MX,"
            " SPF, DMARC, MTA-STS, TLS-RPT, TLSA) and an SMTP server's reverse DNS (PTR and"
            " forward confirmation), riding on that round's check",
        ),
    ] = 3600
    readiness_queries_per_hour: Annotated[
        int,
        Meta(
            ge=80,
            description="DNS queries one organization's readiness rounds (SPF include tree,"
            " DMARC Tree Walk, DKIM keys of a `mailDomain`) may spend per clock hour in one"
            " country; each round asked reserves 80 (its most) until its agent reports what it"
            " spent. Past it the organization's rounds there are not asked until the hour ends"
            " and their readiness findings stay unknown with why",
        ),
    ] = 10_000
    blocklists: Annotated[
        str,
        Meta(
            description="blocklist monitoring: `` off (no list is asked), `default` for the"
            " current default set (Spamhaus ZEN and DBL, Barracuda, SpamCop, PSBL, Mailspike), or"
            " comma-separated zones (a known one alone, another as `zone:ip` or `zone:domain`,"
            " `:major` for critical listings); agents ask them through `AGENT_BLOCKLIST_RESOLVER`"
        ),
    ] = ""
    blocklist_interval_seconds: Annotated[
        int,
        Meta(
            ge=600,
            le=7 * 86_400,
            description="how often each country asks the lists about one name (one query per"
            " list, name and country per interval, whichever monitors depend on it)",
        ),
    ] = 6 * 3600
    blocklist_hold_seconds: Annotated[
        int,
        Meta(
            ge=0,
            le=7 * 86_400,
            description="how long a listing must hold before it is a `blocklisted` finding",
        ),
    ] = 3600
    fleet_saturated_ratio_max: Annotated[
        float,
        Meta(
            ge=0.0,
            le=1.0,
            description="the share of a country's rounds within 15 minutes that may be recorded"
            " `saturated` before it is a `saturation` fleet finding (docs/operating.md)",
        ),
    ] = 0.05
    results_max_mib: Annotated[
        int,
        Meta(
            ge=1,
            description="size cap of the `RESULTS` stream in MiB; past it the oldest results go "
            "first, whatever their age",
        ),
    ] = RESULTS_MAX_BYTES // MIB
    events_max_mib: Annotated[
        int, Meta(ge=1, description="size cap of the `EVENTS` stream in MiB, oldest first")
    ] = EVENTS_MAX_BYTES // MIB
    stream_replicas: Annotated[
        Literal[1, 3, 5],
        Meta(
            description="JetStream servers each stream (`JOBS`, `RESULTS`, `EVENTS`) and its"
            " consumers are kept on: 1 on a single NATS server, 3 on the hub cluster of"
            " deploy/nats/ (any one server may be lost; 5: any two), at most the cluster's"
            " servers. A change moves the existing streams at the controller's next start,"
            " their messages kept"
        ),
    ] = 1
    org_max_monitors: Annotated[
        int,
        Meta(
            ge=1,
            description="monitors one organization may have, whatever their status; creating "
            "one more is refused (403)",
        ),
    ] = 1000
    org_max_blocklist_names: Annotated[
        int,
        Meta(
            ge=0,
            description="outbound addresses and domains one organization's monitors may list "
            "for blocklist checks (`reputation`), counted once however many of its monitors "
            "list one; a write past it is refused (403). Each is asked of every list from "
            "every country of its monitors once per `BLOCKLIST_INTERVAL_SECONDS`",
        ),
    ] = 1000
    org_max_maintenance_windows: Annotated[
        int,
        Meta(
            ge=1,
            description="maintenance windows one organization may have, past ones included; "
            "creating one more is refused (403). Every judged round reads its monitor's and "
            "customer's windows, so their number is the alerter's work",
        ),
    ] = 200
    org_max_checks_per_minute: Annotated[
        int,
        Meta(
            ge=1,
            description="check budget of one organization: the sum over its checked monitors "
            "(`active`, `maintenance`) of countries x rounds per minute, a monitor without a "
            "country list counting `DEFAULT_CHECK_COUNTRIES`; a create or change that raises "
            "it past this is refused (403). Trigger-checks, new monitors' first rounds and "
            "confirmation rounds draw on an allowance of as many checks per minute besides "
            "(past it a trigger-check is a 429, a first round waits for its grid, a failure "
            "waits for its next scheduled round)",
        ),
    ] = 2000
    org_max_slot_seconds_per_minute: Annotated[
        int,
        Meta(
            ge=1,
            description="slot budget of one organization: its checks per minute as counted for "
            "`ORG_MAX_CHECKS_PER_MINUTE`, each times its `timeoutSeconds` (the agent slot time "
            "it may hold); a create or change that raises it past this is refused (403). The "
            "default fits the whole check budget at the default 30 s timeout (1,000 slots held "
            "at most, spread over the countries); 1,000 monitors at 300 s / 300 s from two "
            "countries are twice that. Trigger-checks take the larger of their two shares",
        ),
    ] = 60_000
    org_max_notifications_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="e-mail notifications one organization has sent per clock hour (UTC) "
            "at most, each counted once whatever its retries; past it they are not sent but "
            "recorded `dropped` in their monitor's alert history, and the organization's owners "
            "get one notice an hour",
        ),
    ] = 500
    org_max_sms_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="SMS notifications one organization has sent per clock hour (UTC) at "
            "most, as `ORG_MAX_NOTIFICATIONS_PER_HOUR` for e-mail (each SMS costs money: a "
            "budget of its own)",
        ),
    ] = 100
    org_max_channel_notifications_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="notifications one organization's channels (webhook, Slack, Teams, "
            "PagerDuty, Opsgenie, Alertmanager) have sent per clock hour (UTC) at most, all "
            "together and each counted once, as `ORG_MAX_NOTIFICATIONS_PER_HOUR` for e-mail; "
            "a channel's test counts too",
        ),
    ] = 500
    org_max_subscriber_mails_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="e-mails to the subscribers of one organization's status pages "
            "(confirmations and updates) sent per clock hour (UTC) at most, a budget apart "
            "from `ORG_MAX_NOTIFICATIONS_PER_HOUR` so subscribers never use up the alerts'; "
            "past it they are dropped, recorded in the outbox",
        ),
    ] = 1000
    org_max_finding_notifications_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="notifications of findings (posture, certificate expiry, blocklists, "
            "side checks) one organization has sent per clock hour (UTC) at most, on each of "
            "e-mail, SMS (at most `ORG_MAX_SMS_PER_HOUR`) and its channels together: a budget "
            "of its own, so findings never use up the outage notices' "
            "(`ORG_MAX_NOTIFICATIONS_PER_HOUR` and the others); past it they are `dropped` with "
            "why and the owners get one notice an hour",
        ),
    ] = 200
    org_max_report_notifications_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="notifications of findings from TLS-RPT and DMARC reports (which "
            "strangers write) one organization has sent per clock hour (UTC) at most, per "
            "family as `ORG_MAX_FINDING_NOTIFICATIONS_PER_HOUR`: a budget of its own",
        ),
    ] = 50
    org_max_account_notifications_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="notifications about monitors' logins and delivery (back-off, login "
            "cap, OAuth2 tokens refused, round trips not delivered; channel tests too) one "
            "organization has sent per clock hour (UTC) at most, per family as "
            "`ORG_MAX_FINDING_NOTIFICATIONS_PER_HOUR`: a budget of its own",
        ),
    ] = 100
    org_max_fleet_notifications_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            description="notifications of the operator's findings about the fleet one "
            "organization has sent per clock hour (UTC) at most, per family as "
            "`ORG_MAX_FINDING_NOTIFICATIONS_PER_HOUR`: a budget of its own",
        ),
    ] = 100
    status_subscribe_per_page_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="confirmation e-mails one public status page sends per hour at most for "
            "anonymous subscription requests; more are a 429",
        ),
    ] = 20
    status_subscribe_per_address_per_day: Annotated[
        int,
        Meta(
            ge=1,
            le=1000,
            description="confirmation e-mails one address gets per 24 hours at most, over every "
            "status page; further requests answer as usual but mail nothing",
        ),
    ] = 3
    trigger_check_burst: Annotated[
        int,
        Meta(ge=1, le=1000, description="trigger-checks of one monitor allowed back to back"),
    ] = 3
    trigger_check_interval_seconds: Annotated[
        float,
        Meta(
            gt=0,
            le=86_400,
            description="after the burst, one more trigger-check of a monitor per this many "
            "seconds; sooner is a 429 with `Retry-After`",
        ),
    ] = 60.0
    oauth2_token_hosts: Annotated[
        str,
        Meta(
            description="hosts (comma-separated) a monitor's custom OAuth2 token endpoint may be "
            "on (https only; the microsoft and google presets need none); empty: presets only. "
            "Their addresses must be public unless `OAUTH2_ALLOW_PRIVATE_ENDPOINTS`"
        ),
    ] = ""
    oauth2_allow_private_endpoints: Annotated[
        bool,
        Meta(
            description="let the controller fetch OAuth2 tokens from private and loopback "
            "addresses (labs and tests only, as `AGENT_ALLOW_PRIVATE_TARGETS`)"
        ),
    ] = False
    oauth2_ca_file: Annotated[
        str | None,
        Meta(
            description="PEM CA certificate(s) trusted for OAuth2 token endpoints besides the "
            "system's (a private token endpoint)"
        ),
    ] = None
    oauth2_token_calls_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="calls to OAuth2 token endpoints one organization's monitors may make per "
            "clock hour (UTC), shared by the replicas; past it a round needing a new token is "
            "recorded `oauth2_token`",
        ),
    ] = 600
    oauth2_token_fetches: Annotated[
        int,
        Meta(
            ge=1,
            le=200,
            description="OAuth2 token endpoints one controller replica asks at once, each fetch "
            "holding a database connection (below `DB_POOL_MAX`); one organization takes at most "
            "3, and a free one goes to the waiting organization holding the fewest",
        ),
    ] = 8
    controller_metrics_host: Annotated[
        str,
        Meta(description="address of `/metrics`, `/health` and `/ready` without the `api` role"),
    ] = "0.0.0.0"
    controller_metrics_port: Annotated[
        int,
        Meta(
            ge=0,
            le=65535,
            description="port of `/metrics`, `/health` and `/ready` when `CONTROLLER_ROLES` has "
            "no `api` (with it they are on `API_PORT`); `0`: none",
        ),
    ] = 9465

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.controller_roles.split(",") if r.strip())

    @property
    def token_hosts(self) -> list[str]:
        """OAUTH2_TOKEN_HOSTS as a list."""
        return [h.strip() for h in self.oauth2_token_hosts.split(",") if h.strip()]

    @property
    def trusted_proxies(self) -> list[str]:
        """API_TRUSTED_PROXIES as uvicorn's `forwarded_allow_ips` takes them."""
        found = []
        for proxy in (p.strip() for p in self.api_trusted_proxies.split(",")):
            if not proxy:
                continue
            try:
                found.append(str(ipaddress.ip_network(proxy, strict=False)))
            except ValueError:
                raise ValueError(
                    f"API_TRUSTED_PROXIES: {proxy!r} is not an IP address or CIDR network"
                ) from None
        return found

    @property
    def notify_private_grants(self) -> dict[int | Literal["*"], list[Network]]:
        """NOTIFY_PRIVATE_NETWORK_GRANTS, parsed: networks by organization id, or by `*` for
        every organization."""
        name = "NOTIFY_PRIVATE_NETWORK_GRANTS"
        found: dict[int | Literal["*"], list[Network]] = {}
        for grant in (g.strip() for g in self.notify_private_network_grants.split(";")):
            if not grant:
                continue
            who, sep, nets = (part.strip() for part in grant.partition("="))
            org: int | Literal["*"]
            if who == "*":
                org = "*"
            elif who.isascii() and who.isdigit() and 1 <= int(who) < 2**63:
                org = int(who)
            else:
                raise ValueError(
                    f"{name}: {who!r} is not an organization id or * (grants are"
                    " `<id>=<networks>` separated by `;`)"
                )
            listed = [n.strip() for n in nets.split(",") if n.strip()]
            if not sep or not listed or org in found:
                what = "is granted twice" if org in found else "has no `=<networks>`"
                raise ValueError(f"{name}: organization {who} {what}")
            found[org] = []
            for net in listed:
                try:
                    found[org].append(ipaddress.ip_network(net, strict=False))
                except ValueError:
                    raise ValueError(
                        f"{name}: {net!r} (organization {who}) is not an IP address or CIDR network"
                    ) from None
        return found

    def __post_init__(self) -> None:
        super().__post_init__()
        if unknown := self.roles - CONTROLLER_ROLES:
            raise ValueError(
                f"CONTROLLER_ROLES names an unknown role {sorted(unknown)[0]!r}"
                f" (known: {', '.join(sorted(CONTROLLER_ROLES))})"
            )
        # One URL, its hosts comma-separated (libpq's multi-host form): not a list of URLs.
        _check_url("DATABASE_URL", self.database_url, ("postgres", "postgresql"), many=False)
        _check_secrets_filled("DATABASE_URL", self.database_url, many=False)
        self.trusted_proxies  # noqa: B018  # raises ValueError naming the setting
        if self.check_raw_days > self.check_history_days:
            raise ValueError("CHECK_RAW_DAYS must be at most CHECK_HISTORY_DAYS")
        if self.notify_allow_private_networks:
            raise ValueError(
                "NOTIFY_ALLOW_PRIVATE_NETWORKS is retired: it opened the networks to every"
                " organization. Grant them per organization in NOTIFY_PRIVATE_NETWORK_GRANTS"
                " (`<organization id>=<networks>;…`), or `*=<networks>` to keep every"
                " organization's grant (docs/settings.md)"
            )
        self.notify_private_grants  # noqa: B018  # raises ValueError naming the setting
        if self.login_lockout_max_seconds < self.login_lockout_seconds:
            raise ValueError("LOGIN_LOCKOUT_MAX_SECONDS must be at least LOGIN_LOCKOUT_SECONDS")
        _check_tls(self, "API_TLS_CERT_FILE", "API_TLS_KEY_FILE")
        if self.secrets_key is not None:
            check_secrets_key(self.secrets_key)
        if self.seal_public_keys_dir is not None:
            try:
                read_public_keys(self.seal_public_keys_dir)
            except (SealingError, OSError) as exc:
                raise ValueError(f"SEAL_PUBLIC_KEYS_DIR cannot be used: {exc}") from None
        if self.notify_smtp_url is not None:
            _check_url("NOTIFY_SMTP_URL", self.notify_smtp_url, ("smtp", "smtps"), many=False)
            parts = urlsplit(self.notify_smtp_url)
            try:
                parts.port  # noqa: B018  # raises ValueError on a bad port
            except ValueError:
                raise ValueError("NOTIFY_SMTP_URL has an invalid port") from None
            if not parts.hostname:
                raise ValueError("NOTIFY_SMTP_URL names no host")
            if self.notify_from is None or "@" not in self.notify_from:
                raise ValueError("NOTIFY_FROM (an e-mail address) is required with NOTIFY_SMTP_URL")
        if self.oauth2_token_fetches >= self.db_pool_max:
            raise ValueError("OAUTH2_TOKEN_FETCHES must be below DB_POOL_MAX")
        if self.oauth2_ca_file is not None and not os.path.isfile(self.oauth2_ca_file):
            raise ValueError("OAUTH2_CA_FILE is not a readable file")
        if self.public_url is not None:
            check_public_url(self.public_url)
        if self.notify_sms_webhook_url is not None:
            _check_url(
                "NOTIFY_SMS_WEBHOOK_URL", self.notify_sms_webhook_url, ("http", "https"), many=False
            )


class AgentSettings(ProcessSettings, rename="upper", frozen=True, kw_only=True):
    agent_country: Annotated[
        str, Meta(description="ISO 3166-1 alpha-2 country this agent serves (or `--country`)")
    ]
    agent_allow_private_targets: Annotated[
        bool, Meta(description="allow private, loopback and link-local targets (tests, labs)")
    ] = False
    agent_seal_keys_file: Annotated[
        str | None,
        Meta(
            description="file of this country's private sealing keys, one base64 key a line "
            "(two during a rotation); jobs with credentials arrive sealed and run only with "
            "their key"
        ),
    ] = None
    agent_seal_keys: Annotated[
        str | None,
        Meta(description="the same keys comma-separated, instead of or beside the file"),
    ] = None
    agent_id: Annotated[
        str | None,
        Meta(description="this agent's id in results and heartbeats; default `CC-hostname-pid`"),
    ] = None
    agent_dns_resolver: Annotated[
        str | None,
        Meta(
            description="`host` or `host:port` of the DNS resolver the mail DNS and reverse DNS"
            " posture probes ask (unset: the system's); DANE TLSA records count only when it"
            " sets the AD bit, so name a validating resolver on a path you trust (e.g. a local"
            " unbound)"
        ),
    ] = None
    agent_blocklist_resolver: Annotated[
        str | None,
        Meta(
            description="`host` or `host:port` of the DNS resolver the blocklist lookups ask"
            " (unset: `AGENT_DNS_RESOLVER`, else the system's); Spamhaus refuses queries"
            " through public resolvers (127.255.255.254), so name one of your own"
        ),
    ] = None
    agent_dns_canaries: Annotated[
        str,
        Meta(
            description="resolver canaries asked beside every mail DNS and reverse DNS probe:"
            " comma-separated `name TYPE` that must exist, `!name TYPE` that must not (at most"
            " 4); a resolver that answers one wrong makes that round's answers `unknown`"
            ' (never a finding) and is reported unhealthy; "": none'
        ),
    ] = DEFAULT_CANARIES
    agent_spamhaus_dqs_key: Annotated[
        str | None,
        Meta(
            description="a Spamhaus Data Query Service key: Spamhaus zones are asked as"
            " `<key>.<list>.dq.spamhaus.net`; a secret, never sent anywhere else"
        ),
    ] = None
    agent_mta_sts_ca_file: Annotated[
        str | None,
        Meta(
            description="PEM CA file trusted for MTA-STS policy hosts besides the system's CAs"
            " (tests, labs)"
        ),
    ] = None
    agent_mta_sts_port: Annotated[
        int,
        Meta(ge=1, le=65535, description="port of MTA-STS policy hosts (443; tests, labs)"),
    ] = 443
    agent_concurrency: Annotated[
        int, Meta(ge=1, le=100_000, description="checks one agent process runs at once")
    ] = 200
    agent_tenant_slot_share: Annotated[
        float,
        Meta(
            gt=0,
            le=1,
            description="share of `AGENT_CONCURRENCY` one organization's checks may hold while "
            "another organization's jobs wait for a slot (rounded down, at least one); a lone "
            "organization may use every slot. Waiting jobs are served one organization at a "
            "time, round robin, and the agent takes up to `AGENT_CONCURRENCY` jobs beyond its "
            "free slots to see them; `1`: no cap",
        ),
    ] = 0.5
    agent_dns_lookups_per_tenant: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,
            description="DNS lookups of check targets one organization may have in flight on"
            " this agent; past it its checks wait within their own timeout, others do not",
        ),
    ] = DNS_LOOKUPS_PER_TENANT_DEFAULT
    agent_dns_probes_per_tenant: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,
            description="DNS probes of each side check (mail DNS, blocklists, reverse DNS) one"
            " organization may have running on this agent at once; past it its rounds wait"
            " within their own budget and answer `unknown` when it runs out, others do not",
        ),
    ] = 8
    agent_shutdown_grace_seconds: Annotated[
        float,
        Meta(
            ge=0,
            description="on SIGTERM, how long in-flight checks may finish before they are "
            "handed back to other agents",
        ),
    ] = 30.0
    agent_metrics_host: Annotated[
        str, Meta(description="address of the agent's `/metrics`, `/health` and `/ready`")
    ] = "0.0.0.0"
    agent_metrics_port: Annotated[
        int,
        Meta(
            ge=0,
            le=65535,
            description="port of the agent's `/metrics`, `/health` and `/ready`; `0`: none",
        ),
    ] = 9464
    agent_canaries: Annotated[
        str | None,
        Meta(
            description="self-check canaries: comma-separated known-good `host:port` (at most"
            " 16) the agent connects to, testing its own path, one or more per port its checks"
            " use (SMTP 25, submission 587/465, IMAP 143/993, POP3 110/995; IP addresses keep"
            " them apart from the resolver check); a port all of whose canaries fail is"
            " blocked: its jobs go to other agents of the country, or end `inconclusive`."
            " Unset (and no `AGENT_CANARY_RESOLVE`): no self-checks"
        ),
    ] = None
    agent_canary_resolve: Annotated[
        str | None,
        Meta(
            description="self-check of the resolver: a name that must resolve through the one"
            " the checks use (the system's, not `AGENT_DNS_RESOLVER`); while it does not, `dns`"
            " failures end `inconclusive`"
        ),
    ] = None
    agent_canary_interval_seconds: Annotated[
        float,
        Meta(
            ge=1,
            description="how often the canaries run; also right after a check failed before a"
            " server answered, at most every 5 s",
        ),
    ] = 60.0
    agent_canary_timeout_seconds: Annotated[
        float, Meta(gt=0, le=60, description="how long one canary may take before it fails")
    ] = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_country("AGENT_COUNTRY", self.agent_country)
        if self.agent_canaries is not None:
            parse_canaries(self.agent_canaries)
        if self.agent_canary_resolve is not None and not _HOSTNAME.fullmatch(
            self.agent_canary_resolve
        ):
            raise ValueError("AGENT_CANARY_RESOLVE must be a host name like example.org")
        if self.agent_mta_sts_ca_file is not None:
            try:
                ssl.create_default_context(cafile=self.agent_mta_sts_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"AGENT_MTA_STS_CA_FILE cannot be loaded: {exc}") from None
        if self.agent_dns_resolver is not None and not re.fullmatch(
            r"(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z.:-]+)(:\d{1,5})?", self.agent_dns_resolver
        ):
            raise ValueError("AGENT_DNS_RESOLVER must be `host` or `host:port`")
        if self.agent_blocklist_resolver is not None and not re.fullmatch(
            r"(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z.:-]+)(:\d{1,5})?", self.agent_blocklist_resolver
        ):
            raise ValueError("AGENT_BLOCKLIST_RESOLVER must be `host` or `host:port`")
        # One DNS label: a key with a dot or other text could rewrite the query name.
        try:
            parse_dns_canaries(self.agent_dns_canaries)
        except ValueError as exc:
            raise ValueError(f"AGENT_DNS_CANARIES: {exc}") from None
        if self.agent_spamhaus_dqs_key is not None and not re.fullmatch(
            r"[A-Za-z0-9]{8,63}", self.agent_spamhaus_dqs_key
        ):
            raise ValueError("AGENT_SPAMHAUS_DQS_KEY must be 8 to 63 letters and digits")
        if self.agent_id is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.agent_id):
            raise ValueError("AGENT_ID must be 1 to 64 letters, digits, `-` or `_`")
        for name, keys in _seal_key_sources(self):
            if not keys:
                raise ValueError(f"{name} holds no key")
            for n, key in enumerate(keys, 1):
                try:
                    OpeningKeys([key])
                except SealingError as exc:  # says what is wrong, never the key
                    raise ValueError(f"{name}: key {n} of {len(keys)}: {exc}") from None


# A host name or IPv4 address: dot-separated labels of letters, digits, `-` and `_`, each of
# at most 63 (the resolver refuses longer ones); one way to match, so no backtracking blow-up.
_LABEL = r"[0-9A-Za-z_]([0-9A-Za-z_-]{0,61}[0-9A-Za-z_])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")
_CANARY = re.compile(r"(\[(?P<v6>[0-9A-Fa-f:.]{2,45})\]|(?P<name>[^\[\]:]+)):(?P<port>\d{1,5})")
# Each canary is a TCP connect per run; the heartbeat lists at most agent.selfcheck
# HEARTBEAT_CANARIES of them.
CANARIES_MAX = 16


def parse_canaries(value: str) -> list[tuple[str, int]]:
    """AGENT_CANARIES as (host, port) pairs, in order, without repeats; ValueError naming the
    setting and the entry's position, never its text (a mistyped URL could hold a password),
    when one is not `host:port`."""
    found: dict[tuple[str, int], None] = {}
    entries = [e.strip() for e in value.split(",")]
    for n, entry in enumerate(entries, 1):
        match = _CANARY.fullmatch(entry)
        host = match and (match["v6"] or match["name"])
        if (
            match is None
            or not host
            or not (match["v6"] or _HOSTNAME.fullmatch(host))
            or not 1 <= int(match["port"]) <= 65535
        ):
            raise ValueError(
                f"AGENT_CANARIES: entry {n} of {len(entries)} is not `host:port` (port"
                " 1-65535, an IPv6 address in brackets)"
            )
        found[(host, int(match["port"]))] = None
    if len(found) > CANARIES_MAX:
        raise ValueError(f"AGENT_CANARIES holds {len(found)} canaries; at most {CANARIES_MAX}")
    return list(found)


def _seal_key_sources(settings: AgentSettings) -> list[tuple[str, list[str]]]:
    """The private keys each seal key setting gives, by setting name: the file's lines (blank
    ones skipped), AGENT_SEAL_KEYS's comma-separated values."""
    found = []
    if settings.agent_seal_keys_file is not None:
        try:
            text = Path(settings.agent_seal_keys_file).read_text(errors="replace")
        except OSError as exc:
            raise ValueError(f"AGENT_SEAL_KEYS_FILE cannot be read: {exc}") from None
        found.append(("AGENT_SEAL_KEYS_FILE", text.split()))
    if settings.agent_seal_keys is not None:
        found.append(
            ("AGENT_SEAL_KEYS", [k for k in settings.agent_seal_keys.split(",") if k.strip()])
        )
    return found


def opening_keys(settings: AgentSettings) -> OpeningKeys:
    """The agent's private sealing keys from both settings (none: it runs unsealed jobs only)."""
    return OpeningKeys(key for _, keys in _seal_key_sources(settings) for key in keys)


def load(cls: type[T], env: Mapping[str, str] | None = None, **overrides: object) -> T:
    """Build `cls` from the environment (empty values count as unset) plus explicit overrides."""
    source = os.environ if env is None else env
    names = {f.encode_name for f in msgspec.structs.fields(cls)}
    raw: dict[str, object] = {k: v for k, v in source.items() if k in names and v != ""}
    raw.update({k.upper(): v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, type=cls, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(str(exc))) from None


def _explain(message: str) -> str:
    if missing := _MISSING.search(message):
        return f"setting {missing.group(1)} is required but not set"
    if at := _PATH.search(message):
        detail = message.split(" - at ")[0]
        return f"setting {at.group(1)} is invalid: {detail}"
    return f"setting {message}"


def table() -> str:
    """The settings table of docs/settings.md, from the Structs above."""
    rows = ["| setting | process | default | meaning |", "| --- | --- | --- | --- |"]
    seen: dict[str, list[str]] = {}
    for cls, who in ((ControllerSettings, "controller"), (AgentSettings, "agent")):
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        # Required settings first, then the others as declared (ProcessSettings's among them).
        for field in sorted(info.fields, key=lambda f: not f.required):
            if field.encode_name in seen:
                seen[field.encode_name][1] += ", " + who
                continue
            default = "" if field.required else f"`{field.default}`"
            schema = getattr(field.type, "extra_json_schema", None) or {}
            desc = str(schema.get("description", ""))
            seen[field.encode_name] = [f"`{field.encode_name}`", who, default, desc]
    rows += ["| " + " | ".join(cells) + " |" for cells in seen.values()]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
