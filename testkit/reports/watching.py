"""The controller's process watched while an attack runs: its peak resident memory above what
it held before (VmHWM, reset through /proc/self/clear_refs), and its event loop's lag (how late
a 10 ms timer fires). In the tests the controller's API and mailbox readers run in the test's
own process and loop, so this process is the controller's; the parsing workers are processes of
their own (bounded by their own ceilings) and are not counted here."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

TICK_S = 0.01


def _status(name: str) -> int:
    """A /proc/self/status figure, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise LookupError(name)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to VmRSS


@dataclass
class Watched:
    rss_before_kb: int = 0
    peak_kb: int = 0
    lags_s: list[float] = field(default_factory=list)

    @property
    def growth_mb(self) -> float:
        return (self.peak_kb - self.rss_before_kb) / 1024

    def lag_ms(self, quantile: float) -> float:
        ordered = sorted(self.lags_s) or [0.0]
        return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def said(self) -> str:
        return (
            f"peak RSS +{self.growth_mb:.1f} MB, loop lag p99 {self.lag_ms(0.99):.1f} ms"
            f" (max {self.lag_ms(1.0):.1f} ms, {len(self.lags_s)} ticks)"
        )


async def _tick(watched: Watched) -> None:
    while True:
        before = time.monotonic()
        await asyncio.sleep(TICK_S)
        watched.lags_s.append(max(0.0, time.monotonic() - before - TICK_S))


@contextlib.asynccontextmanager
async def watch() -> AsyncIterator[Watched]:
    """Watch the block; the figures are filled in when it ends."""
    _reset_peak()
    watched = Watched(rss_before_kb=_status("VmRSS"))
    ticker = asyncio.create_task(_tick(watched))
    try:
        yield watched
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        watched.peak_kb = _status("VmHWM")
