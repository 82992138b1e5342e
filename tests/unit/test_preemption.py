"""controller.scheduling.preemption: which checks a saturated country takes back for a job
waiting at the scheduler, as a table, and the property that what it decides never moves a slot
back and forth: after every preemption, no further one is decided in the other direction."""

import random

import pytest

from controller.fleet.load import CountryLoad
from controller.scheduling.preemption import (
    GRACE_MAX_S,
    Preemption,
    Waiter,
    grace_s,
    preemptions,
)


def waiting(tenant: str, n: int = 1, waited: float = 3.0, timeout: float = 3.0) -> list[Waiter]:
    return [Waiter(tenant, timeout, waited, 2.0) for _ in range(n)]


# 20 noisy organizations of one hanging monitor each in a country of 4 slots: 4 hold one each
# (n3 the longest lately), the 16 others wait beside the victim.
N20_HELD = {f"n{i}": 1 for i in range(4)}
N20_USAGE = {f"n{i}": 40.0 for i in range(20)} | {"n3": 60.0}
N20_HOLDERS = {t: {f"a{i % 2}": 1} for i, t in enumerate(N20_HELD)}
N20_WAITING = [w for i in range(4, 20) for w in waiting(f"n{i}")]

CASES = [
    # name, load, waiters, expected (waiter index, tenant, agent)
    (
        "one slot: a hanging check gives way to a light tenant's round",
        CountryLoad(1, {"noisy": 1}, {"noisy": 8.0}, 0.0, {}, {"noisy": {"a": 1}}),
        waiting("victim"),
        [(0, "noisy", "a")],
    ),
    (
        "one slot: but not to a tenant that has held it longer lately",
        CountryLoad(1, {"noisy": 1}, {"noisy": 2.0, "victim": 9.0}, 0.0, {}, {"noisy": {"a": 1}}),
        waiting("victim"),
        [],
    ),
    (
        "one slot: nor to a newcomer as heavy as its timeout",
        CountryLoad(1, {"noisy": 1}, {"noisy": 2.0}, 0.0, {}, {"noisy": {"a": 1}}),
        waiting("victim", timeout=8.0),
        [],
    ),
    (
        "non-lightest hanging org: 3 of 4 held by Noisy, B holds 1 and waits: one back",
        CountryLoad(
            4, {"noisy": 3, "b": 1}, {"noisy": 90.0, "b": 20.0}, 0.0, {}, {"noisy": {"a": 3}}
        ),
        waiting("b", 3),
        [(0, "noisy", "a")],
    ),
    (
        "B holds nothing, Noisy all four: two back (B's share), from the agent holding most",
        CountryLoad(
            4,
            {"noisy": 4},
            {"noisy": 90.0, "b": 20.0},
            0.0,
            {},
            {"noisy": {"a1": 1, "a2": 3}},
        ),
        waiting("b", 3),
        [(0, "noisy", "a2"), (1, "noisy", "a2")],
    ),
    (
        "a tenant at its share is never preempted",
        CountryLoad(
            4, {"noisy": 2, "b": 2}, {"noisy": 90.0, "b": 1.0}, 0.0, {}, {"noisy": {"a": 2}}
        ),
        waiting("b", 2),
        [],
    ),
    (
        "2,1,1 of 4 slots: a swap only evens out counts, no preemption between equals",
        CountryLoad(
            4, {"x": 2, "y": 1, "z": 1}, {"x": 30.0, "y": 30.0, "z": 30.0}, 0.0, {}, {"x": {"a": 2}}
        ),
        waiting("y") + waiting("z"),
        [],
    ),
    (
        "20 noisy organizations: the victim takes one slot from the heaviest, they none",
        CountryLoad(4, N20_HELD, N20_USAGE, 0.0, {}, N20_HOLDERS),
        N20_WAITING + waiting("victim", 2),
        [(16, "n3", "a1")],
    ),
    (
        "two replicas over-admitted: the excess over capacity goes back to the one owed",
        CountryLoad(4, {"noisy": 5}, {"noisy": 90.0}, 0.0, {}, {"noisy": {"a": 5}}),
        waiting("victim", 1),
        [(0, "noisy", "a")],
    ),
    (
        "quick checks are never preempted: their slots come back within the grace",
        CountryLoad(2, {"quick": 2}, {"quick": 5.0}, 0.0, {"quick": 100.0}, {"quick": {"a": 2}}),
        waiting("victim"),
        [],
    ),
    (
        "grace: a job that has just started waiting asks for nothing",
        CountryLoad(1, {"noisy": 1}, {"noisy": 8.0}, 0.0, {}, {"noisy": {"a": 1}}),
        waiting("victim", waited=0.5),
        [],
    ),
    (
        "no agent that takes requests holds the tenant's jobs: nothing asked",
        CountryLoad(1, {"noisy": 1}, {"noisy": 8.0}),
        waiting("victim"),
        [],
    ),
    (
        "the most over its share goes first",
        CountryLoad(
            8,
            {"x": 5, "y": 3},
            {"x": 50.0, "y": 80.0},
            0.0,
            {},
            {"x": {"a": 5}, "y": {"b": 3}},
        ),
        waiting("victim", 2),
        [(0, "x", "a"), (1, "x", "a")],
    ),
]


