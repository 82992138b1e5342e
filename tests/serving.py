"""The API served over real HTTP by uvicorn on a free loopback port, for the test fixtures."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from controller.runtime.serve import KEEP_ALIVE_S
from shared import embedded


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serve `app` until the block ends; yields its base URL."""
    port = embedded.free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_S,  # as the product's (api_server)
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
