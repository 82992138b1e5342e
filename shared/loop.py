"""The event loop the long-running processes (`serve`, the agent) run on, and `run_every`, the
one shape of their periodic work.

uvloop when it is installed (uvicorn[standard] brings it on Linux), else asyncio's own. It matters
for agents: with 2,000 checks in flight, uvloop's timers, sockets and TLS take about a third less
CPU per check, and a timeout that fires together with a thousand others is handled within a few
tens of milliseconds instead of over a hundred. The garbage collector is tuned for them before
the loop starts (`tune_gc`).
"""

import asyncio
import contextlib
import gc
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import TypeVar

import structlog

T = TypeVar("T")

log = structlog.get_logger(__name__)

# One pass of a periodic loop: None to wait the loop's interval before the next, or the seconds
# to wait instead (0: at once, e.g. while a full batch says there is more).
Pass = Callable[[], Awaitable[float | None]]


# The cyclic collector's first generation is collected after this many new container objects
# (Python's default is 700). Each check allocates a few hundred (a message, its decoded struct,
# records, futures), nearly all freed by reference counting: collecting every 700 allocations
# traverses them while alive and moves survivors to older generations, whose collections
# traverse the whole heap. bench/results/scaling-history.md ("The collector tuned") has the
# figures.
GC_FIRST_GENERATION = 20_000


def tune_gc() -> None:
    """Move what exists now (modules, classes, settings: the bulk of the heap, never garbage)
    out of the collector's sight, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_FIRST_GENERATION, second, third)


def run_loop(main: Coroutine[object, object, T]) -> T:
    tune_gc()
    try:
        import uvloop
    except ImportError:  # e.g. Windows or PyPy
        return asyncio.run(main)
    return uvloop.run(main)


async def run_every(
    interval_s: float,
    step: Pass,
    *,
    name: str,
    stop: asyncio.Event | None = None,
    jitter: float = 0.0,
    **context: object,
) -> None:
    """Run `step` now, then again `interval_s` after each pass ends (or what the pass returned),
    until `stop` is set or the task is cancelled.

    With `jitter` (0 to 1) the interval is drawn from `interval_s` * [1 - jitter, 1 + jitter]
    each time (the same on average): replicas polling one queue never stay in step, so over
    time each takes its share of what the queue holds, not the share its phase gives it.

    A pass that raises is logged with `loop=name` and `context` and the next one comes after
    `interval_s`: an error never ends the loop. `stop` is looked at between passes (a pass under
    way finishes) and ends the wait at once; cancelling the task ends it at once, in a pass or a
    wait, with `CancelledError` as usual."""
    bound = log.bind(loop=name, **context)
    while stop is None or not stop.is_set():
        try:
            wait = await step()
        except Exception:
            bound.exception("loop pass failed; retrying", retry_in_s=interval_s)
            wait = None
        if wait is None:
            wait = interval_s * random.uniform(1 - jitter, 1 + jitter) if jitter else interval_s
        await _pause(wait, stop)


async def _pause(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep `seconds` (at least a turn of the event loop), woken early by `stop`."""
    if stop is None or seconds <= 0:
        await asyncio.sleep(max(0.0, seconds))
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
