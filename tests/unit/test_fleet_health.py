"""The fleet's checks per country, pure (controller.fleet.health), as tables."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.fleet.health import (
    AGENTS,
    FEATURES,
    FORGET,
    SATURATION,
    Rounds,
    agents_health,
    features_health,
    judge,
    saturation_health,
    served,
)
from controller.operator_health.rules import Health, Stored, step

OK = Health("healthy", "")
ALL = ("bundles", "preempt")


@pytest.mark.parametrize(
    ("country", "expected", "live", "state"),
    [
        ("DE", True, frozenset({"DE"}), "healthy"),
        ("DE", False, frozenset({"DE"}), "healthy"),  # served though no monitor lists it
        ("DE", True, frozenset({"FR"}), "unhealthy"),
        ("DE", False, frozenset(), None),  # nobody needs it, nobody serves it: not judged
    ],
)
def test_a_country_needs_a_live_agent_where_monitors_run(
    country: str, expected: bool, live: frozenset[str], state: str | None
) -> None:
    got = agents_health(country, expected, live)
    assert (got.state if got else None) == state


@pytest.mark.parametrize(
    ("rounds", "ratio_max", "state"),
    [
        (None, 0.05, "healthy"),  # no round: none waited
        (Rounds(3, 0), 0.05, "healthy"),  # few rounds, none saturated: none waited
        (Rounds(9, 9), 0.05, None),  # too few rounds to judge
        (Rounds(10, 0), 0.05, "healthy"),
        (Rounds(100, 5), 0.05, "healthy"),  # at the threshold: not beyond it
        (Rounds(100, 6), 0.05, "unhealthy"),
        (Rounds(10, 10), 1.0, "healthy"),  # 1.0: never told
        (Rounds(10, 1), 0.0, "unhealthy"),
    ],
)
def test_saturation_is_told_beyond_the_threshold_only(
    rounds: Rounds | None, ratio_max: float, state: str | None
) -> None:
    got = saturation_health(rounds, ratio_max)
    assert (got.state if got else None) == state


def test_saturation_says_its_share() -> None:
    got = saturation_health(Rounds(20, 3), 0.05)
    assert got == Health("unhealthy", "3 of 20 rounds saturated (15%, over 5%)")


@pytest.mark.parametrize(
    ("agents", "want"),
    [
        ({}, None),
        ({"a": ["bundles", "preempt"]}, OK),
        ({"a": ["preempt", "bundles", "extra"]}, OK),
        (
            {"b": ["bundles", "preempt"], "a": []},
            Health("unhealthy", "1 of 2 agents too old: a lacks bundles, preempt"),
        ),
        (
            {f"a{i}": ["bundles"] for i in range(7)},
            Health(
                "unhealthy",
                "7 of 7 agents too old: a0 lacks preempt; a1 lacks preempt; a2 lacks preempt;"
                " a3 lacks preempt; a4 lacks preempt; and 2 more",
            ),
        ),
    ],
)
def test_an_agent_without_a_feature_the_scheduler_uses_is_named(
    agents: dict[str, list[str]], want: Health | None
) -> None:
    assert features_health(agents, ALL) == want


def test_judge_covers_every_country_and_leaves_out_what_it_cannot_judge() -> None:
    got = judge(
        expected=frozenset({"DE", "FR"}),
        agents={"DE": {"a": list(ALL)}, "US": {"u": ["bundles"]}},
        rounds={"DE": Rounds(20, 0), "JP": Rounds(20, 20)},
        ratio_max=0.05,
        needed=ALL,
    )
    assert {k: v.state for k, v in got.items()} == {
        (AGENTS, "DE"): "healthy",
        (SATURATION, "DE"): "healthy",
        (FEATURES, "DE"): "healthy",
        (AGENTS, "FR"): "unhealthy",  # listed, nobody serves it
        (SATURATION, "FR"): "healthy",  # no round, none waited
        (SATURATION, "US"): "healthy",
        (AGENTS, "US"): "healthy",
        (FEATURES, "US"): "unhealthy",
        (SATURATION, "JP"): "unhealthy",  # rounds, no agent now and no monitor listing it
    }


@pytest.mark.parametrize("quiet_rounds", [0, 1, 5, 9, 10, 40])
@pytest.mark.parametrize("ratio_max", [0.0, 0.05, 0.5])
def test_a_saturation_told_is_told_over_once_no_round_waits_however_few_rounds_run(
    quiet_rounds: int, ratio_max: float
) -> None:
    """The saturation flag releases once its condition ends: a country saturated for a while
    (its rounds `saturated` past FLEET_SATURATED_RATIO_MAX), then quiet (its busiest
    organization's monitors disabled: `quiet_rounds` rounds a window, none saturated), is
    told `recovered`, as FleetWatch steps it (controller.operator_health.watch.move: a check
    not judged goes `unchecked`)."""
    t0 = datetime(2026, 11, 28, 2, tzinfo=UTC)
    stored: Stored | None = None
    told: list[str] = []
    for minute in range(0, 240, 1):
        busy = minute < 60
        rounds = Rounds(40, 40) if busy else Rounds(quiet_rounds, 0)
        judged = judge(
            expected=frozenset({"DE"}),
            agents={"DE": {"a": list(ALL)}},
            rounds={"DE": rounds} if rounds.total else {},
            ratio_max=ratio_max,
            needed=ALL,
        )
        now = judged.get((SATURATION, "DE"), Health("unchecked", "not judged now"))
        if stored is None and now.state == "unchecked":
            continue
        stored, change = step(stored, now, t0 + timedelta(minutes=minute))
        if change:
            told.append(change)
    print(f"ratio_max={ratio_max} quiet_rounds={quiet_rounds} told={told}")
    assert told == ["unhealthy", "recovered"], told


AT = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stored", "want"),
    [
        # agents beat there: its `features` health is judged
        ({(FEATURES, "DE"): "healthy", (AGENTS, "DE"): "healthy"}, {"DE"}),
        ({(FEATURES, "DE"): "unhealthy"}, {"DE"}),
        # its agents went a day ago: still the fleet's for FORGET
        ({(FEATURES, "DE"): ("unchecked", timedelta(days=1)), (AGENTS, "DE"): "unhealthy"}, {"DE"}),
        ({(FEATURES, "DE"): ("unchecked", FORGET)}, set()),
        # only a monitor lists it, no agent ever beat there: never the fleet's (issue 78)
        ({(AGENTS, "AU"): "unhealthy"}, set()),
        ({(AGENTS, "AU"): ("unhealthy", timedelta(minutes=1))}, set()),
    ],
)
def test_served(stored: dict[tuple[str, str], object], want: set[str]) -> None:
    rows = {}
    for key, value in stored.items():
        state, ago = value if isinstance(value, tuple) else (value, timedelta(hours=1))
        rows[key] = Stored(str(state), "", AT - ago, "healthy")
    assert served(rows, AT) == want
