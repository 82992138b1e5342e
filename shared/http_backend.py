"""httpcore's network backend on the running loop's own streams, reading a bounded distance
ahead of its reader: the HTTPS clients that read strangers' answers (the agent's Graph and
Gmail probers, the controller's notification egress and OAuth2 token fetches) use it.

httpcore's anyio backend pauses its transport only when its reader next runs; uvloop reads up
to 32 socket buffers a wake before that, about 8 MiB a connection held unread from a fast peer
(`python -m bench.read_bursts`). An asyncio `StreamReader` pauses its transport from within
the read that crosses its bound, on either loop, and a TLS transport then stops reading its
socket once its own incoming buffer is full.

| bound | value |
|---|---|
| unread plain bytes before the transport pauses | twice READ_LIMIT |
| a plain close's wait for its last bytes to go | CLOSE_S, then the connection is reset |
| a TLS close | at once, without close_notify, as httpcore's anyio backend closes |

TLS is set up as the connection opens (`create_connection(sock=..., ssl=...)`): a stream opens
on its first read or write (plain) or at `start_tls` (TLS), which httpcore calls right after
`connect_tcp` when it uses no proxy."""

import asyncio
import socket
import ssl
from collections.abc import Iterable

import httpcore
from httpcore._utils import is_socket_readable

READ_LIMIT = 64 * 1024  # httpcore reads 64 KiB at a time
CLOSE_S = 1.0


class FlowStream(httpcore.AsyncNetworkStream):
    """One connection: a connected socket until it opens, then an asyncio stream pair."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._closed = False

    async def _opened(
        self,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        handshake_s: float | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._closed:
            raise ConnectionResetError("the stream is closed")
        if self._reader is None or self._writer is None:
            if ssl_context is None:
                opened = asyncio.open_connection(sock=self._sock, limit=READ_LIMIT)
            else:
                opened = asyncio.open_connection(
                    sock=self._sock,
                    limit=READ_LIMIT,
                    ssl=ssl_context,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=handshake_s,
                    ssl_shutdown_timeout=CLOSE_S,
                )
            self._reader, self._writer = await opened
        return self._reader, self._writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109  # httpcore's interface
        try:
            async with asyncio.timeout(timeout):
                reader, _ = await self._opened()
                return await reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc) or "read timed out") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109  # httpcore's interface
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                _, writer = await self._opened()
                if writer.is_closing():
                    raise ConnectionResetError("the connection is closed")
                writer.write(buffer)
                await writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc) or "write timed out") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        if self._writer is not None:
            raise httpcore.ConnectError("TLS starts only on a connection not yet used")
        try:
            async with asyncio.timeout(timeout):
                await self._opened(ssl_context, server_hostname, timeout)
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(str(exc) or "TLS handshake timed out") from exc
        except OSError as exc:  # ssl.SSLError is one
            await self.aclose()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    async def aclose(self) -> None:
        # The stream lets go of its buffers at once: httpcore's connection objects are freed
        # by the cycle collector, later, with whatever they hold.
        writer, self._reader, self._writer = self._writer, None, None
        self._closed = True
        if writer is None:
            self._sock.close()
        elif writer.get_extra_info("ssl_object") is not None:
            # No close_notify and no wait for the peer's: a TLS close reads, and decrypts, all
            # the peer sends until it answers, and an answer under way can be megabytes.
            writer.transport.abort()
        else:
            writer.close()
            try:
                async with asyncio.timeout(CLOSE_S):
                    await writer.wait_closed()
            except TimeoutError:
                writer.transport.abort()
            except OSError:
                pass

    def get_extra_info(self, info: str) -> object:
        if self._closed:
            return None
        writer = self._writer
        if info == "ssl_object":
            return None if writer is None else writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._sock.getsockname() if writer is None else writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._sock.getpeername() if writer is None else writer.get_extra_info("peername")
        if info == "socket":
            return self._sock if writer is None else writer.get_extra_info("socket")
        if info == "is_readable":
            if self._reader is not None and self._reader.at_eof():
                return True
            sock: socket.socket | None = (
                self._sock if writer is None else writer.get_extra_info("socket")
            )
            return sock is not None and sock.fileno() >= 0 and is_socket_readable(sock)
        return None


class FlowBackend(httpcore.AsyncNetworkBackend):
    """Connects to `host` (an address, or a name resolved here) over TCP; no unix sockets. A
    backend that dials only addresses it checked overrides `connect_tcp` and dials them with
    `connect_any`."""

    async def connect_any(
        self,
        addresses: Iterable[str],
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """The first of `addresses` that answers, in order; else the last one's failure."""
        failure: Exception = httpcore.ConnectError("no address to connect to")
        for address in addresses:
            try:
                return await FlowBackend.connect_tcp(
                    self, address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                failure: OSError = OSError(f"{host} has no address")
                for family, kind, proto, _, address in infos:
                    sock = socket.socket(family, kind, proto)
                    try:
                        sock.setblocking(False)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        for option in socket_options or ():
                            sock.setsockopt(*option)
                        if local_address is not None:
                            sock.bind((local_address, 0))
                        await loop.sock_connect(sock, address)
                    except OSError as exc:
                        sock.close()
                        failure = exc
                        continue
                    except BaseException:
                        sock.close()
                        raise
                    return FlowStream(sock)
                raise failure
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "connect timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
