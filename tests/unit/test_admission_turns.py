"""controller.scheduling.admission_rules: `fits_all` (when every job asking is admitted without
deciding turn by turn) as a table, and `decide`'s turns against the rule taken literally (the
tenant holding fewest, then the lightest, found among all the lanes at every turn), on random
loads of a fixed seed."""

import random
from collections import Counter

import pytest

from controller.fleet.load import CountryLoad
from controller.scheduling.admission_rules import (
    Admission,
    Decision,
    decide,
    fits_all,
    reserve,
    water_fill,
    weights,
)

A, W = Admission.ADMIT, Admission.WAIT


@pytest.mark.parametrize(
    ("load", "asking", "fits"),
    [
        (CountryLoad(8, {}), 7, True),  # 8 - 7 = 1 free after them: the reserve
        (CountryLoad(8, {}), 8, False),
        (CountryLoad(8, {"a": 3, "b": -1}), 4, True),  # a negative count holds nothing
        (CountryLoad(8, {"a": 3}), 5, False),
        (CountryLoad(1, {}), 1, True),  # one slot keeps no reserve
        (CountryLoad(1, {"a": 1}), 1, False),
        (CountryLoad(0, {}), 1, False),
        (CountryLoad(16, {"a": 10}), 4, True),  # reserve 2
        (CountryLoad(16, {"a": 10}), 5, False),
        (CountryLoad(500, {"a": 2, "b": 2}), 75, True),
    ],
)
def test_fits_all(load: CountryLoad, asking: int, fits: bool) -> None:
    assert fits_all(load, asking) is fits


def _literal(load: CountryLoad, asking: list[str], timeouts: list[float]) -> list[Admission]:
    """The turns as the module states them: at each turn, of every tenant with jobs left, the
    one holding fewest, then the lightest; it takes a slot while more are free than its rank
    (capped by the reserve) asks to be left, else all its jobs wait."""
    held = Counter({t: n for t, n in load.held.items() if n > 0})
    weight = weights(load, asking, timeouts)
    first = {t: asking.index(t) for t in set(asking)}
    order = sorted(weight, key=lambda t: (weight[t], first.get(t, len(asking)), t))
    rank = {t: k for k, t in enumerate(order)}
    busy = sum(held.values())
    left = {t: [i for i, a in enumerate(asking) if a == t] for t in first}
    out = [W] * len(asking)
    while left and load.capacity - busy > 0:
        tenant = min(left, key=lambda t: (held[t], rank[t]))
        if load.capacity - busy <= min(rank[tenant], reserve(load.capacity)):
            del left[tenant]
            continue
        out[left[tenant].pop(0)] = A
        if not left[tenant]:
            del left[tenant]
        held[tenant] += 1
        busy += 1
    return out


def test_decide_takes_the_turns_the_rule_states() -> None:
    rng = random.Random(70)
    admitted = waited = 0
    for _ in range(2000):
        tenants = [f"t{n}" for n in range(rng.randint(1, 8))]
        capacity = rng.randint(0, 24)
        load = CountryLoad(
            capacity,
            {t: rng.randint(0, 6) for t in tenants if rng.random() < 0.6},
            {t: rng.uniform(0, 50) for t in tenants if rng.random() < 0.5},
            checks={t: rng.uniform(0, 5) for t in tenants if rng.random() < 0.5},
        )
        asking = [rng.choice(tenants) for _ in range(rng.randint(0, 20))]
        timeouts = [rng.choice([5.0, 10.0, 30.0]) for _ in asking]
        got = decide(load, asking, timeouts)
        assert [d.admission for d in got] == _literal(load, asking, timeouts)
        if fits_all(load, len(asking)):
            assert all(d.admission is A for d in got)
        admitted += sum(d.admission is A for d in got)
        waited += sum(d.admission is W for d in got)
    print(f"2,000 random loads: {admitted:,} jobs admitted, {waited:,} waited")
    assert admitted and waited  # both outcomes were exercised


def test_a_waiting_jobs_figures_are_its_tenants_at_its_turn() -> None:
    # b (lighter) takes the free slot but the reserve; a's lane then waits whole.
    load = CountryLoad(8, {"a": 6}, {"a": 100.0, "b": 1.0})
    got = decide(load, ["a", "b", "a"], [30.0, 30.0, 30.0])
    shares = water_fill(8, {"a": 8.0, "b": 1.0})
    assert got == [
        Decision(W, 6, round(shares["a"], 2), 7, 8),
        Decision(A, 0, round(shares["b"], 2), 6, 8),
        Decision(W, 6, round(shares["a"], 2), 7, 8),
    ]
