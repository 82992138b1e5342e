"""How long a request head (request line and headers) may take to arrive: `API_HEAD_SECONDS`.

The clock starts when the connection is accepted (so an HTTPS connection's TLS handshake is inside
it) and, on a kept-alive connection, at the first byte
of the next head (until then the connection is idle, which uvicorn's keep-alive timeout bounds);
it stops once h11 has the whole head. Past the deadline the connection is answered 408 and
closed, before any of the application runs. uvicorn and h11 bound a head's size
(controller.runtime.serve.MAX_HEAD_BYTES) but not its time: without this, a client sending a
head a byte at a time holds its connection for as long as it keeps sending.
"""

import asyncio
import contextlib
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadDeadline(H11Protocol):
    """uvicorn's h11 protocol closing a connection whose request head is late (`seconds`)."""

    seconds: ClassVar[float]
    _head_late: asyncio.TimerHandle | None = None  # the deadline of the head awaited, if one is

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # made at the accept, before a TLS handshake (uvicorn's protocol factory)
        super().__init__(*args, **kwargs)
        self._accepted = self.loop.time()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head(self.seconds - (self.loop.time() - self._accepted))

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_late is None and self._head_begun():
            self._await_head()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._head_done()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._head_begun():  # a pipelined head, part of it already here
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def _head_begun(self) -> bool:
        """Whether part of the next request's head, and only that, is here."""
        return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _await_head(self, seconds: float | None = None) -> None:
        self._head_done()
        wait = self.seconds if seconds is None else max(0.0, seconds)
        self._head_late = self.loop.call_later(wait, self._close_late)

    def _head_done(self) -> None:
        if self._head_late is not None:
            self._head_late.cancel()
            self._head_late = None

    def _close_late(self) -> None:
        self._head_late = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        headers = [(b"connection", b"close"), (b"content-length", b"0")]
        # h11 has no answer to give in some state: the connection is then closed unanswered
        with contextlib.suppress(h11.LocalProtocolError):
            self.transport.write(
                self.conn.send(
                    h11.Response(status_code=408, headers=headers, reason=b"Request Timeout")
                )
                + self.conn.send(h11.EndOfMessage())
            )
        self.transport.close()
