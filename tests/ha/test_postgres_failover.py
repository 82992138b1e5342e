"""Lose the PostgreSQL primary and lose nothing (issue 57): a real primary and a real streaming
standby (`pg_basebackup -R`, synchronous) on loopback, the controller's pool on the libpq
multi-host URL with `target_session_attrs=read-write`. The primary is killed (SIGKILL, every
process), the standby promoted: the same pool reconnects to it and writes go on, and every
write committed before the kill is there."""

import asyncio
import contextlib
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from controller.access import accounts_store as accounts
from controller.db.migrate import migrate
from controller.db.pool import connect, create_pool
from shared import embedded
from testkit import postgres


@pytest.fixture
def folder() -> Iterator[Path]:
    """The servers' data, in a folder of its own under /tmp, not pytest's: every pytest run on
    the machine makes that private again at its start (`pytest-of-<user>`), shutting out the
    servers' user mid-run (`initdb: ... Permission denied`, a server that cannot read its
    pg_control), as tests/ha/test_postgres_tls.py's servers are kept out of it."""
    with tempfile.TemporaryDirectory(prefix="mailprobe-failover-") as d:
        yield Path(d)


@pytest.fixture
async def pair(folder: Path) -> AsyncIterator[tuple[postgres.PgNode, postgres.PgNode]]:
    """A migrated primary and its synchronous standby: a commit returns once the standby has
    its WAL (`synchronous_commit = on`, the default), so a promoted standby holds every commit a
    client saw succeed. Without fsync (the base backup copies the setting to the standby): the
    test kills processes, never the machine, and the kernel keeps what a killed server wrote;
    each commit would otherwise wait on two disks, which on a loaded machine made the set-up
    and the writes outlast the test's time."""
    first = await asyncio.to_thread(postgres.primary, folder / "a", embedded.free_port())
    nodes = [first]
    try:
        first.configure(fsync="off")
        await asyncio.to_thread(first.sql, "SELECT pg_reload_conf()")
        # Migrated before the standby exists: it gets the schema in its base backup instead of
        # waiting on it commit by commit.
        conn = await connect(first.url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        second = await asyncio.to_thread(
            postgres.standby, first, folder / "b", embedded.free_port()
        )
        nodes.append(second)
        await asyncio.to_thread(first.synchronous)
        yield first, second
    finally:
        for node in nodes:
            await asyncio.to_thread(node.stop)


async def promote_later(node: postgres.PgNode, after_s: float = 1.0) -> None:
    """An operator's (or a failover manager's) promotion, a moment after the primary is gone:
    writes fail meanwhile."""
    await asyncio.sleep(after_s)
    await asyncio.to_thread(node.promote)


async def test_pool_follows_the_promoted_standby_and_loses_no_commit(
    pair: tuple[postgres.PgNode, postgres.PgNode],
) -> None:
    first, second = pair
    url = (
        f"postgresql://postgres@127.0.0.1:{first.port},127.0.0.1:{second.port}/postgres"
        "?target_session_attrs=read-write"
    )
    pool = await create_pool(url, 4)
    committed: list[str] = []
    failed = 0
    after_kill: list[int] = []  # ports of the server each write after the kill committed on
    killed = asyncio.Event()

    async def write(n: int) -> None:
        async with pool.acquire() as conn:
            await accounts.ensure_organization(conn, f"ha-{n}")
            port = await conn.fetchval("SELECT inet_server_port()")
        committed.append(f"ha-{n}")
        if killed.is_set():
            after_kill.append(port)

    try:
        n = 0
        async with asyncio.timeout(40):
            while len(after_kill) < 50:
                n += 1
                try:
                    await write(n)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    failed += 1
                    await asyncio.sleep(0.05)
                if len(committed) == 100 and not killed.is_set():
                    first.kill()
                    killed.set()
                    promotion = asyncio.create_task(promote_later(second))
        await promotion
        names = {r["name"] for r in await pool.fetch("SELECT name FROM organizations")}
    finally:
        await pool.close()
    assert failed > 0  # writes failed while there was no primary, then went on
    assert set(after_kill) == {second.port}
    assert set(committed) <= names  # no commit the client saw succeed is lost


async def test_a_host_that_never_answers_is_passed_over(folder: Path) -> None:
    """The old primary's address now takes connections and never answers (its machine gone
    dark, listed first in DATABASE_URL): each host gets `connect_timeout` of its own, as with
    libpq, so the pool reaches the writable host after it, and later connections start there."""
    node = await asyncio.to_thread(postgres.primary, folder / "a", embedded.free_port())
    dark = socket.socket()
    try:
        dark.bind(("127.0.0.1", 0))
        dark.listen(16)  # the kernel completes handshakes; nobody ever reads
        # Long enough for a loaded machine's server to take a connection: the writable host has
        # the same timeout of its own.
        url = (
            f"postgresql://postgres@127.0.0.1:{dark.getsockname()[1]},127.0.0.1:{node.port}"
            "/postgres?target_session_attrs=read-write&connect_timeout=3"
        )
        pool = await create_pool(url, 4)  # two connections at start
        try:
            assert await pool.fetchval("SELECT inet_server_port()") == node.port
            # One wait on the dark host, not one each: it was dialled once.
            dark.setblocking(False)
            dialled = 0
            with contextlib.suppress(BlockingIOError):
                while True:
                    dark.accept()[0].close()
                    dialled += 1
            assert dialled == 1
        finally:
            await pool.close()
    finally:
        dark.close()
        await asyncio.to_thread(node.stop)
