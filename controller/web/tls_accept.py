"""An HTTPS connection of the API from its accept: counted in the connection caps before its
TLS handshake, the handshake bounded by what is left of API_HEAD_SECONDS.

asyncio's and uvloop's TLS servers hand a connection to its protocol only once its handshake is
done: a client that connects and never finishes one would hold a socket outside the caps. Here
the listening socket is plain TCP; each accepted connection is admitted by its FrontProtocol
(controller.web.front_protocol) at once, then given to the event loop's own TLS protocol, as
its TLS server does, which hands the FrontProtocol the TLS transport once the handshake ends. A
connection refused by the caps is closed at once; one whose handshake fails, ends or is late
frees its slot.
"""

import asyncio
import asyncio.sslproto
import ssl
from collections.abc import Callable
from typing import cast

from controller.web.front_protocol import FrontProtocol

try:  # the loop's own TLS protocol: uvloop's, when the server runs on uvloop
    import uvloop
    from uvloop.loop import SSLProtocol as UvSSLProtocol  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - uvloop is a dependency of the API's server
    uvloop = None  # type: ignore[assignment]


# How long a closing HTTPS connection waits for its peer's close_notify, after sending its own
# and once its answer is taken; then it is aborted. Meanwhile the loop's TLS protocol reads and
# decrypts whatever the peer sends (uvloop's does), so this bounds that work per connection.
TLS_SHUTDOWN_S = 1.0


class TlsAccept(asyncio.Protocol):
    """The accepted TCP connection's protocol for as long as its admission takes."""

    def __init__(self, app: FrontProtocol, context: ssl.SSLContext, seconds: float) -> None:
        self._app = app
        self._context = context
        self._seconds = seconds  # the handshake's deadline, from the accept

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a TCP transport (uvloop's are not asyncio.Transport's subclasses)
        raw = cast(asyncio.Transport, transport)
        if not self._app.admit(raw, tls=True):
            return
        loop = asyncio.get_running_loop()
        handshaken: asyncio.Future[None] = loop.create_future()
        handshaken.add_done_callback(self._ended)
        tls = _tls_protocol(loop)(
            loop,
            self._app,
            self._context,
            handshaken,
            server_side=True,
            ssl_handshake_timeout=max(0.001, self._seconds - self._app.waited()),
            ssl_shutdown_timeout=TLS_SHUTDOWN_S,
        )
        # Before the loop starts reading it (once this returns): the ClientHello goes to `tls`.
        raw.set_protocol(tls)
        tls.connection_made(raw)

    def _ended(self, handshaken: "asyncio.Future[None]") -> None:
        """The handshake is over: a connection that did not reach its FrontProtocol (failed,
        late, or closed by its client) frees its slot."""
        if not handshaken.cancelled():
            handshaken.exception()  # retrieved: a failed handshake is the client's
        if not self._app.made:
            self._app.let_go()


def _tls_protocol(loop: asyncio.AbstractEventLoop) -> Callable[..., asyncio.BaseProtocol]:
    """The class of `loop`'s own TLS protocol (uvloop's or asyncio's: their arguments agree)."""
    if uvloop is not None and isinstance(loop, uvloop.Loop):
        return cast(Callable[..., asyncio.BaseProtocol], UvSSLProtocol)
    return asyncio.sslproto.SSLProtocol
