"""A controller killed between two statements of a pass, and a database failover struck at one,
for the simulation (issue 79).

The product's parts reach the database only through `pool.acquire()`; `KillingPool` hands them
connections that count the statements of the part named armed, and raise `Killed` in place of
the statement the world's `Kill` names: the process dies there, before it is sent. The open
transaction is rolled back (as a dead process's connection drops it), nothing after runs, and
the driver composes the parts again. `Killed` is a `BaseException`: no product handler of
`Exception` can take it for a failure to retry.

A failover armed for a part strikes before that part's next statement: the driver's `drop`
ends every backend and waits for each to exit, so the statement then goes to a dead connection
and fails, whatever the sockets' timing: the same seed fails the same passes."""

from collections.abc import AsyncIterator, Awaitable, Callable
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
    """Which part runs now, and the kills and failovers armed. A kill counts its part's
    statements from its instant and takes the one it names (1: the first); a failover strikes
    before its part's next statement. A kill or failover armed while another waits waits beside
    it: none replaces another."""

    def __init__(self) -> None:
        self.part: str | None = None  # the part whose pass runs now
        self.waiting: list[_Waiting] = []
        self.failovers: list[str] = []  # the parts a failover strikes in, in order armed

    def arm(self, part: str, statement: int) -> None:
        self.waiting.append(_Waiting(part, statement - 1))

    def arm_failover(self, part: str) -> None:
        self.failovers.append(part)

    def sent(self) -> bool:
        """Called before each statement: raise `Killed` if it is the one a kill takes (the
        earliest armed, when two take it); else it counts for each kill of its part. True when
        a failover strikes before it (a kill first: the new process's statement takes it)."""
        mine = [k for k in self.waiting if k.part == self.part]
        due = next((k for k in mine if k.left == 0), None)
        if due is not None:
            self.waiting.remove(due)
            raise Killed(due.part)
        for k in mine:
            k.left -= 1
        if self.part is not None and self.part in self.failovers:
            self.failovers.remove(self.part)
            return True
        return False


Drop = Callable[[], Awaitable[None]]


class _Conn:
    def __init__(self, conn: Any, armed: _Armed, drop: Drop) -> None:
        self._conn = conn
        self._armed = armed
        self._drop = drop

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._conn, name)
        if name not in STATEMENTS:
            return found
        armed = self._armed

        def statement(*args: Any, **kwargs: Any) -> Any:
            if armed.sent():
                return _after(self._drop, found, args, kwargs)
            return found(*args, **kwargs)

        return statement


async def _after(drop: Drop, found: Any, args: Any, kwargs: Any) -> Any:
    await drop()
    return await found(*args, **kwargs)


class KillingPool:
    """`pool` as the parts see it, its connections counting statements for `armed`; `drop`
    is the failover (every backend ended)."""

    def __init__(self, pool: asyncpg.Pool, drop: Drop) -> None:
        self._pool = pool
        self._drop = drop
        self.armed = _Armed()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            yield _Conn(conn, self.armed, self._drop)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)
