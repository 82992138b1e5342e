"""A controller killed between two statements of a pass, for the simulation (issue 79).

The product's parts reach the database only through `pool.acquire()`; `KillingPool` hands them
connections that count the statements of the part named armed, and raise `Killed` in place of
the statement the world's `Kill` names: the process dies there, before it is sent. The open
transaction is rolled back (as a dead process's connection drops it), nothing after runs, and
the driver composes the parts again. `Killed` is a `BaseException`: no product handler of
`Exception` can take it for a failure to retry."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
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


@dataclass
class _Waiting:
    part: str
    left: int  # the part's statements before the one killed


class _Armed:
    """Which part runs now, and the kills armed: each counts its part's statements from its
    instant and takes the one it names (1: the first). A kill armed while another waits waits
    beside it: none replaces another."""

    def __init__(self) -> None:
        self.part: str | None = None  # the part whose pass runs now
        self.waiting: list[_Waiting] = []

    def arm(self, part: str, statement: int) -> None:
        self.waiting.append(_Waiting(part, statement - 1))

    def sent(self) -> None:
        """Called before each statement: raise `Killed` if it is the one a kill takes (the
        earliest armed, when two take it); else it counts for each kill of its part."""
        mine = [k for k in self.waiting if k.part == self.part]
        if not mine:
            return
        due = next((k for k in mine if k.left == 0), None)
        if due is None:
            for k in mine:
                k.left -= 1
            return
        self.waiting.remove(due)
        raise Killed(due.part)


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
