"""Nothing a page loads comes from another origin: the API docs (`/schema`) and the console's
pages link only to paths served by the controller, and each of those answers."""

import re

import httpx

from tests.conftest import Tenant
from tests.console.helpers import Browserish

_LINKS = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


async def _assets_of(http: httpx.AsyncClient, html: str) -> list[str]:
    links = [u for u in _LINKS.findall(html) if not u.startswith("#")]
    assert links, html[:300]
    for url in links:
        assert url.startswith("/") and not url.startswith("//"), f"{url} is not served here"
    return links


async def test_the_api_docs_load_their_ui_from_the_controller(http: httpx.AsyncClient) -> None:
    r = await http.get("/schema")
    assert r.status_code == 200 and "SwaggerUIBundle" in r.text
    for url in await _assets_of(http, r.text):
        asset = await http.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url


async def test_console_pages_load_only_their_own_assets(client: Browserish, tenant: Tenant) -> None:
    client.session = tenant.tokens["owner"]
    for path in ("/console/login", "/console/", "/console/new/smtp", "/console/agents"):
        r = await client.get(path)
        assert r.status_code == 200, path
        assert "default-src 'none'" in r.headers["content-security-policy"]
        for url in await _assets_of(client.http, r.text):
            if url.startswith("/console/static/"):
                assert (await client.get(url)).status_code == 200, url
