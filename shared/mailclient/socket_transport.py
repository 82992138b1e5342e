"""A transport on a connected non-blocking socket, in the clear or over TLS on it, driven by the
event loop's `add_reader`/`add_writer`.

TLS is `ssl.SSLSocket` straight on the socket (`SSLContext.wrap_socket`): OpenSSL reads and
writes the descriptor itself, where the event loop's own TLS transport (uvloop's, asyncio's)
runs it over memory BIOs and copies every record through them. The handshake is the context's,
with every check it makes (chain, name, the context's versions and ciphers); this module adds
none and skips none. STARTTLS is `start_tls` on the same transport, so the protocol keeps its
transport object.

Reading: the descriptor stays registered for reading from `connection_made` to the close (one
registration per connection), and each readiness reads what OpenSSL or the kernel has. Writing:
a write is sent at once; what the kernel or OpenSSL could not take waits, bounded by the
protocol's flow control (`pause_writing` past WRITE_HIGH bytes), and is sent when the socket is
writable. Closing sends close_notify after what is buffered (it does not wait for the server's);
`abort` closes at once.
"""

import asyncio
import contextlib
import socket
import ssl
import time
from typing import Any

READ_MAX = 65536
WRITE_HIGH = 64 * 1024  # buffered bytes past which the protocol is asked to pause writing
WRITE_LOW = 16 * 1024
_BLOCKED = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


_GONE = asyncio.Protocol()  # the protocol of a transport whose connection was lost


