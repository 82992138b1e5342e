"""A monitor's round as the scheduler plans it: pure rules, no I/O (the scheduler's planner,
controller.scheduling.planner, asks it for the monitors its worker claims).

Which countries a round goes to, its jobs (a config with credentials sealed to each job's
country), the countries where it is recorded missed (`no_agent`, `no_seal_key`, `auth_backoff`,
`overdue`), the order of its logins to one account (`space_logins`), the agents a confirmation
job avoids (`second_opinions`) and the keyed hashes a job carries (`tenant`, `account`).
"""

import functools
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from controller.jobs import rules as job_rules
from controller.jobs.result_kinds import NO_SEAL_KEY, OVERDUE, ResultRow
from controller.jobs.scheme import seeded_round
from controller.logins import cap as login_cap
from controller.logins.backoff import HELD, logins
from controller.logins.cap import Login
from controller.monitors import mailbox_apis
from controller.oauth2.rules import OAUTH2_TOKEN, TokenFailure, with_tokens
from controller.scheduling import rules as schedule
from controller.scheduling.job_config import JobConfigError, opened
from controller.scheduling.rules import LOOKBACK
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys, carries_credentials
from controller.settings import SchedulingSettings
from controller.sidechecks.asks import asking
from controller.sidechecks.frame import AnySideCheck, Held, Planning
from controller.sidechecks.registry import WIRED
from shared.guards import BrokenInvariant
from shared.messages import (
    JOB_TYPES,
    CheckJob,
    ImapPopConfig,
    JobConfig,
    MonitorType,
    RoundTripCheckJob,
    RoundTripConfig,
    SealedConfig,
    SmtpConfig,
    default_port,
    encode_sealed,
)
from shared.secret import Secret
from shared.sidechecks import SideCheckError
from shared.subjects import jobs_subject
from shared.timefmt import iso_ms, parse_iso

if TYPE_CHECKING:  # the types only: planning reads no store
    from controller.monitors.store import Monitor, WatchedMonitor
    from controller.roundtrips.rounds_store import InFlight

ACCOUNT_PURPOSE = "mailprobe login accounts"
DEFAULT_SCHEDULING = SchedulingSettings()
TENANT_PURPOSE = "mailprobe job tenants"


class UnfitMonitor(msgspec.Struct, kw_only=True, frozen=True):
    """A claimed monitor whose stored config does not fit its kind (`MonitorConfigError`):
    what its round needs to go nowhere on its grid, and why (`error`)."""

    id: int
    public_id: UUID
    type: MonitorType
    check_interval: int
    next_due_at: datetime | None
    allowed_country_codes: list[str] | None
    round_countries: list[str] | None
    error: str
    rounds_since: datetime | None = None


@dataclass
class PlannedRound:
    """One monitor's round as the scheduler plans it: its countries, the jobs to publish and
    the countries where it is recorded missed (`no_agent`, `no_seal_key`, ...). `unusable`:
    why the monitor cannot become jobs (its round sends nothing and records nothing, its next
    due time still moves)."""

    monitor_id: int
    scheduled_at: datetime
    next_due: datetime | None
    countries: Sequence[str] = ()
    jobs: list[CheckJob] = field(default_factory=list)
    missed: list[ResultRow] = field(default_factory=list)
    # Later logins to the account, (seconds after the first, job): see `space_logins`.
    deferred: list[tuple[float, CheckJob]] = field(default_factory=list)
    account: str | None = None  # the account its jobs log in to (`account`), if any
    legs: int = 1  # logins a check makes to that account (a round trip sending as it: 2)
    # The mailboxes its jobs call over an API, each keyed (`api_calls_store`).
    api_charges: list[mailbox_apis.Charge] = field(default_factory=list)
    dns_round: bool = False  # its jobs ask the side checks of the `dns` cadence (a DNS round)
    # Its looks waiting for their monitor's round in flight: that round's time by job id.
    awaited: dict[str, datetime] = field(default_factory=dict)
    unusable: str | None = None
    # A check-now's: the round trip's round in flight it joined (this round sent nothing).
    joined: "InFlight | None" = None


# A batch planned on the loop, when none of its monitors carries credentials, holds at most
# PLAN_INLINE_MAX monitors and makes at most PLAN_INLINE_ROWS rows (jobs and missed rows): some
# 30 us a monitor and 4-8 us a row (its id's hash, its struct), so about 2 ms there; a thread's
# hop (a wake-up of the loop and of a worker) costs as much as a couple of monitors. A round's
# rows are its countries (a list may name every one) times its rounds (the one it runs and each
# over since it was due: an hour of them after an outage), so monitors alone do not bound them.
PLAN_INLINE_MAX = 64
PLAN_INLINE_ROWS = 256


