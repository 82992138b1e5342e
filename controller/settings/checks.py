"""The settings of the checks: what an organization's monitors may ask (fair use), how rounds
are scheduled, how long results are kept, the blocklists asked, the OAuth2 tokens fetched."""

import os
from typing import Annotated

import msgspec
from msgspec import Meta


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
    job_ids_seeded: Annotated[
        bool,
        Meta(
            description="give scheduled rounds seeded job ids (a stored routine result then"
            " keeps no id of its own: 16 bytes less) from a time every process reads"
            " (`job_id_scheme.seeded_from`), set a minute ahead once every live controller has"
            " let them (their sessions' `application_name` ends in `ids3`) for 5 minutes;"
            " `false`: this controller's sessions lack `ids3`, so every controller makes keyed"
            " ids, as releases before it did (set it, and wait 15 minutes, before rolling a"
            " controller back to such a release: docs/operating.md)",
        ),
    ] = True
    confirm_rounds_per_minute: Annotated[
        int,
        Meta(
            ge=0,
            le=100_000,
            description="confirmation rounds (a failing round checked again at once from all "
            "the monitor's countries, with its siblings (same host name, `dependsOn`) when a run "
            "starts; "
            "a passing round of an open incident likewise) the controller sends per minute at "
            "most, over all "
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
    readiness_queries_per_hour: Annotated[
        int,
        Meta(
            ge=80,
            description="DNS queries one organization's readiness rounds (SPF include tree,"
            " DMARC Tree Walk, DKIM keys of a `mailDomain`) may spend per clock hour in one"
            " country; each round asked reserves 80 (its most) until its agent reports what it"
            " spent. A round that does not fit is not asked (its readiness findings stay"
            " unknown with why); the organization's monitors there take turns, those held"
            " longest first",
        ),
    ] = 10_000
    graph_calls_per_mailbox: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,
            description="Microsoft Graph calls one organization's checks may make to one"
            " mailbox in any 10 minutes, over all agents and countries (Graph allows 10,000 per"
            " app and mailbox). Each job reserves what it may make (a mailbox check 2, a round"
            " trip GRAPH_CALLS_PER_ROUND_TRIP) and carries it as `apiCalls`; a job that does not"
            " fit goes with none and ends `inconclusive` (throttled, not sent)",
        ),
    ] = 10_000
    graph_calls_per_round_trip: Annotated[
        int,
        Meta(
            ge=4,
            le=1_000,
            description="Graph calls a round trip over Graph may make (send, every look's"
            " folders and pages, cleanup); one that needs more ends `inconclusive`",
        ),
    ] = 200
    gmail_units_per_user: Annotated[
        int,
        Meta(
            ge=100,
            le=15_000,
            description="Gmail API quota units one organization's checks may spend on one"
            " Gmail user in any minute, over all agents and countries (Google allows 6,000 per"
            " user per minute and project; a call costs its method's units: messages.send 100,"
            " messages.list and messages.get 5). Each job reserves what it may spend (a mailbox"
            " check 2, a round trip GMAIL_UNITS_PER_ROUND_TRIP) and carries it as `apiUnits`; a"
            " job that does not fit goes with none and ends `inconclusive` (throttled, not sent)",
        ),
    ] = 6_000
    gmail_units_per_round_trip: Annotated[
        int,
        Meta(
            ge=120,
            le=6_000,
            description="Gmail quota units a round trip over the Gmail API may spend (send 100,"
            " every look's pages and messages, the trash); one that needs more ends"
            " `inconclusive`",
        ),
    ] = 1_000


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
