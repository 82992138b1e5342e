"""The OpenAPI document states the error statuses only some operations answer (docs/api.md:
"the document states what the API does"): each answer provoked here from the served API is one
its operation lists, with the body the document gives it."""

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from controller.db.pool import create_pool
from controller.settings import ControllerSettings
from controller.web.app import create_app
from testkit.serving import serve_app
from tests.api.helpers import assert_documented, operation_of
from tests.api.login_helpers import client_from, new_address, serving
from tests.conftest import Tenant
from tests.reports.uploading import upload

pytestmark = pytest.mark.breadth


async def _spec(http: httpx.AsyncClient) -> dict[str, Any]:
    # Built at its first request, in a thread (openapi_doc.on_demand): what is judged here is
    # the document, not how soon a busy host builds it.
    r = await http.get("/schema/openapi.json", timeout=60)
    assert r.status_code == 200, r.text
    spec: dict[str, Any] = r.json()
    return spec


async def test_no_pipeline_here_is_a_documented_503(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The test app runs no check pipeline: trigger-check and the agents list answer 503."""
    spec = await _spec(http)
    body = {"customerId": tenant.customer_id, "name": "n", "hostname": "mx.example.com"}
    created = await http.post("/api/smtp-monitors", json=body, headers=tenant.auth())
    assert created.status_code == 201, created.text
    url = f"/api/smtp-monitors/{created.json()['publicId']}/trigger-check"
    for r in (
        await http.post(url, headers=tenant.auth()),
        await http.get("/api/agents", headers=tenant.auth("owner")),
    ):
        assert r.status_code == 503, r.text
        assert_documented(spec, r)


async def test_password_threads_full_is_a_documented_503(
    settings: ControllerSettings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """One password thread and no queue: concurrent user creations beyond it answer 503."""
    async with (
        serving(settings, pool, password_hash_workers=1, password_hash_queue=0) as url,
        client_from(url, new_address()) as http,
    ):
        spec = await _spec(http)
        answers = await asyncio.gather(
            *(
                http.post(
                    "/api/users",
                    json={"email": f"d{i}-{tenant.org_name}@example.com", "password": "x" * 12},
                    headers=tenant.auth(),
                )
                for i in range(6)
            )
        )
    assert 503 in {r.status_code for r in answers}, [r.status_code for r in answers]
    for r in answers:
        assert_documented(spec, r)
    # The logins hash through the same threads (auth.login_token; provoked in
    # test_login_throttle): their operations state the same 503.
    for path in ("/api/auth/login", "/api/v3/access-tokens"):
        assert "503" in operation_of(spec, "POST", path)["responses"], path


@pytest.mark.parametrize("path", ["/api/smtp-monitors", "/api/v3/monitors/email-smtp"])
async def test_a_body_past_its_deadline_is_a_documented_408(
    settings: ControllerSettings, pool: asyncpg.Pool, tenant: Tenant, path: str
) -> None:
    """API_BODY_SECONDS=1: one byte of a declared 100, then nothing."""
    async with serve_app(create_app(settings.replace(api_body_seconds=1), pool)) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            spec = await _spec(http)
        headers = {
            **tenant.auth(),
            "Content-Type": "application/json",
            "Content-Length": "100",
        }
        up = await asyncio.to_thread(upload, url + path, None, headers, [b"{"])
    assert up.status == 408, up
    assert "408" in operation_of(spec, "POST", path)["responses"]


async def test_not_ready_is_a_documented_503(
    settings: ControllerSettings, database_url: str
) -> None:
    """/ready without PostgreSQL (its pool closed) answers 503 with its reason."""
    closed = await create_pool(database_url, 1)
    await closed.close()
    async with (
        serve_app(create_app(settings, closed)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        spec = await _spec(http)
        r = await http.get("/ready")
    assert r.status_code == 503, r.text
    assert_documented(spec, r)


async def test_a_reports_raw_body_answers_are_documented(http: httpx.AsyncClient) -> None:
    """POST /reports/tls/…: its body is read raw (no JSON body in the document), so its 408, 415
    and 503 (provoked in tests/reports) are stated by name."""
    spec = await _spec(http)
    responses = operation_of(spec, "POST", "/reports/tls/example.com/t")["responses"]
    assert {"408", "415", "503"} <= set(responses), sorted(responses)
