"""controller.scheduling.admission_rules: which jobs a country takes now, as a table, and the
property that a light organization always finds a slot however heavy the others are."""

import random

import pytest

from controller.fleet.load import CountryLoad
from controller.scheduling.admission_rules import Admission, decide, reserve, water_fill

A, W = Admission.ADMIT, Admission.WAIT


@pytest.mark.parametrize(
    ("capacity", "expected"), [(0, 0), (1, 0), (2, 1), (8, 1), (15, 1), (16, 2), (64, 8)]
)
def test_reserve(capacity: int, expected: int) -> None:
    assert reserve(capacity) == expected


@pytest.mark.parametrize(
    ("capacity", "demand", "shares"),
    [
        (8, {"a": 16.0, "b": 1.0}, {"a": 7.0, "b": 1.0}),
        (8, {"a": 2.0, "b": 2.0}, {"a": 2.0, "b": 2.0}),
        (9, {"a": 10.0, "b": 10.0, "c": 1.0}, {"a": 4.0, "b": 4.0, "c": 1.0}),
        (8, {}, {}),
        (0, {"a": 3.0}, {"a": 0.0}),
    ],
)
def test_water_fill(capacity: int, demand: dict[str, float], shares: dict[str, float]) -> None:
    assert water_fill(capacity, demand) == shares


CASES = [
    # name, load, asking, admissions
    ("idle country: everything", CountryLoad(8, {}, {}), ["a", "a", "b"], [A, A, A]),
    # A lone tenant uses every slot: the reserve binds only against a lighter tenant.
    ("lone tenant takes all", CountryLoad(2, {"a": 1}, {"a": 9.0}), ["a"], [A]),
    ("full country: under share waits", CountryLoad(2, {"a": 2}, {"a": 9.0}), ["b"], [W]),
    # Noisy holds 7 of 8: the last slot is the lighter tenant's, Noisy's next job waits.
    (
        "the reserve goes to the lighter",
        CountryLoad(8, {"noisy": 7}, {"noisy": 200.0, "victim": 0.1}),
        ["noisy", "victim"],
        [W, A],
    ),
    (
        "a full country: everyone waits",
        CountryLoad(8, {"noisy": 8}, {"noisy": 200.0}),
        ["noisy", "victim"],
        [W, W],
    ),
    (
        "fewest held goes first",
        CountryLoad(4, {"a": 2}, {"a": 5.0, "b": 5.0}),
        ["a", "a", "b"],
        [A, W, A],
    ),
    (
        "twenty heavy tenants leave the reserve to the light one",
        CountryLoad(8, {f"n{i}": 1 for i in range(7)}, {f"n{i}": 10.0 for i in range(20)}),
        ["n10", "n11", "v"],
        [W, W, A],
    ),
    # Twenty organizations none of whose checks ended yet (their checks hang) weigh their
    # jobs' timeouts: the one whose checks take milliseconds keeps the last slot.
    (
        "new tenants weigh their timeouts, not nothing",
        CountryLoad(4, {"n0": 1, "n1": 1, "n2": 1}, {"n0": 3.0, "v": 0.003}, checks={"v": 1.0}),
        ["n5", "n6", "v"],
        [W, W, A],
    ),
    # A light tenant forgotten by its agents is new again, and still lighter than one whose
    # checks hold their slots long.
    (
        "known heavy weighs more than a new tenant",
        CountryLoad(4, {"h": 3}, {"h": 90.0}, checks={"h": 3.0}),
        ["h", "v"],
        [W, A],
    ),
    # The light tenant's last check (or a beat not heard yet) holds a slot of a full country
    # whose share it is over: it frees within moments, so its next job waits.
    (
        "a known light tenant over its share waits",
        CountryLoad(4, {"n0": 1, "n1": 1, "n2": 1, "v": 1}, {"v": 0.003}, checks={"v": 1.0}),
        ["v"],
        [W],
    ),
    ("one slot: no reserve", CountryLoad(1, {}, {"a": 50.0}), ["a", "b"], [W, A]),
    ("no capacity: all wait", CountryLoad(0, {}, {}), ["a"], [W]),
]


