"""A TCP proxy on loopback that strips STARTTLS from SMTP EHLO replies, as a middlebox on one
country's network path does: the client is never told TLS is there and goes on in the clear.

Replies are relayed whole (a multi-line reply is held until its last line) so the continuation
markers stay right when the STARTTLS line was the last one.
"""

import asyncio
import contextlib
from types import TracebackType
from typing import Self


class StripStarttls:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _client(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        up = asyncio.create_task(_pipe(c_reader, s_writer))
        down = asyncio.create_task(_strip(s_reader, c_writer))
        self._tasks |= {up, down}
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            self._tasks -= {up, down}
            for w in (c_writer, s_writer):
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


async def _strip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        reply: list[bytes] = []
        while line := await reader.readline():
            reply.append(line)
            if len(line) >= 4 and line[3:4] == b"-":
                continue  # more lines of this reply follow
            kept = [x for x in reply if x[4:].strip().upper() != b"STARTTLS"]
            for i, x in enumerate(kept):
                mark = b" " if i == len(kept) - 1 else b"-"
                kept[i] = x[:3] + mark + x[4:]
            writer.write(b"".join(kept))
            await writer.drain()
            reply = []
