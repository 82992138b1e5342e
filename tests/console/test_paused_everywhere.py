"""A paused monitor is `paused` everywhere, never its last state (issue 80): the API keeps the
seeds' `status: "disabled"`; the console's counts, the public status page, its JSON summary
and the Prometheus scrape say `paused`, and the page's summary line does not call a paused
service operating normally. Real PostgreSQL, the real API and pages."""

import asyncpg
import httpx

from controller.jobs.rules import JobIds
from testkit.serving import http_client
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.console.helpers import Browserish, store_result
from tests.console.test_monitor_metrics import scrape_token
from tests.console.test_status_pages import _publish, _row_id


async def test_a_paused_monitor_is_paused_in_counts_status_pages_and_the_scrape(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    monitor = await create(http, tenant, "smtp", name="Paused relay")
    await store_result(pool, job_ids, monitor, "DE", "up")
    await pool.execute(
        "INSERT INTO monitor_alert_state (monitor_id, state)"
        " SELECT id, 'up' FROM monitors WHERE public_id = $1::uuid",
        monitor["publicId"],
    )
    path = f"/api/smtp-monitors/{monitor['publicId']}"
    r = await http.patch(path, json={"status": "paused"}, headers=tenant.auth())
    assert r.status_code == 200 and r.json()["status"] == "disabled", r.text  # the seeds' word

    client.session = tenant.tokens["member"]
    overview = (await client.get("/console/")).text
    assert 'data-count="paused">1<' in overview and 'data-count="up">0<' in overview
    assert 'data-country="DE" data-status="paused"' in overview

    slug = f"paused-{tenant.org_id}"
    r = await _publish(client, tenant, slug, [await _row_id(pool, monitor["publicId"])], False)
    assert r.status_code == 303, r.text
    async with http_client(base_url=str(http.base_url)) as anonymous:
        page = (await anonymous.get(f"/status/{slug}")).text
        summary = (await anonymous.get(f"/status/{slug}/summary.json")).json()
    assert '<span class="state paused">Paused</span>' in page
    assert "Operational" not in page and "operating normally" not in page
    (service,) = summary["services"]
    assert service["state"] == "paused"
    assert service["countries"] == [{"country": "DE", "state": "paused"}]  # not its last "up"
    assert summary["status"]["description"] == "Every service on this page is paused."

    scraper = {"Authorization": f"Bearer {await scrape_token(client, tenant.tokens['admin'])}"}
    r = await http.get("/metrics/monitors", headers=scraper)
    assert r.status_code == 200, r.text
    mine = [line for line in r.text.splitlines() if monitor["publicId"] in line]
    assert any('state="paused"' in line and line.endswith(" 1") for line in mine), mine
    assert not any('state="up"' in line and line.endswith(" 1") for line in mine), mine
