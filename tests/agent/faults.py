"""Fault tools for agent tests: a network link that can be cut, and an SMTP-like peer that,
like Postfix, serves a fixed number of sessions at a time and leaves the rest waiting."""

import asyncio
import contextlib
from types import TracebackType
from typing import Self

from testkit.peers.scripted import ScriptedPeer
from tests.agent.helpers import SMTP_REPLIES


class Link:
    """A TCP forwarder on loopback between a client and `upstream_port`. `cut()` drops every
    connection and stops listening (new ones are refused) until `restore()`: a network
    partition, so the test decides when the client gets back, independently of the server."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        if self._server is None:  # cut while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._forward(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}
            writer.transport.abort()
            up_writer.transport.abort()

    async def _forward(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
        """The client's bytes to the server."""
        await _pipe(reader, up)

    async def __aenter__(self) -> Self:
        await self.restore()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cut()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


class LimitedSmtpPeer(ScriptedPeer):
    """Greets at most `slots` clients at a time, each `hold` seconds after its turn comes; the
    others wait connected and unanswered, as in a server's listen backlog. `max_open` is the
    most connections it ever had at once: the checks its clients had in flight."""

    def __init__(self, slots: int, hold: float) -> None:
        super().__init__(b"220 peer.test ESMTP\r\n", b"250 ok\r\n", SMTP_REPLIES)
        self._slots = asyncio.Semaphore(slots)
        self._hold = hold
        self.open = 0
        self.max_open = 0
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            async with self._slots:
                await asyncio.sleep(self._hold)
                await super().handle(reader, writer)
        finally:
            self.open -= 1


class ResultsGate(Link):
    """A NATS client's way to the server on loopback that, while `closed`, holds the client's
    publishes to subjects starting with `prefix` (RESULTS', by default) and lets everything
    else through: RESULTS unable to store while the client's pulls, acks and replies flow.
    `open()` sends what it held, in order, and lets the rest through from then on."""

    def __init__(self, upstream_port: int, prefix: bytes = b"mon.results.") -> None:
        super().__init__(upstream_port)
        self.closed = False
        self._prefix = prefix
        self._held: list[tuple[asyncio.StreamWriter, bytes]] = []

    @property
    def held(self) -> int:
        """Publishes held now."""
        return len(self._held)

    def close(self) -> None:
        self.closed = True

    def open(self) -> None:
        held, self._held = self._held, []
        for up, data in held:
            if not up.is_closing():
                up.write(data)
        self.closed = False

    async def _forward(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
        """The client's protocol, a command at a time: `PUB`/`HPUB` with their payloads."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.readuntil(b"\r\n")
                words = data.split()
                if words and words[0].upper() in (b"PUB", b"HPUB"):
                    data += await reader.readexactly(int(words[-1]) + 2)
                    if self.closed and words[1].startswith(self._prefix):
                        self._held.append((up, data))
                        continue
                up.write(data)
                await up.drain()
        up.transport.abort()
