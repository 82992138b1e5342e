"""The round planner's rules as tables (controller.scheduling.plan), without a database: which
countries a round goes to, which of them get a job and which a missed row, and why; a monitor
whose config does not fit; the agents a confirmation job avoids; the keyed hashes a job
carries."""

import itertools
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from nats.aio.client import Client as NATS

from controller.alerting import ready_rounds
from controller.fleet.live import LiveAgents
from controller.jobs.result_kinds import NO_SEAL_KEY, OVERDUE
from controller.jobs.rules import JobIds, is_seeded
from controller.logins.backoff import CAPPED, HELD
from controller.monitors.store import Monitor, RoundState, WatchedMonitor, decode_config
from controller.monitors.validation import COUNTRIES
from controller.scheduling import due_store, plan
from controller.scheduling import rules as schedule
from controller.scheduling.plan import PlannedRound, RoundPlanner, UnfitMonitor
from controller.scheduling.planner import Planner
from controller.secrets.box import SecretBox, generate_key
from controller.secrets.seal_keys import CountryKeys
from controller.settings import SchedulingSettings
from controller.sidechecks.blocklists.rules import DEFAULT_LISTS, trigger_lists
from shared.clock import WALL
from shared.messages import ImapPopConfig, MonitorType, RoundTripConfig, SmtpConfig
from shared.sealing import OpeningKeys, SealingError, generate
from shared.secret import Secret
from shared.timefmt import iso_ms, parse_iso
from testkit.peers.jobs import make_job
from testkit.scheduling import Answered, round_planner

