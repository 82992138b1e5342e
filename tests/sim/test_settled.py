"""The settled path's model (testkit.sim.settled, issue 79): a settled monitor's routine rounds
skipped while the world leaves it alone. The same seeded history with the model on and off must
say the same: every incident (start and end), every notice and every final state; the skips
must be real (a share of the rounds); and a model that skips into a fault must be caught by the
same comparison (the check can fail)."""

import dataclasses
from datetime import UTC, datetime

import pytest

from testkit.campaigns.verdict_truth import Incident, Notice, Observed
from testkit.sim import cli, settled
from testkit.sim.run import Run, describe, simulate
from testkit.sim.world import Failover, Kill, Shape, Spell, World

# three histories of ~5 s of this process's CPU each
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# The default world's faults (quiet spells of 4 to 90 intervals): calm enough for skips, faults
# enough for incidents; seed 1 has an agent away, a controller restart, a kill mid-pass and five
# maintenance windows in it.
SHAPE = Shape(monitors=8, hours=3.0)
SEED = 1
_RUNS: dict[bool, Run] = {}


async def _run(database_url: str, on: bool) -> Run:
    if on not in _RUNS:
        _RUNS[on] = await simulate(database_url, SEED, SHAPE, settled=on)
    return _RUNS[on]


# interval 60 s: TAIL and LEAD 60 s, MIN_ROUNDS 360 s; the history is 3,600 s long.
MINE = "m0000"
QUIET_UNTIL = [
    ("nothing anywhere: to the end, LEAD before it", 0.0, {}, [], [], {}, 3540.0),
    ("its server's fault ahead", 0.0, {MINE: [(1000, 1100)]}, [], [], {}, 940.0),
    ("its fault ended under TAIL ago", 1130.0, {MINE: [(1000, 1100)]}, [], [], {}, None),
    ("its fault ended TAIL ago and more", 1170.0, {MINE: [(1000, 1100)]}, [], [], {}, 3540.0),
    ("in its fault", 1050.0, {MINE: [(1000, 1100)]}, [], [], {}, None),
    ("another server's fault", 0.0, {"m0001": [(1000, 1100)]}, [], [], {}, 3540.0),
    ("an agent away ahead: spanned", 0.0, {}, [(2000, 2100)], [], {}, 3540.0),
    ("the end LEAD before an agent away", 0.0, {}, [(3500, 3550)], [], {}, 3440.0),
    ("the end TAIL after one", 0.0, {}, [(3450, 3500)], [], {}, 3390.0),
    (
        "an agent away spanned, its end before another's",
        0.0,
        {MINE: [(3000, 3100)]},
        [(2800, 2900)],
        [],
        {},
        2740.0,
    ),
    ("an agent away now", 2050.0, {}, [(2000, 2100)], [], {}, None),
    ("an agent back under TAIL ago", 2130.0, {}, [(2000, 2100)], [], {}, None),
    ("a controller restart ahead: spanned", 0.0, {}, [], [(400, 420)], {}, 3540.0),
    ("a controller restart now", 410.0, {}, [], [(400, 420)], {}, None),
    ("a restart ended under TAIL ago", 450.0, {}, [], [(400, 420)], {}, None),
    ("the end LEAD before a restart", 0.0, {}, [], [(3500, 3550)], {}, 3440.0),
    ("its maintenance window ahead: spanned", 0.0, {}, [], [], {MINE: [(1500, 1800)]}, 3540.0),
    ("in its maintenance window", 1600.0, {}, [], [], {MINE: [(1500, 1800)]}, 3540.0),
    ("another's window", 0.0, {}, [], [], {"m0001": [(1500, 1800)]}, 3540.0),
    ("the end too close", 3200.0, {}, [], [], {}, None),
]


