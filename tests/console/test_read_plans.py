"""The API's and the console's reads of a monitor's results run in a transaction on generic
plans (`controller.db.pool.on_generic_plans`: a fraction of PostgreSQL's CPU of the per-call
plans on a deployment's partitions, `python -m bench reads`), and no pooled connection keeps
the setting."""

import asyncpg
import httpx
import pytest

from controller.ingest import store as results
from controller.jobs.rules import JobIds
from controller.web.console import monitor_view
from controller.web.console import store as console
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.console.helpers import Browserish, store_result
from tests.plan_modes import pool_plan_modes, trace_plan_modes

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
    seen = trace_plan_modes(monkeypatch, READS)
    for path in ("results", "uptime"):
        r = await http.get(f"/api/smtp-monitors/{pid}/{path}", headers=tenant.auth())
        assert r.status_code == 200, r.text
    client.session = tenant.tokens["readonly"]
    for path in ("", "/live"):
        r = await client.get(f"/console/monitors/{pid}{path}")
        assert r.status_code == 200, r.text

    assert seen == {name: {"force_generic_plan"} for _, name in READS}
    assert await pool_plan_modes(pool) == {"auto"}
