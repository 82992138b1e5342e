"""The alerting state machine (`controller.alerting.rules.judge`) as tables, without a database:
(state before, rounds, thresholds, what the evaluator read) → (state after, effects). Before the
pure core these rules ran only inside the alerter's transaction, with PostgreSQL."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from controller.alerting.rules import (
    NEW_INCIDENT,
    AlertState,
    BackoffChanged,
    ConfirmationWanted,
    DeliveryObserved,
    Effect,
    Held,
    IncidentClosed,
    IncidentOpened,
    JudgedMonitor,
    JudgedRound,
    Known,
    Notice,
    Policy,
    Replayed,
    StateChanged,
    judge,
)
from controller.logins.backoff import Backoff
from controller.monitors.thresholds import Thresholds

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
COUNTRIES = ("DE", "FR", "US")
MONITOR = JudgedMonitor("mon-1", MINUTE, expected=len(COUNTRIES))
ROUNDTRIP = dataclasses.replace(MONITOR, roundtrip=True)
DISABLED = dataclasses.replace(MONITOR, disabled=True)
T = Thresholds()
NO_CONFIRM = Thresholds(confirm_failures=False)
SLOW = Thresholds(down_after_rounds=6)
POLICY = Policy()
QUICK_NO_DATA = Policy(no_data_after=2 * MINUTE)

FRESH = AlertState()
OPEN = AlertState(state="down", consecutive_down_rounds=2, down_since=AT, open_incident_id=7)
NOTHING = Known()
NOTIFIED = Known(incident_notified=True)
QUIET = Known(quiet=True)
QUIET_NOTIFIED = Known(quiet=True, incident_notified=True)


def at(i: int) -> datetime:
    return AT + i * MINUTE


def judged(code: str, i: int) -> JudgedRound:
    """A round at `at(i)` of the three countries: `F` all refused, `D` one refused (degraded),
    `B` two refused and one up (failing, yet one passed), `U` all up, `M` no agent anywhere,
    `I` all inconclusive, `A` credentials rejected everywhere, `H` logins held everywhere after
    rejected credentials, `L` one refused and the others' results missing (late past its
    close: expired)."""
    r = JudgedRound(at(i), {cc: f"job-{cc}-{i}" for cc in COUNTRIES})
    for n, cc in enumerate(COUNTRIES):
        if code == "U" or (code == "D" and n > 0) or (code == "B" and n == 0):
            r.up.append(cc)
        elif code in "FDB":
            r.failures.append((cc, "refused", "connection refused"))
        elif code == "A":
            r.failures.append((cc, "auth", "535 authentication failed"))
        elif code == "M" or (code == "L" and n > 0):
            r.missed.append((cc, "no_agent", "no live agent"))
        elif code == "L":
            r.failures.append((cc, "refused", "connection refused"))
        elif code == "I":
            r.missed.append((cc, "inconclusive", "canary failed too"))
        elif code == "H":
            r.held.append(cc)
            r.held_kinds.append("auth_backoff")
    return r


def series(codes: str, first: int = 0) -> list[JudgedRound]:
    return [judged(c, first + i) for i, c in enumerate(codes)]


def brief(e: Effect) -> str:
    """An effect in a few characters, for the tables."""
    ref = ""
    if isinstance(e, IncidentClosed | Notice) and e.incident != NEW_INCIDENT:
        ref = f"#{e.incident}"
    if isinstance(e, StateChanged):
        return f"state:{e.state}"
    if isinstance(e, IncidentOpened):
        return "open"
    if isinstance(e, IncidentClosed):
        return f"close:{e.why}{ref}" + (":held" if e.hold_recovery else "")
    if isinstance(e, Notice):
        return f"notice:{e.kind}{ref}"
    if isinstance(e, BackoffChanged):
        b = "none" if e.backoff is None else str(e.backoff.failures)
        return f"backoff:{b}" + ("+notice" if e.notice else "")
    if isinstance(e, ConfirmationWanted):
        return "confirm"
    if isinstance(e, DeliveryObserved):
        return f"delivery:{len(e.rounds)}"
    assert isinstance(e, Replayed)
    return "replayed"


def run(
    before: AlertState,
    codes: str,
    t: Thresholds = T,
    known: Known = NOTHING,
    policy: Policy = POLICY,
    monitor: JudgedMonitor = MONITOR,
    now: datetime | None = None,
) -> tuple[AlertState, list[str]]:
    rounds = series(codes)
    now = now or (rounds[-1].at if rounds else AT) + timedelta(seconds=10)
    j = judge(monitor, before, rounds, t, now, known, policy)
    return j.state, [brief(e) for e in j.effects]


@pytest.mark.parametrize(
    ("before", "codes", "t", "known", "policy", "state", "effects", "why"),
    [
        (FRESH, "F", T, Known(), POLICY, "down", ["state:down", "confirm"], "every country down"),
        (FRESH, "F", NO_CONFIRM, Known(), POLICY, "down", ["state:down"], "no confirm"),
        (FRESH, "B", T, Known(), POLICY, "degraded", ["state:degraded", "confirm"], "one passed"),
        (
            FRESH,
            "BF",
            T,
            Known(),
            POLICY,
            "down",
            ["state:degraded", "open", "notice:down", "state:down"],
            "a failing round with a passing country: degraded until the run opens the incident",
        ),
        (
            FRESH,
            "FB",
            T,
            Known(),
            POLICY,
            "down",
            ["state:down", "open", "notice:down"],
            "the first round down everywhere: down at once, the incident after the run",
        ),
        (
            FRESH,
            "FF",
            T,
            Known(),
            POLICY,
            "down",
            ["state:down", "open", "notice:down"],
            "open after downAfterRounds",
        ),
        (
            FRESH,
            "FFFFF",
            SLOW,
            Known(),
            POLICY,
            "down",
            ["state:down"],
            "five of six: down without an incident, and no third confirmation in one streak",
        ),
        (FRESH, "D", T, Known(), POLICY, "degraded", ["state:degraded"], "degraded: no confirm"),
        (FRESH, "DDDD", T, Known(), POLICY, "degraded", ["state:degraded"], "degraded never down"),
        (FRESH, "MMMM", T, Known(), POLICY, "missed", ["state:missed"], "missed never down"),
        (FRESH, "IIII", T, Known(), POLICY, "missed", ["state:missed"], "inconclusive: missed"),
        (
            FRESH,
            "FMF",
            T,
            Known(),
            POLICY,
            "down",
            ["state:down", "state:missed", "open", "notice:down", "state:down"],
            "a missed round neither ends nor extends a run",
        ),
        (OPEN, "U", T, NOTIFIED, POLICY, "down", ["confirm"], "one passing round: confirmed"),
        (OPEN, "U", NO_CONFIRM, NOTIFIED, POLICY, "down", [], "one passing round: not yet"),
        (
            OPEN,
            "UU",
            T,
            NOTIFIED,
            POLICY,
            "up",
            ["close:recovered#7", "notice:recovered#7", "state:up"],
            "close after recoverAfterRounds",
        ),
        (
            OPEN,
            "UD",
            T,
            NOTIFIED,
            POLICY,
            "degraded",
            ["close:recovered#7", "notice:recovered#7", "state:degraded"],
            "degraded rounds are passing rounds",
        ),
        (OPEN, "UL", T, NOTIFIED, POLICY, "down", [], "nobody passed a round: no recovery"),
        (OPEN, "LLLL", T, NOTIFIED, POLICY, "down", [], "one country failing, the others late"),
        (
            OPEN,
            "ULU",
            T,
            NOTIFIED,
            POLICY,
            "up",
            ["close:recovered#7", "notice:recovered#7", "state:up"],
            "a round nobody passed breaks no passing run either",
        ),
        (FRESH, "LL", T, NOTHING, POLICY, "degraded", ["state:degraded"], "no incident: passing"),
        (OPEN, "IIII", T, NOTIFIED, POLICY, "down", [], "inconclusive never closes it"),
        (OPEN, "MMMM", T, NOTIFIED, POLICY, "down", [], "missed, but not for an hour yet"),
        (
            OPEN,
            "MMM",
            T,
            NOTIFIED,
            QUICK_NO_DATA,
            "missed",
            ["close:no_data#7", "notice:no_data#7", "state:missed"],
            "three missed rounds over INCIDENT_NO_DATA_CLOSE_MINUTES: closed for lack of data",
        ),
        (OPEN, "HHHH", T, NOTIFIED, QUICK_NO_DATA, "down", [], "held logins are no missing data"),
        (
            FRESH,
            "FF",
            T,
            QUIET,
            POLICY,
            "down",
            ["state:down", "open"],
            "maintenance: the incident opens, nobody is told",
        ),
        (
            OPEN,
            "UU",
            T,
            QUIET_NOTIFIED,
            POLICY,
            "up",
            ["close:recovered#7:held", "state:up"],
            "maintenance: the recovery notice is held",
        ),
        (OPEN, "", T, Known(), POLICY, "down", ["notice:down#7"], "after maintenance: told down"),
        (OPEN, "", T, QUIET, POLICY, "down", [], "still in maintenance: not told"),
        (
            FRESH,
            "",
            T,
            Known(held=(Held(5, False), Held(6, True))),
            POLICY,
            "unknown",
            ["notice:recovered#5", "notice:no_data#6"],
            "after maintenance: the held recoveries",
        ),
        (
            FRESH,
            "A",
            T,
            Known(),
            POLICY,
            "down",
            ["state:down", "backoff:1+notice"],
            "credentials rejected: back-off told once, no confirmation of wrong logins",
        ),
        (FRESH, "A", T, QUIET, POLICY, "down", ["state:down", "backoff:1"], "quiet"),
        (
            FRESH,
            "U",
            T,
            Known(backoff=Backoff(2, AT, at(4), notified=True)),
            POLICY,
            "up",
            ["state:up", "backoff:none"],
            "a login that passes ends the back-off",
        ),
        (
            FRESH,
            "HH",
            T,
            Known(backoff=Backoff(2, AT, at(4), notified=True)),
            POLICY,
            "missed",
            ["state:missed"],
            "held rounds leave the back-off as it is",
        ),
    ],
)
def test_the_state_machine(
    before: AlertState,
    codes: str,
    t: Thresholds,
    known: Known,
    policy: Policy,
    state: str,
    effects: list[str],
    why: str,
) -> None:
    after, done = run(before, codes, t, known, policy)
    assert (after.state, done) == (state, effects), why


def test_opening_notifies_and_counts_from_the_first_failing_round() -> None:
    s, _ = run(FRESH, "UFF")
    assert (s.consecutive_down_rounds, s.down_since, s.open_incident_id) == (2, at(1), NEW_INCIDENT)
    assert s.last_notified_at == at(2) + timedelta(seconds=10)
    j = judge(MONITOR, FRESH, series("UFF"), T, at(3), Known(), POLICY)
    (opened,) = [e for e in j.effects if isinstance(e, IncidentOpened)]
    assert (opened.started_at, opened.countries) == (at(1), COUNTRIES)


def test_judge_leaves_the_state_it_was_given_alone() -> None:
    before = dataclasses.replace(OPEN)
    judge(MONITOR, before, series("UU"), T, at(3), NOTIFIED, POLICY)
    assert before == OPEN


@pytest.mark.parametrize(
    ("age", "confirmed", "why"),
    [
        (timedelta(seconds=10), True, "a recent failing round"),
        (MINUTE, False, "an old round judged late, after an outage: left to the schedule"),
    ],
)
def test_confirmation_is_wanted_only_for_a_recent_round(
    age: timedelta, confirmed: bool, why: str
) -> None:
    _, done = run(FRESH, "F", now=at(0) + age)
    assert ("confirm" in done) is confirmed, why


@pytest.mark.parametrize(
    ("last_notified", "effects", "why"),
    [
        (timedelta(minutes=61), ["notice:reminder#7"], "an hour after the last notice"),
        (timedelta(minutes=59), [], "not yet"),
    ],
)
def test_reminders(last_notified: timedelta, effects: list[str], why: str) -> None:
    now = at(10)
    before = dataclasses.replace(OPEN, last_notified_at=now - last_notified)
    j = judge(MONITOR, before, [], T, now, NOTIFIED, POLICY)
    assert [brief(e) for e in j.effects] == effects, why


def test_no_reminders_when_switched_off() -> None:
    before = dataclasses.replace(OPEN, last_notified_at=AT - timedelta(days=1))
    j = judge(MONITOR, before, [], T, at(10), NOTIFIED, Policy(reminder=None))
    assert j.effects == ()


def test_disabling_closes_the_incident_silently_and_forgets_the_state() -> None:
    j = judge(DISABLED, OPEN, series("FF"), T, at(5), NOTIFIED, POLICY)
    assert [brief(e) for e in j.effects] == ["close:disabled#7", "state:unknown"]
    assert j.state == AlertState(last_round_at=at(5))


def test_a_round_trip_monitors_rounds_feed_its_delivery_record() -> None:
    _, done = run(FRESH, "UF", monitor=ROUNDTRIP)
    assert done == ["state:up", "state:down", "delivery:2", "confirm"]
    _, plain = run(FRESH, "UF")
    assert "delivery:2" not in plain


@pytest.mark.parametrize(
    ("before", "window", "known", "t", "state", "counters", "effects", "why"),
    [
        (
            AlertState("missed", 1, 0, at(0), None, at(1)),
            "FF",
            Known(),
            T,
            "down",
            (2, 0),
            ["open", "notice:down", "replayed", "state:down"],
            "a late failing result proves the incident",
        ),
        (
            dataclasses.replace(OPEN, last_round_at=at(2)),
            "FFU",
            NOTIFIED,
            T,
            "down",
            (0, 1),
            ["replayed"],
            "a late passing result moves the recovery on, without closing yet",
        ),
        (
            AlertState("down", 5, 0, at(0), None, at(1)),
            "FF",
            Known(),
            SLOW,
            "down",
            (5, 0),
            ["replayed"],
            "a run covering the whole window keeps its longer count",
        ),
        (
            AlertState("degraded", 1, 0, at(0), None, at(1)),
            "MM",
            Known(),
            T,
            "degraded",
            (1, 0),
            [],
            "a window of missed rounds changes nothing",
        ),
        (
            dataclasses.replace(OPEN, consecutive_up_rounds=1, last_round_at=at(3)),
            "FFUU",
            NOTIFIED,
            T,
            "up",
            (0, 2),
            ["close:recovered#7", "notice:recovered#7", "replayed", "state:up"],
            "a late passing result completes the recovery: closed and told, as going forward",
        ),
        (
            AlertState("degraded", 1, 0, at(2), None, at(2)),
            "UMFF",
            Known(),
            T,
            "down",
            (2, 0),
            ["open", "notice:down", "replayed", "state:down"],
            "only the latest run counts: a passing round before it, a missed one inside it",
        ),
        (
            AlertState("down", 1, 0, at(3), None, at(3)),
            "FFUF",
            Known(),
            T,
            "down",
            (1, 0),
            ["replayed"],
            "an earlier failing run that a passing round ended opens nothing late",
        ),
        (
            AlertState("up", 0, 4, None, at(0), at(1)),
            "UU",
            Known(),
            T,
            "up",
            (0, 4),
            ["replayed"],
            "a passing run covering the window keeps its longer count",
        ),
    ],
)
def test_a_revision_is_a_replay_of_the_window(
    before: AlertState,
    window: str,
    known: Known,
    t: Thresholds,
    state: str,
    counters: tuple[int, int],
    effects: list[str],
    why: str,
) -> None:
    j = judge(MONITOR, before, [], t, at(len(window)), known, POLICY, revised=series(window))
    after = j.state
    assert after.state == state, why
    assert (after.consecutive_down_rounds, after.consecutive_up_rounds) == counters, why
    assert after.last_round_at == before.last_round_at, "a revision never moves the cursor"
    assert [brief(e) for e in j.effects] == effects, why


def test_a_monitor_flapping_within_its_incident_asks_no_siblings() -> None:
    rounds = series("UF")
    j = judge(MONITOR, OPEN, rounds, T, rounds[-1].at + timedelta(seconds=10), NOTHING, POLICY)
    assert [e for e in j.effects if isinstance(e, ConfirmationWanted)] == []


@pytest.mark.parametrize(
    ("before", "codes", "t", "own", "siblings", "recovering", "why"),
    [
        (FRESH, "F", T, True, True, False, "a failing run starts: its own and the host's"),
        (FRESH, "F", Thresholds(down_after_rounds=1), False, True, False, "open at once: others"),
        (OPEN, "U", T, True, True, True, "a passing run starts: its own and the host's"),
        (OPEN, "U", Thresholds(recover_after_rounds=1), False, True, True, "closed: others"),
    ],
)
def test_the_confirmation_asked_of_a_run_start(
    before: AlertState,
    codes: str,
    t: Thresholds,
    own: bool,
    siblings: bool,
    recovering: bool,
    why: str,
) -> None:
    rounds = series(codes)
    j = judge(MONITOR, before, rounds, t, rounds[-1].at + timedelta(seconds=10), NOTHING, POLICY)
    (wanted,) = [e for e in j.effects if isinstance(e, ConfirmationWanted)]
    assert (wanted.own, wanted.siblings, wanted.recovering) == (own, siblings, recovering), why
