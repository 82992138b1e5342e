"""The clock sweep's times: each one is tomorrow's, so the moved clock never runs backwards."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tools.clock_sweep import TIMES, offset_to

NOW = datetime(2026, 11, 28, 0, 36, 38, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "seconds"),
    [
        ("00:36:38", 86_399),  # the same time tomorrow, the fraction dropped
        ("23:59:00", 47 * 3600 + 22 * 60 + 21),  # tomorrow evening, not tonight
        ("00:00:20", 23 * 3600 + 23 * 60 + 41),
        ("09:30:00", 24 * 3600 + 8 * 3600 + 53 * 60 + 21),
    ],
)
def test_a_time_of_day_is_tomorrows(at: str, seconds: int) -> None:
    assert offset_to(at, NOW) == seconds


def test_the_makefile_sweeps_the_simulation_at_the_tools_times() -> None:
    """`make clock-sweep` starts the simulation's seeds at the times the libfaketime suites run."""
    makefile = Path(__file__).parents[2] / "Makefile"
    line = next(
        ln for ln in makefile.read_text().splitlines() if ln.startswith("CLOCK_SWEEP_TIMES :=")
    )
    assert tuple(line.partition(":=")[2].split()) == TIMES
