"""Waiting for a process of the product to come up: bounded by time, not by tries, so a loaded
runner that starts an interpreter slowly is not taken for a broken start."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

START_S = 90  # from the process made to its first answer, on a loaded 2-core runner

T = TypeVar("T")


async def until_started(
    proc: asyncio.subprocess.Process, check: Callable[[], Awaitable[T | None]], what: str
) -> T:
    """`check`'s first answer that is not None, asked every 20 ms while the process lives, for
    at most START_S seconds of the test's own time: a start is bounded by time, not tries."""
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        answer = await check()
        if answer is not None:
            return answer
        assert proc.returncode is None, f"the process exited before {what}"
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {what} within {START_S} s of the process's start")
