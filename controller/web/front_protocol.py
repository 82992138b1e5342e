"""The API's HTTP/1.1 protocol: uvicorn's h11 protocol with what a stranger's connection may cost.

- Its head due within API_HEAD_SECONDS of its accept, the TLS handshake included
  (controller.web.head_deadline; the handshake's own timeout is the same, front_server).
- A head and a chunked body's framing bounded before h11 parses them (controller.web.h11_bounds).
- Connections capped per source address and per replica (controller.web.connection_caps),
  an HTTPS connection from its accept, its TLS handshake included (controller.web.tls_accept).
- An answer must be taken by the peer: while some of it is not, each API_WRITE_SECONDS the
  peer must have taken (acknowledged) `MIN_TAKEN` more of it, or all that was waiting, else the
  connection is reset and its buffers freed. The kernel's send queue counts: on Linux it takes
  an answer of hundreds of KiB from a peer that reads none of it. A peer reading a long stream
  keeps its connection; one that stops reading loses it within two deadlines at most.
"""

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import get_remote_addr

from controller.observability import metrics
from controller.settings import ApiSettings
from controller.web.client_block import client_block
from controller.web.connection_caps import Admit, ConnectionCaps, giving_way, replica_cap
from controller.web.h11_bounds import MAX_HEAD_BYTES, BoundedConnection
from controller.web.head_deadline import HeadDeadline

