"""The mail clients' transport on a socket (shared/mailclient/socket_transport.py) against real
servers on loopback: Python's `ssl` on a blocking socket in a thread, one connection each, doing
what the test says (answer lines, stall or hang up in the handshake, send a huge chain). The
handshake verifies as the agent's context does; the close sends close_notify."""

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import trustme

from agent.probers.tls import SslContexts
from shared.mailclient import socket_transport
from shared.mailclient.socket_transport import SocketTransport, open_transport

Serve = Callable[[socket.socket], object]


@contextmanager
def serving(serve: Serve) -> Iterator[tuple[int, list[object]]]:
    """A listener on 127.0.0.1 whose one connection `serve` handles in a thread; what it
    returned (or raised) is in the list once the block ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    outcome: list[object] = []

    def run() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        try:
            outcome.append(serve(conn))
        except Exception as exc:  # what the server met is the test's to judge
            outcome.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], outcome
    finally:
        listener.close()
        thread.join(10)


def connected(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


class Lines(asyncio.Protocol):
    """Collects what arrives; `got(b"...")` waits until it has arrived."""

    def __init__(self) -> None:
        self.data = b""
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.eof = False
        self.made = 0
        self.paused = 0
        self.resumed = 0
        self._changed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made += 1

    def data_received(self, data: bytes) -> None:
        self.data += data
        self._changed.set()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._changed.set()
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)
        self._changed.set()

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1

    async def got(self, end: bytes) -> bytes:
        async with asyncio.timeout(10):
            while not self.data.endswith(end):
                if self.lost.done():
                    raise ConnectionResetError(f"lost before {end!r}: {self.data!r}")
                self._changed.clear()
                await self._changed.wait()
        return self.data


def tls_server(ctx: ssl.SSLContext, then: Callable[[ssl.SSLSocket], object]) -> Serve:
    def serve(conn: socket.socket) -> object:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            return then(tls)

    return serve


def echo_then_read_close(tls: ssl.SSLSocket) -> object:
    """Greets, echoes one line, then reports how the client ended: b"" is its close_notify
    (an EOF without one is SSLEOFError with OpenSSL 3)."""
    tls.sendall(b"* OK hello\r\n")
    line = b""
    while not line.endswith(b"\n"):
        line += tls.recv(100)
    tls.sendall(b"echo " + line)
    return tls.recv(100)


async def test_implicit_tls_carries_lines_reports_the_session_and_ends_with_close_notify(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    with serving(tls_server(server_tls, echo_then_read_close)) as (port, outcome):
        proto = Lines()
        transport = await open_transport(proto, connected(port), ssl_contexts.verified, "localhost")
        assert await proto.got(b"hello\r\n") == b"* OK hello\r\n"
        transport.write(b"a1 CAPABILITY\r\n")
        await proto.got(b"echo a1 CAPABILITY\r\n")
        tls = transport.get_extra_info("ssl_object")
        assert isinstance(tls, ssl.SSLSocket)
        assert tls.version() == "TLSv1.3" and transport.get_extra_info("cipher") is not None
        assert transport.get_extra_info("peercert")["subjectAltName"] == (("DNS", "localhost"),)
        assert transport.get_extra_info("sslcontext") is ssl_contexts.verified
        assert transport.handshake_done_at is not None
        assert transport.get_extra_info("peername")[1] == port
        transport.close()
        assert await proto.lost is None
    assert outcome == [b""]  # close_notify came before the socket's close
    assert proto.made == 1 and transport.is_closing()


async def test_starttls_upgrades_the_same_transport_after_lines_in_the_clear(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    def serve(conn: socket.socket) -> object:
        conn.sendall(b"* OK plain\r\n")
        assert conn.recv(100) == b"s STARTTLS\r\n"
        conn.sendall(b"s OK begin\r\n")
        with server_tls.wrap_socket(conn, server_side=True) as tls:
            return echo_then_read_close(tls)

    with serving(serve) as (port, outcome):
        proto = Lines()
        transport = await open_transport(proto, connected(port), None, "localhost")
        await proto.got(b"plain\r\n")
        assert transport.get_extra_info("ssl_object") is None
        transport.write(b"s STARTTLS\r\n")
        await proto.got(b"begin\r\n")
        await transport.start_tls(ssl_contexts.verified, "localhost")
        assert transport.get_extra_info("ssl_object").version() == "TLSv1.3"
        await proto.got(b"* OK hello\r\n")
        transport.write(b"after\r\n")
        await proto.got(b"echo after\r\n")
        transport.close()
        await proto.lost
    assert outcome == [b""]
    with pytest.raises(RuntimeError):
        await transport.start_tls(ssl_contexts.verified, "localhost")


@pytest.mark.parametrize(
    ("server", "name", "reason"),
    [
        ("wrong_name_tls", "localhost", "Hostname mismatch"),
        ("untrusted_tls", "localhost", "unable to get local issuer certificate"),
        ("expired_tls", "localhost", "certificate has expired"),
        ("server_tls", "other.invalid", "Hostname mismatch"),
    ],
)
async def test_a_certificate_the_context_refuses_fails_the_handshake_and_closes_the_socket(
    ssl_contexts: SslContexts, server: str, name: str, reason: str, request: pytest.FixtureRequest
) -> None:
    server_ctx: ssl.SSLContext = request.getfixturevalue(server)
    with serving(tls_server(server_ctx, echo_then_read_close)) as (port, outcome):
        sock = connected(port)
        proto = Lines()
        with pytest.raises(ssl.SSLCertVerificationError) as refused:
            await open_transport(proto, sock, ssl_contexts.verified, name)
    assert reason in str(refused.value.verify_message)
    assert sock.fileno() == -1  # detached into the TLS socket, which was closed
    assert proto.made == 0 and not proto.lost.done()  # never made, so never lost
    assert isinstance(outcome[0], ssl.SSLError)  # the server saw the client's alert


async def test_a_server_that_stalls_in_the_handshake_is_cut_by_the_callers_deadline(
    ssl_contexts: SslContexts,
) -> None:
    release = threading.Event()

    def stall(conn: socket.socket) -> object:
        hello = conn.recv(4096)  # the ClientHello, never answered
        release.wait(10)
        return hello[:1]

    with serving(stall) as (port, outcome):
        sock = connected(port)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await open_transport(Lines(), sock, ssl_contexts.verified, "localhost")
        release.set()
    assert outcome == [b"\x16"]  # a TLS handshake record came
    assert sock.fileno() == -1


async def test_a_server_that_closes_in_the_handshake_is_a_lost_connection(
    ssl_contexts: SslContexts,
) -> None:
    with serving(lambda conn: conn.recv(4096)[:1]) as (port, _):
        sock = connected(port)
        with pytest.raises(ConnectionResetError, match="closed during the handshake"):
            await open_transport(Lines(), sock, ssl_contexts.verified, "localhost")
    assert sock.fileno() == -1


def huge_chain_server(ca: trustme.CA, copies: int) -> ssl.SSLContext:
    """A server that sends its leaf with `copies` copies of its CA's certificate as the chain
    (~0.5 KB each): what a hostile or broken server may send before any verification."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf = ca.issue_cert("localhost")
    pem = leaf.private_key_pem.bytes() + leaf.cert_chain_pems[0].bytes()
    pem += ca.cert_pem.bytes() * copies
    with trustme.Blob(pem).tempfile() as path:
        ctx.load_cert_chain(path)
    return ctx


