"""The API's and the console's reads of a monitor's results run in a transaction on generic
plans (`controller.db.pool.on_generic_plans`: a fraction of PostgreSQL's CPU of the per-call
plans on a deployment's partitions, `python -m bench reads`), and no pooled connection keeps
the setting."""

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from controller.ingest import store as results
from controller.scheduling.rules import JobIds
from controller.web.console import monitor_view
from controller.web.console import store as console
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.console.helpers import Browserish, store_result

READS = (
    (results, "list_page"),
    (results, "counts"),
    (console, "latest_tls"),
    (monitor_view, "live"),
)


async def test_result_reads_run_on_generic_plans_and_leave_nothing_behind(
    client: Browserish,
    tenant: Tenant,
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    job_ids: JobIds,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monitor = await create(http, tenant, "smtp")
    pid = monitor["publicId"]
    await store_result(pool, job_ids, monitor, "DE", "up")
    seen: dict[str, set[str]] = {}

    def traced(name: str, read: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def settings_then_read(conn: Any, *args: Any, **kwargs: Any) -> Any:
            seen.setdefault(name, set()).add(await conn.fetchval("SHOW plan_cache_mode"))
            return await read(conn, *args, **kwargs)

        return settings_then_read

    for owner, name in READS:
        monkeypatch.setattr(owner, name, traced(name, getattr(owner, name)))
    for path in ("results", "uptime"):
        r = await http.get(f"/api/smtp-monitors/{pid}/{path}", headers=tenant.auth())
        assert r.status_code == 200, r.text
    client.session = tenant.tokens["readonly"]
    for path in ("", "/live"):
        r = await client.get(f"/console/monitors/{pid}{path}")
        assert r.status_code == 200, r.text

    assert seen == {name: {"force_generic_plan"} for _, name in READS}
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        assert {await c.fetchval("SHOW plan_cache_mode") for c in held} == {"auto"}
    finally:
        for c in held:
            await pool.release(c)
