"""The soak's bookkeeping (testkit.campaigns.soak_figures.figures), pure: each defect the campaign
looks for, planted in made-up rows, is counted where it belongs, so a clean soak report means
clean."""

from collections.abc import Sequence
from datetime import UTC, datetime

from controller.scheduling.rules import phase_ms
from shared.heartbeats import WARMUP_S
from shared.messages import CheckResult, Status
from shared.timefmt import iso_ms
from testkit.campaigns.soak_figures import (
    NORMAL_S,
    Figures,
    Row,
    Window,
    figures,
    grid,
    normal_lateness,
)

MONITOR = "3f0c8a52-5d6f-4a53-9a55-0f3d2b6c1e11"
INTERVAL = 10
T0 = 1_800_000_000.0


def _window(away: bool = False) -> Window:
    return Window("w", T0, T0 + 5, T0 + 60, away)


def _cells() -> list[tuple[str, str, int]]:
    return sorted(grid([MONITOR], ["DE"], INTERVAL, _window()), key=lambda c: c[2])


def _up(cell: tuple[str, str, int], job: str = "") -> Row:
    return Row(job or f"j{cell[2]}", cell, "up", None, cell[2] / 1000 + 0.5)


def _result(row: Row, status: Status) -> CheckResult:
    iso = iso_ms(datetime.fromtimestamp(row.cell[2] / 1000, UTC))
    return CheckResult(
        job_id=row.job_id,
        monitor_id=MONITOR,
        monitor_type="smtp",
        country="DE",
        agent_id="DE-1",
        scheduled_at=iso,
        started_at=iso,
        finished_at=iso,
        status=status,
    )


def _figures(rows: list[Row], published: Sequence[CheckResult] = (), away: bool = False) -> Figures:
    """The figures of `_window`, every country live throughout, no in-flight samples."""
    w = _window(away)
    cells = grid([MONITOR], ["DE"], INTERVAL, w)
    return figures(w, cells, rows, published, lambda cc, at: True, [])


def test_the_grid_has_one_cell_per_interval_on_the_monitors_phase() -> None:
    cells = _cells()
    assert len(cells) == 6
    assert all(c[2] % (INTERVAL * 1000) == phase_ms(MONITOR, INTERVAL) for c in cells)


def test_a_clean_window_passes_every_target() -> None:
    f = _figures([_up(c) for c in _cells()])
    assert (f.stored, f.missing, f.duplicated, f.recovery_s) == (6, 0, 0, 0.0)
    assert f.misses(200) == []


def test_missing_and_duplicated_cells_are_counted() -> None:
    cells = _cells()
    rows = [_up(c) for c in cells[1:]] + [_up(cells[2], job="triggered")]
    f = _figures(rows)
    assert (f.missing, f.duplicated) == (1, 1)
    assert "missing cells" in f.misses(200) and "duplicated cells" in f.misses(200)


def test_cells_due_while_the_scheduling_path_was_away_count_as_coalesced_not_missing() -> None:
    cells = _cells()
    during = [c for c in cells if c[2] / 1000 < T0 + 5 + WARMUP_S + 2]
    f = _figures([_up(c) for c in cells if c not in during], away=True)
    assert (f.coalesced, f.missing) == (len(during), 0)


def test_a_real_result_stored_as_expired_counts_as_dropped_and_a_phantom_no_agent_is_seen() -> None:
    cells = _cells()
    rows = [_up(c) for c in cells]
    rows[3] = Row(rows[3].job_id, cells[3], "missed", "expired", rows[3].stored)
    rows[4] = Row(rows[4].job_id, cells[4], "missed", "no_agent", rows[4].stored)
    f = _figures(rows, [_result(rows[3], "up")])
    assert (f.dropped, f.expired, f.no_agent, f.phantom_no_agent) == (1, 1, 1, 1)
    assert f.recovery_s > 0


def test_a_down_result_on_the_healthy_target_is_a_false_down() -> None:
    cells = _cells()
    rows = [_up(c) for c in cells]
    rows[0] = Row(rows[0].job_id, cells[0], "down", "timeout", rows[0].stored)
    assert _figures(rows).down == 1


