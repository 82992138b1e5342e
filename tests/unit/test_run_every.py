"""`run_every`: the one periodic loop. Its interval, its own waits, errors that never end it,
`stop` and cancellation; and `run_loop`'s collector settings."""

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from structlog.testing import capture_logs

from shared.loop import GC_FIRST_GENERATION, run_every

INTERVAL_S = 0.05


class Passes:
    """A pass that records when it ran, fails on the passes listed, and returns `waits` in turn
    (None once they are used up)."""

    def __init__(
        self, fail_on: frozenset[int] = frozenset(), waits: list[float | None] | None = None
    ):
        self.at: list[float] = []
        self.fail_on = fail_on
        self.waits = list(waits or [])
        self.enough = asyncio.Event()
        self.wanted = 5

    async def __call__(self) -> float | None:
        self.at.append(asyncio.get_running_loop().time())
        if len(self.at) >= self.wanted:
            self.enough.set()
        if len(self.at) in self.fail_on:
            raise RuntimeError(f"pass {len(self.at)} broke")
        return self.waits.pop(0) if self.waits else None


async def _until(passes: Passes, stop: asyncio.Event, **kwargs: Any) -> asyncio.Task[None]:
    task = asyncio.create_task(run_every(INTERVAL_S, passes, name="test", stop=stop, **kwargs))
    await asyncio.wait_for(passes.enough.wait(), 5)
    return task


async def test_passes_are_an_interval_apart() -> None:
    passes, stop = Passes(), asyncio.Event()
    task = await _until(passes, stop)
    stop.set()
    await asyncio.wait_for(task, 1)
    gaps = [b - a for a, b in zip(passes.at, passes.at[1:], strict=False)]
    assert all(g >= INTERVAL_S * 0.9 for g in gaps), gaps
    assert all(g < INTERVAL_S + 0.5 for g in gaps), gaps


async def test_a_pass_sets_its_own_wait() -> None:
    """0 runs the next pass at once (a full batch); None falls back to the interval."""
    passes, stop = Passes(waits=[0, 0, 0, None]), asyncio.Event()
    task = await _until(passes, stop)
    stop.set()
    await asyncio.wait_for(task, 1)
    gaps = [b - a for a, b in zip(passes.at, passes.at[1:], strict=False)]
    assert all(g < INTERVAL_S / 2 for g in gaps[:3]), gaps
    assert gaps[3] >= INTERVAL_S * 0.9, gaps


async def test_an_error_is_logged_with_context_and_never_ends_the_loop() -> None:
    passes, stop = Passes(fail_on=frozenset({1, 3})), asyncio.Event()
    with capture_logs() as logs:
        task = await _until(passes, stop, replica="r1")
        stop.set()
        await asyncio.wait_for(task, 1)
    assert len(passes.at) >= 5
    failed = [e for e in logs if e["event"] == "loop pass failed; retrying"]
    assert len(failed) == 2
    assert all(e["loop"] == "test" and e["replica"] == "r1" for e in failed)
    assert all(e["log_level"] == "error" and e["exc_info"] for e in failed)
    # After an error the loop waits its interval, not less.
    assert passes.at[1] - passes.at[0] >= INTERVAL_S * 0.9


async def test_stop_ends_the_wait_at_once() -> None:
    passes, stop = Passes(), asyncio.Event()
    passes.wanted = 1
    task = asyncio.create_task(run_every(3600, passes, name="test", stop=stop))
    await asyncio.wait_for(passes.enough.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert len(passes.at) == 1


async def test_stop_set_before_start_runs_no_pass() -> None:
    passes, stop = Passes(), asyncio.Event()
    stop.set()
    await asyncio.wait_for(run_every(INTERVAL_S, passes, name="test", stop=stop), 1)
    assert passes.at == []


@pytest.mark.parametrize("where", ["wait", "pass"])
async def test_cancellation_stops_it_cleanly(where: str) -> None:
    """Cancelled in its wait or in a pass, the task ends cancelled, with no error logged."""
    entered = asyncio.Event()

    async def slow_pass() -> float | None:
        entered.set()
        if where == "pass":
            await asyncio.Event().wait()  # never set: in the pass until cancelled
        return None

    with capture_logs() as logs:
        task = asyncio.create_task(run_every(3600, slow_pass, name="test"))
        await asyncio.wait_for(entered.wait(), 5)
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1)
    assert task.cancelled()
    assert [e for e in logs if e["log_level"] in ("error", "warning")] == []


def test_the_processes_loop_runs_with_the_collector_tuned() -> None:
    """`run_loop` (the controller's and the agent's `serve`) freezes the heap it starts with and
    collects young objects every GC_FIRST_GENERATION allocations, not Python's 700."""
    script = (
        "import gc\n"
        "from shared.loop import run_loop\n"
        "async def main():\n"
        "    return gc.get_threshold()[0], gc.get_freeze_count()\n"
        "print(*run_loop(main()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert int(out[0]) == GC_FIRST_GENERATION
    assert int(out[1]) > 10_000  # the imported modules' objects, out of the collector's sight
