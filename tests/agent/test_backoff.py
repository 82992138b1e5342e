"""The worker's retry waits: exponential from `first`, capped, jittered, reset on success."""

import pytest

from agent.backoff import Backoff


def test_waits_double_up_to_the_cap_each_in_the_upper_half_of_its_step() -> None:
    for _ in range(50):  # the jitter is random: many draws, every one in bounds
        backoff = Backoff(0.5, 30.0)
        steps = [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
        for step in steps:
            assert step / 2 <= backoff.next() <= step


def test_reset_starts_again_from_the_first_wait() -> None:
    backoff = Backoff(0.5, 30.0)
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert 0.25 <= backoff.next() <= 0.5


def test_waits_are_spread_not_all_the_same() -> None:
    assert len({Backoff(1.0, 1.0).next() for _ in range(20)}) > 1


@pytest.mark.parametrize(("first", "cap"), [(0, 1), (-1, 1), (2, 1)])
def test_a_backoff_needs_0_lt_first_le_cap(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="0 < first <= cap"):
        Backoff(first, cap)
