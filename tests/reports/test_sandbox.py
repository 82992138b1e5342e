"""The parsing worker (controller/reports/sandbox.py): a real process per report, with its
ceilings enforced by the kernel. A worker that takes too much memory, too much CPU, or dies gets
a Rejected of its own reason; the next report parses as if nothing happened, and a cancelled
caller leaves no process running."""

import asyncio
import gc
import os
import signal
import time
import types
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.reports.parse import Rejected
from controller.reports.sandbox import Limits, Sandbox
from testkit.reports import made

DOMAIN = "example.com"
SMALL = Sandbox(Limits(memory_mb=256, cpu_s=1, wall_s=10.0), parsers=2)


def _hog() -> int:
    """More memory than the ceiling allows."""
    held = [bytearray(16 << 20) for _ in range(64)]
    return len(held)


def _spin() -> int:
    """CPU until the kernel says no."""
    n = 0
    while True:
        n += 1


def _sleep(seconds: float) -> int:
    """Alive and idle."""
    time.sleep(seconds)
    return 0


def _pid_then_sleep(path: str) -> int:
    """Says its pid on the fifo at `path`, then idles."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(30)
    return 0


def _die() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


async def _parses() -> None:
    report = await SMALL.parse(made.tls_gzip(made.tls_json(DOMAIN)), datetime.now(UTC))
    assert report.kind == "tls" and report.rows


@pytest.mark.parametrize(
    ("fn", "reason"),
    [(_hog, "parser_memory"), (_spin, "parser_time"), (_die, "parser_died")],
    ids=["memory", "cpu", "killed"],
)
async def test_a_worker_past_its_ceiling_is_a_rejection_of_its_own_and_the_next_parses(
    fn: object, reason: str
) -> None:
    with pytest.raises(Rejected) as refused:
        await SMALL.run(fn)  # type: ignore[arg-type]
    assert refused.value.reason == reason, refused.value.message
    await _parses()


async def test_a_worker_past_its_wall_time_is_killed() -> None:
    quick = Sandbox(Limits(wall_s=0.5))
    with pytest.raises(Rejected) as refused:
        await quick.run(_sleep, 30.0)
    assert refused.value.reason == "parser_time"


async def test_a_cancelled_caller_leaves_no_worker_running(tmp_path: Path) -> None:
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)
    task = asyncio.create_task(SMALL.run(_pid_then_sleep, str(fifo)))
    pid = int(await asyncio.to_thread(fifo.read_text))  # once the worker runs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_refusal_crosses_from_the_worker_with_its_reason() -> None:
    with pytest.raises(Rejected) as refused:
        await SMALL.parse(made.zip_bomb(), datetime.now(UTC))
    assert refused.value.reason == "bomb" and "200 times" in refused.value.message
    with pytest.raises(Rejected) as refused:
        await SMALL.parse(made.dmarc_xml(DOMAIN), datetime.now(UTC), "tls")
    assert refused.value.reason == "wrong_kind"


async def test_reports_parse_side_by_side_as_they_would_inline() -> None:
    reports = [made.dmarc_zip(DOMAIN, report_id=f"d{i}") for i in range(6)]
    parsed = await asyncio.gather(*(SMALL.parse(r, datetime.now(UTC)) for r in reports))
    assert [p.report_id for p in parsed] == [f"d{i}" for i in range(6)]
    assert all(len(p.rows) == 3 for p in parsed)


async def test_a_refusal_leaves_no_garbage_holding_the_report() -> None:
    """No reference cycle through a refusal's traceback keeps the report's frames (and its
    bytes) alive until the collector's next full pass: a megabyte a refused POST, else."""

    async def refused() -> str:
        try:
            await SMALL.parse(made.zip_bomb(mib=8), datetime.now(UTC))
        except Rejected as exc:
            return exc.reason
        return "parsed"

    assert await refused() == "bomb"  # the fork server started, the modules imported
    gc.collect()
    gc.disable()
    try:
        assert await refused() == "bomb"
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        kept = [
            o.f_code.co_name
            for o in gc.garbage
            if isinstance(o, types.FrameType) and o.f_code.co_filename.endswith("sandbox.py")
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert kept == []
