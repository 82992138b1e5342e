"""The skipping clock (testkit/skipping.py) is the wall and monotonic time, moved forward
together by what was skipped, never back; it is a `Clock` the parts take."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from shared.clock import Clock
from testkit.skipping import SkippingClock


@pytest.mark.parametrize("skips", [[], [0.0], [5.0], [5.0, 0.25, 3600.0]])
def test_the_skipping_clock_is_the_wall_plus_what_was_skipped(skips: list[float]) -> None:
    clock = SkippingClock()
    for seconds in skips:
        clock.skip(seconds)
    ahead = sum(skips)
    wall_before, mono_before = datetime.now(UTC), time.monotonic()
    now, mono = clock.now(), clock.monotonic()
    wall_after, mono_after = datetime.now(UTC), time.monotonic()
    assert now.tzinfo is not None
    assert wall_before + timedelta(seconds=ahead) <= now <= wall_after + timedelta(seconds=ahead)
    assert mono_before + ahead <= mono <= mono_after + ahead
    assert clock.skipped == ahead
    assert isinstance(clock, Clock)


def test_the_skipping_clock_never_goes_back() -> None:
    clock = SkippingClock()
    clock.skip(2.0)
    with pytest.raises(ValueError, match="forward"):
        clock.skip(-1.0)
    assert clock.skipped == 2.0