PUBLIC_ID = uuid.UUID("0b9f3c1e-8a42-4d55-9a1b-2f6c7d8e9f01")
INTERVAL = 60
PHASE = schedule.phase_ms(str(PUBLIC_ID), INTERVAL)
DUE = schedule.next_due(PHASE, INTERVAL, datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
ON_TIME = DUE + timedelta(seconds=1)
BOX = SecretBox(generate_key())


def watched(
    kind: MonitorType = "smtp",
    stored: dict[str, Any] | None = None,
    *,
    listed: list[str] | None = None,
    went: list[str] | None = None,
    failures: int = 0,
    retry_at: datetime | None = None,
    mail_domain: str | None = None,
    hostname: str = "mx.example.com",
) -> WatchedMonitor:
    stored = stored if stored is not None else {}
    monitor = Monitor(
        id=7,
        public_id=PUBLIC_ID,
        organization_id=3,
        customer_id=1,
        type=kind,
        name="m",
        hostname=hostname,
        port=None,
        status="active",
        check_interval=INTERVAL,
        timeout_seconds=30,
        allowed_country_codes=listed,
        config=decode_config(kind, stored),
        notification_email=None,
        notification_phone_number=None,
        mail_domain=mail_domain,
        next_due_at=DUE,
        created_at=DUE,
        updated_at=DUE,
        last_checked_at=None,
        config_as_sent=stored,
    )
    rounds = RoundState(
        countries=went,
        since=DUE,
        mail_dns_at=None,
        login_failures=failures,
        login_retry_at=retry_at,
    )
    return WatchedMonitor(monitor, rounds)


def unfit(listed: list[str] | None = None, went: list[str] | None = None) -> UnfitMonitor:
    return UnfitMonitor(
        id=7,
        public_id=PUBLIC_ID,
        type="smtp",
        check_interval=INTERVAL,
        next_due_at=DUE,
        allowed_country_codes=listed,
        round_countries=went,
        error="Expected `object`, got `str` - at `$.auth`",
    )


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> tuple[CountryKeys, dict[str, str]]:
    """Sealing keys for DE and FR only (US has none); the private ones, to open the jobs."""
    directory: Path = tmp_path_factory.mktemp("keys")
    privates = {}
    for cc in ("DE", "FR"):
        privates[cc], public = generate()
        (directory / f"{cc}.pub").write_text(public)
    return CountryKeys(str(directory)), privates


def planner(keys: CountryKeys, spacing_s: float = 0) -> RoundPlanner:
    return round_planner(BOX, keys, default_countries=2, login_spacing_s=spacing_s)


def outcome(p: PlannedRound) -> dict[str, str]:
    """Per country: `job`, `deferred` or the missed kind."""
    found = {job.country: "job" for job in p.jobs}
    found |= {job.country: "deferred" for _, job in p.deferred}
    found |= {row.country: row.error_kind or "" for row in p.missed}
    return found


LIVE3 = frozenset({"DE", "FR", "US"})
CREDENTIALS = {"auth": {"user": "alice", "pass": BOX.seal("s3cret")}}
LATER = ON_TIME + timedelta(hours=1)


@pytest.mark.parametrize(
    ("stored", "listed", "live", "failures", "retry_at", "expected"),
    [
        # no credentials: every live country gets a job, a dead one `no_agent`
        ({}, ["DE", "FR", "US"], LIVE3, 0, None, {"DE": "job", "FR": "job", "US": "job"}),
        ({}, ["DE", "JP"], LIVE3, 0, None, {"DE": "job", "JP": "no_agent"}),
        # credentials: sealed where a key is, `no_seal_key` where none is
        (CREDENTIALS, ["DE", "US"], LIVE3, 0, None, {"DE": "job", "US": NO_SEAL_KEY}),
        (CREDENTIALS, ["DE", "JP"], LIVE3, 0, None, {"DE": "job", "JP": "no_agent"}),
        # back-off until later: every country held
        (CREDENTIALS, ["DE", "FR"], LIVE3, 1, LATER, {"DE": HELD, "FR": HELD}),
        # back-off over: one country (failures % countries) logs in, the other is held
        (CREDENTIALS, ["DE", "FR"], LIVE3, 1, DUE, {"DE": HELD, "FR": "job"}),
        (CREDENTIALS, ["DE", "FR"], LIVE3, 2, DUE, {"DE": "job", "FR": HELD}),
        # back-off does not hold a check without credentials
        ({}, ["DE", "FR"], LIVE3, 3, LATER, {"DE": "job", "FR": "job"}),
    ],
)
def test_which_countries_get_a_job_and_which_a_missed_row(
    keyed: tuple[CountryKeys, dict[str, str]],
    stored: dict[str, Any],
    listed: list[str],
    live: frozenset[str],
    failures: int,
    retry_at: datetime | None,
    expected: dict[str, str],
) -> None:
    keys, _ = keyed
    m = watched(stored=stored, listed=listed, failures=failures, retry_at=retry_at)
    p = planner(keys).round(m, ON_TIME, live)
    assert p.unusable is None
    assert list(p.countries) == listed
    assert outcome(p) == expected
    assert (p.scheduled_at, p.next_due) == (DUE, DUE + timedelta(seconds=INTERVAL))
    assert p.account is not None if stored else p.account is None


def test_a_credentialed_job_carries_no_secret_and_opens_only_in_its_country(
    keyed: tuple[CountryKeys, dict[str, str]],
) -> None:
    keys, privates = keyed
    p = planner(keys).round(watched(stored=CREDENTIALS, listed=["DE"]), ON_TIME, LIVE3)
    (job,) = p.jobs
    assert isinstance(job.config, SmtpConfig) and job.config.auth is None
    assert job.sealed_config is not None and b"s3cret" not in job.sealed_config.encode()
    assert OpeningKeys([privates["DE"]]).open(job.sealed_config, job.seal_key_id)
    with pytest.raises(SealingError):
        OpeningKeys([privates["FR"]]).open(job.sealed_config, job.seal_key_id)


@pytest.mark.parametrize(
    ("listed", "went", "live", "expected"),
    [
        (["US"], None, frozenset({"DE"}), ["US"]),  # a list is kept, live or not
        ([], None, frozenset({"DE"}), []),
        (None, None, frozenset({"DE"}), ["DE"]),  # fewer live than wanted: those there are
        (None, ["JP", "BR"], frozenset(), ["JP", "BR"]),  # nobody live: where it went last
        (None, None, frozenset(), []),  # never went anywhere: nowhere
    ],
)
def test_the_rounds_countries(
    listed: list[str] | None, went: list[str] | None, live: frozenset[str], expected: list[str]
) -> None:
    assert list(plan.countries(str(PUBLIC_ID), listed, went, live, 2)) == expected


def test_a_monitor_without_a_list_goes_to_its_default_number_of_live_countries() -> None:
    live = frozenset({"DE", "FR", "US", "JP"})
    chosen = plan.countries(str(PUBLIC_ID), None, None, live, 2)
    assert len(chosen) == 2 and set(chosen) <= live
    assert chosen == plan.countries(str(PUBLIC_ID), None, ["BR"], live, 2)  # stable


@pytest.mark.parametrize(
    ("now", "trigger", "over", "runs"),
    [
        (ON_TIME, False, 0, True),
        (DUE + timedelta(seconds=INTERVAL * 3 + 1), False, 3, True),  # after an outage
        (DUE + timedelta(seconds=INTERVAL - 1), False, 1, False),  # too late to run
        (DUE - timedelta(hours=1), True, 0, True),  # triggered: now, due time kept
    ],
)
def test_round_times(now: datetime, trigger: bool, over: int, runs: bool) -> None:
    late, run, next_at = plan.round_times(str(PUBLIC_ID), INTERVAL, DUE, now, trigger)
    assert len(late) == over and (run is not None) == runs
    if trigger:
        assert (run, next_at) == (now, DUE)
    else:
        assert next_at == schedule.next_due(PHASE, INTERVAL, now)


@pytest.mark.parametrize("micro", [0, 1, 465_879, 999_999])
def test_a_round_run_now_has_its_jobs_time_to_the_millisecond(micro: int) -> None:
    """A triggered round (a confirmation, a check-now) and a first round run `now`: the
    round's time is its jobs' `scheduledAt` (milliseconds), or the controller's rows of it
    (`expired` at its close, found by the simulation: tests/sim) are of another round than
    its results, and countries that reported are judged missed."""
    now = (DUE - timedelta(hours=1)).replace(microsecond=micro)
    for due in (DUE, None):
        _, run, _ = plan.round_times(str(PUBLIC_ID), INTERVAL, due, now, True)
        assert run is not None and run.microsecond % 1000 == 0
        assert run <= now < run + timedelta(milliseconds=1)
        assert parse_iso(iso_ms(run)) == run


def test_rounds_over_are_recorded_overdue_in_every_country(
    keyed: tuple[CountryKeys, dict[str, str]],
) -> None:
    now = DUE + timedelta(seconds=INTERVAL * 2 + 1)
    p = planner(keyed[0]).round(watched(listed=["DE", "FR"]), now, LIVE3)
    assert sorted((r.country, r.scheduled_at) for r in p.missed if r.error_kind == OVERDUE) == [
        (cc, DUE + timedelta(seconds=INTERVAL * n)) for cc in ("DE", "FR") for n in range(2)
    ]
    assert {j.country for j in p.jobs} == {"DE", "FR"}


def test_a_round_s_ids_are_all_of_one_scheme_while_the_gate_moves(
    keyed: tuple[CountryKeys, dict[str, str]],
) -> None:
    """The gate may move while a round is planned (rounds are planned in a thread, the gate is
    moved on the event loop): each round's ids, its jobs' and its `overdue` rows', are all of
    the scheme read once for it, so the alerter's expired rows (which follow a round's other
    ids) are of the scheme the round went out with."""
    flips = itertools.cycle([DUE - timedelta(days=1), None])
    rounds = RoundPlanner(
        JobIds.from_box(BOX, lambda: next(flips)),
        BOX,
        keyed[0],
        scheduling=SchedulingSettings(),
        default_countries=2,
    )
    now = DUE + timedelta(seconds=INTERVAL * 2 + 1)
    for _ in range(2):  # whichever the gate says first
        p = rounds.round(watched(listed=["DE", "FR", "US"]), now, LIVE3)
        ids = [j.job_id for j in p.jobs] + [r.job_id for r in p.missed]
        assert len(ids) == 9, ids  # 3 jobs, 2 rounds over in each of 3 countries
        assert len({is_seeded(i) for i in ids}) == 1, ids


@pytest.mark.parametrize(
    ("target", "now", "countries", "missed"),
    [
        # a config that does not fit: its countries and next due time, nothing sent or recorded
        (unfit(listed=["DE"]), ON_TIME, ["DE"], []),
        (unfit(went=["FR", "US"]), ON_TIME, ["DE", "FR"], []),
        # a secret that does not open: the same
        (
            watched(stored={"auth": {"user": "a", "pass": "enc:v1:garbage"}}),
            ON_TIME,
            ["DE", "FR"],
            [],
        ),
        # a round already over when claimed records `overdue` whatever the config, as before
        (unfit(listed=["DE"]), DUE + timedelta(seconds=INTERVAL - 1), ["DE"], [OVERDUE]),
    ],
)
def test_a_monitor_that_cannot_become_jobs_sends_nothing_and_moves_on(
    keyed: tuple[CountryKeys, dict[str, str]],
    target: WatchedMonitor | UnfitMonitor,
    now: datetime,
    countries: list[str],
    missed: list[str],
) -> None:
    p = planner(keyed[0]).round(target, now, frozenset({"DE", "FR"}))
    assert (p.unusable is not None) == (not missed)
    assert sorted(p.countries) == countries
    assert p.jobs == [] and p.deferred == []
    assert [r.error_kind for r in p.missed] == missed
    assert p.next_due == schedule.next_due(PHASE, INTERVAL, now)


def test_a_bad_country_code_makes_the_monitor_unusable_and_keeps_its_last_countries(
    keyed: tuple[CountryKeys, dict[str, str]],
) -> None:
    p = planner(keyed[0]).round(watched(listed=["DE", "fr.>"]), ON_TIME, LIVE3)
    assert p.unusable is not None and "fr.>" in p.unusable
    assert (p.countries, p.jobs, p.missed) == ((), [], [])


def test_logins_are_spaced_only_for_a_check_with_credentials(
    keyed: tuple[CountryKeys, dict[str, str]],
) -> None:
    spaced = planner(keyed[0], spacing_s=5)
    fr_de = ["DE", "FR"]
    with_login = spaced.round(watched(stored=CREDENTIALS, listed=fr_de), ON_TIME, LIVE3)
    assert len(with_login.jobs) == 1 and [d for d, _ in with_login.deferred] == [5]
    without = spaced.round(watched(listed=fr_de), ON_TIME, LIVE3)
    assert len(without.jobs) == 2 and without.deferred == []


@pytest.mark.parametrize(
    ("failed", "live", "expected"),
    [
        # another live agent in DE: avoid the one that failed
        ({1: {"DE": {"a"}}}, [("DE", "a"), ("DE", "b")], {1: {"DE": ["a"]}}),
        # the failed one is DE's only agent: ask it again rather than nobody
        ({1: {"DE": {"a"}}}, [("DE", "a"), ("FR", "c")], {1: {}}),
        # every live agent failed: nobody to give a second opinion
        ({1: {"DE": {"a", "b"}}}, [("DE", "a"), ("DE", "b")], {1: {}}),
        (
            {1: {"DE": {"a"}}, 2: {"FR": {"c"}}},
            [("DE", "b"), ("FR", "d")],
            {1: {"DE": ["a"]}, 2: {"FR": ["c"]}},
        ),
    ],
)
def test_second_opinions(
    failed: dict[int, dict[str, set[str]]],
    live: list[tuple[str, str]],
    expected: dict[int, dict[str, list[str]]],
) -> None:
    assert plan.second_opinions(failed, live) == expected


@pytest.mark.parametrize("bundles", [False, True])
def test_every_job_says_whether_its_result_may_go_in_a_bundle(
    keyed: tuple[CountryKeys, dict[str, str]], bundles: bool
) -> None:
    """RESULT_BUNDLES, on every job of every round (the agent decides by it)."""
    keys, _ = keyed
    p = round_planner(BOX, keys, result_bundles=bundles)
    logs_in = p.round(watched(stored=CREDENTIALS, listed=["DE", "FR"]), ON_TIME, LIVE3)
    jobs = [*logs_in.jobs, *(job for _, job in logs_in.deferred)]
    jobs += p.round(watched(), ON_TIME, LIVE3).jobs
    assert len(jobs) == 4
    assert {job.result_bundles for job in jobs} == {bundles}


def test_tenant_is_a_keyed_hash_of_the_organization() -> None:
    key, other_key = b"k" * 32, b"o" * 32
    assert plan.tenant(key, 3) == plan.tenant(key, 3) != plan.tenant(key, 4)
    assert plan.tenant(key, 3) != plan.tenant(other_key, 3)
    assert len(plan.tenant(key, 3)) == 16


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (("smtp", "Alice", "MX.example.com."), ("imap", "alice", "mx.example.com"), True),
        (("imap", "alice", "mx.example.com"), ("pop3", "alice", "mx.example.com"), True),
        (("imap", "alice", "mx.example.com"), ("imap", "bob", "mx.example.com"), False),
        (("imap", "alice", "mx.example.com"), ("imap", "alice", "mx2.example.com"), False),
    ],
)
def test_the_account_is_user_at_host_whatever_the_protocol(
    a: tuple[str, str, str], b: tuple[str, str, str], same: bool
) -> None:
    def account(kind: str, user: str, host: str) -> str:
        config = (
            decode_config("smtp", {"auth": {"user": user, "pass": "x"}})
            if kind == "smtp"
            else ImapPopConfig(user=user, password=Secret("x"))
        )
        return plan.account(b"k" * 32, host, config)

    assert (account(*a) == account(*b)) == same


