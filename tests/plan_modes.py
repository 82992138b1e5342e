"""Which `plan_cache_mode` reads ran under (`controller.db.pool.plan_generically`), and which the
pool's connections hold once they are handed back."""

from collections.abc import Awaitable, Callable, Iterable
from types import ModuleType
from typing import Any

import asyncpg
import pytest


def trace_plan_modes(
    monkeypatch: pytest.MonkeyPatch, reads: Iterable[tuple[ModuleType, str]]
) -> dict[str, set[str]]:
    """Each of `reads` (a module and a function of it taking the connection first) records the
    mode it runs under, by name, in the dict returned."""
    seen: dict[str, set[str]] = {}

    def traced(name: str, read: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def mode_then_read(conn: Any, *args: Any, **kwargs: Any) -> Any:
            seen.setdefault(name, set()).add(await conn.fetchval("SHOW plan_cache_mode"))
            return await read(conn, *args, **kwargs)

        return mode_then_read

    for owner, name in reads:
        monkeypatch.setattr(owner, name, traced(name, getattr(owner, name)))
    return seen


async def pool_plan_modes(pool: asyncpg.Pool) -> set[str]:
    """The mode of every connection the pool may hand out, all held at once."""
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        return {await c.fetchval("SHOW plan_cache_mode") for c in held}
    finally:
        for c in held:
            await pool.release(c)