class SocketTransport(asyncio.Transport):
    """The transport of `protocol` on `sock` (connected, non-blocking), which it owns: closed
    with the transport. `open_transport` makes one; `start_tls` upgrades it in place."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.Protocol
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sock: socket.socket = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._buffer = bytearray()
        # OpenSSL takes a write it could not finish again only with the same bytes: the length
        # it was given, retried first.
        self._retry = 0
        self._writing = False  # registered for writability
        self._reading = False  # registered for readability
        self._read_paused = False
        self._write_paused = False  # the protocol was asked to pause writing
        self._closing = False
        self._lost = False
        self._made = False  # connection_made was called: connection_lost will be
        self._handshake: asyncio.Future[None] | None = None
        self.handshake_done_at: float | None = None  # perf_counter() when it finished

    # Opening

    def _start(self) -> None:
        self._made = True
        self._protocol.connection_made(self)
        if not self._closing and not self._read_paused:
            self._add_reader()

    async def start_tls(self, ctx: ssl.SSLContext, server_hostname: str) -> None:
        """TLS on the connection from here on (the certificate checked by `ctx` for
        `server_hostname`, also sent as SNI); raises what the handshake raises (ssl.SSLError,
        ssl.SSLCertVerificationError, OSError, ConnectionResetError on an EOF within it), after
        which the transport is closed. The caller decides before calling whether the server
        sent more in the clear; nothing is read between that and the handshake."""
        if isinstance(self._sock, ssl.SSLSocket):
            raise RuntimeError("TLS is already on")
        if self._closing:
            raise ConnectionResetError("the transport is closed")
        if self._buffer:
            raise RuntimeError("TLS asked for with a write still unsent")
        try:
            # wrap_socket detaches `sock`: the TLS socket holds the same descriptor from here,
            # so the loop's registration for it stands.
            self._sock = ctx.wrap_socket(
                self._sock, server_hostname=server_hostname, do_handshake_on_connect=False
            )
        except BaseException:
            self.abort()
            raise
        done = self._handshake = self._loop.create_future()
        self._step_handshake()
        try:
            await done
        except BaseException:
            self._handshake = None
            self.abort()
            raise

    def _step_handshake(self) -> None:
        """One step of the handshake, on each readiness while it lasts. An implicit-TLS
        connection is made (`connection_made`) when it finishes, before anything is read."""
        done = self._handshake
        assert isinstance(self._sock, ssl.SSLSocket) and done is not None
        try:
            self._sock.do_handshake()
        except ssl.SSLWantReadError:
            self._remove_writer()
            self._add_reader()
            return
        except ssl.SSLWantWriteError:
            self._add_writer()
            return
        except ssl.SSLEOFError:
            error: Exception = ConnectionResetError("the server closed during the handshake")
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            error = exc
        else:
            self.handshake_done_at = time.perf_counter()
            self._handshake = None
            self._remove_writer()
            if self._read_paused:
                self._remove_reader()
            done.set_result(None)
            if not self._made:
                self._start()
            return
        self._handshake = None
        self._remove_reader()
        self._remove_writer()
        done.set_exception(error)

    def _on_readable(self) -> None:
        if self._handshake is not None:
            self._step_handshake()
        elif self._made:
            self._read_ready()

    def _on_writable(self) -> None:
        if self._handshake is not None:
            self._step_handshake()
        else:
            self._write_ready()

    # Reading

    def _read_ready(self) -> None:
        if self._closing:
            return
        try:
            data = self._sock.recv(READ_MAX)
        except _BLOCKED:  # e.g. a record not complete yet, or a session ticket read
            return
        except ssl.SSLZeroReturnError:  # the server's close_notify
            data = b""
        except (OSError, ValueError) as exc:
            self._fatal(exc)
            return
        if data:
            self._protocol.data_received(data)
            if self._buffer and self._retry and not self._writing:
                self._write_ready()
            return
        self._remove_reader()
        keep_open = self._protocol.eof_received()
        if not keep_open:
            self.close()

    def pause_reading(self) -> None:
        if self._closing or self._read_paused:
            return
        self._read_paused = True
        if self._handshake is None:
            self._remove_reader()

    def resume_reading(self) -> None:
        if self._closing or not self._read_paused:
            return
        self._read_paused = False
        self._add_reader()

    def is_reading(self) -> bool:
        return not self._read_paused and not self._closing

    # Writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost:
            return  # as asyncio's transports: a write after close is dropped
        if not data:
            return
        if self._handshake is not None:
            raise RuntimeError("write during the TLS handshake")
        if not self._buffer:
            try:
                sent = self._sock.send(data)
            except _BLOCKED:
                sent = 0
                self._retry = len(data) if isinstance(self._sock, ssl.SSLSocket) else 0
            except (OSError, ValueError) as exc:
                self._fatal(exc)
                return
            if sent == len(data):
                return
            self._buffer += memoryview(data)[sent:]
            self._add_writer()
        else:
            self._buffer += data
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        chunk = memoryview(self._buffer)[: self._retry or len(self._buffer)]
        try:
            sent = self._sock.send(chunk)
        except ssl.SSLWantReadError:  # a renegotiation wants the server's next record first
            self._retry = len(chunk)
            self._remove_writer()
            return
        except _BLOCKED:
            self._retry = len(chunk) if isinstance(self._sock, ssl.SSLSocket) else 0
            return
        except (OSError, ValueError) as exc:
            chunk.release()
            self._fatal(exc)
            return
        chunk.release()
        self._retry = 0
        del self._buffer[:sent]
        self._maybe_resume_protocol()
        if self._buffer:
            self._add_writer()
            return
        self._remove_writer()
        if self._closing:
            self._finish()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("a mail session ends with its protocol's goodbye")

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return WRITE_LOW, WRITE_HIGH

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        raise NotImplementedError("the limits are WRITE_HIGH and WRITE_LOW")

    def _maybe_pause_protocol(self) -> None:
        if len(self._buffer) > WRITE_HIGH and not self._write_paused:
            self._write_paused = True
            self._protocol.pause_writing()

    def _maybe_resume_protocol(self) -> None:
        if self._write_paused and len(self._buffer) <= WRITE_LOW:
            self._write_paused = False
            self._protocol.resume_writing()

    # Closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close after what is buffered is sent, with close_notify over TLS."""
        if self._closing:
            return
        self._closing = True
        self._remove_reader()
        if self._handshake is not None:
            self._handshake.cancel()
            self._handshake = None
        if not self._buffer:
            self._finish()

    def abort(self) -> None:
        """Close at once: nothing more is sent."""
        if self._lost:
            return
        self._closing = True
        self._buffer.clear()
        self._remove_reader()
        self._remove_writer()
        self._sock.close()
        self._lose(None)

    def _finish(self) -> None:
        self._remove_writer()
        if isinstance(self._sock, ssl.SSLSocket) and self.handshake_done_at is not None:
            # close_notify (RFC 8446 6.1); the server's is not waited for.
            with contextlib.suppress(*_BLOCKED, OSError, ValueError):
                self._sock.unwrap()
        self._sock.close()
        self._lose(None)

    def _fatal(self, exc: Exception) -> None:
        self._closing = True
        self._buffer.clear()
        self._remove_reader()
        self._remove_writer()
        self._sock.close()
        self._lose(exc)

    def _lose(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        if self._made:
            self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Exception | None) -> None:
        protocol, self._protocol = self._protocol, _GONE
        # The protocol holds the transport: dropping it here frees both by reference
        # counting, not the cyclic collector.
        protocol.connection_lost(exc)

    # The loop's registrations

    def _add_reader(self) -> None:
        if not self._reading:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)

    def _remove_reader(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _add_writer(self) -> None:
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._fd, self._on_writable)

    def _remove_writer(self) -> None:
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._fd)

    # What a protocol may ask

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        sock = self._sock
        tls = isinstance(sock, ssl.SSLSocket) and self.handshake_done_at is not None
        if name == "ssl_object":
            return sock if tls else default
        if name == "sslcontext":
            return sock.context if tls and isinstance(sock, ssl.SSLSocket) else default
        if name == "peercert":
            return sock.getpeercert() if tls and isinstance(sock, ssl.SSLSocket) else default
        if name == "cipher":
            return sock.cipher() if tls and isinstance(sock, ssl.SSLSocket) else default
        if name == "compression":
            return sock.compression() if tls and isinstance(sock, ssl.SSLSocket) else default
        if name == "socket":
            return sock
        if self._lost:
            return default
        with contextlib.suppress(OSError):
            if name == "peername":
                return sock.getpeername()
            if name == "sockname":
                return sock.getsockname()
        return default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol


async def open_transport(
    protocol: asyncio.Protocol,
    sock: socket.socket,
    ctx: ssl.SSLContext | None,
    server_hostname: str,
) -> SocketTransport:
    """`protocol`'s transport on the connected `sock`, over TLS at once with `ctx`. The socket
    is closed when this fails."""
    transport = SocketTransport(asyncio.get_running_loop(), sock, protocol)
    if ctx is None:
        transport._start()
    else:
        await transport.start_tls(ctx, server_hostname)  # made when the handshake finishes
    return transport