@pytest.mark.parametrize(
    ("send_user", "hostname", "mailbox", "legs"),
    [
        ("probe", "mx.example.com", ("probe", "mx.example.com"), 2),
        ("PROBE", "mx.example.com.", ("probe", "MX.example.com"), 2),
        ("other", "mx.example.com", ("probe", "mx.example.com"), 1),
        (None, "mx.example.com", ("probe", "mx.example.com"), 1),
    ],
)
def test_a_round_trip_sending_as_its_mailbox_logs_in_twice(
    send_user: str | None, hostname: str, mailbox: tuple[str, str], legs: int
) -> None:
    config = decode_config(
        "roundtrip",
        {
            "send": {"auth": {"user": send_user, "pass": "x"}} if send_user else {},
            "receive": {"user": mailbox[0], "password": "y", "hostname": mailbox[1]},
        },
    )
    assert isinstance(config, RoundTripConfig)
    assert plan.legs_of(hostname, config) == legs


def test_held_logins_are_missed_rows_of_their_job() -> None:
    job = make_job("imap", 143, country="DE")
    row = plan.held(job, CAPPED, plan.capped_why(40, 1000))
    assert (row.job_id, row.country, row.status, row.error_kind) == (
        job.job_id,
        "DE",
        "missed",
        CAPPED,
    )
    assert str(row.monitor_id) == job.monitor_id and row.monitor_type == "imap"
    assert "40 logins in 10 minutes" in row.message and "LOGIN_CAP_PER_ACCOUNT 1000" in row.message
    assert plan.legs(job) == 1 and plan.legs(make_job("roundtrip", 25)) == 2


