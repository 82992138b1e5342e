"""The agent's settings, one group per concern, each a Struct of the environment variables it
reads (a field's encoded name is its variable) and the checks of those alone: who the agent is
(identity), how it reaches NATS and logs (process, shared.settings.ProcessSettings, as every
process), its sealing keys, which targets it may reach, how it runs checks (work), its side
checks' resolvers and bounds, its self-checks and its metrics endpoint.

`AgentSettings` holds the groups and `shared.settings.load` fills each from the environment, so
a missing or malformed variable still stops the agent at start with one line naming it. The
composition root (agent.__main__, and `Worker.from_settings` for the worker's own parts) hands
each part its group, never the whole. `python -m agent.settings` prints the table of
docs/settings.md.
"""

import re
import ssl
import sys
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from shared.dns_canary import DEFAULT_CANARIES, parse_dns_canaries
from shared.sealing import OpeningKeys, SealingError
from shared.settings import ProcessSettings, table

# AGENT_DNS_LOOKUPS_PER_TENANT's default, also for run_check callers that bring no resolver.
DNS_LOOKUPS_PER_TENANT_DEFAULT = 20


def _check_country(name: str, value: str) -> None:
    if not re.fullmatch(r"[A-Z]{2}", value):
        raise ValueError(f"{name} must be an upper-case ISO 3166-1 alpha-2 code like DE")


class IdentitySettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Which country this agent serves and its name in results and heartbeats."""

    agent_country: Annotated[
        str, Meta(description="ISO 3166-1 alpha-2 country this agent serves (or `--country`)")
    ]
    agent_id: Annotated[
        str | None,
        Meta(description="this agent's id in results and heartbeats; default `CC-hostname-pid`"),
    ] = None

    def __post_init__(self) -> None:
        _check_country("AGENT_COUNTRY", self.agent_country)
        if self.agent_id is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.agent_id):
            raise ValueError("AGENT_ID must be 1 to 64 letters, digits, `-` or `_`")


class SealingSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """The country's private sealing keys, which open the jobs that carry credentials."""

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

    def __post_init__(self) -> None:
        for name, keys in _seal_key_sources(self):
            if not keys:
                raise ValueError(f"{name} holds no key")
            for n, key in enumerate(keys, 1):
                try:
                    OpeningKeys([key])
                except SealingError as exc:  # says what is wrong, never the key
                    raise ValueError(f"{name}: key {n} of {len(keys)}: {exc}") from None


class TargetSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Which addresses the checks and the side checks may reach."""

    agent_allow_private_targets: Annotated[
        bool, Meta(description="allow private, loopback and link-local targets (tests, labs)")
    ] = False


class WorkSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """How the worker runs checks: how many at once, each organization's share, its target
    lookups, and how long in-flight checks may finish at a stop."""

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
            "time, the one holding fewest slots first, then the one whose checks held them "
            "least lately, then round robin, and the agent takes up to `AGENT_CONCURRENCY` jobs "
            "beyond its free slots to see them; `1`: no cap",
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
    agent_shutdown_grace_seconds: Annotated[
        float,
        Meta(
            ge=0,
            description="on SIGTERM, how long in-flight checks may finish before they are "
            "handed back to other agents",
        ),
    ] = 30.0


_HOST_PORT = r"(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z.:-]+)(:\d{1,5})?"


class SideCheckSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """What the side checks (agent.sidechecks) ask and how much: the resolvers of the mail DNS,
    reverse DNS, readiness and blocklist probes, their canaries, the Spamhaus key, the MTA-STS
    policy hosts' CA and port, and each organization's probes in flight."""

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
    agent_blocklist_recent_seconds: Annotated[
        float,
        Meta(
            ge=1,
            le=3600,
            description="seconds this agent asks no list again about a name it answered (nor a"
            " list whose lookup timed out at all): it covers the lag of the controller's view"
            " of the answers; tests and labs shorten it",
        ),
    ] = 60.0
    agent_dns_canaries: Annotated[
        str,
        Meta(
            description="resolver canaries asked beside every mail DNS, reverse DNS and"
            " readiness probe:"
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

    def __post_init__(self) -> None:
        if self.agent_mta_sts_ca_file is not None:
            try:
                ssl.create_default_context(cafile=self.agent_mta_sts_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"AGENT_MTA_STS_CA_FILE cannot be loaded: {exc}") from None
        if self.agent_dns_resolver is not None and not re.fullmatch(
            _HOST_PORT, self.agent_dns_resolver
        ):
            raise ValueError("AGENT_DNS_RESOLVER must be `host` or `host:port`")
        if self.agent_blocklist_resolver is not None and not re.fullmatch(
            _HOST_PORT, self.agent_blocklist_resolver
        ):
            raise ValueError("AGENT_BLOCKLIST_RESOLVER must be `host` or `host:port`")
        try:
            parse_dns_canaries(self.agent_dns_canaries)
        except ValueError as exc:
            raise ValueError(f"AGENT_DNS_CANARIES: {exc}") from None
        # One DNS label: a key with a dot or other text could rewrite the query name.
        if self.agent_spamhaus_dqs_key is not None and not re.fullmatch(
            r"[A-Za-z0-9]{8,63}", self.agent_spamhaus_dqs_key
        ):
            raise ValueError("AGENT_SPAMHAUS_DQS_KEY must be 8 to 63 letters and digits")


class SelfCheckSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """The agent's checks of its own path (agent.selfcheck): its canaries and how often."""

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
        if self.agent_canaries is not None:
            parse_canaries(self.agent_canaries)
        if self.agent_canary_resolve is not None and not _HOSTNAME.fullmatch(
            self.agent_canary_resolve
        ):
            raise ValueError("AGENT_CANARY_RESOLVE must be a host name like example.org")


class MetricsSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Where the agent answers `/metrics`, `/health` and `/ready` (agent.ops)."""

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


class ReceiverSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """The agent's SMTP receiver (agent.receiver): off unless `AGENT_RECEIVER_DOMAIN` is set.
    It takes mail only for the receiving monitors' addresses at that domain, within its bounds."""

    agent_receiver_domain: Annotated[
        str | None,
        Meta(
            description="the domain whose MX points at this agent: its receiver takes mail for"
            " the receiving monitors' addresses there (`hb-…@domain`); unset: no receiver"
        ),
    ] = None
    agent_receiver_host: Annotated[str, Meta(description="address the receiver listens on")] = (
        "0.0.0.0"
    )
    agent_receiver_port: Annotated[
        int, Meta(ge=0, le=65535, description="port the receiver listens on (MX: 25)")
    ] = 25
    agent_receiver_plain_port: Annotated[
        int,
        Meta(
            ge=0,
            le=65535,
            description="a second port taking the same addresses without offering STARTTLS:"
            " the senders' test (does a sender refuse, or send in the clear?); `0`: none",
        ),
    ] = 0
    agent_receiver_plain_domain: Annotated[
        str | None,
        Meta(
            description="the plain twin's domain: the plain port takes the same local parts"
            " there (and only there), so one test message sent to both an address and its twin"
            " shows whether the sender refused the clear; its MX names a host whose port 25 is"
            " the plain port; unset: the plain port takes `AGENT_RECEIVER_DOMAIN`"
        ),
    ] = None
    agent_receiver_tls_1_0_port: Annotated[
        int,
        Meta(
            ge=0,
            le=65535,
            description="a port offering STARTTLS with TLS 1.0 only (the senders' test: does a"
            " sender refuse old TLS?); needs `AGENT_RECEIVER_CERT_FILE`; `0`: none",
        ),
    ] = 0
    agent_receiver_tls_1_0_domain: Annotated[
        str | None,
        Meta(
            description="the TLS 1.0 twin's domain, as `AGENT_RECEIVER_PLAIN_DOMAIN` is the"
            " plain twin's; unset: `AGENT_RECEIVER_DOMAIN`"
        ),
    ] = None
    agent_receiver_bad_cert_port: Annotated[
        int,
        Meta(
            ge=0,
            le=65535,
            description="a port offering STARTTLS with a certificate made at start, expired and"
            " for another name (the senders' test: does a sender verify?); `0`: none",
        ),
    ] = 0
    agent_receiver_bad_cert_domain: Annotated[
        str | None,
        Meta(
            description="the bad-certificate twin's domain, as `AGENT_RECEIVER_PLAIN_DOMAIN` is"
            " the plain twin's; unset: `AGENT_RECEIVER_DOMAIN`"
        ),
    ] = None
    agent_receiver_hostname: Annotated[
        str | None,
        Meta(description="the name the receiver greets with; default the machine's name"),
    ] = None
    agent_receiver_cert_file: Annotated[
        str | None,
        Meta(
            description="PEM certificate chain offered with STARTTLS (with"
            " `AGENT_RECEIVER_KEY_FILE`); unset: no STARTTLS"
        ),
    ] = None
    agent_receiver_key_file: Annotated[
        str | None, Meta(description="PEM private key of `AGENT_RECEIVER_CERT_FILE`")
    ] = None
    agent_receiver_max_bytes: Annotated[
        int,
        Meta(ge=1024, le=64 * 1024 * 1024, description="largest message taken (SIZE; 552 past it)"),
    ] = 1024 * 1024
    agent_receiver_session_seconds: Annotated[
        float, Meta(gt=0, le=3600, description="longest one connection may last, idle or not")
    ] = 60.0
    agent_receiver_connections: Annotated[
        int, Meta(ge=1, le=100_000, description="connections the receiver holds at once")
    ] = 200
    agent_receiver_connections_per_source: Annotated[
        int,
        Meta(ge=1, le=10_000, description="connections one source address may hold at once"),
    ] = 4
    agent_receiver_messages_per_address: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="messages one receiving address takes per"
            " `AGENT_RECEIVER_WINDOW_SECONDS`; past it RCPT answers 452 (try later)",
        ),
    ] = 30
    agent_receiver_window_seconds: Annotated[
        float, Meta(gt=0, le=86_400, description="the window of the per-address count")
    ] = 600.0
    agent_receiver_parsers: Annotated[
        int,
        Meta(
            ge=1,
            le=64,
            description="threads reading messages' verdicts (DKIM, ARC, SPF, DMARC) off the"
            " event loop; twice as many messages wait, past that DATA answers 451",
        ),
    ] = 2

    def __post_init__(self) -> None:
        if self.agent_receiver_domain is not None and not _HOSTNAME.fullmatch(
            self.agent_receiver_domain
        ):
            raise ValueError("AGENT_RECEIVER_DOMAIN must be a domain like rx.example.org")
        for name, twin in (
            ("PLAIN", self.agent_receiver_plain_domain),
            ("TLS_1_0", self.agent_receiver_tls_1_0_domain),
            ("BAD_CERT", self.agent_receiver_bad_cert_domain),
        ):
            if twin is not None and not _HOSTNAME.fullmatch(twin):
                raise ValueError(
                    f"AGENT_RECEIVER_{name}_DOMAIN must be a domain like twin.example.org"
                )
        if self.agent_receiver_tls_1_0_port and self.agent_receiver_cert_file is None:
            raise ValueError("AGENT_RECEIVER_TLS_1_0_PORT needs AGENT_RECEIVER_CERT_FILE")
        if (self.agent_receiver_cert_file is None) != (self.agent_receiver_key_file is None):
            raise ValueError("AGENT_RECEIVER_CERT_FILE and AGENT_RECEIVER_KEY_FILE go together")
        if self.agent_receiver_cert_file is not None:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                    self.agent_receiver_cert_file, self.agent_receiver_key_file
                )
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"AGENT_RECEIVER_CERT_FILE cannot be loaded: {exc}") from None


class AgentSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Every group of the agent's settings; `shared.settings.load` fills each from the
    environment (its overrides by the variables' names in lower case)."""

    identity: IdentitySettings
    process: ProcessSettings
    sealing: SealingSettings
    targets: TargetSettings
    work: WorkSettings
    side_checks: SideCheckSettings
    self_checks: SelfCheckSettings
    metrics: MetricsSettings
    receiver: ReceiverSettings = msgspec.field(default_factory=lambda: ReceiverSettings())


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


def _seal_key_sources(settings: SealingSettings) -> list[tuple[str, list[str]]]:
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


def opening_keys(settings: SealingSettings) -> OpeningKeys:
    """The agent's private sealing keys from both settings (none: it runs unsealed jobs only)."""
    return OpeningKeys(key for _, keys in _seal_key_sources(settings) for key in keys)


if __name__ == "__main__":
    sys.stdout.write(table(AgentSettings) + "\n")