async def test_a_huge_certificate_chain_is_refused_at_openssls_bound(
    ca: trustme.CA, ssl_contexts: SslContexts
) -> None:
    server_ctx = huge_chain_server(ca, 400)  # > 100 KB: OpenSSL's max_cert_list
    with (
        serving(tls_server(server_ctx, echo_then_read_close)) as (port, _),
        pytest.raises(ssl.SSLError, match=r"(?i)excessive.message.size"),
    ):
        await open_transport(Lines(), connected(port), ssl_contexts.verified, "localhost")


async def test_a_write_the_socket_cannot_take_waits_pausing_the_protocol_and_is_all_sent(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    size = 8 * 1024 * 1024
    reading = threading.Event()

    def slow_reader(tls: ssl.SSLSocket) -> object:
        tls.sendall(b"go\r\n")
        reading.wait(10)
        got = 0
        while got < size:
            chunk = tls.recv(65536)
            if not chunk:
                break
            got += len(chunk)
        return got

    with serving(tls_server(server_tls, slow_reader)) as (port, outcome):
        proto = Lines()
        transport = await open_transport(proto, connected(port), ssl_contexts.verified, "localhost")
        await proto.got(b"go\r\n")
        for _ in range(size // 65536):
            transport.write(b"x" * 65536)
        assert proto.paused == 1 and transport.get_write_buffer_size() > 0
        reading.set()
        transport.close()  # after what is buffered
        assert await proto.lost is None
    assert outcome == [size] and proto.resumed == 1


async def test_the_servers_close_is_an_eof_then_a_loss(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    def bye(tls: ssl.SSLSocket) -> object:
        tls.sendall(b"* BYE\r\n")
        return tls.unwrap()

    with serving(tls_server(server_tls, bye)) as (port, _):
        proto = Lines()
        transport = await open_transport(proto, connected(port), ssl_contexts.verified, "localhost")
        await proto.got(b"* BYE\r\n")
        assert await proto.lost is None
    assert proto.eof and transport.is_closing()
    transport.write(b"after the close\r\n")  # dropped, as asyncio's transports do


async def test_reading_pauses_and_resumes(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    def two(tls: ssl.SSLSocket) -> object:
        tls.sendall(b"one\r\n")
        assert tls.recv(100) == b"more\r\n"
        tls.sendall(b"two\r\n")
        return tls.recv(100)

    with serving(tls_server(server_tls, two)) as (port, outcome):
        proto = Lines()
        transport = await open_transport(proto, connected(port), ssl_contexts.verified, "localhost")
        await proto.got(b"one\r\n")
        transport.pause_reading()
        assert not transport.is_reading()
        transport.write(b"more\r\n")
        await asyncio.sleep(0.05)  # "two" may arrive now; it is not read while paused
        assert proto.data == b"one\r\n"
        transport.resume_reading()
        await proto.got(b"two\r\n")
        transport.close()
        await proto.lost
    assert outcome == [b""]


def test_the_transport_is_an_asyncio_transport() -> None:
    assert issubclass(SocketTransport, asyncio.Transport)
    assert socket_transport.WRITE_LOW < socket_transport.WRITE_HIGH