def test_a_claimed_row_missing_a_column_fails_loudly_and_a_config_that_does_not_fit_is_unfit() -> (
    None
):
    """A renamed column is a KeyError out of the claim (a failing pass, a failing test), never
    a skipped round; only a stored config that does not fit its kind becomes an `UnfitMonitor`."""
    m = watched(listed=["DE"]).monitor
    row: dict[str, Any] = {f: getattr(m, f) for f in m.__struct_fields__ if f != "config_as_sent"}
    row |= {
        "config": {"auth": "not an object"},
        "round_countries": ["DE"],
        "rounds_since": DUE,
        "mail_dns_at": None,
        "login_failures": None,
        "login_retry_at": None,
    }
    claimed = due_store._claimed(cast(Any, row))
    assert isinstance(claimed, UnfitMonitor) and "auth" in claimed.error
    assert (claimed.id, claimed.round_countries) == (7, ["DE"])
    del row["rounds_since"]
    row["config"] = {}
    with pytest.raises(KeyError):
        due_store._claimed(cast(Any, row))


def test_a_monitors_listed_outbound_names_go_into_its_blocklist_asks(
    keyed: tuple[CountryKeys, dict[str, str]],
) -> None:
    """`reputation` reaches every country's `BlocklistAsk` on the rounds that ask the lists,
    the names fresh in a country skipped there."""
    listed = {"ips": ["81.2.69.160"], "domains": ["mail.example"]}
    target = watched(listed=["DE", "FR"])
    target = WatchedMonitor(
        msgspec.structs.replace(target.monitor, reputation=listed), target.rounds
    )
    answers = Answered(DEFAULT_LISTS, INTERVAL, names={"FR": {"81.2.69.160"}})  # every round asks
    lists_planner = round_planner(BOX, keyed[0], blocklists=answers)
    jobs = lists_planner.round(target, ON_TIME, frozenset({"DE", "FR"})).jobs
    asks = {j.country: j.blocklists for j in jobs}
    assert asks["DE"] is not None and asks["FR"] is not None
    assert "81.2.69.160" in asks["DE"].ips and "mail.example" in asks["DE"].domains
    assert asks["DE"].skip == [] and asks["FR"].skip == ["81.2.69.160"]


