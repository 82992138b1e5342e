"""A controller killed between two statements of a pass, for the simulation (issue 79).

The product's parts reach the database only through `pool.acquire()`; `KillingPool` hands them
connections that count the statements of the part named armed, and raise `Killed` in place of
the statement the world's `Kill` names: the process dies there, before it is sent. The open
transaction is rolled back (as a dead process's connection drops it), nothing after runs, and
the driver composes the parts again. `Killed` is a `BaseException`: no product handler of
`Exception` can take it for a failure to retry."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

# The connection's methods that send a statement: each is one await point a kill may take.
STATEMENTS = frozenset(
    {
        "execute",
        "executemany",
        "fetch",
        "fetchrow",
        "fetchval",
        "fetchmany",
        "prepare",
        "copy_records_to_table",
        "copy_to_table",
        "copy_from_query",
    }
)


class Killed(BaseException):
    """The controller's process died at this statement."""


class _Armed:
    """Which part runs now, and the statement of it a kill takes (1: its first)."""

    def __init__(self) -> None:
        self.part: str | None = None  # the part whose pass runs now
        self.target: str | None = None  # the part the kill waits for
        self.left = 0  # statements of the target part before the one killed
        self.struck = 0

    def arm(self, part: str, statement: int) -> None:
        self.target, self.left = part, statement - 1

    def sent(self) -> None:
        """Called before each statement: raise `Killed` if it is the one the kill takes."""
        if self.target is None or self.part != self.target:
            return
        if self.left > 0:
            self.left -= 1
            return
        self.target = None
        self.struck += 1
        raise Killed(self.part)


class _Conn:
    def __init__(self, conn: Any, armed: _Armed) -> None:
        self._conn = conn
        self._armed = armed

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._conn, name)
        if name not in STATEMENTS:
            return found
        armed = self._armed

        def statement(*args: Any, **kwargs: Any) -> Any:
            armed.sent()
            return found(*args, **kwargs)

        return statement


class KillingPool:
    """`pool` as the parts see it, its connections counting statements for `armed`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.armed = _Armed()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            yield _Conn(conn, self.armed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)
