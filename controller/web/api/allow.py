"""OPTIONS answers every method of its path.

Litestar makes a path's OPTIONS handler with the first of the path's handlers it registers and
lists only the methods known then, so `OPTIONS /api/smtp-monitors` answered `Allow: OPTIONS,
POST` without GET. This middleware rewrites `Allow` from the app's route for the path, which
holds all of them (a 405 already lists them all).
"""

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send


def options_allow(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        litestar = scope.get("app")
        if (
            scope["type"] != ScopeType.HTTP
            or scope.get("method") != "OPTIONS"
            or handler is None
            or not isinstance(litestar, Litestar)
        ):
            await app(scope, receive, send)
            return
        paths = handler.paths
        methods = {m for route in litestar.routes if route.path in paths for m in route.methods}
        allow = ", ".join(sorted(methods)).encode()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and methods:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message["headers"] = [*headers, (b"allow", allow)]
            await send(message)

        await app(scope, receive, send_wrapper)

    return middleware