def test_a_triggered_round_asks_the_lists_at_once_unless_its_monitor_just_did(
    keyed: tuple[CountryKeys, dict[str, str]],
) -> None:
    """A check-now asks the lists from every country at once (a first answer in seconds, not
    at the monitor's 6 h phase), skipping the fresh names; a country whose last asking round
    of the monitor is within the floor is not asked again. A scheduled round asks from a
    country its monitor never asked from lately (a new monitor's first round), else only on
    its phase."""
    target = watched(listed=["DE", "FR"])
    asked = {(target.monitor.id, "FR"): ON_TIME - timedelta(minutes=1)}  # read as it changes
    fresh = {cc: {"127.0.0.2"} for cc in ("DE", "FR")}
    answers = Answered(DEFAULT_LISTS, 6 * 3600, names=fresh, asked=asked)
    planner = round_planner(BOX, keyed[0], blocklists=answers)
    live = frozenset({"DE", "FR"})
    triggered = planner.round(target, ON_TIME, live, trigger=True).jobs
    asks = {j.country: j.blocklists for j in triggered}
    assert asks["DE"] is not None and asks["FR"] is None
    assert "127.0.0.2" in asks["DE"].skip
    later = planner.round(target, ON_TIME + timedelta(minutes=6), live, trigger=True).jobs
    assert all(j.blocklists is not None for j in later)
    # A scheduled round asks where the monitor never asked lately (its first), else on its
    # phase only.
    first = planner.round(target, ON_TIME + timedelta(minutes=1), live).jobs
    assert {j.country for j in first if j.blocklists is not None} == {"DE"}
    asked[target.monitor.id, "DE"] = ON_TIME
    scheduled = [planner.round(target, ON_TIME + timedelta(minutes=n), live).jobs for n in range(3)]
    asking = sum(j.blocklists is not None for jobs in scheduled for j in jobs)
    assert asking in (0, 2)  # at most its phase's round, from both countries


