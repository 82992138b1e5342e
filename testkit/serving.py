"""The API served over real HTTP by uvicorn on a free loopback port, for the test fixtures."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from controller.runtime.serve import api_server
from controller.settings import ApiSettings
from shared import embedded

# One TLS context for every client the tests make: httpx builds a new one for each client it
# is not given one, parsing certifi's CA bundle each time (~50 ms of CPU, half an API test's).
TLS = httpx.create_ssl_context()


def http_client(**kwargs: Any) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` on the tests' one TLS context."""
    return httpx.AsyncClient(verify=TLS, **kwargs)


@asynccontextmanager
async def serve_app(
    app: Any,
    port: int | None = None,
    head_seconds: int = ApiSettings().api_head_seconds,
    **tls: Any,
) -> AsyncIterator[str]:
    """Serve `app` until the block ends (on `port`, else a free one); yields its base URL.
    `head_seconds`: API_HEAD_SECONDS. `tls`: uvicorn's `ssl_certfile` and `ssl_keyfile`, for an
    https:// one."""
    port = port or embedded.free_port()
    api = ApiSettings(
        api_host="127.0.0.1",
        api_port=port,
        api_head_seconds=head_seconds,
        api_tls_cert_file=tls.get("ssl_certfile"),
        api_tls_key_file=tls.get("ssl_keyfile"),
    )
    server = api_server(api, app)  # as the product's
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
