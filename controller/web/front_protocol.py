"""The API's HTTP/1.1 protocol: uvicorn's h11 protocol with what a stranger's connection may cost.

- Its head due within API_HEAD_SECONDS of its accept, the TLS handshake included
  (controller.web.head_deadline; the handshake's own timeout is the same, front_server).
- A head and a chunked body's framing bounded before h11 parses them (controller.web.h11_bounds).
- Connections capped per source address and per replica (controller.web.connection_caps).
- An answer must be taken by the peer: what it has not acknowledged of one
  API_WRITE_SECONDS after the server's last write of it (or after the peer last took enough for
  writing to resume) closes the connection, its buffers freed. The kernel's send queue counts:
  on Linux it takes an answer of hundreds of KiB from a peer that reads none of it.
"""

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

from controller.observability import metrics
from controller.settings import ApiSettings
from controller.web.connection_caps import Admit, ConnectionCaps, replica_cap
from controller.web.h11_bounds import MAX_HEAD_BYTES, BoundedConnection
from controller.web.head_deadline import HeadDeadline

log = structlog.get_logger(__name__)

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 28\r\nconnection: close\r\n\r\ntoo many connections: retry\n"
)


@dataclass(frozen=True)
class FrontLimits:
    """The API_* settings of the front."""

    head_seconds: float
    write_seconds: float
    max_connections: int  # per replica, already below the open-files limit
    max_connections_per_address: int
    trusted_proxies: list[str]

    @classmethod
    def of(cls, api: ApiSettings) -> "FrontLimits":
        return cls(
            head_seconds=api.api_head_seconds,
            write_seconds=api.api_write_seconds,
            max_connections=replica_cap(api.api_max_connections),
            max_connections_per_address=api.api_max_connections_per_address,
            trusted_proxies=api.trusted_proxies,
        )


class FrontProtocol(HeadDeadline):
    """One connection of the API (the class made by `front_protocol`, one per server)."""

    limits: ClassVar[FrontLimits]
    caps: ClassVar[ConnectionCaps]
    # connections waiting for a request (idle, or its head not whole), the longest waiting first
    waiting: ClassVar[dict["FrontProtocol", None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = BoundedConnection(h11.SERVER, MAX_HEAD_BYTES)
        self._source: str | None = None  # counted in `caps` under this address
        self._write_late: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        source = self.client[0] if self.client else ""
        admitted = self.caps.admit(source)
        if admitted is Admit.REPLICA_FULL and self._make_room():
            admitted = self.caps.admit(source)
        if admitted is not Admit.YES:
            metrics.api_connection_cut(admitted.value)
            self._head_done()
            transport.write(_BUSY)
            transport.close()
            return
        self._source = source
        self.waiting[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._let_go()
        self._write_done()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self.waiting.pop(self, None)

    def on_response_complete(self) -> None:
        self._await_reader()
        if self._source is not None and not self.transport.is_closing():
            self.waiting[self] = None
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """A request refused mid-way (its body's framing): the application is told the client
        is gone; the 400 is sent only when nothing of an answer has been."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            super().send_400_response(msg)
        else:
            self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._await_reader()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._write_done()
        self._await_reader()

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request (an answer of its own
        unread, maybe), if one has."""
        other = next(iter(self.waiting), None)
        if other is None:
            return False
        metrics.api_connection_cut("gave_way")
        other._cut()
        return True

    def _cut(self) -> None:
        """Close at once, what the peer has not taken discarded: a reset (SO_LINGER 0), not a
        close, which leaves the kernel holding the unsent bytes for as long as it retries."""
        self._let_go()
        sock = self.transport.get_extra_info("socket")
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def _let_go(self) -> None:
        self.waiting.pop(self, None)
        if self._source is not None:
            self.caps.release(self._source)
            self._source = None

    def _await_reader(self) -> None:
        self._write_done()
        self._write_late = self.loop.call_later(self.limits.write_seconds, self._cut_unread)

    def _write_done(self) -> None:
        if self._write_late is not None:
            self._write_late.cancel()
            self._write_late = None

    def _cut_unread(self) -> None:
        self._write_late = None
        if _unsent(self.transport):
            metrics.api_connection_cut("unread")
            self._cut()


def _unsent(transport: asyncio.Transport) -> int:
    """Bytes written for the peer it has not acknowledged: the transport's and the kernel's."""
    return transport.get_write_buffer_size() + _kernel_unacked(transport)


def _kernel_unacked(transport: asyncio.Transport) -> int:
    """Bytes written to the socket its peer has not acknowledged (Linux's SIOCOUTQ), 0 where
    that cannot be asked."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return 0
    with contextlib.suppress(OSError, ValueError):
        got = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
        return int(struct.unpack("i", got)[0])
    return 0


def front_protocol(limits: FrontLimits) -> type[H11Protocol]:
    """The protocol class for uvicorn's `http=`, its connections counted together (one server)."""
    return type(
        "FrontProtocol",
        (FrontProtocol,),
        {
            "seconds": limits.head_seconds,
            "limits": limits,
            "caps": ConnectionCaps(
                limits.max_connections,
                limits.max_connections_per_address,
                limits.trusted_proxies,
            ),
            "waiting": {},
        },
    )