@pytest.mark.parametrize(
    ("load", "asking", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(load: CountryLoad, asking: list[str], expected: list[Admission]) -> None:
    """Every job asking has a 10 s timeout."""
    assert [d.admission for d in decide(load, asking, [10.0] * len(asking))] == expected


def test_never_more_admitted_than_free() -> None:
    rng = random.Random(60)
    for _ in range(2000):
        capacity = rng.randint(0, 20)
        tenants = [f"t{i}" for i in range(rng.randint(1, 25))]
        held = {t: rng.randint(0, 3) for t in tenants if rng.random() < 0.5}
        usage = {t: rng.random() * 100 for t in tenants if rng.random() < 0.7}
        asking = [rng.choice(tenants) for _ in range(rng.randint(0, 30))]
        decisions = decide(CountryLoad(capacity, held, usage), asking)
        admitted = sum(d.admission is Admission.ADMIT for d in decisions)
        assert admitted <= max(0, capacity - sum(held.values()))
        if capacity - sum(held.values()) > reserve(capacity) and asking:
            assert admitted >= 1, "slots beyond the reserve never stay idle while jobs ask"


def test_the_lightest_asking_tenant_always_gets_a_free_slot() -> None:
    """Whatever the heavy tenants hold, while one slot is free the lightest tenant's job is
    admitted: no number of heavy tenants, no order of jobs, keeps it out."""
    rng = random.Random(5782)
    for _ in range(2000):
        capacity = rng.randint(2, 40)
        heavy = [f"h{i}" for i in range(rng.randint(1, 30))]
        held: dict[str, int] = {}
        # The light tenant ran lately: its usage is known, and the least.
        usage = {t: 1 + rng.random() * 500 for t in heavy} | {"light": 0.5}
        checks = {t: 1 + rng.random() * 10 for t in heavy} | {"light": 5.0}
        # The heavy tenants fill what they may, in random order.
        for _ in range(5):
            asking = [rng.choice(heavy) for _ in range(rng.randint(1, 60))]
            for t, d in zip(
                asking,
                decide(CountryLoad(capacity, held, usage, checks=checks), asking),
                strict=True,
            ):
                if d.admission is Admission.ADMIT:
                    held[t] = held.get(t, 0) + 1
        assert sum(held.values()) <= capacity - 1
        asking = [rng.choice(heavy) for _ in range(rng.randint(0, 10))]
        asking.insert(rng.randint(0, len(asking)), "light")
        decisions = decide(CountryLoad(capacity, held, usage, checks=checks), asking)
        assert decisions[asking.index("light")].admission is Admission.ADMIT


def test_new_tenants_with_hanging_checks_never_take_the_light_tenants_slot() -> None:
    """However many tenants are new (no check of theirs ended lately: each weighs its job's
    timeout), in whatever order their jobs ask, the light tenant whose checks take
    milliseconds is admitted while one slot is free, though its timeout is theirs."""
    rng = random.Random(6060)
    for _ in range(2000):
        capacity = rng.randint(2, 40)
        heavy = [f"h{i}" for i in range(rng.randint(1, 40))]
        known = {t for t in heavy if rng.random() < 0.5}  # a check of theirs ended
        usage = {t: rng.random() * 500 for t in heavy} | {"light": 0.004}
        checks = {t: 1 + rng.random() * 10 for t in known} | {"light": 2.0}
        busy = capacity - 1 - rng.randint(0, reserve(capacity) - 1)
        held: dict[str, int] = {}
        for _ in range(busy):
            t = rng.choice(heavy)
            held[t] = held.get(t, 0) + 1
        asking = [rng.choice(heavy) for _ in range(rng.randint(0, 40))]
        asking.insert(rng.randint(0, len(asking)), "light")
        timeouts = [float(rng.choice((10, 30))) for _ in asking]
        timeouts[asking.index("light")] = 30.0
        load = CountryLoad(capacity, held, usage, checks=checks)
        decisions = decide(load, asking, timeouts)
        assert decisions[asking.index("light")].admission is Admission.ADMIT