def test_an_agent_sampled_over_its_concurrency_misses_the_target() -> None:
    cells = _cells()
    w = _window()
    f = figures(
        w, set(cells), [_up(c) for c in cells], [], lambda cc, at: True, [(T0 + 1, "DE-1", 201)]
    )
    assert f.in_flight == {"DE-1": 201}
    assert f.misses(200) == ["in-flight over concurrency"]
    assert f.misses(201) == []


def _result_of(row: Row, status: Status, error_kind: str | None) -> CheckResult:
    r = _result(row, status)
    r.error_kind = error_kind
    return r


def test_an_agents_own_expired_answer_is_no_real_result_but_a_real_down_is() -> None:
    """An agent answers a job it got after the job's life ended with `down`/`expired`: the
    check did not run, so its row saying `missed/expired` drops nothing. A real `down` stored
    as anything else is dropped."""
    cells = _cells()
    rows = [_up(c) for c in cells]
    rows[3] = Row(rows[3].job_id, cells[3], "missed", "expired", rows[3].stored)
    assert _figures(rows, [_result_of(rows[3], "down", "expired")]).dropped == 0
    assert _figures(rows, [_result_of(rows[3], "down", "timeout")]).dropped == 1


def test_normal_is_as_late_as_the_rig_stores_results_without_a_fault() -> None:
    """A loaded rig that stores everything 7 s after it is due is normal at 7 s: recovery is
    measured against that, not against a lateness it never had (but never tighter than 5 s)."""
    cells = _cells()
    late = [Row(f"j{c[2]}", c, "up", None, c[2] / 1000 + 7.0) for c in cells]
    assert normal_lateness(late, T0, T0 + 60) == 8.0
    assert normal_lateness([_up(c) for c in cells], T0, T0 + 60) == NORMAL_S
    assert normal_lateness([], T0, T0 + 60) == NORMAL_S
    w = _window()
    at_8 = figures(w, set(cells), late, [], lambda cc, at: True, [], 8.0)
    at_5 = figures(w, set(cells), late, [], lambda cc, at: True, [], NORMAL_S)
    assert (at_8.recovery_s, at_8.late_seconds) == (0.0, [])
    assert at_5.recovery_s > 0 and at_5.late_seconds


def test_a_late_cell_due_just_before_the_next_fault_is_that_faults() -> None:
    """The next fault begins at the window's end: a cell due 3 s before it, stored late, was
    delayed by that fault, not by this one's; due 6 s before, it counts here."""
    cells = _cells()
    last = cells[-1]
    rows = [_up(c) for c in cells[:-1]] + [Row("late", last, "up", None, last[2] / 1000 + 30)]
    for before_end, recovered in ((3.0, True), (6.0, False)):
        w = Window("w", T0, T0 + 1, last[2] / 1000 + before_end, False)
        f = figures(w, set(cells), rows, [], lambda cc, at: True, [])
        assert (f.recovery_s == 0.0) is recovered


def test_no_agent_is_phantom_only_if_an_agent_was_live_when_the_row_was_written() -> None:
    """The scheduler records `no_agent` when it sends the round, a moment after it is due: an
    agent that stopped in between leaves no phantom; one still live when it was written does."""
    cells = _cells()
    rows = [_up(c) for c in cells]
    due = cells[2][2] / 1000
    rows[2] = Row(rows[2].job_id, cells[2], "missed", "no_agent", due + 0.08)
    w = _window()
    stopped_between = figures(w, set(cells), rows, [], lambda cc, at: at < due + 0.05, [])
    still_live = figures(w, set(cells), rows, [], lambda cc, at: at < due + 0.1, [])
    assert (stopped_between.no_agent, stopped_between.phantom_no_agent) == (1, 0)
    assert still_live.phantom_no_agent == 1


def test_a_window_starting_within_a_millisecond_holds_only_the_cells_its_rows_can_fill() -> None:
    """A cell due a fraction of a millisecond before the window starts is the previous
    window's: it is neither expected here nor counted as coalesced or missing."""
    first = _cells()[0][2]
    w = Window("w", first / 1000 + 0.0004, T0 + 5, T0 + 60, False)  # due 0.4 ms before it
    cells = grid([MONITOR], ["DE"], INTERVAL, w)
    assert all(c[2] >= w.start * 1000 for c in cells)
    f = figures(w, cells, [_up(c) for c in cells], [], lambda cc, at: True, [])
    assert (f.missing, f.coalesced) == (0, 0)
