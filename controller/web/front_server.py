"""The API's uvicorn server: its own clock (server_ticks) and its listening socket. With TLS the
socket is plain TCP and each connection is admitted by the connection caps at its accept, then
upgraded (controller.web.tls_accept) with a handshake timeout of what is left of
API_HEAD_SECONDS, where asyncio's and uvloop's default is 60 s. The head deadline
(controller.web.head_deadline) counts from the accept, so the handshake and the head together
take at most API_HEAD_SECONDS."""

import asyncio
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.server import logger

from controller.web.front_protocol import FrontProtocol
from controller.web.server_ticks import TickingServer
from controller.web.tls_accept import TlsAccept


class FrontServer(TickingServer):
    """uvicorn's server listening on its config's host and port (the API's only way)."""

    def __init__(self, config: uvicorn.Config, handshake_seconds: float) -> None:
        super().__init__(config)
        self.handshake_seconds = handshake_seconds

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        # uvicorn's Server.startup for a host and port, the handshake timeout added
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config = self.config

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            app: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )
            if config.ssl is None:
                return app
            if not isinstance(app, FrontProtocol):
                raise TypeError("an HTTPS API needs the front's protocol (front_protocol)")
            return TlsAccept(app, config.ssl, self.handshake_seconds)

        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                create_protocol,
                host=config.host,
                port=config.port,
                backlog=config.backlog,
            )
        except OSError as exc:
            logger.error(exc)
            await self.lifespan.shutdown()
            sys.exit(STARTUP_FAILURE)
        self.servers = [server]
        self._log_started_message(list(server.sockets))
        self.started = True