def rows_of(
    target: "WatchedMonitor | UnfitMonitor",
    now: datetime,
    default_countries: int,
    *,
    trigger: bool = False,
) -> float:
    """At least the rows (jobs and missed rows) `target`'s round planned `now` makes: a row per
    country (its list, else DEFAULT_CHECK_COUNTRIES or where its latest round went) and round
    (the one it runs, and one per interval it is late; a triggered round only the one it
    runs, `round_times`)."""
    if isinstance(target, UnfitMonitor):
        base: Monitor | UnfitMonitor = target
        listed, went = target.allowed_country_codes, target.round_countries
    else:
        base = target.monitor
        listed, went = target.monitor.allowed_country_codes, target.rounds.countries
    places = len(listed) if listed is not None else max(default_countries, len(went or ()))
    late = 0.0 if trigger or base.next_due_at is None else (now - base.next_due_at).total_seconds()
    return places * (1 + max(0.0, late) / base.check_interval)


def light(
    claimed: Sequence["WatchedMonitor | UnfitMonitor"],
    now: datetime,
    default_countries: int,
    *,
    trigger: bool = False,
) -> bool:
    """Whether planning `claimed` `now` (as triggered rounds when `trigger`: a "Check now", a
    confirmation) is quick enough for the event loop: few monitors, few rows (`rows_of`), none
    whose config is opened or sealed (`carries_credentials`, read on the stored config, its
    secrets still sealed)."""
    if len(claimed) > PLAN_INLINE_MAX:
        return False
    rows = 0.0
    for m in claimed:
        if not isinstance(m, UnfitMonitor) and carries_credentials(m.monitor.config):
            return False
        rows += rows_of(m, now, default_countries, trigger=trigger)
        if rows > PLAN_INLINE_ROWS:
            return False
    return True


def round_times(
    public_id: str,
    interval: int,
    next_due_at: datetime | None,
    now: datetime,
    trigger: bool,
    since: datetime | None = None,
) -> tuple[list[datetime], datetime | None, datetime | None]:
    """The round's over times (recorded `overdue`), the time it runs (None: it is over too)
    and the monitor's next due time; a triggered round (or one without a due time, which
    `plan_new` gives it next) runs now and keeps the due time. `since`: the monitor's first
    due time (`schedule.overdue_rounds`)."""
    if trigger or next_due_at is None:
        return [], schedule.round_time(now), next_due_at
    phase = schedule.phase_ms(public_id, interval)
    return schedule.overdue_rounds(phase, interval, next_due_at, now, LOOKBACK, since)


def grid_after(public_id: str, interval: int, now: datetime) -> datetime:
    """The monitor's first grid point after `now`: its first due time when its first round
    does not go at once, and where its rounds go on after a first round sent now."""
    return schedule.next_due(schedule.phase_ms(public_id, interval), interval, now)


def grid_after_first(public_id: str, interval: int, at: datetime) -> datetime:
    """Where the grid of a monitor whose first round is triggered at `at` starts
    (`schedule.grid_after_round`)."""
    return schedule.grid_after_round(schedule.phase_ms(public_id, interval), interval, at)


def countries(
    public_id: str,
    listed: Sequence[str] | None,
    went: Sequence[str] | None,
    live: frozenset[str],
    default_countries: int,
) -> Sequence[str]:
    """The round's countries: its list, else `default_countries` picked among the live ones,
    else (no live agent anywhere) where its latest round went, to be recorded `no_agent`."""
    if listed is not None:
        return listed
    return schedule.pick_countries(public_id, live, default_countries) or went or ()


def space_logins(plan: PlannedRound, interval: int, spacing_s: float) -> None:
    """Logins to one account go country after country, `spacing_s` apart, starting with a
    different country each round: the first job now, the others deferred. Then a rejected
    password is tried from one country, not from all at once (the scheduler's `run_deferred`)."""
    if len(plan.jobs) < 2 or spacing_s <= 0:
        return
    start = int(plan.scheduled_at.timestamp()) // interval % len(plan.jobs)  # round number
    order = plan.jobs[start:] + plan.jobs[:start]
    plan.jobs = order[:1]
    plan.deferred = [(i * spacing_s, job) for i, job in enumerate(order) if i]


