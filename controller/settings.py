"""The controller's settings, one group per concern, each a Struct of the environment variables
it reads (a field's encoded name is its variable) and the checks of those alone.

`ControllerSettings` holds the groups and `shared.settings.load` fills each from the environment,
so a missing or malformed variable still stops `serve` at start with one line naming it, whatever
roles the process runs. The composition root (controller.runtime.serve) hands each component its
group, never the whole. `python -m controller.settings` prints the table of docs/settings.md.
"""

import base64
import binascii
import ipaddress
import os
import sys
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from shared.sealing import SealingError, read_public_keys
from shared.settings import (
    ProcessSettings,
    check_secrets_filled,
    check_tls,
    check_url,
    is_placeholder,
    table,
)
from shared.streams import EVENTS_MAX_BYTES, MIB, RESULTS_MAX_BYTES

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CONTROLLER_ROLES = frozenset({"api", "scheduler", "ingester", "alerter"})


def check_public_url(value: str) -> None:
    """PUBLIC_URL: an http(s) URL of a host, no credentials, query or fragment (a notice's link
    is this plus a path)."""
    check_url("PUBLIC_URL", value, ("http", "https"), many=False)
    parts = urlsplit(value)
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(
            "PUBLIC_URL must be a base URL like https://mailprobe.example.com (a host and at most"
            " a path: no credentials, query or fragment)"
        )


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


class RuntimeSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Which roles this process runs, and where it is probed when the API is not one of them."""

    controller_roles: Annotated[
        str,
        Meta(description="roles `serve` runs, comma-separated; leave some out to scale them apart"),
    ] = "api,scheduler,ingester,alerter"
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

    def __post_init__(self) -> None:
        if unknown := self.roles - CONTROLLER_ROLES:
            raise ValueError(
                f"CONTROLLER_ROLES names an unknown role {sorted(unknown)[0]!r}"
                f" (known: {', '.join(sorted(CONTROLLER_ROLES))})"
            )


class DatabaseSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """PostgreSQL: every role."""

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
    db_pool_max: Annotated[int, Meta(ge=2, le=500, description="PostgreSQL pool size")] = 20

    def __post_init__(self) -> None:
        # One URL, its hosts comma-separated (libpq's multi-host form): not a list of URLs.
        check_url("DATABASE_URL", self.database_url, ("postgres", "postgresql"), many=False)
        check_secrets_filled("DATABASE_URL", self.database_url, many=False)


class SecretsSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Secrets at rest (every role that reads or writes them) and the countries' sealing keys
    (the scheduler's jobs)."""

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

    def __post_init__(self) -> None:
        if self.secrets_key is not None:
            check_secrets_key(self.secrets_key)
        if self.seal_public_keys_dir is not None:
            try:
                read_public_keys(self.seal_public_keys_dir)
            except (SealingError, OSError) as exc:
                raise ValueError(f"SEAL_PUBLIC_KEYS_DIR cannot be used: {exc}") from None


class StreamSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """The JetStream streams every role ensures at start."""

    results_retention_days: Annotated[
        float, Meta(gt=0, description="days of history the `RESULTS` stream keeps")
    ] = 7
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


class FleetSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """The live agents (from heartbeats) and the fleet's health."""

    agents_per_country_max: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="live agents the controller holds per country; heartbeats of further "
            "agent ids of that country are dropped (logged), so no country crowds out another",
        ),
    ] = 500
    fleet_saturated_ratio_max: Annotated[
        float,
        Meta(
            ge=0.0,
            le=1.0,
            description="the share of a country's rounds within 15 minutes that may be recorded"
            " `saturated` before it is a `saturation` fleet finding (docs/operating.md)",
        ),
    ] = 0.05


class ApiSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Where and how the `api` role listens."""

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
    api_trusted_proxies: Annotated[
        str,
        Meta(
            description="reverse proxies (addresses or CIDR networks, comma-separated) whose "
            "`X-Forwarded-For` names the client; empty: the client is the socket peer"
        ),
    ] = ""

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

    def __post_init__(self) -> None:
        self.trusted_proxies  # noqa: B018  # raises ValueError naming the setting
        check_tls(self, "API_TLS_CERT_FILE", "API_TLS_KEY_FILE")


class AccessSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Logins to mailprobe itself: tokens, throttling, lockouts, password hashing."""

    token_ttl_seconds: Annotated[
        int, Meta(ge=60, description="lifetime of a bearer token from login or the CLI")
    ] = 30 * 24 * 3600
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

    def __post_init__(self) -> None:
        if self.login_lockout_max_seconds < self.login_lockout_seconds:
            raise ValueError("LOGIN_LOCKOUT_MAX_SECONDS must be at least LOGIN_LOCKOUT_SECONDS")


class FairUseSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """What one organization's monitors may ask of the service (monitors.fair_use)."""

    default_check_countries: Annotated[
        int,
        Meta(ge=1, le=50, description="countries a monitor without a country list is checked from"),
    ] = 2
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


class SchedulingSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Due rounds into jobs: the `scheduler` role (and the API's trigger-check)."""

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


class RetentionSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """How long stored results are kept: the `ingester` role's partitions."""

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

    def __post_init__(self) -> None:
        if self.check_raw_days > self.check_history_days:
            raise ValueError("CHECK_RAW_DAYS must be at most CHECK_HISTORY_DAYS")


class AlertingSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Rounds judged into states and incidents: the `alerter` role."""

    notify_reminder_minutes: Annotated[
        int,
        Meta(ge=0, le=10_080, description="reminder while a monitor stays down; `0`: none"),
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


class NotifySettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """How notices go out (channels, their networks, attempts) and where they link."""

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
    notify_max_attempts: Annotated[
        int,
        Meta(
            ge=1,
            le=1000,
            description="delivery attempts of one notification (exponential backoff up to an "
            "hour apart) before it is marked failed",
        ),
    ] = 40

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
        if self.notify_allow_private_networks:
            raise ValueError(
                "NOTIFY_ALLOW_PRIVATE_NETWORKS is retired: it opened the networks to every"
                " organization. Grant them per organization in NOTIFY_PRIVATE_NETWORK_GRANTS"
                " (`<organization id>=<networks>;…`), or `*=<networks>` to keep every"
                " organization's grant (docs/settings.md)"
            )
        self.notify_private_grants  # noqa: B018  # raises ValueError naming the setting
        if self.notify_smtp_url is not None:
            check_url("NOTIFY_SMTP_URL", self.notify_smtp_url, ("smtp", "smtps"), many=False)
            parts = urlsplit(self.notify_smtp_url)
            try:
                parts.port  # noqa: B018  # raises ValueError on a bad port
            except ValueError:
                raise ValueError("NOTIFY_SMTP_URL has an invalid port") from None
            if not parts.hostname:
                raise ValueError("NOTIFY_SMTP_URL names no host")
            if self.notify_from is None or "@" not in self.notify_from:
                raise ValueError("NOTIFY_FROM (an e-mail address) is required with NOTIFY_SMTP_URL")
        if self.public_url is not None:
            check_public_url(self.public_url)
        if self.notify_sms_webhook_url is not None:
            check_url(
                "NOTIFY_SMS_WEBHOOK_URL", self.notify_sms_webhook_url, ("http", "https"), many=False
            )


class NoticeBudgetSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Notifications per organization and clock hour, one budget per source and channel family
    (notify.budget)."""

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


class ReportsSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """TLS-RPT and DMARC reports: taken over HTTPS (`api`) and from mailboxes (`alerter`)."""

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


class BlocklistSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Blocklist monitoring: which lists, how often, how long a listing holds."""

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


class OAuth2Settings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Access tokens of monitors' OAuth2 logins: where they may be fetched, how many, how
    often."""

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

    @property
    def token_hosts(self) -> list[str]:
        """OAUTH2_TOKEN_HOSTS as a list."""
        return [h.strip() for h in self.oauth2_token_hosts.split(",") if h.strip()]

    def __post_init__(self) -> None:
        if self.oauth2_ca_file is not None and not os.path.isfile(self.oauth2_ca_file):
            raise ValueError("OAUTH2_CA_FILE is not a readable file")


class StatusPageSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Subscriptions to customers' public status pages."""

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


class ControllerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Every group of the controller's settings; `shared.settings.load` fills each from the
    environment. Build one in code with `of` (the variables' names, lower-case) and change one
    with `replace`."""

    process: ProcessSettings
    database: DatabaseSettings
    runtime: RuntimeSettings
    secrets: SecretsSettings
    streams: StreamSettings
    fleet: FleetSettings
    api: ApiSettings
    access: AccessSettings
    fair_use: FairUseSettings
    scheduling: SchedulingSettings
    retention: RetentionSettings
    alerting: AlertingSettings
    notify: NotifySettings
    budget: NoticeBudgetSettings
    reports: ReportsSettings
    reputation: BlocklistSettings
    oauth2: OAuth2Settings
    status_pages: StatusPageSettings

    @property
    def roles(self) -> frozenset[str]:
        return self.runtime.roles

    def __post_init__(self) -> None:
        if self.oauth2.oauth2_token_fetches >= self.database.db_pool_max:
            raise ValueError("OAUTH2_TOKEN_FETCHES must be below DB_POOL_MAX")

    @classmethod
    def of(cls, **values: Any) -> "ControllerSettings":
        """The settings from `values` by their variables' names in lower case (DATABASE_URL:
        `database_url`), each group's defaults for the rest; each group checked as at start."""
        groups = {f.name: f.type for f in msgspec.structs.fields(cls)}
        split = _split(groups, values)
        return cls(**{name: group(**split.get(name, {})) for name, group in groups.items()})

    def replace(self, **values: Any) -> "ControllerSettings":
        """A copy with `values` (as `of` takes them) changed, each changed group checked again."""
        current = {f.name: getattr(self, f.name) for f in msgspec.structs.fields(self)}
        split = _split({name: type(group) for name, group in current.items()}, values)
        return type(self)(
            **{
                name: msgspec.structs.replace(group, **split[name]) if name in split else group
                for name, group in current.items()
            }
        )


def _split(groups: dict[str, Any], values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`values` by the group (its field name in ControllerSettings) that declares each; a name
    no group declares is a TypeError, as a misspelt keyword is."""
    owners = {field: name for name, group in groups.items() for field in group.__struct_fields__}
    if unknown := set(values) - set(owners):
        raise TypeError(f"no controller setting {sorted(unknown)[0]!r}")
    split: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        split.setdefault(owners[key], {})[key] = value
    return split


if __name__ == "__main__":
    sys.stdout.write(table(ControllerSettings) + "\n")