# What a closing connection may leave to the kernel to send (bounded in time by
# TCP_USER_TIMEOUT): more, and the connection lingers, in the caps, until its peer takes it.
KERNEL_TAIL = 16 * 1024
LINGER_S = 0.1  # how often a closing connection looks whether its peer has taken all of it
MIN_TAKEN = 16 * 1024  # bytes of a waiting answer its peer must take each API_WRITE_SECONDS
# Linux `struct tcp_info`: `tcpi_bytes_acked` (u64) at this offset (linux/tcp.h, since 4.1)
_BYTES_ACKED_AT = 120

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
        self._block = ""  # `client_block` of it
        self._raw: asyncio.Transport | None = None  # the TCP connection admitted
        self.made = False  # whether it has its transport (HTTPS: its handshake done)
        self._write_late: asyncio.TimerHandle | None = None
        self._taken = 0  # bytes the peer had acknowledged when the write deadline was set
        self._waiting_bytes = 0  # and the bytes it had not

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.made = True
        super().connection_made(cast(asyncio.Transport, _HeldOpen(transport, self)))
        if self._raw is None and not self.admit(transport):  # HTTPS: admitted at the accept
            self._head_done()

    def admit(self, transport: asyncio.Transport, tls: bool = False) -> bool:
        """Whether the accepted connection `transport` is taken by the caps (its slot held until
        `let_go`); refused, it is answered 503 (plain HTTP only) and closed."""
        addr = get_remote_addr(transport)
        source = addr[0] if addr else ""
        admitted = self.caps.admit(source)
        if admitted is Admit.REPLICA_FULL and self._make_room():
            admitted = self.caps.admit(source)
        if admitted is not Admit.YES:
            metrics.api_connection_cut(admitted.value)
            if not tls:
                transport.write(_BUSY)
            transport.close()
            return False
        self._source, self._raw = source, transport
        self._block = client_block(source)  # its address as the caps count it, read once
        self.waiting[self] = None
        _user_timeout(transport, self.limits.write_seconds)
        return True

    def waited(self) -> float:
        """Seconds since the connection was accepted."""
        return self.loop.time() - self._accepted

    def connection_lost(self, exc: Exception | None) -> None:
        self.let_go()
        self._write_done()
        if self.made:  # a TLS protocol may report a loss mid-handshake: nothing began here
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # closing: what the peer sends now is not parsed
        super().data_received(data)

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

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close `transport` once its peer has taken all of it (looked at every LINGER_S); the
        write deadline cuts a peer that does not take it. A peer still sending a request is
        reset instead, as soon as the answer is with the kernel (all but KERNEL_TAIL of it
        taken): a TLS close would read, and decrypt, what it sends until the shutdown's
        timeout, and a plain close with unread bytes resets the connection all the same."""
        if transport.is_closing():
            return
        if self.sending():
            if transport.get_write_buffer_size() or _kernel_unacked(transport) > KERNEL_TAIL:
                self.loop.call_later(LINGER_S, self._linger, transport)
            else:
                self._cut()
        elif _unsent(transport):
            self.loop.call_later(LINGER_S, self._linger, transport)
        else:
            transport.resume_reading()  # a TLS close reads the peer's close_notify
            transport.close()

    def sending(self) -> bool:
        """Whether the peer may still be sending a request nobody reads: its body under way,
        its request refused (h11's ERROR), or bytes of a next one unparsed."""
        return self.conn.their_state in (h11.SEND_BODY, h11.ERROR) or bool(
            self.conn.trailing_data[0]
        )

    def _make_room(self) -> bool:
        """Close a connection waiting for a request (an answer of its own unread, maybe), if
        one is: of those whose address holds the most connections, the one waiting longest. A
        burst of new connections from a few addresses gives way among its own, never a lone
        client's handshake."""
        other = giving_way(self.waiting, lambda c: self.caps.held(c._block))
        if other is None:
            return False
        metrics.api_connection_cut("gave_way")
        other._cut()
        return True

    def _cut(self) -> None:
        """Close at once, what the peer has not taken discarded: a reset (SO_LINGER 0), not a
        close, which leaves the kernel holding the unsent bytes for as long as it retries."""
        raw = self._raw
        self.let_go()
        if raw is None:
            return
        sock = raw.get_extra_info("socket")
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.abort()

    def let_go(self) -> None:
        """Free the connection's slot in the caps (again: nothing)."""
        self.waiting.pop(self, None)
        if self._source is not None:
            self.caps.release(self._source)
            self._source = None

    def _await_reader(self) -> None:
        self._write_done()
        self._taken, self._waiting_bytes = _acked(self.transport), _unsent(self.transport)
        self._write_late = self.loop.call_later(self.limits.write_seconds, self._check_reader)

    def _write_done(self) -> None:
        if self._write_late is not None:
            self._write_late.cancel()
            self._write_late = None

    def _check_reader(self) -> None:
        self._write_late = None
        if not _unsent(self.transport):
            return
        taken = _acked(self.transport) - self._taken
        if taken > 0 and taken >= min(self._waiting_bytes, MIN_TAKEN):
            self._await_reader()
            return
        metrics.api_connection_cut("unread")
        self._cut()


class _HeldOpen:
    """The transport uvicorn is given: its `close` keeps the connection, and its slot in the
    caps, until the peer has taken what was written, past KERNEL_TAIL; a peer still sending a
    request is reset once the answer is with the kernel (FrontProtocol._linger). Closed at once,
    a socket leaves its unsent bytes to the kernel, out of the caps' sight."""

    def __init__(self, transport: asyncio.Transport, protocol: FrontProtocol) -> None:
        self._transport = transport
        # weak: the protocol holds this, and a cycle would keep each connection's buffers
        # until the collector runs
        self._protocol = weakref.ref(protocol)
        self._closing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        protocol = self._protocol()
        if protocol is None or (_unsent(self._transport) <= KERNEL_TAIL and not protocol.sending()):
            self._transport.close()
            return
        self._transport.pause_reading()
        protocol._linger(self._transport)
        if protocol._write_late is None:  # a peer that takes nothing is cut all the same
            protocol._await_reader()


def _user_timeout(transport: asyncio.Transport, seconds: float) -> None:
    """The kernel's own write deadline (Linux's TCP_USER_TIMEOUT): bytes it holds unacknowledged
    for `seconds`, its peer not reading, abort the connection; this holds too once the process
    has closed its end and the kernel alone still sends the answer's tail."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(seconds * 1000))


def _unsent(transport: asyncio.Transport) -> int:
    """Bytes written for the peer it has not acknowledged: the transport's and the kernel's."""
    return transport.get_write_buffer_size() + _kernel_unacked(transport)


def _acked(transport: asyncio.Transport) -> int:
    """Bytes written to the socket its peer has acknowledged (Linux's TCP_INFO), 0 where that
    cannot be asked (then a peer never seems to take anything)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return 0
    with contextlib.suppress(OSError, ValueError, struct.error):
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _BYTES_ACKED_AT + 8)
        return int(struct.unpack_from("Q", info, _BYTES_ACKED_AT)[0])
    return 0


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
