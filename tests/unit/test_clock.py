"""The manual clock moves only when told: `advance` moves the wall and monotonic time together,
forward only; `set` steps the wall either way (as NTP may) and leaves monotonic time alone."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.clock import WALL, ManualClock

START = datetime(2026, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("steps", "wall", "monotonic"),
    [
        ([], START, 10.0),
        ([("advance", 0.5)], datetime(2027, 1, 1, tzinfo=UTC), 10.5),
        ([("advance", 0.5), ("advance", 31 * 86400)], datetime(2027, 2, 1, tzinfo=UTC), 2678410.5),
        ([("set", START - timedelta(hours=1))], START - timedelta(hours=1), 10.0),
        ([("advance", 2), ("set", START)], START, 12.0),
    ],
)
def test_the_manual_clock_moves_as_told(
    steps: list[tuple[str, object]], wall: datetime, monotonic: float
) -> None:
    clock = ManualClock(START, monotonic=10.0)
    for verb, arg in steps:
        getattr(clock, verb)(arg)
    assert (clock.now(), clock.monotonic()) == (wall, monotonic)


def test_the_manual_clock_refuses_naive_times_and_going_back() -> None:
    with pytest.raises(ValueError, match="aware"):
        ManualClock(datetime(2026, 1, 1))
    clock = ManualClock(START)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="aware"):
        clock.set(datetime(2026, 1, 1))


def test_times_are_utc_whatever_zone_they_came_in() -> None:
    clock = ManualClock(datetime(2026, 6, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_the_wall_clock_is_aware_utc_and_monotonic_never_goes_back() -> None:
    first = WALL.monotonic()
    assert WALL.now().tzinfo is UTC
    assert WALL.monotonic() >= first
