"""A result's times within its job's window (controller/ingest/job_window.py, issue 78), as a
table: scheduled at T, the window is [T - SKEW, T + LATE]."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.ingest.job_window import LATE, SKEW, clamp

T = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("started", "finished", "want_started", "want_finished", "moved"),
    [
        (T + S, T + 2 * S, T + S, T + 2 * S, ()),  # an ordinary check
        (T - SKEW, T + LATE, T - SKEW, T + LATE, ()),  # the window's edges are in it
        (T - 30 * S, T - 20 * S, T - 30 * S, T - 20 * S, ()),  # a clock a little behind
        (T + S, datetime(2099, 1, 1, tzinfo=UTC), T + S, T + LATE, ("finishedAt",)),
        (T - timedelta(days=1), T + S, T - SKEW, T + S, ("startedAt",)),
        (
            datetime(2099, 1, 1, tzinfo=UTC),
            datetime(2099, 1, 1, tzinfo=UTC),
            T + LATE,
            T + LATE,
            ("startedAt", "finishedAt"),
        ),
        (T + 5 * S, T + S, T + 5 * S, T + 5 * S, ("finishedAt",)),  # finished before it started
        (
            T - timedelta(days=2),
            T - timedelta(days=1),
            T - SKEW,
            T - SKEW,
            ("startedAt", "finishedAt"),
        ),
    ],
)
def test_clamp(
    started: datetime,
    finished: datetime,
    want_started: datetime,
    want_finished: datetime,
    moved: tuple[str, ...],
) -> None:
    assert tuple(clamp(T, started, finished)) == (want_started, want_finished, moved)
