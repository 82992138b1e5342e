"""The event loop the long-running processes (`serve`, the agent) run on.

uvloop when it is installed (uvicorn[standard] brings it on Linux), else asyncio's own. It matters
for agents: with 2,000 checks in flight, uvloop's timers, sockets and TLS take about a third less
CPU per check, and a timeout that fires together with a thousand others is handled within a few
tens of milliseconds instead of over a hundred.
"""

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # e.g. Windows or PyPy
        return asyncio.run(main)
    return uvloop.run(main)
