"""`serve`: the roles of CONTROLLER_ROLES as asyncio tasks sharing one pool and one NATS
connection: `api` (uvicorn), `scheduler`, `ingester` (which also keeps the result partitions).
`alerter` is accepted and has nothing to run yet."""

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

import structlog
import uvicorn

from controller.app import create_app
from controller.db.pool import create_pool
from controller.ingest import keep_partitions
from controller.pipeline import open_pipeline
from shared.settings import ControllerSettings

log = structlog.get_logger(__name__)


async def serve(settings: ControllerSettings) -> None:
    roles = settings.roles
    stop = asyncio.Event()
    # Ours before uvicorn's: uvicorn re-raises the signal it caught when it returns, and this
    # handler then takes it, so the other roles still shut down in order.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = await create_pool(settings.database_url, settings.db_pool_max)
    try:
        async with open_pipeline(settings, pool) as pipeline:
            work: list[Coroutine[Any, Any, None]] = []
            if "scheduler" in roles:
                work.append(pipeline.scheduler.run(stop))
            if "ingester" in roles:
                work += [pipeline.ingester.run(stop), keep_partitions(pool, stop)]
            tasks = [asyncio.create_task(c) for c in work]
            log.info("controller started", roles=sorted(roles))
            try:
                if "api" in roles:
                    await _serve_api(settings, create_app(settings, pool, pipeline))
                else:
                    await stop.wait()
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                log.info("controller stopped")
    finally:
        await pool.close()


async def _serve_api(settings: ControllerSettings, app: Any) -> None:
    """uvicorn returns on SIGINT/SIGTERM (it installs the handlers)."""
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
    )
    await uvicorn.Server(config).serve()
