"""The country pools of the suites sharing a test process's NATS server (tests/countries.py)."""

from itertools import combinations

import pytest

from controller.monitors.validation import COUNTRIES
from tests.countries import AGENT, OPS, PIPELINE, Pool, handout

POOLS = {"agent": AGENT, "ops": OPS, "pipeline": PIPELINE}


def test_the_pools_share_no_code_and_hold_real_iso_codes_once() -> None:
    for (a, first), (b, second) in combinations(POOLS.items(), 2):
        assert set(first) & set(second) == set(), (a, b)
    for name, pool in POOLS.items():
        assert len(set(pool)) == len(pool), name
        assert set(pool) <= COUNTRIES, name
        assert {"DE", "US"}.isdisjoint(pool), name  # named outright by many tests


def test_a_pool_run_dry_says_so() -> None:
    codes = handout(("AA", "BB"))
    assert [next(codes), next(codes)] == ["AA", "BB"]
    with pytest.raises(RuntimeError, match="all 2 country codes"):
        next(codes)


def test_a_pool_gives_the_longest_unused_code_first() -> None:
    pool = Pool(("AA", "BB", "CC"))
    first, second = pool.take(), pool.take()
    pool.give_back([second, first])
    assert [pool.take() for _ in range(3)] == ["CC", "BB", "AA"]
    with pytest.raises(RuntimeError, match="all 3 country codes of this suite's pool are held"):
        pool.take()