@pytest.mark.parametrize(
    ("load", "waiters", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_preemptions(
    load: CountryLoad, waiters: list[Waiter], expected: list[tuple[int, str, str]]
) -> None:
    got = preemptions(load, waiters)
    assert [(p.waiter, p.tenant, p.agent_id) for p in got] == expected


def test_a_preemption_says_what_the_tenant_held_and_its_share() -> None:
    load = CountryLoad(4, {"noisy": 4}, {"noisy": 90.0}, 0.0, {}, {"noisy": {"a": 4}})
    assert preemptions(load, waiting("b", 3)) == [
        Preemption(0, "noisy", "a", 4, 2.0),
        Preemption(1, "noisy", "a", 3, 2.0),
    ]


@pytest.mark.parametrize(
    ("window", "grace"), [(8.0, GRACE_MAX_S), (48.0, GRACE_MAX_S), (4.0, 1.0), (0.0, 0.0)]
)
def test_grace_is_two_seconds_or_a_quarter_of_the_start_window(window: float, grace: float) -> None:
    assert grace_s(window) == grace


def test_no_preemption_is_ever_undone_by_the_next() -> None:
    """Random countries: apply what is decided, then let every tenant that held a slot taken
    wait: none of them may take it back in the same state (no thrash)."""
    rng = random.Random(60)
    for _ in range(2000):
        capacity = rng.randint(1, 12)
        tenants = [f"t{i}" for i in range(rng.randint(2, 5))]
        held = {t: rng.randint(0, capacity) for t in tenants}
        usage = {t: rng.uniform(0, 100) for t in tenants}
        holders = {t: {"a": n} for t, n in held.items() if n}
        load = CountryLoad(capacity, held, usage, 0.0, {}, holders)
        waiters = [
            Waiter(t, rng.uniform(0.1, 10), 5.0, 2.0)
            for t in tenants
            for _ in range(rng.randint(0, 3))
        ]
        decided = preemptions(load, waiters)
        if not decided:
            continue
        after = dict(held)
        for p in decided:
            after[p.tenant] -= 1
            after[waiters[p.waiter].tenant] += 1
        losers = {p.tenant for p in decided}
        gainers = {waiters[p.waiter].tenant for p in decided}
        back = CountryLoad(
            capacity, after, usage, 0.0, {}, {t: {"a": n} for t, n in after.items() if n}
        )
        # the losers wait now, as much as they lost, beside what still waits
        again = [w for i, w in enumerate(waiters) if i not in {p.waiter for p in decided}]
        again += [Waiter(t, 1.0, 5.0, 2.0) for t in losers]
        for p in preemptions(back, again):
            assert not (again[p.waiter].tenant in losers and p.tenant in gainers), (load, decided)