@pytest.mark.parametrize(
    ("last", "asks"),
    [(None, True), (timedelta(minutes=1), False), (timedelta(minutes=5), True)],
)
def test_trigger_lists(last: timedelta | None, asks: bool) -> None:
    at = ON_TIME
    assert trigger_lists(at, None if last is None else at - last, 6 * 3600) == asks


def _late(target: WatchedMonitor, interval: int, late: timedelta) -> WatchedMonitor:
    """`target` checked every `interval` seconds, due `late` before ON_TIME."""
    monitor = msgspec.structs.replace(
        target.monitor, check_interval=interval, next_due_at=ON_TIME - late
    )
    return msgspec.structs.replace(target, monitor=monitor)


EVERY_COUNTRY = sorted(COUNTRIES)


@pytest.mark.parametrize(
    ("monitors", "target", "light"),
    [
        (64, watched(), True),  # a routine batch: on time, the default countries
        (65, watched(), False),  # more monitors than the loop's share
        (1, watched("imap", {"user": "u", "password": "p"}), False),  # a secret to open
        (1, _late(watched(), 60, timedelta(minutes=1)), True),  # a round over: 2 rounds
        (64, watched(listed=["DE", "FR", "NL"]), True),
        # A round's rows are its countries times its rounds, whatever the monitor count:
        (1, watched(listed=EVERY_COUNTRY), True),  # every country listed: 249 jobs
        (2, watched(listed=EVERY_COUNTRY), False),
        (1, _late(watched(), 10, timedelta(hours=2)), False),  # an hour of rounds over
        (1, _late(watched(listed=EVERY_COUNTRY), 10, timedelta(hours=2)), False),
    ],
)
def test_a_batch_is_planned_on_the_loop_only_when_its_rows_are_few(
    monitors: int, target: WatchedMonitor, light: bool
) -> None:
    """`plan.light` decides by the rows (jobs and missed rows) a batch makes, not only by its
    monitors: a monitor's round is a row per country and round, and a monitor listing every
    country, or late by an hour of 10-second rounds (after an outage), makes thousands (tens
    of thousands of hashed ids, hundreds of milliseconds of the loop's CPU). Its bound holds
    for what the planner really makes of each batch it calls light."""
    claimed = [target] * monitors
    assert plan.light(claimed, ON_TIME, 2) is light
    planner = round_planner(BOX, CountryKeys(None), default_countries=2)
    rounds = [planner.round(m, ON_TIME, frozenset(EVERY_COUNTRY)) for m in claimed]
    rows = sum(len(r.jobs) + len(r.missed) + len(r.deferred) for r in rounds)
    print(f"{monitors} monitors: {rows} rows planned, light {light}")
    if light:
        assert rows <= plan.PLAN_INLINE_ROWS, rows