@pytest.mark.parametrize(
    ("case", "now", "servers", "agents", "restarts", "windows", "until"),
    QUIET_UNTIL,
    ids=[c[0] for c in QUIET_UNTIL],
)
def test_quiet_until(
    case: str,
    now: float,
    servers: dict[str, list[tuple[float, float]]],
    agents: list[tuple[float, float]],
    restarts: list[tuple[float, float]],
    windows: dict[str, list[tuple[float, float]]],
    until: float | None,
) -> None:
    world = World(
        1,
        Shape(monitors=2, hours=1.0),
        datetime(2031, 1, 31, 22, 0, tzinfo=UTC),
        ("m0000", "m0001"),
        servers={t: [Spell(a, b, "outage") for a, b in s] for t, s in servers.items()},
        agents=[Spell(a, b, "gone", "DE") for a, b in agents],
        restarts=[Spell(a, b, "restart") for a, b in restarts],
        windows={t: [Spell(a, b, "maintenance") for a, b in s] for t, s in windows.items()},
    )
    assert settled.quiet_until(world, MINE, now) == until, case


# rounds at 100, 160, 220, ... (interval 60 s)
AWAY_ROUNDS = [
    ("none away", [], 10, {}),
    ("one round's time inside", [(150, 200, "DE")], 10, {"DE": 1}),
    ("from a round's time, to the next's", [(160, 220, "DE")], 10, {"DE": 1}),
    ("before the first round", [(0, 100, "DE")], 10, {}),
    ("past the last round", [(700, 800, "DE")], 10, {}),
    ("cut by the last round", [(500, 800, "DE")], 10, {"DE": 3}),
    ("two countries", [(150, 300, "DE"), (400, 460, "FR")], 10, {"DE": 3, "FR": 1}),
]


@pytest.mark.parametrize(
    ("case", "agents", "n", "away"), AWAY_ROUNDS, ids=[c[0] for c in AWAY_ROUNDS]
)
def test_away_rounds(
    case: str, agents: list[tuple[float, float, str]], n: int, away: dict[str, int]
) -> None:
    world = World(
        1,
        Shape(monitors=1, hours=1.0),
        datetime(2031, 1, 31, 22, 0, tzinfo=UTC),
        ("m0000",),
        agents=[Spell(a, b, "stall", cc) for a, b, cc in agents],
    )
    assert settled.away_rounds(world, 100.0, n) == away, case


# (due, until): rounds at 100, 160, 220, ... (interval 60 s)
ROUNDS_UNTIL = [
    ("until the next round", 100.0, 100.0, 0),
    ("until just past it", 100.0, 100.5, 1),
    ("until a round's time", 100.0, 400.0, 5),
    ("until just before one", 100.0, 399.9, 5),
    ("until before the next", 100.0, 40.0, 0),
]


@pytest.mark.parametrize(
    ("case", "due", "until", "n"), ROUNDS_UNTIL, ids=[c[0] for c in ROUNDS_UNTIL]
)
def test_rounds_until(case: str, due: float, until: float, n: int) -> None:
    """A skip spans the rounds from the next due time to the first at or after `until`: the
    one count the skip's rows and its agents' absences are moved by."""
    assert settled.rounds_until(due, until, 60.0) == n, case


def test_a_kill_is_an_edge_where_it_struck_not_where_it_was_armed() -> None:
    """A kill armed at 1,000 s struck one history's pass at 1,000.5 s and the other's, whose
    passes ran short until then, at 4,000 s: the two may part near either strike."""
    start = datetime(2031, 1, 31, 22, 0, tzinfo=UTC)
    world = World(
        1,
        Shape(monitors=1, hours=2.0),
        start,
        (MINE,),
        kills=[Kill(1000.0, "alerter", 3)],
        failovers=[Failover(2000.0, "alerter")],
    )
    base = start.timestamp()
    found = settled.edges(world, [base + 1000.5, base + 4000.0])
    assert found.controller == [(base + 1000.5,) * 2, (base + 2000.0,) * 2, (base + 4000.0,) * 2]
    assert settled.edges(world, []).controller == [(base + 2000.0,) * 2]  # it never struck


def _observed(incidents: list[Incident], notices: list[Notice]) -> Observed:
    return Observed({}, incidents, notices, {"m0000": "up"})


