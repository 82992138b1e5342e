"""The OpenAPI document is built at the first request for it, not when the app starts: an API
replica that never serves /schema never pays for it (about 0.15 CPU-s an app), and every request
for it, the first ones too, gets the rewritten document (controller.web.api.openapi_doc)."""

import asyncio

import asyncpg
from litestar._openapi.plugin import OpenAPIPlugin

from controller.settings import ControllerSettings
from controller.web.api.operation_ids import operation_id
from controller.web.app import create_app
from testkit.serving import http_client, serve_app


async def test_the_document_is_built_at_the_first_request_for_it(
    settings: ControllerSettings, pool: asyncpg.Pool
) -> None:
    app = create_app(settings, pool)
    plugin = app.plugins.get(OpenAPIPlugin)
    async with serve_app(app) as url, http_client(base_url=url, timeout=30) as http:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/schema-assets/swagger-ui.css")).status_code == 200
        assert plugin._openapi is None, "built before anyone asked for it"
        first, second, page = await asyncio.gather(
            http.get("/schema/openapi.json"), http.get("/schema/openapi.json"), http.get("/schema")
        )
        assert plugin._openapi is not None
        again = await http.get("/schema/openapi.json")
    for r in (first, second, again):
        assert r.status_code == 200, r.text
        doc = r.json()
        assert "ErrorBody" in doc["components"]["schemas"]
        assert doc["paths"]["/health"]["get"]["operationId"] == operation_id("get", "/health")
    assert first.content == second.content == again.content
    assert page.status_code == 200
    assert "swagger" in page.text.lower()