@pytest.mark.parametrize(
    ("target", "light"),
    [
        (watched(), True),  # a "Check now" of a routine monitor
        (watched(listed=EVERY_COUNTRY), True),  # 249 jobs, nothing to open
        (watched("smtp", CREDENTIALS, listed=["DE"]), False),  # a secret to open and seal
        (watched("smtp", CREDENTIALS, listed=EVERY_COUNTRY), False),
        # A triggered round runs once, however late its monitor: no round over is planned
        (_late(watched(), 10, timedelta(hours=2)), True),
        (_late(watched(listed=EVERY_COUNTRY), 10, timedelta(minutes=1)), True),
    ],
)
def test_a_triggered_round_is_light_by_the_same_rule(target: WatchedMonitor, light: bool) -> None:
    """`plan.light` with `trigger`: a triggered round's rows are its countries, once."""
    assert plan.light([target], ON_TIME, 2, trigger=True) is light
    planner = round_planner(BOX, CountryKeys(None), default_countries=2)
    r = planner.round(target, ON_TIME, frozenset(EVERY_COUNTRY), trigger=True)
    rows = len(r.jobs) + len(r.missed) + len(r.deferred)
    print(f"triggered: {rows} rows planned, light {light}")
    if light:
        assert rows <= plan.PLAN_INLINE_ROWS, rows


