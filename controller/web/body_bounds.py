"""What a request body may cost the server before it stops reading: bytes and time.

- Bytes: Litestar's `request_max_body_size` stops the app reading at the limit (413 before
  reading when Content-Length already says too much), but uvicorn, to keep the connection
  alive, reads and discards whatever the client still sends of a body the app left unread. So
  every response to a request whose body was not read to its end says `Connection: close`, and
  uvicorn closes the connection once the response is sent: at most the limit (plus what the
  sockets buffer) is read, whatever the client sends or declares.
- Time: a body must arrive whole within `API_BODY_SECONDS` of its request's headers; past that
  the handler reading it gets a 408 (`body_timeout`), and the connection closes as above.
- A client that goes before its body is whole: the handler reading it gets `ClientGone`, which
  the request's log line and metrics record as 499 (the client's own abort), not a 500.

It wraps the whole application (`bounded`), so requests no route takes (404, 405) are cut too.
"""

import asyncio

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from controller.web.api.errors import ApiError


class BodyTimeout(ApiError):
    """The request body did not arrive within its deadline."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408, f"The request body did not arrive within {seconds:g} s", code="body_timeout"
        )


class ClientGone(ApiError):
    """The client closed its connection before its request's body was whole: answered (to
    nobody) and logged as 499, nginx's "client closed request"."""

    def __init__(self) -> None:
        super().__init__(499, "The client closed the connection mid-body", code="client_gone")


def declares_body(scope: Scope) -> bool:
    """Whether the request's headers announce a body (a length above 0, or chunks)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
    return False


def bounded(app: ASGIApp, seconds: float) -> ASGIApp:
    """`app` with its request bodies bounded in time, and connections closed after any response
    sent before its request's body was read to the end."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not declares_body(scope):
            await app(scope, receive, send)
            return
        read = False
        deadline = asyncio.get_running_loop().time() + seconds

        async def receive_bounded() -> ReceiveMessage:
            nonlocal read
            if read:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(seconds) from None
            if message["type"] == "http.disconnect":
                raise ClientGone
            read = not message.get("more_body", False)
            return message

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and not read:
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await app(scope, receive_bounded, send_closing)

    return middleware