def test_differences_table() -> None:
    """The comparison itself: equal, within the tolerance, a round later at an edge of the
    world, and each way it can differ."""
    inc = Incident(1, "m0000", 100.0, 103.0, 500.0)
    down = Notice("m0000", 1, "down", 104.0)
    base = _observed([inc], [down])

    def diff(
        on: Observed, edges: tuple[float, ...] = (), controller: tuple[float, ...] = ()
    ) -> list[str]:
        at = settled.Edges({"m0000": list(edges)}, [(c, c) for c in controller])
        return settled.differences(base, on, 1.0, 60.0, at)

    assert diff(base) == []
    later = _observed(
        [Incident(7, "m0000", 100.0, 103.9, 500.0)], [Notice("m0000", 7, "down", 104.9)]
    )
    assert diff(later) == []
    a_round_later = _observed(
        [Incident(1, "m0000", 160.0, 163.0, 500.0)], [Notice("m0000", 1, "down", 164.0)]
    )
    # the world changed 0.4 s after the first round: that round may have seen either side
    assert diff(a_round_later, (100.4,)) == []
    assert diff(a_round_later)  # no edge there
    assert diff(a_round_later, (101.5,))  # an edge past the tolerance
    # a fault shorter than a round began 0.4 s after a round's time: one history's round saw
    # it, the other's did not
    alone = _observed([inc, Incident(9, "m0000", 400.0, 403.0, 460.0)], [down])
    assert diff(alone, (100.4, 400.4)) == []
    assert diff(alone, (100.4,))
    two_rounds = _observed(
        [Incident(1, "m0000", 220.0, 223.0, 500.0)], [Notice("m0000", 1, "down", 224.0)]
    )
    assert diff(two_rounds, (100.4,))
    # a kill just before the opening struck its pass in one history: it waited out the lease
    waited = _observed(
        [Incident(1, "m0000", 100.0, 134.0, 500.0)], [Notice("m0000", 1, "down", 135.0)]
    )
    assert diff(waited, controller=(102.6,)) == []
    assert diff(waited)
    assert diff(waited, controller=(150.0,))  # after both: it struck neither
    assert diff(waited, controller=(20.0,))  # over an interval before: it struck neither
    assert diff(_observed([Incident(1, "m0000", 100.0, 103.0, None)], [down]))
    assert diff(_observed([inc], []))
    assert diff(_observed([inc], [Notice("m0000", 1, "down", 106.0)]))
    assert diff(_observed([], [down]))
    assert diff(Observed({}, [inc], [down], {"m0000": "down"}))


async def test_the_model_keeps_every_verdict(database_url: str) -> None:
    off = await _run(database_url, False)
    on = await _run(database_url, True)
    print(describe(off))
    print(describe(on))
    assert off.ok and on.ok, (off.misses, on.misses, off.lost, on.lost)
    assert off.figures.monitor_incidents > 0, describe(off)
    # A real share of the rounds skipped: the rounds run and skipped make the history's rounds.
    rounds = off.results // len(SHAPE.countries)
    assert on.skipped > rounds // 5, describe(on)
    assert on.results < off.results - on.skipped, describe(on)
    assert on.skipped_away > 0, describe(on)  # skips spanned the agent's absence
    assert off.struck and on.struck, describe(on)  # the kill struck in both
    same = dataclasses.replace(on, misses=list(on.misses))
    cli.compare(off, same, World.of(SEED, SHAPE), on.quantum)  # `make sim --compare`'s step
    assert same.ok, same.misses


async def test_a_model_that_skips_into_a_fault_is_caught(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defective model (rounds skipped up to 3 intervals into the next fault) is caught: the
    same comparison finds incidents that started later or not at all."""
    off = await _run(database_url, False)
    monkeypatch.setattr(settled, "LEAD", -3)
    wrong = await simulate(database_url, SEED, SHAPE, settled=True)
    misses = list(wrong.misses)
    cli.compare(off, wrong, World.of(SEED, SHAPE), wrong.quantum)
    assert wrong.misses[len(misses) :], describe(wrong)


async def test_compare_fails_the_history_with_the_model_on(database_url: str) -> None:
    """`--compare`'s step: a difference (an incident planted away) is a miss of the run with
    the model on."""
    off = await _run(database_url, False)
    on = await _run(database_url, True)
    assert on.observed is not None
    lost = dataclasses.replace(on.observed, incidents=on.observed.incidents[1:])
    planted = dataclasses.replace(on, misses=list(on.misses), observed=lost)
    cli.compare(off, planted, World.of(SEED, SHAPE), on.quantum)
    assert not planted.ok
    assert all(m.startswith("with the model on, not as off:") for m in planted.misses)
