"""Closing an open incident for lack of data (`controller.alerting.no_data`, `AlertState.step`) as
tables, without a database. Before this rule missed rounds never closed an incident: it stayed
open, the monitor `down`, for as long as no result could be had."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.alerting import no_data
from controller.alerting.rules import AlertState
from controller.monitors.thresholds import Thresholds

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(minutes=60)


@pytest.mark.parametrize(
    ("verdict", "missed", "held", "kind", "why"),
    [
        ("failing", [], [], "data", "a failing round is data"),
        ("up", ["no_agent"], [], "data", "a passing round is data, a missed country or not"),
        ("degraded", [], ["auth_backoff"], "data", "held countries beside a verdict"),
        ("missed", ["no_agent"], [], "no_data", "no live agent"),
        ("missed", ["expired", "inconclusive"], [], "no_data", "expired and inconclusive"),
        ("missed", [], ["login_capped"], "no_data", "the login cap is no verdict"),
        ("missed", [], ["auth_backoff", "login_capped"], "no_data", "capped beside held"),
        ("missed", [], ["auth_backoff"] * 3, "held", "logins held after rejected credentials"),
        ("missed", ["no_agent"], ["auth_backoff"], "no_data", "the one trying had no agent"),
        ("missed", [], ["delivery_backoff"] * 2, "held", "a round trip's delivery back-off"),
        ("missed", [], ["delivery_backoff", "auth_backoff"], "held", "both back-offs"),
        ("missed", [], ["delivery_backoff", "domain_capped"], "no_data", "a domain's cap"),
        ("missed", [], ["mailbox_unconfirmed"], "no_data", "an unconfirmed mailbox's cap"),
        ("missed", [], [], "no_data", "a round nobody reported on"),
    ],
)
def test_what_a_round_says_about_the_data(
    verdict: str, missed: list[str], held: list[str], kind: str, why: str
) -> None:
    assert no_data.kind(verdict, missed, held) == kind, why


def run_of(kinds: str, step: timedelta = timedelta(minutes=1)) -> no_data.Run:
    """`d` data, `n` no data, `h` held, one round per `step` from AT."""
    run = no_data.Run()
    names: dict[str, no_data.Kind] = {"d": "data", "n": "no_data", "h": "held"}
    for i, k in enumerate(kinds):
        run = run.after(names[k], AT + i * step)
    return run


@pytest.mark.parametrize(
    ("kinds", "rounds", "since"),
    [
        ("", 0, None),
        ("nnn", 3, 0),
        ("nndn", 1, 3),  # a verdict ends the run
        ("dnhn", 2, 1),  # a held round neither ends nor extends it
        ("hhh", 0, None),
        ("nnnd", 0, None),
    ],
)
def test_the_run_of_missed_rounds(kinds: str, rounds: int, since: int | None) -> None:
    run = run_of(kinds)
    assert run.rounds == rounds
    assert run.since == (None if since is None else AT + timedelta(minutes=since))


@pytest.mark.parametrize(
    ("rounds", "span", "after", "closes", "why"),
    [
        (61, timedelta(minutes=60), HOUR, True, "an hour of rounds a minute apart"),
        (60, timedelta(minutes=59), HOUR, False, "59 minutes: not yet"),
        (2, timedelta(hours=5), HOUR, False, "two rounds are never enough, however long"),
        (3, timedelta(hours=2), HOUR, True, "three hourly rounds"),
        (1000, timedelta(days=3), None, False, "INCIDENT_NO_DATA_CLOSE_MINUTES 0: never"),
    ],
)
def test_when_an_incident_closes_for_lack_of_data(
    rounds: int, span: timedelta, after: timedelta | None, closes: bool, why: str
) -> None:
    run = no_data.Run(rounds, AT)
    assert no_data.closes(run, AT + span, after) is closes, why


def test_step_closes_an_open_incident_after_an_hour_of_missed_rounds_as_missed() -> None:
    """Two failing rounds open it; then rounds a minute apart are missed: after an hour of them
    the step says `no_data` once, the state is `missed` (never `up`), the failing streak is
    gone (a new outage needs its own `downAfterRounds`); without the rule it stays `down`."""
    t = Thresholds()
    s = AlertState()
    assert s.step("failing", AT, t) is None
    assert s.step("failing", AT + timedelta(minutes=1), t) == "open"
    s.open_incident_id = 7
    actions = []
    for i in range(2, 64):
        actions.append(s.step("missed", AT + timedelta(minutes=i), t, "no_data", HOUR))
        if actions[-1] == "no_data":
            s.open_incident_id = None
    assert actions.index("no_data") == 60  # the round at minute 62: 60 minutes after minute 2
    assert actions.count("no_data") == 1
    assert (s.state, s.consecutive_down_rounds, s.down_since) == ("missed", 0, None)
    assert (s.missed_rounds, s.missed_since) == (62, AT + timedelta(minutes=2))

    never = AlertState(state="down", consecutive_down_rounds=2, open_incident_id=7)
    for i in range(200):
        assert never.step("missed", AT + timedelta(minutes=i), t, "no_data", None) is None
    assert (never.state, never.open_incident_id) == ("down", 7)


def test_rounds_held_after_rejected_credentials_never_close_the_incident() -> None:
    """A back-off of logins (`auth_backoff`) is what rejected credentials look like for hours:
    it never closes their incident for lack of data."""
    t = Thresholds()
    s = AlertState(state="down", consecutive_down_rounds=2, open_incident_id=7)
    for i in range(360):
        assert s.step("missed", AT + timedelta(minutes=i), t, "held", HOUR) is None
    assert (s.state, s.open_incident_id, s.missed_rounds) == ("down", 7, 0)