def second_opinions(
    failed: Mapping[int, Mapping[str, set[str]]], live: Iterable[tuple[str, str]]
) -> dict[int, dict[str, list[str]]]:
    """Per monitor and country, the agents a confirmation job should avoid: those whose check
    failed (`failed`), when another agent of the country is live (`live`: country, agent id)
    to give a second opinion."""
    by_country: dict[str, set[str]] = {}
    for cc, agent in live:
        by_country.setdefault(cc, set()).add(agent)
    return {
        monitor: {
            cc: sorted(agents)
            for cc, agents in countries.items()
            if by_country.get(cc, set()) - agents
        }
        for monitor, countries in failed.items()
    }


def tenant(key: bytes, organization_id: int) -> str:
    """The job's `tenant`: the organization as a keyed hash, so agents can tell tenants apart
    without learning which organization is which."""
    return hmac.digest(key, str(organization_id).encode(), hashlib.sha256).hex()[:16]


def _user_at(user: str, hostname: str) -> str:
    return f"{user.lower()}@{hostname.lower().rstrip('.')}"


def _login(hostname: str, config: JobConfig) -> tuple[str, str]:
    """The user a config logs in as and the host it logs in to; a round trip's are its
    mailbox's, where every country logs in each round."""
    if isinstance(config, RoundTripConfig):
        return config.receive.user, config.receive.hostname
    if isinstance(config, ImapPopConfig):
        return config.user, hostname
    if isinstance(config, SmtpConfig):
        return (config.auth.user if config.auth else ""), hostname
    return "", hostname


def account_name(hostname: str, config: JobConfig) -> str | None:
    """The account a config logs in to, user@host; None without a user. The twin of SQL
    `login_account` (migration 0053), held to it by tests/pipeline/test_login_rules.py."""
    user, host = _login(hostname, config)
    return _user_at(user, host) if user else None


def account(key: bytes, hostname: str, config: JobConfig) -> str:
    """The account a config logs in to, user@host, as a keyed hash (no user name kept)."""
    return account_key(key, _user_at(*_login(hostname, config)))


def account_key(key: bytes, name: str) -> str:
    """An account's or mailbox's name as a keyed hash (no user name kept)."""
    return hmac.digest(key, name.encode(), hashlib.sha256).hex()[:32]


def legs_of(hostname: str, config: JobConfig) -> int:
    """Logins a check makes to its account: a round trip whose submission logs in as its
    mailbox's user on the mailbox's host makes two. The twin of SQL `login_legs` (migration
    0053) for a config with a user."""
    if isinstance(config, RoundTripConfig) and config.send.auth:
        mailbox = config.receive
        same = _user_at(config.send.auth.user, hostname) == _user_at(mailbox.user, mailbox.hostname)
        return 2 if same else 1
    return 1


def legs(job: CheckJob) -> int:
    """A deferred job's logins: its config is sealed, so a round trip counts both legs, and
    each read of its mailbox a side check asks (`side_reads`) counts as a login whichever
    account it reads (never fewer than the round counted: `_count_reads`)."""
    return (2 if isinstance(job, RoundTripCheckJob) else 1) + side_reads(job)


def side_reads(job: CheckJob) -> int:
    """How many times the side checks `job` asks read its mailbox besides its check."""
    return sum(n for _, n in _reads_by_check(job))


def _reads_by_check(job: CheckJob) -> list[tuple[AnySideCheck, int]]:
    found: list[tuple[AnySideCheck, int]] = []
    for check in WIRED.values():
        if check.mailbox_reads is None or check.wire is None:
            continue
        try:
            asked = check.wire.ask_of(job.side_checks)
        except SideCheckError:
            continue
        if asked is not None and (n := check.mailbox_reads(asked)):
            found.append((check, n))
    return found


def login(job: CheckJob, account: str, legs: int, cap: tuple[int, int]) -> Login:
    """The job as a login to `account` under `cap` (organization, logins per window); it
    counts until it settles (its expiry plus its timeout)."""
    settles = schedule.job_settles(parse_iso(job.expires_at), job.timeout_seconds)
    return Login(job.job_id, cap[0], account, legs, settles, cap[1])


def capped_why(cap: int, ceiling: int) -> str:
    """The message of a login held by its account's cap (`login_capped`)."""
    return (
        f"over this account's login cap ({cap} logins in"
        f" {login_cap.WINDOW.seconds // 60} minutes over your organization's monitors of"
        f" it; {login_cap.SETTING} {ceiling} at most): not sent"
    )


