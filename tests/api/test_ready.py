"""`/ready` needs no token, so it never tells its caller what went wrong beyond a generic reason:
the database error (which names hosts, users, databases) goes to the log. The same for the ops
server of a controller without the `api` role."""

import functools
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import structlog

from controller.db.pool import create_pool
from controller.settings import ControllerSettings
from controller.web.app import readiness
from shared import embedded, ops
from testkit.serving import http_client
from tests.api.login_helpers import serving


@pytest.fixture
async def doomed_pool(database_url: str) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """A pool on a database of its own, and that database's name: dropping the database makes
    every new connection fail with an error naming it."""
    name = f"ready_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base, sep, query = database_url.partition("?")
    url = f"{base.rpartition('/')[0]}/{name}{sep}{query}"
    pool = await create_pool(url, 2)
    yield pool, name
    pool.terminate()
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def _drop(database_url: str, name: str) -> None:
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


async def test_ready_says_database_unavailable_and_logs_the_error(
    settings: ControllerSettings, database_url: str, doomed_pool: tuple[asyncpg.Pool, str]
) -> None:
    pool, name = doomed_pool
    async with serving(settings, pool) as url, http_client(base_url=url) as http:
        assert (await http.get("/ready")).json() == {"status": "ready"}
        await _drop(database_url, name)
        with structlog.testing.capture_logs() as logs:
            r = await http.get("/ready")
    assert r.status_code == 503
    assert r.json() == {"status": "not ready", "reason": "database unavailable"}
    assert name not in r.text
    assert any(name in str(e.get("error")) for e in logs), logs


async def test_ops_ready_without_the_api_role_says_database_unavailable(
    database_url: str, doomed_pool: tuple[asyncpg.Pool, str]
) -> None:
    pool, name = doomed_pool
    port = embedded.free_port()
    server = await ops.start("127.0.0.1", port, functools.partial(readiness, pool, None))
    assert server is not None
    try:
        async with http_client(base_url=f"http://127.0.0.1:{port}") as http:
            await _drop(database_url, name)
            r = await http.get("/ready")
    finally:
        server.close()
        await server.wait_closed()
    assert (r.status_code, r.json()["reason"]) == (503, "database unavailable")
    assert name not in r.text


async def test_a_readiness_check_that_raises_is_a_503_not_a_dropped_connection() -> None:
    def broken() -> str | None:
        raise RuntimeError("secret detail /etc/mailprobe/db-password")

    port = embedded.free_port()
    server = await ops.start("127.0.0.1", port, broken)
    assert server is not None
    try:
        async with http_client(base_url=f"http://127.0.0.1:{port}") as http:
            r = await http.get("/ready")
    finally:
        server.close()
        await server.wait_closed()
    assert r.status_code == 503
    assert r.json() == {"status": "not ready", "reason": "readiness check failed"}
    assert "secret" not in r.text
