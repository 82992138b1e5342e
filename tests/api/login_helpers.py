"""An API of its own for the login tests, served as `serve` serves it, and clients that connect
from loopback addresses of their own (127.1.x.y): throttling is per client address and shared
through PostgreSQL, so these tests neither use up nor see the session API's counts."""

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from controller.runtime.serve import api_server
from controller.secrets.box import generate_key
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared import embedded
from testkit.serving import TLS, http_client

_addresses = itertools.count(1)


def new_address() -> str:
    """A loopback address no other test connects from."""
    n = next(_addresses)
    return f"127.1.{n // 250}.{n % 250 + 1}"


@asynccontextmanager
async def serving(
    settings: ControllerSettings, pool: asyncpg.Pool, **overrides: Any
) -> AsyncIterator[str]:
    """`create_app` on uvicorn as `controller.runtime.serve.api_server` configures it, with
    `overrides`
    applied to the settings and a SECRETS_KEY of its own (so its throttle keys are its own)."""
    port = embedded.free_port()
    own = settings.replace(
        api_host="127.0.0.1",
        api_port=port,
        **{"secrets_key": generate_key(), **overrides},
    )
    server = api_server(own.api, create_app(own, pool))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def client_from(url: str, address: str) -> httpx.AsyncClient:
    """A client whose connections come from `address`."""
    return http_client(
        base_url=url,
        transport=httpx.AsyncHTTPTransport(local_address=address, verify=TLS),
        timeout=60,
    )


def retry_after(r: httpx.Response) -> int:
    """The response's `Retry-After`, asserted to be whole seconds (at least one)."""
    value = r.headers.get("retry-after", "")
    assert value.isdigit() and int(value) >= 1, (r.status_code, r.headers)
    return int(value)