class _Placed(RoundPlanner):
    """The real round planner, noting whether each round was planned on the event loop's
    thread."""

    on_loop: list[bool]

    def round(
        self,
        target: WatchedMonitor | UnfitMonitor,
        now: datetime,
        live: frozenset[str],
        **how: Any,
    ) -> PlannedRound:
        self.on_loop.append(threading.get_ident() == self.loop_thread)
        return super().round(target, now, live, **how)

    loop_thread: int


@pytest.mark.parametrize(
    ("target", "on_loop"),
    [
        (watched(listed=["DE", "FR"]), True),
        (watched("smtp", CREDENTIALS, listed=EVERY_COUNTRY), False),
    ],
)
async def test_a_check_now_is_planned_off_the_loop_unless_light(
    keyed: tuple[CountryKeys, dict[str, str]], target: WatchedMonitor, on_loop: bool
) -> None:
    """`Planner.triggered_round` plans where a routine batch of the same monitor would: a
    credentialed monitor listing every country (a decryption and a sealing per country) in a
    thread, a light one on the loop."""
    rounds = _Placed(
        JobIds.from_box(BOX), BOX, keyed[0], scheduling=SchedulingSettings(), default_countries=2
    )
    rounds.on_loop, rounds.loop_thread = [], threading.get_ident()
    planner = Planner(rounds, LiveAgents(NATS(), wall=WALL.now), keyed[0])
    got = await planner.triggered_round(target, ON_TIME)
    assert rounds.on_loop == [on_loop]
    assert got.countries == target.monitor.allowed_country_codes


def test_the_rounds_the_alerter_reads_from_the_grid_are_those_the_scheduler_sent() -> None:
    """A new monitor's first round goes at once at a random instant (seed 72, 2,000 monitors,
    intervals from 10 s to a day), then the scheduler claims it at each due time, a little late
    or after an outage: the grid rounds the alerter expects (`ready_rounds.grid_rounds` from its
    first due time) are exactly the ones sent or recorded over, and none is within half an
    interval of the first."""
    rng = random.Random(72)
    skipped = 0
    for _ in range(2_000):
        interval = rng.choice([10, 30, 60, 300, 3600, 86_400])
        public_id = str(uuid.UUID(int=rng.getrandbits(128)))
        phase = schedule.phase_ms(public_id, interval)
        first = schedule.round_time(DUE + timedelta(microseconds=rng.randrange(10**11)))
        due, sent = first, []
        for _ in range(6):
            now = due + timedelta(seconds=interval * rng.choice([0.0, 0.01, 0.3, 0.9, 2.7]))
            over, run, due = schedule.overdue_rounds(phase, interval, due, now, since=first)
            sent += [*over, *([run] if run else [])]
        skipped += schedule.next_due(phase, interval, first) < due
        base = watched()
        w = WatchedMonitor(
            msgspec.structs.replace(
                base.monitor,
                public_id=uuid.UUID(public_id),
                check_interval=interval,
                next_due_at=due,
            ),
            msgspec.structs.replace(base.rounds, since=first),
        )
        on_grid = [at for at in sent if at != first]
        assert sent[0] == first
        assert ready_rounds.grid_rounds(w, first - timedelta(hours=1), due) == on_grid
        assert all(at - first > timedelta(seconds=interval / 2) for at in on_grid)
    assert skipped > 500, skipped
