"""shared/http_backend.py against real loopback peers, on the agent's loop (uvloop): a fast peer
fills no more than the stream's bound however slowly it is read (httpcore's anyio stream,
measured the same way, is the oracle: it holds megabytes), and httpx over it speaks HTTPS,
reuses its connection and maps each failure to httpcore's kind."""

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpcore
import httpx
import pytest
import trustme

from shared.http_backend import READ_LIMIT, FlowBackend, FlowStream
from testkit.peers.flood import flooding
from testkit.trust import trusting

FLOOD_MIB = 32
CHUNK = 64 * 1024


async def _slowly() -> None:
    await asyncio.sleep(0.001)  # a reader slower than loopback


async def test_a_fast_peer_fills_no_more_than_the_bound_of_a_slow_reader() -> None:
    with flooding(FLOOD_MIB) as port:
        stream = await FlowBackend().connect_tcp("127.0.0.1", port, timeout=5)
        assert isinstance(stream, FlowStream)
        most = got = 0
        while got < FLOOD_MIB << 20:
            data = await stream.read(CHUNK, timeout=10)
            assert data, f"end of stream after {got} bytes"
            got += len(data)
            reader = stream._reader  # the stream's own buffer, to look at
            assert reader is not None
            most = max(most, len(reader._buffer))  # type: ignore[attr-defined]
            await _slowly()
        await stream.aclose()
    with flooding(FLOOD_MIB) as port:
        oracle = await httpcore.AnyIOBackend().connect_tcp("127.0.0.1", port, timeout=5)
        queue = oracle._stream._protocol.read_queue  # type: ignore[attr-defined]
        most_anyio = got = 0
        while got < FLOOD_MIB << 20:
            got += len(await oracle.read(CHUNK, timeout=10))
            most_anyio = max(most_anyio, sum(len(chunk) for chunk in queue))
            await _slowly()
        await oracle.aclose()
    print(f"\nmost unread: flow {most / 2**10:.0f} KiB, anyio {most_anyio / 2**20:.1f} MiB")
    assert most_anyio > 1 << 20, "the oracle: anyio's stream reads ahead on this loop"
    # One socket read may land past the bound before the transport pauses.
    assert most <= 2 * READ_LIMIT + 256 * 1024


@asynccontextmanager
async def https_peer(ca: trustme.CA) -> AsyncIterator[tuple[int, list[int]]]:
    """An HTTP/1.1 server over TLS answering `/` with `ok` and `/slow` never, keeping connections;
    its port and the connections it accepted (one entry each)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while request := await reader.readuntil(b"\r\n\r\n"):
                if request.startswith(b"GET /slow"):
                    await reader.read()  # no answer: until the client goes
                    return
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        server.close()


def client(ca: trustme.CA, **timeouts: float) -> httpx.AsyncClient:
    verify = trusting(ca)
    transport = httpx.AsyncHTTPTransport(verify=verify, trust_env=False, retries=0)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=verify, max_connections=1, network_backend=FlowBackend()
    )
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, **timeouts))


async def test_https_over_the_stream_keeps_its_connection(ca: trustme.CA) -> None:
    async with https_peer(ca) as (port, accepted), client(ca) as http:
        answers = [await http.get(f"https://127.0.0.1:{port}/") for _ in range(3)]
    assert [(a.status_code, a.text) for a in answers] == [(200, "ok")] * 3
    assert len(accepted) == 1


async def test_each_failure_is_httpcores_kind(ca: trustme.CA) -> None:
    async with https_peer(ca) as (port, _):
        async with client(ca, read=0.3) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(f"https://127.0.0.1:{port}/slow")
        stranger = trustme.CA()
        async with client(stranger) as http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(f"https://127.0.0.1:{port}/")
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    async with client(ca) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"https://127.0.0.1:{port}/")


def _silent(address: str, port: int) -> list[socket.socket]:
    """A listener on `address:port` whose accept queue is full, so a new connection's SYN is
    dropped and its connect hangs (a host that does not answer); the sockets to close."""
    listener = socket.socket()
    listener.bind((address, port))
    listener.listen(0)
    held = [listener]
    for _ in range(64):
        filler = socket.socket()
        filler.settimeout(0.2)
        held.append(filler)
        try:
            filler.connect((address, port))
        except TimeoutError:
            return held
    for s in held:
        s.close()
    raise AssertionError("the accept queue never filled: no silent address on this host")


async def test_connect_any_goes_past_a_refusing_and_a_silent_address_in_order() -> None:
    """The backends that dial only the addresses they checked (the probers' pinned one, the
    egress, the OAuth2 fetcher) take the first that answers: a refused address costs nothing,
    a silent one its connect timeout, and when none answers the last failure is raised."""
    live = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = live.sockets[0].getsockname()[1]
    held = _silent("127.0.0.2", port)
    try:
        started = asyncio.get_running_loop().time()
        stream = await FlowBackend().connect_any(
            ["127.0.0.3", "127.0.0.2", "127.0.0.1"], port, timeout=0.5
        )
        took = asyncio.get_running_loop().time() - started
        sock = stream.get_extra_info("socket")
        assert sock.getpeername() == ("127.0.0.1", port)
        await stream.aclose()
        assert 0.5 <= took < 3, f"the silent address's timeout was waited once: {took:.2f} s"
        with pytest.raises(httpcore.ConnectError):
            await FlowBackend().connect_any(["127.0.0.2", "127.0.0.3"], port, timeout=0.3)
        with pytest.raises(httpcore.ConnectTimeout):
            await FlowBackend().connect_any(["127.0.0.3", "127.0.0.2"], port, timeout=0.3)
        with pytest.raises(httpcore.ConnectError, match="no address"):
            await FlowBackend().connect_any([], port, timeout=0.3)
    finally:
        for s in held:
            s.close()
        live.close()
