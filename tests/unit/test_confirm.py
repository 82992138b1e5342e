"""When the alerter asks for a confirmation round (`controller.scheduling.confirm.wanted`), how
many the
global budget lets go (`slots`) and which go first (`fair_pick`), as tables."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.monitors.thresholds import Thresholds
from controller.scheduling.confirm import (
    Pending,
    fair_pick,
    slots,
    spent,
    wanted,
    wanted_back,
    with_siblings,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
ON, OFF = Thresholds(), Thresholds(confirm_failures=False)
THREE = Thresholds(down_after_rounds=3)
HUNDRED = Thresholds(down_after_rounds=100)


@pytest.mark.parametrize(
    ("verdict", "down_rounds", "incident_open", "t", "age", "expected", "why"),
    [
        ("failing", 1, False, ON, timedelta(seconds=2), True, "first failing round: confirm"),
        ("failing", 1, False, OFF, timedelta(seconds=2), False, "confirmation switched off"),
        ("degraded", 0, False, ON, timedelta(seconds=2), False, "a lone country: no"),
        ("up", 0, False, ON, timedelta(seconds=2), False, "passing round"),
        ("missed", 0, False, ON, timedelta(seconds=2), False, "nobody ran it"),
        ("failing", 2, False, ON, timedelta(seconds=2), False, "the streak is down already"),
        ("failing", 2, False, THREE, timedelta(seconds=2), True, "3 rounds: confirm again"),
        ("failing", 3, True, THREE, timedelta(seconds=2), False, "incident open"),
        ("failing", 2, False, HUNDRED, timedelta(seconds=2), True, "second confirmation"),
        ("failing", 3, False, HUNDRED, timedelta(seconds=2), False, "two per streak at most"),
        ("failing", 1, True, ON, timedelta(seconds=2), False, "incident open (held over)"),
        ("failing", 1, False, ON, MINUTE, False, "an old round judged late: leave to schedule"),
        ("failing", 1, False, ON, MINUTE - timedelta(seconds=1), True, "still within interval"),
    ],
)
def test_confirmation_is_wanted_for_a_recent_failing_round_short_of_an_incident(
    verdict: str,
    down_rounds: int,
    incident_open: bool,
    t: Thresholds,
    age: timedelta,
    expected: bool,
    why: str,
) -> None:
    assert wanted(verdict, down_rounds, incident_open, t, NOW - age, NOW, MINUTE) is expected, why


RECOVER_3 = Thresholds(recover_after_rounds=3)
RECOVER_1 = Thresholds(recover_after_rounds=1)
RECOVER_100 = Thresholds(recover_after_rounds=100)


@pytest.mark.parametrize(
    ("verdict", "up_rounds", "incident_open", "t", "age", "expected", "why"),
    [
        ("up", 1, True, ON, timedelta(seconds=2), True, "first passing round: confirm"),
        ("degraded", 1, True, ON, timedelta(seconds=2), True, "degraded passes too"),
        ("up", 1, True, OFF, timedelta(seconds=2), False, "confirmation switched off"),
        ("up", 1, False, ON, timedelta(seconds=2), False, "no incident: nothing to confirm"),
        ("failing", 0, True, ON, timedelta(seconds=2), False, "still failing"),
        ("missed", 0, True, ON, timedelta(seconds=2), False, "nobody ran it"),
        ("up", 1, True, RECOVER_1, timedelta(seconds=2), False, "one round closes it"),
        ("up", 2, True, ON, timedelta(seconds=2), False, "the run closes it already"),
        ("up", 2, True, RECOVER_3, timedelta(seconds=2), True, "3 rounds: confirm again"),
        ("up", 3, True, RECOVER_100, timedelta(seconds=2), False, "two per run at most"),
        ("up", 1, True, ON, MINUTE, False, "an old round judged late: leave to schedule"),
    ],
)
def test_a_recovery_is_confirmed_at_once_while_the_incident_is_open(
    verdict: str,
    up_rounds: int,
    incident_open: bool,
    t: Thresholds,
    age: timedelta,
    expected: bool,
    why: str,
) -> None:
    got = wanted_back(verdict, up_rounds, incident_open, t, NOW - age, NOW, MINUTE)
    assert got is expected, why


@pytest.mark.parametrize(
    ("verdict", "run", "t", "age", "expected", "why"),
    [
        ("failing", 1, ON, timedelta(seconds=2), True, "a failing run starts: the host's others"),
        ("failing", 2, ON, timedelta(seconds=2), False, "its confirmation does not ask again"),
        ("failing", 3, ON, timedelta(seconds=2), False, "nor a later round"),
        ("up", 1, ON, timedelta(seconds=2), True, "a passing run starts (incident open: caller)"),
        ("failing", 1, OFF, timedelta(seconds=2), False, "confirmation switched off"),
        ("missed", 1, ON, timedelta(seconds=2), False, "nobody ran it"),
        ("failing", 0, ON, timedelta(seconds=2), False, "no run"),
        ("failing", 1, ON, MINUTE, False, "an old round judged late: leave to schedule"),
    ],
)
def test_the_hosts_other_monitors_are_checked_once_a_run(
    verdict: str, run: int, t: Thresholds, age: timedelta, expected: bool, why: str
) -> None:
    assert with_siblings(verdict, run, t, NOW - age, NOW, MINUTE) is expected, why


S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("tat", "per_minute", "expected", "why"),
    [
        (None, 600, 50, "never used: a burst of BURST_S (5 s at 10 a second)"),
        (NOW - MINUTE, 600, 50, "whole again"),
        (NOW + 5 * S, 600, 0, "burst used up"),
        (NOW + 4.9 * S, 600, 1, "one slot freed each 0.1 s"),
        (NOW + 4 * S, 600, 10, "a second later: ten"),
        (None, 1, 1, "a whole budget admits one round however costly"),
        (NOW + 1 * S, 1, 0, "then none until a minute has passed"),
        (None, 0, 0, "0 a minute: none ever"),
    ],
)
def test_the_global_budget_is_a_rate_with_a_short_burst(
    tat: datetime | None, per_minute: int, expected: int, why: str
) -> None:
    """Pins the rate: a flood cannot take a minute's budget at once and leave nothing for
    the next minute, so a slot frees every 60 / per_minute s."""
    assert slots(tat, NOW, per_minute) == expected, why


def test_slots_taken_move_the_budget_later() -> None:
    assert spent(None, NOW, 600, 50) == NOW + 5 * S
    assert spent(NOW + 2 * S, NOW, 600, 10) == NOW + 3 * S
    assert slots(spent(None, NOW, 600, 50), NOW, 600) == 0


def p(org: int, monitor: int, age_s: float) -> Pending:
    return Pending(monitor, NOW - MINUTE, org, NOW - age_s * S)


FLOOD = [p(1, m, 30 - m * 0.01) for m in range(100)]  # organization 1: 100 waiting, older


@pytest.mark.parametrize(
    ("pending", "recent", "n", "expected", "why"),
    [
        (FLOOD, {1: 600}, 3, [(1, 0), (1, 1), (1, 2)], "alone: every slot, oldest first"),
        (
            [*FLOOD, p(2, 500, 0)],
            {1: 600},
            1,
            [(2, 500)],
            "a newcomer's first request before the flood's next, however old the flood's",
        ),
        (
            [*FLOOD, p(2, 500, 0), p(2, 501, 0)],
            {1: 600, 2: 0},
            4,
            [(2, 500), (1, 0), (2, 501), (1, 1)],
            "several waiting: turn by turn (max-min), fewer recent sends first in a turn",
        ),
        (
            [*FLOOD, p(2, 500, 0), p(3, 600, 0)],
            {1: 10, 2: 5, 3: 20},
            3,
            [(2, 500), (1, 0), (3, 600)],
            "within a turn: the one that had fewer",
        ),
        ([p(1, 1, 3), p(1, 2, 2)], {}, 0, [], "no slot: nothing"),
        ([], {}, 5, [], "nothing waiting"),
    ],
)
def test_slots_go_round_robin_between_organizations(
    pending: list[Pending],
    recent: dict[int, int],
    n: int,
    expected: list[tuple[int, int]],
    why: str,
) -> None:
    """Pins max-min fairness: an organization alone takes the whole budget; while several
    wait none gets a second slot before each other has had one."""
    got = fair_pick(pending, recent, n)
    assert [(x.organization_id, x.monitor_id) for x in got] == expected, why
