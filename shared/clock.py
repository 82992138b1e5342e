"""The clock a process is given: the one place that reads the wall.

Decisions take "now" from a `Clock` passed in, never from the wall where they stand: `now()`
is the wall instant (aware, UTC) for what is stored, compared with stored times or sent;
`monotonic()` is seconds on a clock that never steps back, for durations and deadlines within
the process. Each process composes `WALL` once, where it is built (controller.runtime.serve,
agent.__main__), and hands it down; a test hands down a `ManualClock` and moves it with
`advance` (both readings) or `set` (the wall only, as a stepped system clock does), so a
decision is driven across UTC midnight or a month's end without sleeping.

SQL takes the instant as a parameter (`$n::timestamptz`) instead of reading `now()`.
tools/clock_audit.py counts what still reads the wall."""

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The wall instant, aware and in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps back (its origin means nothing)."""
        ...


class WallClock:
    """The real clock: the system's wall time and `time.monotonic`."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


WALL = WallClock()


class ManualClock:
    """A clock that moves only when told: at `at` (aware) and `monotonic` to begin with."""

    def __init__(self, at: datetime, monotonic: float = 0.0) -> None:
        if at.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._at = at.astimezone(UTC)
        self._monotonic = monotonic

    def now(self) -> datetime:
        return self._at

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Time passes: both readings move forward by `seconds` (never back)."""
        if seconds < 0:
            raise ValueError("time passes forward only; set() steps the wall back")
        self._at += timedelta(seconds=seconds)
        self._monotonic += seconds

    def set(self, at: datetime) -> None:
        """The wall steps to `at` (either way, as NTP may move it); monotonic time stays."""
        if at.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._at = at.astimezone(UTC)
