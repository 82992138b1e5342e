"""`serve`: the API under uvicorn; later roles (scheduler, ingester, alerter) join here."""

import uvicorn

from controller.app import create_app
from shared.settings import ControllerSettings


async def serve(settings: ControllerSettings) -> None:
    app = create_app(settings)
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