def held(job: CheckJob, kind: str, why: str) -> ResultRow:
    """The missed row of a job not sent (`auth_backoff`, `login_capped`, a round trip's
    message held)."""
    return ResultRow.missed(
        UUID(job.monitor_id),
        job.monitor_type,
        job.country,
        job.job_id,
        parse_iso(job.scheduled_at),
        kind,
        why,
    )


class RoundPlanner:
    """Plans monitors' rounds; its keys and settings are the scheduler's."""

    def __init__(
        self,
        job_ids: job_rules.JobIds,
        box: SecretBox,
        keys: CountryKeys,
        *,
        scheduling: SchedulingSettings = DEFAULT_SCHEDULING,
        default_countries: int = 2,
        held: Sequence[Held] = (),
    ) -> None:
        """`scheduling`: the DNS window (DNS_POSTURE_INTERVAL_SECONDS), the logins' spacing
        (LOGIN_SPACING_SECONDS) and RESULT_BUNDLES; `held`: what the scheduler holds for side
        checks' planning, each bound to a key a registered side check declares (`plans`)."""
        declared = {c.plans.name for c in WIRED.values() if c.plans is not None}
        if undeclared := [h.name for h in held if h.name not in declared]:
            raise BrokenInvariant(f"plan.RoundPlanner: no side check plans with {undeclared}")
        self._held = {h.name: h.value for h in held}
        self._job_ids = job_ids
        self._result_bundles = scheduling.result_bundles  # on every job
        self._box = box
        self._keys = keys
        self._default_countries = default_countries
        self._dns_interval_s = scheduling.dns_posture_interval_seconds
        self._login_spacing = scheduling.login_spacing_seconds
        self._account_key = box.subkeys(ACCOUNT_PURPOSE)[0]
        self._tenant_key = box.subkeys(TENANT_PURPOSE)[0]
        self._tenants: dict[int, str] = {}  # organization id: `tenant`, a keyed hash of it

    def light(
        self,
        claimed: Sequence["WatchedMonitor | UnfitMonitor"],
        now: datetime,
        *,
        trigger: bool = False,
    ) -> bool:
        """`light` with this planner's DEFAULT_CHECK_COUNTRIES."""
        return light(claimed, now, self._default_countries, trigger=trigger)

    def round(
        self,
        target: "WatchedMonitor | UnfitMonitor",
        now: datetime,
        live: frozenset[str],
        *,
        trigger: bool = False,
        avoid: Mapping[str, list[str]] | None = None,
        tokens: Mapping[str, Secret] | TokenFailure | None = None,
        oauth2_live: frozenset[str] = frozenset(),
        apis_live: Mapping[str, frozenset[str]] | None = None,
    ) -> PlannedRound:
        """The monitor's round now: one job per country with a live agent (and a key when the
        job carries credentials), a missed row per country without, and an `overdue` row per
        country for each round over before it could be sent. A monitor that cannot become jobs
        (a config that does not fit, a secret that does not open, a bad country code) gets a
        round marked `unusable`, with its countries and next due time, nothing else.

        A monitor with OAuth2 logins logs in with `tokens` (an access token per grant, or why
        there is none: its countries are then recorded `oauth2_token`), and only from
        countries in `oauth2_live` (every live agent there logs in with OAuth2). A round trip
        whose legs use a mailbox API goes only to countries where every live agent has its
        feature (`apis_live`: by feature, those countries)."""
        base: Monitor | UnfitMonitor
        if isinstance(target, UnfitMonitor):
            base = target
            listed, went = target.allowed_country_codes, target.round_countries
            since = target.rounds_since
        else:
            base = target.monitor
            listed, went = target.monitor.allowed_country_codes, target.rounds.countries
            since = target.rounds.since
        public_id = str(base.public_id)
        # Every id of a round under one scheme, from `seeded_from` read once: it may move
        # meanwhile.
        seeded_from = self._job_ids.seeded_from()
        over, run, next_at = round_times(
            public_id, base.check_interval, base.next_due_at, now, trigger, since
        )
        plan = PlannedRound(base.id, run or over[-1], next_at)
        chosen = countries(public_id, listed, went, live, self._default_countries)
        bad = [cc for cc in chosen if not _valid_country(cc)]
        if bad:
            plan.unusable = f"invalid country codes {bad}"
            return plan
        plan.countries = chosen
        if not chosen:
            return plan
        if run is not None:
            try:
                if isinstance(target, UnfitMonitor):
                    raise JobConfigError(target.error)
                seeded = seeded_round(seeded_from, plan.scheduled_at)
                self._jobs(
                    plan,
                    target,
                    now,
                    live,
                    trigger,
                    avoid or {},
                    tokens,
                    oauth2_live,
                    seeded,
                    apis_live or {},
                )
            except JobConfigError as exc:
                plan.unusable = str(exc)
                return plan
        if not over:
            return plan
        why = f"the round was over when the scheduler got to it at {iso_ms(now)}: not sent"
        plan.missed += [
            ResultRow.missed(
                base.public_id,
                base.type,
                cc,
                self._job_ids.make(public_id, cc, at, seeded=seeded_round(seeded_from, at)),
                at,
                OVERDUE,
                why,
            )
            for at in over
            for cc in chosen
        ]
        return plan

    def _jobs(
        self,
        plan: PlannedRound,
        watched: "WatchedMonitor",
        now: datetime,
        live: frozenset[str],
        trigger: bool,
        avoid: Mapping[str, list[str]],
        tokens: Mapping[str, Secret] | TokenFailure | None = None,
        oauth2_live: frozenset[str] = frozenset(),
        seeded: bool = False,
        apis_live: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        """The round's jobs (asking the agents in `avoid` of each country to leave them to
        another) and the countries it cannot go to; `seeded`: its ids' scheme."""
        m, rounds = watched.monitor, watched.rounds
        if m.type == "heartbeat":  # no monitor_due row: never claimed (migration 0153)
            raise BrokenInvariant("plan.RoundPlanner._jobs: a heartbeat monitor has no jobs")
        monitor_type: MonitorType = m.type
        public_id = str(m.public_id)
        config = opened(m.config, self._box)
        no_token: str | None = None
        if m.grants:
            # Only the access tokens go into the job, in place of the password.
            if isinstance(tokens, Mapping) and set(m.grants) <= set(tokens):
                config = with_tokens(config, m.grants, tokens)
            elif isinstance(tokens, TokenFailure):
                no_token = tokens.why
            else:
                no_token = "no OAuth2 access token was asked for this round: not sent"
        scheduled = plan.scheduled_at
        needs = mailbox_apis.features(config)
        # The side checks of the `dns` cadence (the slow posture lookups and tests) go on the
        # same rounds: one per DNS window.
        dns = False
        if any(c.cadence == "dns" and c.watched(m) for c in WIRED.values()):
            args = (public_id, scheduled, m.check_interval, self._dns_interval_s)
            # A triggered round, or a monitor's first (none carried them yet): at once.
            dns = (
                schedule.trigger_dns(*args, rounds.mail_dns_at)
                if trigger or rounds.mail_dns_at is None
                else schedule.dns_due(*args)
            )
            plan.dns_round = dns
        for check in WIRED.values():
            if check.session_config is not None:
                due = dns or check.cadence != "dns"
                config = check.session_config(config, due and check.watched(m))
        port = m.port or default_port(monitor_type, config)
        plain = None
        if carries_credentials(config):
            plan.account = account(self._account_key, m.hostname, config)
            plan.legs = legs_of(m.hostname, config)
            plan.api_charges = [
                c._replace(mailbox=account_key(self._account_key, f"{c.api}:{c.mailbox}"))
                for c in mailbox_apis.charges(m.hostname, config)
            ]
            bound = SealedConfig(
                monitor_id=public_id, hostname=m.hostname, port=port, config=config
            )
            plain = encode_sealed(bound)
        may_log_in = logins(
            rounds.login_failures,
            rounds.login_retry_at,
            scheduled,
            plan.countries,
            timedelta(seconds=m.check_interval),
        )
        scheduled_iso = iso_ms(scheduled)
        expires_iso = iso_ms(schedule.expires_at(scheduled, m.check_interval))
        job_type = JOB_TYPES[monitor_type]
        # A side check of its own cadence: the first round of each of its windows.
        first_of = functools.partial(
            _first_of, public_id=public_id, scheduled=scheduled, interval_s=m.check_interval
        )
        checks = asking(m, dns)
        org = self._tenants.get(m.organization_id)
        if org is None:
            org = self._tenants[m.organization_id] = tenant(self._tenant_key, m.organization_id)
        for cc in plan.countries:
            jid = self._job_ids.make(public_id, cc, scheduled, trigger, seeded)

            def missed(kind: str, why: str, cc: str = cc, jid: str = jid) -> None:
                plan.missed.append(
                    ResultRow.missed(m.public_id, m.type, cc, jid, scheduled, kind, why)
                )

            if cc not in live:
                missed(
                    "no_agent",
                    f"no live agent in {cc} at {iso_ms(now)}: the round did not run there",
                )
                continue
            fields: dict[str, Any] = {"config": config}
            if plain is not None and cc not in may_log_in and rounds.login_retry_at is not None:
                missed(
                    HELD,
                    "credentials rejected: logins paused so the account is not locked (next"
                    f" login at or after {iso_ms(rounds.login_retry_at)}, from one country);"
                    " update them to resume",
                )
                continue
            if no_token is not None:
                missed(OAUTH2_TOKEN, no_token)
                continue
            if m.grants and cc not in oauth2_live:
                missed(
                    "no_agent",
                    f"no live agent in {cc} logs in with OAuth2 (every agent there must be of"
                    " a version that does): not sent",
                )
                continue
            if lacking := [f for f in needs if cc not in (apis_live or {}).get(f, ())]:
                missed(
                    "no_agent",
                    f"no live agent in {cc} runs the {', '.join(lacking)} legs (every agent"
                    " there must be of a version that does): not sent",
                )
                continue
            if plain is not None:
                key = self._keys.get(cc)
                if key is None:
                    missed(NO_SEAL_KEY, f"credentials not sent to {cc}: {self._keys.missing(cc)}")
                    continue
                # The config stays the type's default: no secret, no user name in clear.
                fields = {"sealed_config": key.seal(plain), "seal_key_id": key.id}
            side, older = side_asks(
                Planning(m, config, scheduled, trigger, dns, cc, self._held, first_of), checks
            )
            job = job_type(
                job_id=jid,
                monitor_id=public_id,
                hostname=m.hostname,
                port=port,
                timeout_seconds=float(m.timeout_seconds),
                country=cc,
                scheduled_at=scheduled_iso,
                expires_at=expires_iso,
                avoid_agents=avoid.get(cc, []),
                tenant=org,
                result_bundles=self._result_bundles,
                side_checks=side,
                **fields,
            )
            # An agent that predates `sideChecks` is asked the same by the older fields.
            plan.jobs.append(msgspec.structs.replace(job, **older) if older else job)
        if plain is not None:
            _count_reads(plan, config)
            space_logins(plan, m.check_interval, self._login_spacing)


def _count_reads(plan: PlannedRound, config: JobConfig) -> None:
    """The round's logins and API calls with its side checks' reads of its mailbox (each
    job asks the same): a login each where the round's account is the mailbox's (an IMAP or
    POP3 monitor, a round trip logging in as its mailbox's user), a look's calls each on the
    mailbox over an API."""
    reads = _reads_by_check(plan.jobs[0]) if plan.jobs else []
    if not reads:
        return
    mailbox_login = (isinstance(config, ImapPopConfig) and not config.api) or plan.legs == 2
    if mailbox_login:
        plan.legs += sum(n for _, n in reads)
    boxes = [c for c in plan.api_charges if c.part in ("check", "read")]
    plan.api_charges += [
        c._replace(part="look", amount=check.read_calls.get(c.api, 0))
        for c in boxes
        for check, n in reads
        for _ in range(n)
    ]


def side_asks(
    p: Planning, checks: Sequence[AnySideCheck] | None = None
) -> tuple[dict[str, object], dict[str, object]]:
    """What a job asks of the side checks (`sideChecks`, by name), and the fields that ask the
    same of an agent that predates `sideChecks` (the side checks older than the frame);
    `checks`: `asking(p.monitor, p.dns_due)`, when the caller has it for the round's jobs."""
    side: dict[str, object] = {}
    older: dict[str, object] = {}
    for check in asking(p.monitor, p.dns_due) if checks is None else checks:
        if check.ask is None:
            raise BrokenInvariant("plan.side_asks: check.ask is unset")
        ask = check.ask(p)
        if ask is None:
            continue
        side[check.name] = ask
        if check.legacy_job is not None:
            older |= check.legacy_job(ask)
    return side, older


def _first_of(
    salt: str, every_s: int, *, public_id: str, scheduled: datetime, interval_s: int
) -> bool:
    return schedule.first_of_window(salt, public_id, scheduled, interval_s, every_s)


@functools.lru_cache(maxsize=1024)
def _valid_country(cc: str) -> bool:
    try:
        jobs_subject(cc)
    except ValueError:
        return False
    return True
